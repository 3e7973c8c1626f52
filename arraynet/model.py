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
from arraynet.train.fit import evaluate_arrays, fit, verbosity

Array = Any


class Sequential(Network):
    """Layers applied in order. Images are NHWC; `input_shape` excludes the batch axis:
    (H, W, C) for images, (D,) for vectors, or None to take it from the data at `fit`."""

    # -- training and scoring on arrays (arraynet.train.fit) ------------------------------
    # `fit` is arraynet.train.fit.fit itself, so help(), IDEs and the docs show its keywords
    # (epochs=, batch_size=, lr=/learning_rate=, optimizer=, loss=, metrics=,
    # validation_split=, verbose= ...) and its docstring.
    fit = fit

    def evaluate(
        self,
        x: Array,
        y: Array,
        batch_size: int | None = 500,
        *,
        verbose: int | str = 0,
        return_dict: bool = True,
    ) -> dict | list[float]:
        """Score the model on (x, y) (labels or one-hot rows), in eval mode.

        Returns a dict: error_rate, accuracy, loss, correct and total; with
        `return_dict=False` Keras's list [loss, accuracy]. `verbose` 1 or 2 (or 'auto')
        prints one line of the figures; 0 (the default) nothing. `batch_size` None is 500.
        """
        check_built(self)
        level = verbosity(verbose)
        res = evaluate_arrays(self, x, y, 500 if batch_size is None else batch_size)
        if level:
            print(f"loss {res['loss']:.4f}  accuracy {100 * res['accuracy']:.2f}% "
                  f"({res['correct']}/{res['total']})")  # fmt: skip
        return res if return_dict else [res["loss"], res["accuracy"]]

    def predict(self, x: Array, batch_size: int | None = 1000, *, verbose: int | str = 0) -> Array:
        """Outputs in eval mode (probabilities when the model ends in softmax), computed in
        batches (`batch_size` None is 1000), as arrays of the model's backend. `x` may be a
        NumPy array or any other backend's (uint8 images are scaled to [0, 1]). `verbose`
        is accepted as Keras's is (0, 1, 2 or 'auto') and shows nothing: a prediction
        reads no figures to show."""
        verbosity(verbose)
        return super().predict(x, 1000 if batch_size is None else batch_size)

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
