"""Run arraynet's CUDA kernel source on the CPU: the parity route without a GPU.

`cuda_kernels.cu` keeps to kernels that need no block cooperation (no shared memory, no
barriers, no atomics), so a host C++ compiler can build it with a small prelude standing in
for CUDA's thread coordinates, and a generated wrapper per kernel runs every block and
thread of a launch in a loop. `CpuRuntime` is that build behind the same interface as
`CupyRuntime` (`arraynet.backends.cuda_kernels`), so `CudaKernels` runs unchanged on
NumPy arrays: every kernel's index arithmetic and every launch's arguments are checked
against the portable definitions on any machine with `c++` (or `$CXX`).

Each launch is checked as the GPU cannot check it: a pointer parameter must get a
C-contiguous array of its element type, a scalar parameter a NumPy scalar of its exact
type (what CuPy passes through unconverted).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from arraynet.backends.cuda_kernels import SOURCE, real_name

PRELUDE = """\
#include <cmath>
using std::exp; using std::log; using std::sqrt;
struct an_dim3 { unsigned int x, y, z; };
static an_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
"""

_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)
_C_SCALARS = {"i64": ctypes.c_longlong, "int": ctypes.c_int, "double": ctypes.c_double}
_NP_SCALARS = {"i64": np.int64, "int": np.int32, "double": np.float64}


class CudaSourceError(RuntimeError):
    """The kernel source cannot be built or run on the CPU."""


def kernel_signatures(source: str) -> dict[str, list[tuple[str, str, bool]]]:
    """Each kernel's parameters as (base type, name, is_pointer), in order."""
    out = {}
    for name, params in _KERNEL.findall(source):
        parsed = []
        for p in params.split(","):
            words = p.replace("*", " * ").split()
            is_ptr = "*" in words
            words = [w for w in words if w not in ("*", "const", "__restrict__")]
            parsed.append((words[0], words[-1], is_ptr))
        out[name] = parsed
    return out


def _wrapper(name: str, params: list[tuple[str, str, bool]]) -> str:
    """A host function running every block and thread of a 1-D launch of `name`."""
    decl = ", ".join(f"{t}{'*' if ptr else ''} {n}" for t, n, ptr in params)
    call = ", ".join(n for _, n, _ in params)
    return (
        f'extern "C" void an_cpu_{name}(unsigned int grid, unsigned int block, {decl}) {{\n'
        "  gridDim = {grid, 1, 1}; blockDim = {block, 1, 1};\n"
        "  for (unsigned int an_b = 0; an_b < grid; ++an_b)\n"
        "    for (unsigned int an_t = 0; an_t < block; ++an_t) {\n"
        "      blockIdx = {an_b, 0, 0}; threadIdx = {an_t, 0, 0};\n"
        f"      {name}({call});\n"
        "    }\n}\n"
    )


def compiler() -> str | None:
    """The host C++ compiler: $CXX, else c++, g++ or clang++ on PATH (None if none)."""
    for c in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if c and shutil.which(c):
            return c
    return None


def build(source: str, dtype: str) -> Path:
    """Compile `source` for element type `dtype` into a shared library (cached by content)."""
    code = re.sub(r"//[^\n]*", "", source)
    if any(word in code for word in ("__shared__", "__syncthreads", "atomic")):
        raise CudaSourceError("the CPU route runs no block cooperation (shared memory, barriers)")
    cxx = compiler()
    if cxx is None:
        raise CudaSourceError("no C++ compiler found (set CXX or install g++)")
    sigs = kernel_signatures(source)
    text = PRELUDE + source + "\n" + "".join(_wrapper(n, p) for n, p in sigs.items())
    real = real_name(dtype)
    digest = hashlib.sha256(f"{cxx}\n{real}\n{text}".encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "arraynet-cuda-on-cpu"
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"{digest}-{real}.so"
    if lib.exists():
        return lib
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, out = Path(tmp) / "kernels.cpp", Path(tmp) / "kernels.so"
        src.write_text(text)
        cmd = [
            cxx,
            "-O2",
            "-std=c++14",
            "-shared",
            "-fPIC",
            f"-DAN_REAL={real}",
            "-Wall",
            "-Werror",
            "-Wno-unused-variable",
            str(src),
            "-o",
            str(out),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise CudaSourceError(f"{cxx} failed on the kernel source:\n{done.stderr}")
        os.replace(out, lib)
    return lib


class CpuRuntime:
    """`CudaKernels`' runtime on NumPy arrays: the kernel source built for the host."""

    name = "cpu"

    def __init__(self, source: str = SOURCE) -> None:
        self.source = source
        self.signatures = kernel_signatures(source)
        self._libs: dict[str, ctypes.CDLL] = {}
        self.launches: dict[str, int] = {}  # kernel name -> launches so far

    def _lib(self, dtype: str) -> ctypes.CDLL:
        if dtype not in self._libs:
            self._libs[dtype] = ctypes.CDLL(str(build(self.source, dtype)))
        return self._libs[dtype]

    def contiguous(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x)

    def address(self, x: np.ndarray) -> int:
        return int(x.ctypes.data)

    def launch(self, name: str, dtype: str, grid: int, block: int, args: tuple) -> None:
        params = self.signatures.get(name)
        if params is None:
            raise CudaSourceError(f"no kernel {name!r} in the source")
        if len(args) != len(params):
            raise TypeError(f"{name}: {len(args)} arguments for {len(params)} parameters")
        real = np.dtype(dtype).type
        c_args = []
        for (ctype, pname, is_ptr), a in zip(params, args, strict=True):
            want = real if ctype == "real" else _NP_SCALARS[ctype]
            if is_ptr:
                if not isinstance(a, np.ndarray) or a.dtype != want or not a.flags.c_contiguous:
                    got = f"{type(a).__name__} {getattr(a, 'dtype', '')}"
                    raise TypeError(
                        f"{name}({pname}): wants a contiguous {want.__name__} array, got {got}"
                    )
                c_args.append(ctypes.c_void_p(a.ctypes.data))
            else:
                if type(a) is not want:
                    raise TypeError(
                        f"{name}({pname}): wants numpy.{want.__name__}, got {type(a).__name__}"
                    )
                c_type = (
                    ctypes.c_float if want is np.float32 else _C_SCALARS.get(ctype, ctypes.c_double)
                )
                c_args.append(c_type(a))
        fn = getattr(self._lib(dtype), f"an_cpu_{name}")
        fn.restype = None
        self.launches[name] = self.launches.get(name, 0) + 1
        fn(ctypes.c_uint(grid), ctypes.c_uint(block), *c_args)


def make(device: str | None = None, *, fast: bool = True, threads: int | None = None) -> Any:
    """The 'cuda-on-cpu' backend: NumPy arrays, arraynet's CUDA kernels built for the host
    (`fast=False`: the portable definitions). For kernel work, not for speed: each launch
    runs its threads one after another. (`threads` is the NumPy backend's.)"""
    import array_api_compat.numpy as xp_numpy

    from arraynet.backends.base import Backend, BackendUnavailable
    from arraynet.backends.cuda_kernels import CudaKernels
    from arraynet.backends.kernels import Kernels

    if device not in (None, "cpu"):
        raise ValueError(f"backend 'cuda-on-cpu' has only the 'cpu' device, not {device!r}")
    if compiler() is None:
        raise BackendUnavailable(
            "backend 'cuda-on-cpu' needs a C++ compiler: install g++ (or clang++), or set CXX"
        )
    kernels = CudaKernels(CpuRuntime()) if fast else Kernels()
    return Backend(name="cuda-on-cpu", xp=xp_numpy, device="cpu", kernels=kernels)
