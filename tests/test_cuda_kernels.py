"""arraynet's own CUDA kernels (`arraynet/backends/cuda_kernels.cu`).

Without a GPU they are proven three ways: NVIDIA's runtime compiler (NVRTC, the one CuPy
uses) compiles the source for real GPU architectures; the source built for the host runs
every kernel against the portable definitions (tests/test_kernels.py, 'cuda-on-cpu') and
here with grids too small for the work (every thread strides); and whole models train
alike. On a GPU (`pytest -m gpu`) the same tests run the kernels on CuPy.
"""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from arraynet.backends import cuda_kernels as ck
from arraynet.backends import get_backend
from arraynet.backends.cuda_on_cpu import CpuRuntime, CudaSourceError, build, compiler
from arraynet.backends.kernels import Kernels
from tests import test_kernels as tk

no_cxx = pytest.mark.skipif(compiler() is None, reason="needs a C++ compiler (g++ or clang++)")


def _nvrtc() -> ctypes.CDLL | None:
    spec = (
        importlib.util.find_spec("nvidia.cuda_nvrtc")
        if importlib.util.find_spec("nvidia")
        else None
    )
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for lib in sorted((Path(folder) / "lib").glob("libnvrtc.so*")):
            if "alt" not in lib.name and "builtins" not in lib.name:
                return ctypes.CDLL(str(lib))
    return None


def _nvrtc_compile(lib: ctypes.CDLL, source: str, options: list[str]) -> tuple[int, str]:
    """NVRTC's result code and log for `source` compiled with `options`."""
    prog = ctypes.c_void_p()
    assert (
        lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"arraynet.cu", 0, None, None)
        == 0
    )
    try:
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        code = lib.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        return code, log.value.decode(errors="replace").strip()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


NVRTC = _nvrtc()


@pytest.mark.skipif(NVRTC is None, reason="needs NVRTC: `uv sync --group kernels` (Linux x86_64)")
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])  # A100; H100 and H200
@pytest.mark.parametrize("real", ["float", "double"])
def test_nvrtc_compiles_the_source_without_a_warning(arch, real):
    code, log = _nvrtc_compile(
        NVRTC, ck.SOURCE, [f"--gpu-architecture={arch}", f"-DAN_REAL={real}", *ck.NVRTC_OPTIONS]
    )
    assert code == 0 and not log, log  # NVRTC writes warnings, too, into the log


@pytest.mark.skipif(NVRTC is None, reason="needs NVRTC: `uv sync --group kernels` (Linux x86_64)")
def test_nvrtc_check_catches_a_broken_kernel():
    broken = ck.SOURCE.replace("cols[idx] = v;", "cols[idx] = v")
    code, log = _nvrtc_compile(
        NVRTC, broken, ["--gpu-architecture=compute_90", "-DAN_REAL=float", *ck.NVRTC_OPTIONS]
    )
    assert code != 0 and "error" in log


@no_cxx
def test_every_kernel_in_the_source_is_launched_by_the_contract():
    """Each kernel of the source is reached through some contract operation, and the
    cuda-on-cpu backend routes every operation but the dense product to the source."""
    b = get_backend("cuda-on-cpu")
    for dtype in tk.DTYPES:
        for case in tk.CASES.values():
            case(tk.Case(b, dtype), b.kernels, Kernels())
    assert set(b.kernels.runtime.launches) == set(b.kernels.runtime.signatures)


@no_cxx
@pytest.mark.parametrize("ops", list(tk.CASES), ids=[ops[0] for ops in tk.CASES])
def test_kernels_are_right_when_each_thread_strides(ops, monkeypatch):
    """Grids far smaller than the work (1 block of 32 threads; reductions with 3 stage-1
    threads per channel and ragged chunks): the grid-stride loops must cover the rest,
    as they do for large arrays on a GPU."""
    monkeypatch.setattr(ck, "BLOCK", 32)
    monkeypatch.setattr(ck, "MAX_BLOCKS", 1)
    monkeypatch.setattr(ck, "REDUCE_THREADS", 3)
    b = get_backend("cuda-on-cpu")
    for dtype in tk.DTYPES:
        tk.CASES[ops](tk.Case(b, dtype, seed=5), b.kernels, Kernels())


@no_cxx
def test_a_launch_with_mismatched_arguments_is_refused():
    """The CPU route checks what the GPU cannot: exact scalar types and contiguous arrays
    of each pointer's element type."""
    rt = CpuRuntime()
    y, bias = np.zeros((4, 3), np.float32), np.ones(3, np.float32)
    rt.launch("an_add_bias", "float32", 1, 32, (y, bias, np.int64(4), np.int64(3)))
    assert (y == 1).all()
    with pytest.raises(TypeError, match=r"wants numpy\.int64, got int"):
        rt.launch("an_add_bias", "float32", 1, 32, (y, bias, 4, np.int64(3)))
    with pytest.raises(TypeError, match="wants a contiguous float32 array"):
        rt.launch("an_add_bias", "float32", 1, 32, (y.T, bias, np.int64(4), np.int64(3)))
    with pytest.raises(TypeError, match="wants a contiguous float64 array"):
        rt.launch("an_add_bias", "float64", 1, 32, (y, bias, np.int64(4), np.int64(3)))
    with pytest.raises(TypeError, match="3 arguments for 4"):
        rt.launch("an_add_bias", "float32", 1, 32, (y, bias, np.int64(4)))
    with pytest.raises(CudaSourceError, match="no kernel"):
        rt.launch("an_relu", "float32", 1, 32, ())


@no_cxx
def test_the_cpu_route_refuses_block_cooperation():
    shared = 'extern "C" __global__ void k(real* x) { __shared__ real s[32]; x[0] = s[0]; }'
    with pytest.raises(CudaSourceError, match="no block cooperation"):
        build(shared, "float32")
    with pytest.raises(CudaSourceError, match="failed on the kernel source"):
        build('extern "C" __global__ void k(real* x) { x[0] = undefined_name; }', "float32")


def test_cupy_takes_the_own_kernels_only_when_asked(monkeypatch):
    from arraynet.backends.cupy_backend import cuda_kernels_requested

    monkeypatch.delenv("ARRAYNET_CUDA_KERNELS", raising=False)
    assert not cuda_kernels_requested()
    for value, want in (("1", True), ("on", True), ("0", False), ("", False)):
        monkeypatch.setenv("ARRAYNET_CUDA_KERNELS", value)
        assert cuda_kernels_requested() is want
    monkeypatch.setenv("ARRAYNET_CUDA_KERNELS", "fast")
    with pytest.raises(ValueError, match="ARRAYNET_CUDA_KERNELS must be 1 or 0"):
        cuda_kernels_requested()


def test_other_dtypes_are_refused():
    with pytest.raises(TypeError, match="float32 or float64, not int32"):
        ck.real_name("int32")


# -- whole models ----------------------------------------------------------------------
TRAINERS = [
    pytest.param("cuda-on-cpu", id="cuda-on-cpu", marks=no_cxx),
    pytest.param(
        "cupy+cuda",
        id="cupy-cuda-kernels",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not tk._cupy_ready(), reason=tk.no_cuda)],
    ),
]


def _backend(name: str, monkeypatch: pytest.MonkeyPatch):
    if name == "cupy+cuda":
        monkeypatch.setenv("ARRAYNET_CUDA_KERNELS", "1")
        b = get_backend("cupy")
        assert isinstance(b.kernels, ck.CudaKernels)
        return b
    return get_backend(name)


@pytest.mark.slow
@pytest.mark.parametrize("target", TRAINERS)
def test_every_zoo_layout_has_parity(target, data_dir, monkeypatch):
    from arraynet.parity import run_parity
    from arraynet.zoo import LAYOUTS

    if target == "cupy+cuda":
        monkeypatch.setenv("ARRAYNET_CUDA_KERNELS", "1")
    name = "cupy" if target == "cupy+cuda" else target
    for model in [n for n in LAYOUTS if "-" not in n]:
        res = run_parity(model, ["numpy", name], batch_size=4, data_dir=str(data_dir))
        assert res["ok"], (model, [r for r in res["rows"] if not r["ok"]])


@pytest.mark.parametrize("target", TRAINERS)
def test_a_short_training_follows_numpys_loss_curve(target, data_dir, monkeypatch):
    """m14 (convolutions, batch norm, pooling, dense, softmax cross-entropy, Adam) for 12
    steps of 16 MNIST images: the losses and the final weights match NumPy's.

    In float64: float32 training at this batch size is chaotic (Adam's first steps scale
    rounding-level gradients, such as a bias's before batch norm, up to the learning rate),
    so NumPy's own two kernel sets part by 6 % within 10 steps in float32; in float64 every
    backend here agrees to about 1e-12."""
    from arraynet.data import load_mnist, one_hot
    from arraynet.data.arrays import uint8_to_float32
    from arraynet.optimizers import make_optimizer
    from arraynet.train.step import train_step
    from arraynet.zoo import build_layout

    m = load_mnist(str(data_dir), download=False, verify=False, quiet=True)
    x_host = uint8_to_float32(m.train_images[:192])[..., None]
    y_host = one_hot(m.train_labels[:192])
    curves, weights = {}, {}
    for name in ("numpy", target):
        b = _backend(name, monkeypatch) if name == target else get_backend("numpy")
        model = build_layout("m14").build(b, seed=3, dtype="float64")
        opt = make_optimizer("adam")
        losses = []
        for s in range(12):
            x = b.from_host(x_host[16 * s : 16 * s + 16], dtype=model.dtype)
            y = b.from_host(y_host[16 * s : 16 * s + 16], dtype=model.dtype)
            losses.append(float(b.to_host(train_step(model, opt, x, y, lr=1e-3))))
        curves[name] = np.array(losses)
        weights[name] = {k: b.to_host(v) for k, v in model.parameters().items()}
    ref = curves["numpy"]
    assert ref[-1] < ref[0]  # it learns
    np.testing.assert_allclose(curves[target], ref, rtol=1e-9, atol=0)
    for key, w in weights["numpy"].items():
        scale = max(1.0, float(np.abs(w).max()))
        np.testing.assert_allclose(weights[target][key], w, rtol=0, atol=1e-8 * scale, err_msg=key)


class _FakeCupy:
    """Just enough of CuPy for `CupyRuntime`: RawModule compiles nothing and launches
    through the CPU route, with the element type read from the options it was given."""

    ascontiguousarray = staticmethod(np.ascontiguousarray)

    def __init__(self) -> None:
        self.cpu, self.options = CpuRuntime(), []

    def RawModule(self, code: str, options: tuple):  # noqa: N802 (CuPy's name)
        assert code == ck.SOURCE
        self.options.append(options)
        real = next(o.split("=")[1] for o in options if o.startswith("-DAN_REAL="))
        dtype = {"float": "float32", "double": "float64"}[real]
        cpu = self.cpu

        class Module:
            def get_function(self, name):
                def launch(grid, block, args):
                    assert isinstance(grid, tuple) and isinstance(block, tuple)
                    cpu.launch(name, dtype, grid[0], block[0], args)

                return launch

        return Module()


@no_cxx
def test_the_cupy_runtime_compiles_once_per_dtype_and_launches_the_same_way():
    """`CupyRuntime`'s side of a launch (module per element type, NVRTC options, grid and
    block tuples, arguments as given) on a stand-in for CuPy that runs the CPU route."""
    fake = _FakeCupy()
    k = ck.CudaKernels(ck.CupyRuntime(fake))
    b = get_backend("numpy", fast=False)
    for dtype in tk.DTYPES:
        for ops, case in tk.CASES.items():
            if ops != ("adam_update",):  # (addresses come from CuPy's `x.data.ptr`)
                case(tk.Case(b, dtype), k, Kernels())
    assert fake.options == [(f"-DAN_REAL={r}", *ck.NVRTC_OPTIONS) for r in ("float", "double")]
