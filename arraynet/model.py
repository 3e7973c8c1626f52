"""`Sequential`, the model users build, fit, evaluate, save and export: the network core
(`arraynet.network.Network`) with the training and file front ends on top. `load_model`
rebuilds one from a weights file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arraynet.backends import Backend, get_backend
from arraynet.io.onnx_export import export_onnx
from arraynet.io.weights import load_model as load_weights
from arraynet.io.weights import save_model
from arraynet.network import LOSS_NAMES as LOSS_NAMES  # (re-exported: the old home)
from arraynet.network import MAX_LAYERS as MAX_LAYERS
from arraynet.network import Network, check_built
from arraynet.network import state_misfit as state_misfit
from arraynet.train.fit import evaluate_arrays, fit

Array = Any


class Sequential(Network):
    """Layers applied in order. Images are NHWC; `input_shape` excludes the batch axis:
    (H, W, C) for images, (D,) for vectors, or None to take it from the data at `fit`."""

    # -- training and scoring on arrays (arraynet.train.fit) ------------------------------
    def fit(self, x: Array, y: Array, **kw: Any) -> list[dict]:
        """Train on images (N, H, W, C) or vectors (N, D), uint8 (scaled to [0, 1]) or float,
        NumPy or any backend's arrays, with integer labels (N,) or one-hot rows (N, K).

        Keywords: epochs, batch_size, lr, optimizer ('adam', 'sgd', 'adam-seed'), loss
        ('cross_entropy', 'mse'), schedule, warmup, label_smoothing, ema, augment (True,
        False, a probability or a dict of zoom/rotation/shift/elastic/p), recipe (a Recipe
        the other keywords override), validation_data=(xv, yv) or validation_split (a
        fraction or a count of the last samples), callbacks, backend, seed, out_dir (a
        run folder, checkpointed every epoch), resume (continue the run in out_dir
        exactly), verbose, rng ('host' or 'device': where dropout masks and augmentation
        are drawn; default the backend's, see the README), tf32 (NVIDIA GPUs: float32
        products and convolutions in TF32; default off, plain float32), sync_bn and comm (under
        `mpiexec -n N` the fit is data-parallel: batch_size is the global batch, rank 0
        alone writes and prints; see the README). An unbuilt model is built
        first (on the backend that holds `x` unless `backend` says otherwise). Returns the
        history: one dict per epoch.
        """
        return fit(self, x, y, **kw)

    def evaluate(self, x: Array, y: Array, batch_size: int = 500) -> dict:
        """error_rate, loss, correct and total on (x, y) (labels or one-hot rows)."""
        check_built(self)
        return evaluate_arrays(self, x, y, batch_size)

    def save(self, path: Any, meta: dict | None = None) -> None:
        """Write the weights and layout (safetensors + JSON metadata) atomically."""
        save_model(path, self, dict(meta or {}))

    def export_onnx(self, path: str) -> None:
        """Write the built model as an ONNX file (needs the `onnx` extra)."""
        export_onnx(self, path)


def load_model(
    path: str | Path,
    backend: Backend | str = "numpy",
    *,
    sha256: str | None = None,
    allow_unchecked: bool = False,
    allow_nonfinite: bool = False,
) -> Sequential:
    """A model rebuilt from a weights file (safetensors + JSON) on `backend` (a name or a
    Backend); its metadata (recipe, metrics, history ...) is `model.metadata`.

    `sha256`: the file's expected SHA-256 (from its publisher); a SHA256SUMS beside the
    file is checked too. A file without arraynet's checksum is refused unless
    `allow_unchecked`, weights with NaN or infinities unless `allow_nonfinite`
    (`arraynet.io.weights` says what each check proves)."""
    b = get_backend(backend) if isinstance(backend, str) else backend
    model, meta = load_weights(path, b, sha256=sha256, allow_unchecked=allow_unchecked,
                               allow_nonfinite=allow_nonfinite, cls=Sequential)  # fmt: skip
    model.metadata = meta
    return model
