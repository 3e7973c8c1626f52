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
    weights = run / "model.safetensors"
    metrics = run_metrics(weights) if weights.is_file() else None
    written = [_curves(plt, hist, run / "curves.png", metrics)]
    from arraynet.data.arrays import float_inputs
    from arraynet.train.inputs import fit_data, load_data

    data = load_data((state.get("meta") or {}).get("data"), data_dir, quiet=True)
    labels = np.asarray(data.y_test).astype(np.int64)
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


def run_metrics(weights: Path) -> dict | None:
    """The metrics recorded with a run's final weights (best_epoch, error_rate ...), read
    from the file's header alone; None when it records none."""
    from arraynet.io.weights import read_header

    metrics = read_header(weights)[1].get("metrics")
    return metrics if isinstance(metrics, dict) else None


NO_VALIDATION = "no validation split:\ntrain with --val-split N\nto see validation error"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def curves_figure(plt: Any, hist: list[dict], metrics: dict | None = None) -> Any:
    """The figure of curves.png: loss, error (%) and learning rate by epoch (whole-number
    ticks). From `metrics` (what the run recorded with its weights): the best epoch, a
    dotted vertical line on each panel, and the test error, a dashed horizontal line on
    the error panel. Without validation data the error panel says how to get it."""
    from matplotlib.ticker import MaxNLocator

    metrics = metrics or {}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharex=True)  # the same epochs
    ep = [h["epoch"] for h in hist]
    dot = {"marker": "o"} if len(ep) == 1 else {}  # (a line of one point is not drawn)
    axes[0].plot(ep, [h["train_loss"] for h in hist], label="train", **dot)
    val = [h for h in hist if "val_error" in h and "val_loss" in h]
    if val:
        vep = [h["epoch"] for h in val]
        axes[0].plot(vep, [h["val_loss"] for h in val], label="validation", **dot)
        axes[1].plot(vep, [100 * h["val_error"] for h in val], label="validation", **dot)
    else:
        axes[1].text(0.5, 0.78, NO_VALIDATION, transform=axes[1].transAxes, ha="center",
                     va="center", color="0.35", bbox={"fc": "white", "ec": "0.8"})  # fmt: skip
    axes[2].plot(ep, [h["lr"] for h in hist], **dot)
    best = metrics.get("best_epoch")
    if _number(best) and best >= 1:
        for ax in axes:
            ax.axvline(best, color="0.4", linestyle=":", label=f"best epoch ({int(best)})")
    test = metrics.get("error_rate")
    if _number(test):
        axes[1].axhline(100 * test, color="tab:red", linestyle="--",
                        label=f"test error {100 * test:.2f} %")  # fmt: skip
        if not val:  # the line alone: from 0, with the note above it
            axes[1].set_ylim(0, max(200 * test, 0.1))
    axes[0].set(title="loss", xlabel="epoch", yscale="log")
    axes[1].set(title="error (%)", xlabel="epoch")
    axes[2].set(title="learning rate", xlabel="epoch", yscale="log")
    for ax in axes:
        if len(set(ep)) == 1:  # one epoch: a window around it, not matplotlib's +-5 %
            ax.set_xlim(ep[0] - 1, ep[0] + 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[:2]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best" if val else "lower left")
    return fig


def _curves(plt: Any, hist: list[dict], path: Path, metrics: dict | None = None) -> Path:
    fig = curves_figure(plt, hist, metrics)
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
