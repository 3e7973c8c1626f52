"""A steady-state training step is ready for CUDA-graph capture, proven on torch's CPU.

A CUDA graph replays the kernels it captured, with the arguments they had then. So the
device's part of a step (`arraynet.train.step.device_step`) must, from one step to the next:

- launch the same operations on arrays of the same shapes, with the same non-array
  arguments (what changes per step, the learning rate, Adam's bias corrections and the
  EMA's decay, lives in device arrays that `prepare_step` rewrites before the step);
- never wait for the device (no read of a value back to the host), copy nothing to it, and
  allocate nothing whose size depends on the data (no operation that aten tags as
  data-dependent or dynamically shaped, or as unsafe in a CUDA graph).

Every aten operation of two consecutive steps is recorded (`TorchDispatchMode`) and the
two records compared. Not covered here, and left to the CUDA-graph work: the device
generator reseeds itself on the host before each draw (dropout masks, augmentation), so
a replayed step must redo those seeds itself; and the data-parallel gradient hook.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import HAVE_TORCH

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")

UNSAFE_TAGS = ("dynamic_output_shape", "data_dependent_output", "cudagraph_unsafe")


def _describe(a):
    """An operation's argument as comparable data: tensors by shape, dtype and device."""
    import torch

    if isinstance(a, torch.Tensor):
        return ("tensor", tuple(a.shape), str(a.dtype), str(a.device))
    if isinstance(a, list | tuple):
        return tuple(_describe(v) for v in a)
    if isinstance(a, dict):
        return tuple(sorted((k, _describe(v)) for k, v in a.items()))
    if isinstance(a, bool | int | float | str | type(None)):
        return a
    if isinstance(a, torch.dtype | torch.device | torch.memory_format | torch.layout):
        return str(a)
    return type(a).__name__  # (a generator: the same object at every step)


def _recorder():
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []
            self.unsafe = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            self.ops.append((str(func), _describe(args), _describe(kwargs), _describe(out)))
            tags = {str(t).split(".")[-1] for t in func.tags}
            if tags & set(UNSAFE_TAGS):
                self.unsafe.append(str(func))
            return out

    torch.set_grad_enabled(False)
    return Ops


def _steps(name: str, optimizer: str, ema: float | None, steps: int = 3):
    """The recorded operations and host transfers of each step's device part, on torch
    (CPU) with the device generator, the learning rate changing at every step."""
    from arraynet.backends import get_backend
    from arraynet.backends.transfers import count_transfers
    from arraynet.optimizers import make_optimizer
    from arraynet.train.step import WeightEMA, device_step, prepare_step
    from arraynet.zoo import build_layout

    b = get_backend("torch")
    model = build_layout(name).build(b, seed=0)
    model.set_rng(b.rng(1, host=False))
    opt = make_optimizer(optimizer)
    avg = WeightEMA(ema, model.parameters()) if ema else None
    g = np.random.default_rng(0)
    f32 = b.dtype("float32")
    records = []
    ops = _recorder()
    for i in range(steps):
        x = b.from_host(g.random((4, *model.input_shape), dtype=np.float32), f32)
        y = b.from_host(np.eye(10, dtype=np.float32)[g.integers(0, 10, 4)], f32)
        prepare_step(model, opt, lr=1e-3 * (1 + i), ema=avg)  # (host: the step's numbers)
        with count_transfers(b) as counts, ops() as rec:
            device_step(model, opt, x, y, ema=avg)
        records.append((rec, counts))
    return records


@pytest.mark.parametrize(
    "name,optimizer,ema", [("m14", "adam", 0.99), ("m12", "adam-seed", None), ("m9", "sgd", None)]
)
def test_a_steady_state_step_replays_the_same_operations(name, optimizer, ema):
    records = _steps(name, optimizer, ema)
    for rec, counts in records:
        assert rec.unsafe == [], rec.unsafe
        assert (counts.h2d, counts.d2h) == (0, 0), counts.log
    (second, _), (third, _) = records[1], records[2]
    assert len(second.ops) > 50
    first_diff = next(
        (i for i, (a, c) in enumerate(zip(second.ops, third.ops, strict=False)) if a != c), None
    )
    assert first_diff is None and len(second.ops) == len(third.ops), (
        f"step 3 differs from step 2 at operation {first_diff}: "
        f"{second.ops[first_diff] if first_diff is not None else len(second.ops)} against "
        f"{third.ops[first_diff] if first_diff is not None else len(third.ops)}"
    )


def test_the_record_tells_a_number_baked_into_an_operation():
    """The comparison is sharp: an update that takes its learning rate as a Python number
    (the way a step varies when its numbers stay on the host) records differently at two
    steps, and reading a value back is tagged."""
    import torch

    ops = _recorder()
    p, g = torch.ones(3), torch.ones(3)
    logs = []
    for lr in (0.1, 0.2):
        with ops() as rec:
            p = p - lr * g
        logs.append(rec.ops)
    assert logs[0] != logs[1]
    with ops() as rec:
        float(p.sum())
        torch.nonzero(p)
    assert len(rec.unsafe) == 2, rec.unsafe
