"""CuPy's kernels behind the kernel contract: the home of arraynet's CUDA kernels.

`CupyKernels` overrides nothing yet, so CuPy runs every portable definition. Those
already do their reductions over every axis but the last (bias gradients, batch norm's
statistics) as products with a ones vector, which cuBLAS runs at memory speed: CuPy's own
`sum(axis=0)` of a tall array runs on a handful of threads (measured on an H200: 7.2 ms
against 0.032 ms for a (401408, 32) float32 array).

arraynet's own CUDA kernels are `CudaKernels` (`arraynet.backends.cuda_kernels`): CuPy
takes them with ARRAYNET_CUDA_KERNELS=1 while no GPU has measured them, and this class
stays the measured default until one has (tests/test_kernels.py runs both on CuPy under
`pytest -m gpu`).
"""

from __future__ import annotations

from typing import ClassVar

from arraynet.backends.kernels import Kernels


class CupyKernels(Kernels):
    """The CuPy backend's kernels (today: the portable definitions)."""

    name: ClassVar[str] = "cupy"
