"""Options several commands share, `train`'s options, the help panels that group them, and
the checks that turn their values into objects."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from arraynet.cli.output import CliError

# -- the help panels (`--help` groups options under these titles) ------------------------
MODEL_DATA = "Model & data"
RECIPE = "Recipe"
RUN = "Run folder & resume"
HARDWARE = "Hardware"
SCALE_OUT = "Scale-out"
CHECKS = "Weights checks"
OUTPUT = "Output"

# -- shared options -----------------------------------------------------------------------
ModelOpt = Annotated[
    str, typer.Option("--model", "-m", metavar="MODEL", rich_help_panel=MODEL_DATA,
                      help="zoo entry (`arraynet zoo`) or a layout .json"),
]  # fmt: skip
DataOpt = Annotated[
    str | None,
    typer.Option(metavar="DATA", rich_help_panel=MODEL_DATA,
                 help="mnist (default), an IDX folder, an .npz or an image folder"),
]  # fmt: skip
DataDirOpt = Annotated[
    str | None, typer.Option("--data-dir", metavar="DIR", rich_help_panel=MODEL_DATA,
                             help="folder with the MNIST files"),
]  # fmt: skip
TrainLimitOpt = Annotated[
    int | None, typer.Option(metavar="N", rich_help_panel=MODEL_DATA,
                             help="use the first N training images (default: all)"),
]  # fmt: skip
BackendOpt = Annotated[
    str, typer.Option("--backend", "-b", metavar="NAME", rich_help_panel=HARDWARE,
                      help="numpy, cupy, torch, array-api-strict or auto"),
]  # fmt: skip
DeviceOpt = Annotated[
    str | None, typer.Option(metavar="DEVICE", rich_help_panel=HARDWARE,
                             help="device, e.g. cpu, cuda:0"),
]  # fmt: skip
RngOpt = Annotated[
    str | None,
    typer.Option("--rng", metavar="WHERE", rich_help_panel=HARDWARE,
                 help="host or device: where dropout and augmentation draw "
                 "(default: device on cupy and CUDA torch)"),
]  # fmt: skip
ThreadsOpt = Annotated[
    int | None,
    typer.Option(metavar="N", rich_help_panel=HARDWARE,
                 help="numpy's CPU threads (default: ARRAYNET_THREADS, "
                 "OPENBLAS_NUM_THREADS or all usable CPUs)"),
]  # fmt: skip
Tf32Opt = Annotated[
    bool,
    typer.Option("--tf32", rich_help_panel=HARDWARE,
                 help="NVIDIA GPUs: float32 products and convolutions in TF32 "
                 "(faster, 10-bit mantissa inputs)"),
]  # fmt: skip
ShaOpt = Annotated[
    str | None,
    typer.Option("--sha256", metavar="HEX", rich_help_panel=CHECKS,
                 help="the weights file's expected SHA-256 (from its publisher)"),
]  # fmt: skip
UncheckedOpt = Annotated[
    bool,
    typer.Option("--allow-unchecked", rich_help_panel=CHECKS,
                 help="load a weights file that carries no checksum"),
]  # fmt: skip
NonfiniteOpt = Annotated[
    bool, typer.Option("--allow-nonfinite", rich_help_panel=CHECKS,
                       help="load weights holding NaN or infinities"),
]  # fmt: skip
JsonOpt = Annotated[
    bool, typer.Option("--json", rich_help_panel=OUTPUT,
                       help="last line of stdout is one JSON object"),
]  # fmt: skip
CommOpt = Annotated[
    str, typer.Option("--comm", metavar="KIND", rich_help_panel=SCALE_OUT,
                      help="auto (MPI under mpiexec/srun), single, mpi, nccl"),
]  # fmt: skip

# -- train's options ---------------------------------------------------------------------
# A recipe option's default is None: the recipe's (tests/test_cli_recipe_options.py).
EpochsOpt = Annotated[
    int | None, typer.Option(metavar="N", rich_help_panel=RECIPE,
                             help="epochs (default: the recipe's)"),
]  # fmt: skip
BatchSizeOpt = Annotated[
    int | None, typer.Option(metavar="N", rich_help_panel=RECIPE, help="mini-batch size")
]
LrOpt = Annotated[
    float | None, typer.Option(metavar="RATE", rich_help_panel=RECIPE, help="learning rate")
]
ScheduleOpt = Annotated[
    str | None, typer.Option(metavar="NAME", rich_help_panel=RECIPE,
                             help="const, tunable, tunable5, keras, cosine"),
]  # fmt: skip
OptimizerOpt = Annotated[
    str | None, typer.Option(metavar="NAME", rich_help_panel=RECIPE,
                             help="sgd, adam, adam-seed, adam-seed-const"),
]  # fmt: skip
AugPOpt = Annotated[
    float | None, typer.Option(metavar="P", rich_help_panel=RECIPE,
                               help="augmentation probability per batch"),
]  # fmt: skip
ElasticOpt = Annotated[
    str | None, typer.Option(metavar="ALPHA,SIGMA", rich_help_panel=RECIPE,
                             help="elastic distortion in pixels (0: off)"),
]  # fmt: skip
PatienceOpt = Annotated[
    int | None, typer.Option(metavar="N", rich_help_panel=RECIPE,
                             help="early-stopping patience (0: off)"),
]  # fmt: skip
MinDeltaOpt = Annotated[
    float | None, typer.Option(metavar="FRACTION", rich_help_panel=RECIPE,
                               help="early stopping's relative improvement"),
]  # fmt: skip
MonitorOpt = Annotated[
    str | None, typer.Option(metavar="NAME", rich_help_panel=RECIPE,
                             help="train_loss or val_loss"),
]  # fmt: skip
LabelSmoothingOpt = Annotated[
    float | None, typer.Option(metavar="EPS", rich_help_panel=RECIPE, help="label smoothing")
]
EmaOpt = Annotated[
    float | None, typer.Option(metavar="DECAY", rich_help_panel=RECIPE,
                               help="weight-averaging decay (0: off)"),
]  # fmt: skip
WarmupOpt = Annotated[
    int | None, typer.Option(metavar="N", rich_help_panel=RECIPE,
                             help="warm-up epochs (cosine)"),
]  # fmt: skip
SwaFromOpt = Annotated[
    int | None, typer.Option(metavar="EPOCH", rich_help_panel=RECIPE,
                             help="SWA: average weights from this epoch on"),
]  # fmt: skip
DistillOpt = Annotated[
    float | None, typer.Option(metavar="WEIGHT", rich_help_panel=RECIPE,
                               help="the teachers' share of the targets"),
]  # fmt: skip
TeacherOpt = Annotated[
    list[Path] | None, typer.Option(metavar="FILE", rich_help_panel=RECIPE,
                                    help="a teacher's weights file (repeatable)"),
]  # fmt: skip
SeedOpt = Annotated[int, typer.Option(metavar="N", rich_help_panel=RECIPE, help="random seed")]
InitOpt = Annotated[
    Path | None, typer.Option(metavar="FILE", rich_help_panel=MODEL_DATA,
                              help="start from these weights, not a fresh init"),
]  # fmt: skip
DEFAULT_MODEL = "m4"  # train's --model when neither given nor resumed
TrainModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", metavar="MODEL", rich_help_panel=MODEL_DATA,
                 help=f"zoo entry (`arraynet zoo`) or a layout .json (default: {DEFAULT_MODEL}; "
                 "a resume: the run's)"),
]  # fmt: skip
ValSplitOpt = Annotated[
    int | None, typer.Option(metavar="N", rich_help_panel=MODEL_DATA,
                             help="hold out the last N training images (default: 0)"),
]  # fmt: skip
OutOpt = Annotated[
    Path | None,
    typer.Option(metavar="DIR", rich_help_panel=RUN,
                 help="the run's folder (default: a new runs/MODEL-TIME, which runs/latest "
                 "then names)"),
]  # fmt: skip
ResumeOpt = Annotated[
    bool, typer.Option("--resume", rich_help_panel=RUN,
                       help="continue the run in --out (default: runs/latest)"),
]  # fmt: skip
HistoryOpt = Annotated[
    Path | None, typer.Option(metavar="FILE", rich_help_panel=OUTPUT,
                              help="write the history (one row per epoch) to this CSV"),
]  # fmt: skip
LogdirOpt = Annotated[
    Path | None, typer.Option(metavar="DIR", rich_help_panel=OUTPUT,
                              help="write TensorBoard scalars here (needs tensorboardX)"),
]  # fmt: skip
SyncBnOpt = Annotated[
    bool, typer.Option("--sync-bn", rich_help_panel=SCALE_OUT,
                       help="batch norm over the global batch"),
]  # fmt: skip
LrScalingOpt = Annotated[
    bool, typer.Option("--lr-scaling", rich_help_panel=SCALE_OUT,
                       help="scale the rate by batch / recipe batch"),
]  # fmt: skip
LrWarmupOpt = Annotated[
    float, typer.Option(metavar="EPOCHS", rich_help_panel=SCALE_OUT,
                        help="warm-up epochs to the scaled rate"),
]  # fmt: skip


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
