"""Cross-backend parity: one model, one batch, forward and backward on several backends."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from arraynet.backends import HostRNG, get_backend


def _batch(
    batch_size: int, seed: int, data_dir: str | None, input_shape: tuple, classes: int
) -> tuple[Any, Any, str]:
    """A real MNIST batch (host arrays) when the files are at hand and the model takes
    MNIST, else a random one of the model's input shape and classes."""
    from arraynet.data import DataError, load_mnist, one_hot
    from arraynet.data.arrays import uint8_to_float32

    try:
        if tuple(input_shape) != (28, 28, 1) or classes != 10:
            raise DataError("not an MNIST model")
        m = load_mnist(data_dir, download=False, verify=False, quiet=True)
        x = uint8_to_float32(m.train_images[:batch_size])[..., None]
        return x, one_hot(m.train_labels[:batch_size]), "mnist"
    except DataError:
        g = get_backend("numpy").rng(seed)
        x = g.host_uniform((batch_size, *input_shape), 0.0, 1.0).astype("float32")
        labels = g.permutation(batch_size * classes)[:batch_size] % classes
        return x, one_hot(labels, classes), "random"


REL_TOL = 1e-2  # a compared array may differ by at most 1 % of its largest entry ...
FLOOR = 1e-2  # ... or of this share of the largest gradient entry of the whole model


def _peak(a: Any) -> float:
    hp = array_namespace(a)
    return float(hp.max(hp.abs(a))) if a.size else 0.0


def compare(ref: Any, got: Any, tol: float, grad_peak: float = 0.0) -> tuple[float, bool]:
    """(max |got - ref|, passed). It passes when within tol * max(1, max|ref|) and within
    REL_TOL * max(max|ref|, FLOOR * grad_peak): a small gradient (say 3e-3 at most) cannot
    be 3 % off and pass, while one that is zero up to rounding (a bias before batch norm)
    is judged on the scale of the model's gradients."""
    hp = array_namespace(ref)
    f64 = hp.float64
    diff = float(hp.max(hp.abs(hp.astype(got, f64) - hp.astype(ref, f64)))) if ref.size else 0.0
    peak = _peak(ref)
    passed = diff <= tol * max(1.0, peak) and diff <= REL_TOL * max(peak, FLOOR * grad_peak)
    return diff, passed


def run_parity(
    model: str,
    backends: list[str],
    *,
    batch_size: int = 8,
    seed: int = 0,
    tol: float = 1e-4,
    dtype: str = "float32",
    data_dir: str | None = None,
    loss: str | None = None,
    devices: dict[str, str] | None = None,
    rng: str = "host",
) -> dict:
    """Compare logits, loss and every parameter gradient with the first backend.

    A backend is a name, or 'name@device' (so one library can be compared with itself on
    another device, e.g. 'torch@cpu,torch@cuda:0'); `devices` gives a device to plain
    names. Parameters are drawn once on the host and dropout masks come from identically
    seeded host generators, so every backend computes the same function. A difference
    passes when |a - b| <= tol * max(1, max|a|) for each compared array, and no array is
    off by more than 1 % of its scale (see `compare`). `rng='device'` draws the masks with
    each backend's device generator instead (they then differ between libraries, so only
    layouts without dropout can agree).
    """
    from arraynet.zoo.layouts import model_factory

    model_name, make, recipe = model_factory(model)
    loss = loss or recipe.loss
    devices = devices or {}
    shape_of = make()
    if shape_of.input_shape is None:
        raise ValueError(f"{model}: parity needs the layout's input_shape (it is null)")
    shape_of.build(get_backend("numpy"), seed=seed)
    x_host, y_host, source = _batch(
        batch_size, seed, data_dir, shape_of.input_shape, int(shape_of.output_shape[-1])
    )
    ref_state: dict[str, Any] | None = None
    results: dict[str, dict[str, Any]] = {}
    names = list(backends)
    if len(set(names)) < len(names):
        raise ValueError(f"--backends lists a backend twice: {','.join(names)}")
    for entry in names:
        name, _, device = entry.partition("@")
        b = get_backend(name, device or devices.get(name))
        m = make().build(b, seed=seed, dtype=dtype)
        if ref_state is None:
            ref_state = {k: b.to_host(v).copy() for k, v in m.state_dict().items()}
        m.load_state_dict({k: b.from_host(v, dtype=m.dtype) for k, v in ref_state.items()})
        m.set_rng(HostRNG(b, seed + 1) if rng == "host" else b.rng(seed + 1, host=False))
        x = b.from_host(x_host, dtype=m.dtype)
        y = b.from_host(y_host, dtype=m.dtype)
        value, out = m.loss_and_grads(x, y, loss)
        res = {"logits": b.to_host(out), "loss": b.to_host(value)[None]}
        res.update({f"grad {k}": b.to_host(g) for k, g in m.gradients().items()})
        results[entry] = res
    first = names[0]
    ref_all = results[first]
    grad_peak = max([_peak(v) for k, v in ref_all.items() if k.startswith("grad ")] or [0.0])
    rows: list[dict[str, Any]] = []
    worst = 0.0
    ok = True
    for other in names[1:]:
        for key, ref in ref_all.items():
            got = results[other][key]
            diff, passed = compare(ref, got, tol, grad_peak if key.startswith("grad ") else 0.0)
            ok &= passed
            worst = max(worst, diff)
            rows.append({"backend": other, "tensor": key, "max_abs_diff": diff, "ok": passed})
    return {
        "model": model_name,
        "backends": names,
        "batch_size": batch_size,
        "dtype": dtype,
        "data": source,
        "tolerance": tol,
        "rng": rng,
        "ok": bool(ok),
        "max_abs_diff": worst,
        "rows": rows,
    }
