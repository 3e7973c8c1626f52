"""Options several commands share, and the checks that turn their values into objects."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from arraynet.cli.output import CliError

BackendOpt = Annotated[
    str, typer.Option("--backend", "-b", help="numpy, cupy, torch, array-api-strict or auto")
]
DeviceOpt = Annotated[str | None, typer.Option(help="device, e.g. cpu, cuda:0")]
RngOpt = Annotated[
    str | None,
    typer.Option("--rng", help="host or device: where dropout masks and augmentation are drawn "
                 "(default: device on cupy and torch on CUDA, else host)"),
]  # fmt: skip
ThreadsOpt = Annotated[
    int | None,
    typer.Option(help="CPU threads of the numpy backend (default: ARRAYNET_THREADS, "
                 "OPENBLAS_NUM_THREADS or all usable CPUs)"),
]  # fmt: skip
Tf32Opt = Annotated[
    bool,
    typer.Option("--tf32", help="NVIDIA GPUs: float32 products and convolutions in TF32 "
                 "(faster, 10-bit mantissa inputs); off: plain float32"),
]  # fmt: skip
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="folder with the MNIST files")]
ShaOpt = Annotated[
    str | None,
    typer.Option("--sha256", help="the weights file's expected SHA-256 (from its publisher)"),
]
UncheckedOpt = Annotated[
    bool,
    typer.Option("--allow-unchecked", help="load a weights file that carries no checksum"),
]
NonfiniteOpt = Annotated[
    bool, typer.Option("--allow-nonfinite", help="load weights holding NaN or infinities")
]
DataOpt = Annotated[
    str | None,
    typer.Option(help="dataset: mnist (default), an IDX folder, an .npz or an image folder"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="last line of stdout is one JSON object")]
CommOpt = Annotated[
    str, typer.Option("--comm", help="auto (MPI under mpiexec/srun), single, mpi or nccl")
]


def make_backend(
    name: str, device: str | None = None, threads: int | None = None, tf32: bool = False
) -> Any:
    """The backend the options ask for; a thread count under 1 is a CliError."""
    from arraynet.backends import get_backend

    if threads is not None and threads < 1:
        raise CliError(f"--threads wants at least 1, not {threads}")
    return get_backend(name, device, threads=threads, tf32=tf32)


def rng_kind(rng: str | None) -> str | None:
    """The --rng value, checked: host, device or None (the backend's choice)."""
    if rng is not None and rng not in ("host", "device"):
        raise CliError(f"--rng wants host or device, not {rng!r}")
    return rng


def comm_world(kind: str) -> Any:
    """The job's communicator; a bad choice is a CliError."""
    from arraynet.parallel.comm import CommError, world

    try:
        return world(kind)
    except CommError as e:
        raise CliError(str(e)) from None


def check_model(model: str) -> None:
    """A --model value must be a zoo entry or a layout file (one line otherwise)."""
    from arraynet.zoo import LAYOUTS
    from arraynet.zoo.layouts import is_layout_file

    if model not in LAYOUTS and not is_layout_file(model):
        raise CliError(
            f"unknown model {model!r}; choose from {', '.join(LAYOUTS)}, or give a layout .json"
        )
