"""The backend selector, its error paths, and what every adapter must supply."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from arraynet.backends import BackendUnavailable, get_backend, probe
from tests.conftest import CPU_BACKENDS


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_adapter_round_trip_and_rng(name):
    b = get_backend(name)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = b.from_host(a)
    np.testing.assert_array_equal(b.to_host(x), a)
    b.synchronize()
    assert b.devices() and isinstance(b.device_name(), str)
    r1, r2 = b.rng(5), b.rng(5)
    f32 = b.dtype("float32")
    u1 = b.to_host(r1.uniform((3, 4), -0.5, 0.5, f32))
    u2 = b.to_host(r2.uniform((3, 4), -0.5, 0.5, f32))
    np.testing.assert_array_equal(u1, u2)
    assert u1.dtype == np.float32 and u1.min() >= -0.5 and u1.max() < 0.5
    mask = b.to_host(r1.bernoulli_scaled((1000,), 0.8, f32))
    assert set(np.unique(mask)) <= {0.0, np.float32(1.25)}
    assert 0.7 < (mask > 0).mean() < 0.9
    assert sorted(r1.permutation(10).tolist()) == list(range(10))
    n = b.to_host(r1.normal((2000,), 0.0, 2.0, f32))
    assert abs(n.std() - 2.0) < 0.2


def test_host_rng_is_identical_across_backends():
    draws = []
    for name in CPU_BACKENDS:
        b = get_backend(name)
        r = b.rng(11)
        draws.append(b.to_host(r.normal((5,), 0, 1, b.dtype("float32"))))
    for d in draws[1:]:
        np.testing.assert_array_equal(d, draws[0])


def test_rng_state_round_trip():
    b = get_backend("numpy")
    r = b.rng(3)
    r.permutation(5)
    state = r.get_state()
    a = r.permutation(100)
    r.set_state(state)
    np.testing.assert_array_equal(a, r.permutation(100))


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'"):
        get_backend("tensorflow")


def test_missing_cupy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", None)
    with pytest.raises(BackendUnavailable, match=r"uv sync --extra cuda12"):
        get_backend("cupy")


def test_missing_torch_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "array_api_compat.torch", None)
    with pytest.raises(BackendUnavailable, match=r"uv sync --extra torch"):
        get_backend("torch")


def test_auto_falls_back_to_numpy_without_cuda(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert get_backend("auto").name == "numpy"


def test_numpy_has_only_cpu():
    with pytest.raises(ValueError, match="only the 'cpu' device"):
        get_backend("numpy", "cuda:0")


def test_probe_lists_every_backend():
    rows = {r["backend"]: r for r in probe()}
    assert set(rows) == {"numpy", "cupy", "torch", "array-api-strict", "cuda-on-cpu"}
    assert rows["numpy"]["available"] and rows["numpy"]["devices"] == ["cpu"]
    if not rows["cupy"]["available"]:
        assert "uv sync --extra cuda" in rows["cupy"]["error"] or "CUDA" in rows["cupy"]["error"]


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_tf32_is_off_by_default_and_a_cpu_has_none(name):
    """TF32 is a GPU precision: a CPU backend reports it off whatever was asked."""
    assert get_backend(name).tf32 is False
    assert get_backend(name, tf32=True).tf32 is False
    assert "TF32" not in get_backend(name, tf32=True).describe()


def test_tf32_sets_torchs_switches():
    """torch's cuBLAS and cuDNN TF32 switches follow the backend's setting (they are
    process-wide; torch's own default allows TF32 in cuDNN convolutions)."""
    torch = pytest.importorskip("torch")
    get_backend("torch", tf32=True)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    get_backend("torch")
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_fit_takes_tf32(monkeypatch):
    """fit(tf32=...) reaches the backend's switch (on every call: off unless asked)."""
    import arraynet as an
    from arraynet.backends.base import Backend

    seen = []
    monkeypatch.setattr(Backend, "set_tf32", lambda self, on: seen.append(on))
    g = np.random.default_rng(0)
    x, y = g.random((8, 4)).astype(np.float32), g.integers(0, 2, 8)
    model = an.Sequential([an.layers.Dense(2), an.layers.Activation("softmax")], (4,))
    model.fit(x, y, epochs=1, batch_size=4, tf32=True)
    model.fit(x, y, epochs=1, batch_size=4)
    assert seen[-2:] == [True, False]


def test_a_registered_backend_is_built_by_its_module(monkeypatch):
    """A new backend is one module with `make(device, *, fast, threads)` plus one line of
    registration; get_backend finds it by name and alias, and probe lists it."""
    import types

    import arraynet.backends as backends
    from arraynet.backends import numpy_backend

    calls = []

    def make(device=None, *, fast=True, threads=None):
        calls.append((device, fast, threads))
        b = numpy_backend.make(fast=False)
        b.name = "toy"
        return b

    module = types.ModuleType("toy_backend_for_test")
    module.make = make
    monkeypatch.setitem(sys.modules, "toy_backend_for_test", module)
    monkeypatch.setattr(backends, "BACKENDS", dict(backends.BACKENDS))
    monkeypatch.setattr(backends, "ALIASES", dict(backends.ALIASES))
    backends.register_backend("toy", "toy_backend_for_test", aliases=("tb",))
    assert get_backend("tb", device="cpu", threads=3).name == "toy"
    assert calls == [("cpu", True, 3)]
    assert "toy" in [row["backend"] for row in backends.probe()]
    with pytest.raises(ValueError, match="'numpy' is taken"):
        backends.register_backend("numpy", "toy_backend_for_test")
    with pytest.raises(ValueError, match=r"unknown backend 'nope'; choose from .*toy"):
        get_backend("nope")


def test_fast_false_gives_the_portable_kernels_on_every_backend():
    from arraynet.backends.kernels import Kernels

    for name in ("numpy", "torch", "array-api-strict"):
        try:
            b = get_backend(name, fast=False)
        except BackendUnavailable:
            continue
        assert type(b.kernels) is Kernels, name
