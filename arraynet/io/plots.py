"""PNG pictures of a run: curves, confusion matrix, misclassified and augmented digits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class PlotError(ValueError):
    """A run folder that cannot be plotted."""


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PlotError("plotting needs matplotlib: `uv sync --extra plot`") from e
    return plt


def make_plots(run_dir: str | Path, backend: Any, data_dir: str | None = None) -> list[Path]:
    """Write curves.png, confusion.png, misclassified.png and augmented.png into run_dir."""
    from arraynet.augment import augment_batch
    from arraynet.io.weights import load_model

    run = Path(run_dir)
    state_path = run / "state.json"
    if not state_path.is_file():
        raise PlotError(f"{run}: not a run folder (no state.json)")
    try:
        state = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PlotError(f"{state_path}: unreadable ({e})") from None
    plt = _plt()
    hist = state.get("history") or []
    written = [_curves(plt, hist, run / "curves.png")]
    from arraynet.data.arrays import float_inputs
    from arraynet.train.inputs import fit_data, load_data

    data = load_data((state.get("meta") or {}).get("data"), data_dir, quiet=True)
    labels = np.asarray(data.y_test).astype(np.int64)
    weights = run / "model.safetensors"
    if weights.is_file():
        model, _ = load_model(weights, backend)
        classes = fit_data(model, data)
        xh = float_inputs(data.x_test, model.input_shape)
        x = backend.from_host(xh, backend.dtype("float32"))
        probs = backend.to_host(model.predict(x, 500))
        pred = probs.argmax(1)
        written.append(_confusion(plt, labels, pred, run / "confusion.png", classes))
        if xh.ndim == 4:  # (images only)
            written.append(_misclassified(plt, xh, labels, pred, probs, run / "misclassified.png"))
    rng = backend.rng(0)
    xs = float_inputs(data.x_train[:32])
    if xs.ndim == 4:  # augmentation draws images only
        sample = backend.from_host(xs, backend.dtype("float32"))
        a = (state.get("recipe") or {}).get("augment") or {}
        kw = {k: a[k] for k in ("rotation", "shift", "elastic") if a.get(k) is not None}
        if "zoom" in a:
            kw["zoom"] = tuple(a["zoom"])
        aug = backend.to_host(augment_batch(sample, rng, **kw))  # the run's ranges
        written.append(_grid(plt, aug, [str(int(v)) for v in data.y_train[:32]],
                             "augmented training images", run / "augmented.png"))  # fmt: skip
    return written


def _save(fig: Any, path: Path) -> Path:
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    tmp.replace(path)
    return path


def _curves(plt: Any, hist: list[dict], path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ep = [h["epoch"] for h in hist]
    axes[0].plot(ep, [h["train_loss"] for h in hist], label="train")
    if hist and "val_loss" in hist[0]:
        axes[0].plot(ep, [h["val_loss"] for h in hist], label="validation")
        axes[1].plot(ep, [100 * h["val_error"] for h in hist], label="validation")
    axes[0].set(title="loss", xlabel="epoch", yscale="log")
    axes[0].legend()
    axes[1].set(title="error (%)", xlabel="epoch")
    axes[2].plot(ep, [h["lr"] for h in hist])
    axes[2].set(title="learning rate", xlabel="epoch", yscale="log")
    out = _save(fig, path)
    plt.close(fig)
    return out


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, classes: int = 10) -> np.ndarray:
    """Counts (classes, classes): row = true label, column = predicted label."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    if labels.shape != pred.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and predictions {pred.shape} must be 1-D alike")
    for name, a in (("labels", labels), ("predictions", pred)):
        if a.size and (a.min() < 0 or a.max() >= classes):
            raise ValueError(f"{name} must lie in 0..{classes - 1}")
    cm = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(cm, (labels.astype(np.int64), pred.astype(np.int64)), 1)
    return cm


def _confusion(
    plt: Any, labels: np.ndarray, pred: np.ndarray, path: Path, classes: int = 10
) -> Path:
    cm = confusion_matrix(labels, pred, classes)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(np.log1p(cm), cmap="Blues")
    for i in range(classes):
        for j in range(classes):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7)
    err = 100 * (labels != pred).mean()
    ax.set(xlabel="predicted", ylabel="true", xticks=range(classes), yticks=range(classes),
           title=f"confusion matrix (test error {err:.2f} %)")  # fmt: skip
    out = _save(fig, path)
    plt.close(fig)
    return out


def _misclassified(plt: Any, images: np.ndarray, labels: np.ndarray, pred: np.ndarray,
                   probs: np.ndarray, path: Path) -> Path:  # fmt: skip
    wrong = np.nonzero(labels != pred)[0][:48]
    titles = [f"{labels[i]}->{pred[i]} {100 * probs[i, pred[i]]:.0f}%" for i in wrong]
    return _grid(plt, images[wrong], titles, "misclassified test images", path)


def _grid(plt: Any, imgs: np.ndarray, titles: list[str], title: str, path: Path) -> Path:
    n = max(len(imgs), 1)
    cols = 8
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.35), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(imgs):
            img = np.clip(imgs[k], 0.0, 1.0)  # (H, W, C) in [0, 1]
            if img.ndim == 3 and img.shape[-1] == 1:
                ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1)
            elif img.ndim == 3 and img.shape[-1] == 3:
                ax.imshow(img)
            else:  # other channel counts: the first channel
                ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1)
            ax.set_title(titles[k], fontsize=7)
    fig.suptitle(title)
    out = _save(fig, path)
    plt.close(fig)
    return out
