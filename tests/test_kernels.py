"""The kernel contract: every backend's overrides against the portable definitions, on
random inputs, in float32 and float64; and what the contract refuses.

Each backend's kernels run on that backend's arrays next to the portable definition
(`Kernels()`) on the same arrays. A test fails when a kernel class overrides an operation
that has no case here, so no override goes untested.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.backends import numpy_kernels as nk
from arraynet.backends.cuda_on_cpu import compiler
from arraynet.backends.kernels import CONTRACT, PAIRS, Kernels, Saved, check_overrides
from arraynet.layers.conv import same_padding
from tests.conftest import HAVE_TORCH


def _cupy_ready() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    from arraynet.backends.cupy_backend import cuda_usable

    return cuda_usable()


def _torch_cuda() -> bool:
    if not HAVE_TORCH:
        return False
    import torch

    return torch.cuda.is_available()


def _cupy_with_cuda_kernels():
    from arraynet.backends.cuda_kernels import CudaKernels, CupyRuntime

    b = get_backend("cupy")
    b.kernels = CudaKernels(CupyRuntime(b.cupy))
    return b


no_torch = "torch is not installed"
no_cuda = "needs a CUDA device (CuPy or torch with CUDA): none here"
# (id, backend maker, marks): every kernel class that can run here
KERNEL_SETS = [
    pytest.param(lambda: get_backend("numpy", threads=1), id="numpy-1-thread"),
    pytest.param(lambda: get_backend("numpy", threads=3), id="numpy-3-threads"),
    pytest.param(
        lambda: get_backend("torch"),
        id="torch-cpu",
        marks=pytest.mark.skipif(not HAVE_TORCH, reason=no_torch),
    ),
    pytest.param(
        lambda: get_backend("torch", device="cuda"),
        id="torch-cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not _torch_cuda(), reason=no_cuda)],
    ),
    pytest.param(
        lambda: get_backend("cupy"),
        id="cupy",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not _cupy_ready(), reason=no_cuda)],
    ),
    # arraynet's own CUDA kernels: built for the host here, on CuPy on a GPU
    pytest.param(
        lambda: get_backend("cuda-on-cpu"),
        id="cuda-on-cpu",
        marks=pytest.mark.skipif(compiler() is None, reason="needs a C++ compiler (g++)"),
    ),
    pytest.param(
        _cupy_with_cuda_kernels,
        id="cupy-cuda-kernels",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not _cupy_ready(), reason=no_cuda)],
    ),
]
DTYPES = ["float32", "float64"]
PAIRS_SAVED = [saved for _, saved in PAIRS.values()]
TOL = {"float32": 3e-5, "float64": 1e-11}


def _close(got, ref, dtype: str, what: str) -> None:
    """Relative to the reference's largest magnitude (sums of many terms in float32)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} against {ref.shape}"
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL[dtype] * scale, err_msg=what)


class Case:
    """Random host inputs for one kernel operation, run on a backend's arrays."""

    def __init__(self, backend, dtype: str, seed: int = 0) -> None:
        self.b, self.dtype = backend, dtype
        self.g = np.random.default_rng(seed)

    def arr(self, *shape: int, loc: float = 0.0, scale: float = 1.0):
        host = loc + scale * self.g.standard_normal(shape)
        return self.b.from_host(host, self.b.dtype(self.dtype))

    def host(self, *outs) -> list:
        return [None if o is None else self.b.to_host(o) for o in outs]


def _column_sum(c: Case, k: Kernels, ref: Kernels) -> None:
    for shape in [(37, 5), (3, 4, 6, 7), (1, 9)]:
        x = c.arr(*shape, loc=2.0)
        _close(*c.host(k.column_sum(x), ref.column_sum(x)), c.dtype, f"column_sum {shape}")


def _dense(c: Case, k: Kernels, ref: Kernels) -> None:
    x, w, bias, dy = c.arr(9, 13), c.arr(13, 6), c.arr(6), c.arr(9, 6)
    got, want = k.dense_forward(x, w, bias), ref.dense_forward(x, w, bias)
    _close(*c.host(got, want), c.dtype, "dense_forward")
    for need_dx in (True, False):
        outs = zip(c.host(*k.dense_backward(x, dy, w, need_dx)),
                   c.host(*ref.dense_backward(x, dy, w, need_dx)), strict=True)  # fmt: skip
        for name, (a, r) in zip(("dkernel", "dbias", "dx"), outs, strict=True):
            if r is None:
                assert a is None, f"dense_backward {name}: wanted None"
            else:
                _close(a, r, c.dtype, f"dense_backward {name}")


CONV_CASES = [  # (kernel, stride, padding, input (h, w, c))
    (5, 1, "same", (9, 8, 3)),
    (3, 2, "same", (7, 8, 2)),  # uneven 'same' padding
    (5, 2, "same", (8, 8, 3)),
    (4, 2, 1, (9, 7, 3)),
    (3, 1, "valid", (6, 6, 2)),
    (3, 1, "valid", (12, 11, 2)),
    (2, 3, "valid", (8, 9, 2)),  # kernel narrower than the stride
    (1, 2, 0, (7, 6, 3)),
]


def _pad(k: int, stride: int, padding, h: int, w: int) -> tuple[int, int, int, int]:
    if padding == "same":
        return (*same_padding(h, k, stride), *same_padding(w, k, stride))
    p = 0 if padding == "valid" else int(padding)
    return (p, p, p, p)


def _conv(c: Case, k: Kernels, ref: Kernels) -> None:
    for ks, stride, padding, (h, w, ch) in CONV_CASES:
        pad = _pad(ks, stride, padding, h, w)
        x, kern, bias = c.arr(3, h, w, ch), c.arr(ks, ks, ch, 4), c.arr(4)
        what = f"conv k={ks} stride={stride} padding={padding} {(h, w, ch)}"
        y, saved = k.conv2d_forward(x, kern, bias, pad, stride, True)
        yr, saved_r = ref.conv2d_forward(x, kern, bias, pad, stride, True)
        _close(*c.host(y, yr), c.dtype, what + " forward")
        y_eval, none = k.conv2d_forward(x, kern, bias, pad, stride, False)
        assert none is None
        _close(*c.host(y_eval, yr), c.dtype, what + " forward (evaluation)")
        dy = c.arr(*yr.shape)
        for need_dx in (True, False):
            y, saved = k.conv2d_forward(x, kern, bias, pad, stride, True)
            got = c.host(*k.conv2d_backward(saved, dy, kern, pad, stride, need_dx))
            want = c.host(*ref.conv2d_backward(saved_r, dy, kern, pad, stride, need_dx))
            for name, a, r in zip(("dkernel", "dbias", "dx"), got, want, strict=True):
                if r is None:
                    assert a is None, f"{what}: {name} wanted None"
                else:
                    _close(a, r, c.dtype, f"{what} {name}")


def _maxpool(c: Case, k: Kernels, ref: Kernels) -> None:
    for p, shape in [(2, (6, 4, 3)), (2, (7, 5, 2)), (3, (9, 7, 2))]:
        host = c.g.standard_normal((3, *shape))
        host[0, :2, :2, 0] = 1.5  # a tie: the first maximum gets the gradient
        x = c.b.from_host(host, c.b.dtype(c.dtype))
        y, saved = k.maxpool_forward(x, p, True)
        yr, saved_r = ref.maxpool_forward(x, p, True)
        assert k.maxpool_forward(x, p, False)[1] is None
        _close(*c.host(y, yr), c.dtype, f"maxpool {p} {shape}")
        _close(*c.host(k.maxpool_forward(x, p, False)[0], yr), c.dtype, "maxpool (evaluation)")
        dy = c.arr(*yr.shape)
        dx, dxr = c.host(k.maxpool_backward(saved, dy), ref.maxpool_backward(saved_r, dy))
        _close(dx, dxr, c.dtype, f"maxpool backward {p} {shape}")


def _batchnorm(c: Case, k: Kernels, ref: Kernels) -> None:
    # the last: a large mean over a small spread, where float32 sums lose the variance
    for shape, loc, scale in [((8, 5), 3.0, 2.0), ((4, 6, 5, 3), 3.0, 2.0),
                              ((3, 10, 9, 4), 3.0, 2.0), ((8, 16, 16, 4), 3.0, 0.1)]:  # fmt: skip
        ch = shape[-1]
        x, dy = c.arr(*shape, loc=loc, scale=scale), c.arr(*shape)
        gamma, beta = c.arr(ch, loc=1.0, scale=0.1), c.arr(ch)
        rm, rv = c.arr(ch, scale=0.1), c.arr(ch, loc=1.0, scale=0.1)
        rm0, rv0 = c.host(rm, rv)
        out = k.batchnorm_forward(x, gamma, beta, rm, rv, 0.9, 1e-5)
        out_r = ref.batchnorm_forward(x, gamma, beta, rm, rv, 0.9, 1e-5)
        for name, i in (("y", 0), ("running_mean", 2), ("running_var", 3)):
            _close(*c.host(out[i], out_r[i]), c.dtype, f"batchnorm {shape} {name}")
        # the running statistics passed in are not changed in place
        np.testing.assert_array_equal(c.host(rm, rv)[0], rm0)
        np.testing.assert_array_equal(c.host(rm, rv)[1], rv0)
        got = c.host(*k.batchnorm_backward(out[1], dy, gamma))
        want = c.host(*ref.batchnorm_backward(out_r[1], dy, gamma))
        for name, a, r in zip(("dx", "dgamma", "dbeta"), got, want, strict=True):
            _close(a, r, c.dtype, f"batchnorm backward {shape} {name}")
        y, yr = c.host(k.batchnorm_inference(x, rm, rv, gamma, beta, 1e-5),
                       ref.batchnorm_inference(x, rm, rv, gamma, beta, 1e-5))  # fmt: skip
        _close(y, yr, c.dtype, f"batchnorm inference {shape}")


def _loss(c: Case, k: Kernels, ref: Kernels) -> None:
    z = c.arr(7, 10, scale=3.0)
    t = c.b.from_host(np.eye(10)[c.g.integers(0, 10, 7)], c.b.dtype(c.dtype))
    for smoothing in (0.0, 0.1):
        got = c.host(*k.softmax_cross_entropy(z, t, smoothing))
        want = c.host(*ref.softmax_cross_entropy(z, t, smoothing))
        for name, a, r in zip(("loss", "gradient"), got, want, strict=True):
            _close(a, r, c.dtype, f"softmax_cross_entropy smoothing={smoothing} {name}")


def _adam(c: Case, k: Kernels, ref: Kernels) -> None:
    shapes = [(3, 3, 2, 4), (4,), (6, 5)]
    hosts = [c.g.standard_normal(s) for s in shapes]
    # (copies: NumPy's from_host may share the host array, and kernels update in place)
    mine = [[c.b.from_host(h.copy(), c.b.dtype(c.dtype)) for h in hosts] for _ in range(3)]
    theirs = [[c.b.from_host(h.copy(), c.b.dtype(c.dtype)) for h in hosts] for _ in range(3)]
    for lst in (mine, theirs):
        lst[1] = [a * 0.0 for a in lst[1]]  # m
        lst[2] = [a * 0.0 for a in lst[2]]  # v
    for t in (1, 2, 3):
        grads = [c.arr(*s) for s in shapes]
        host = np.array([1e-2 / (1 - 0.9**t), 1 / np.sqrt(1 - 0.999**t)])
        scalars = c.b.from_host(host, c.b.dtype(c.dtype))
        mine = list(k.adam_update(mine[0], grads, mine[1], mine[2], scalars, 0.9, 0.999, 1e-8))
        theirs = list(
            ref.adam_update(theirs[0], grads, theirs[1], theirs[2], scalars, 0.9, 0.999, 1e-8)
        )
    for name, a_list, r_list in zip(("params", "m", "v"), mine, theirs, strict=True):
        for a, r in zip(a_list, r_list, strict=True):
            assert a.dtype == r.dtype, f"adam {name}: dtype {a.dtype} against {r.dtype}"
            _close(*c.host(a, r), c.dtype, f"adam_update {name}")


# the operations each case covers
CASES: dict[tuple[str, ...], Callable] = {
    ("column_sum",): _column_sum,
    ("dense_forward", "dense_backward"): _dense,
    ("conv2d_forward", "conv2d_backward"): _conv,
    ("maxpool_forward", "maxpool_backward"): _maxpool,
    ("batchnorm_forward", "batchnorm_backward", "batchnorm_inference"): _batchnorm,
    ("softmax_cross_entropy",): _loss,
    ("adam_update",): _adam,
}


def test_every_contract_operation_has_a_case():
    covered = {op for ops in CASES for op in ops}
    assert covered == set(CONTRACT)


@pytest.mark.parametrize("make", KERNEL_SETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ops", list(CASES), ids=[ops[0] for ops in CASES])
def test_kernel_matches_the_portable_definition(make, dtype, ops, monkeypatch):
    monkeypatch.setattr(nk, "CHUNK_BYTES", 1 << 12)  # NumPy: several chunks per kernel call
    b = make()
    CASES[ops](Case(b, dtype), b.kernels, Kernels())


@pytest.mark.parametrize("make", KERNEL_SETS)
def test_the_backend_overrides_what_it_claims(make):
    """The backend's kernels are its own class (CuPy's overrides nothing yet), and each
    operation it overrides is one that the parity test above runs."""
    b = make()
    cls = type(b.kernels)
    assert cls is not Kernels and issubclass(cls, Kernels)
    overridden = {n for n in CONTRACT if getattr(cls, n) is not getattr(Kernels, n)}
    assert overridden or b.name == "cupy", f"{cls.__name__} overrides nothing"
    assert {n for n in vars(cls) if n[0] != "_" and callable(vars(cls)[n])} - set(
        PAIRS_SAVED
    ) <= set(CONTRACT)


def test_the_portable_backends_use_the_portable_definitions():
    assert type(get_backend("numpy", fast=False).kernels) is Kernels
    assert type(get_backend("array-api-strict").kernels) is Kernels


# -- what the contract refuses ---------------------------------------------------------
def test_an_override_must_keep_the_signature():
    with pytest.raises(TypeError, match="does not keep the contract's signature"):

        class Bad(Kernels):
            def column_sum(self, x, axis=0):  # an extra argument
                return x

    with pytest.raises(TypeError, match="does not keep the contract's signature"):

        class Renamed(Kernels):
            def dense_forward(self, x, w, bias):  # a renamed argument
                return x


def test_a_new_public_method_is_refused():
    with pytest.raises(TypeError, match="is not an operation of the kernel contract"):

        class Extra(Kernels):
            def relu(self, x):
                return x

    class Helper(Kernels):  # helpers with a leading underscore are fine
        def _scratch(self, x):
            return x

    assert Helper()._scratch(1) == 1


@pytest.mark.parametrize("forward", list(PAIRS))
def test_a_forward_and_its_backward_are_replaced_together(forward):
    backward, saved = PAIRS[forward]
    portable = getattr(Kernels, forward)
    with pytest.raises(TypeError, match="together"):
        type("Half", (Kernels,), {forward: portable})
    with pytest.raises(TypeError, match=f"its own {saved}"):
        type("NoType", (Kernels,), {forward: portable, backward: getattr(Kernels, backward)})
    ok = type("Whole", (Kernels,), {forward: portable, backward: getattr(Kernels, backward),
                                    saved: getattr(Kernels, saved)})  # fmt: skip
    check_overrides(ok)


def test_a_backward_refuses_another_backends_saved_value():
    """What a forward saves is a typed value of its own kernel class."""
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 3))
    kern, bias = np.ones((3, 3, 3, 2)), np.zeros(2)
    numpy_k, portable_k = get_backend("numpy").kernels, Kernels()
    _, saved = numpy_k.conv2d_forward(x, kern, bias, (1, 1, 1, 1), 1, True)
    assert isinstance(saved, Saved) and type(saved) is nk.NumpyConvSaved
    dy = np.ones((2, 6, 6, 2))
    with pytest.raises(TypeError, match="needs the PortableConvSaved of its own forward"):
        portable_k.conv2d_backward(saved, dy, kern, (1, 1, 1, 1), 1, True)
    _, saved_p = portable_k.maxpool_forward(x, 2, True)
    with pytest.raises(TypeError, match="NumpyPoolSaved"):
        numpy_k.maxpool_backward(saved_p, np.ones((2, 3, 3, 3)))


def test_the_contract_is_documented():
    """Every operation says what it computes (the docs' API reference reads these)."""
    for name in CONTRACT:
        doc = inspect.getdoc(getattr(Kernels, name))
        assert doc and len(doc) > 20, name
