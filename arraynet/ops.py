"""The portable array helpers under their old import path (`arraynet.backends.portable`).

Backend-replaceable operations are methods of the kernel contract
(`arraynet.backends.kernels.Kernels`, reached through `backend.kernels`).
"""

from arraynet.backends.portable import (
    channel_sum64,
    clip,
    column_sum,
    flipped_kernel,
    im2col,
    input_grad_operand,
    log_softmax,
    maxpool_backward,
    maxpool_forward,
    pad_hw,
    softmax,
    strided_input_grad,
)

__all__ = [
    "channel_sum64",
    "clip",
    "column_sum",
    "flipped_kernel",
    "im2col",
    "input_grad_operand",
    "log_softmax",
    "maxpool_backward",
    "maxpool_forward",
    "pad_hw",
    "softmax",
    "strided_input_grad",
]
