"""curves.png (`arraynet plot`): whole-number epoch ticks, the best epoch and the test error
marked, and a note in place of an empty error panel when the run had no validation split.
The figure's matplotlib objects are inspected, not its pixels."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="plotting is the optional `plot` extra")

from arraynet.io.plots import NO_VALIDATION, _curves, _plt, curves_figure, run_metrics


def history(epochs: int, val: bool) -> list[dict]:
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "lr": 0.001 * 0.9**e, "train_loss": 1.0 / e}
        if val:
            row.update(val_loss=1.2 / e, val_error=0.1 / e)
        rows.append(row)
    return rows


@pytest.fixture
def plt():
    plt = _plt()
    yield plt
    plt.close("all")


def drawn(plt, hist, metrics=None):
    fig = curves_figure(plt, hist, metrics)
    fig.canvas.draw()  # ticks are placed when drawn
    return fig.axes


def labelled(ax, text: str) -> list:
    return [line for line in ax.get_lines() if text in line.get_label()]


def notes(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


@pytest.mark.parametrize("epochs", [1, 3, 7, 40])
@pytest.mark.parametrize("val", [True, False])
def test_epoch_ticks_are_whole_numbers(plt, epochs, val):
    for ax in drawn(plt, history(epochs, val), {"best_epoch": epochs, "error_rate": 0.01}):
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks, ax.get_title()
        assert all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)


def test_the_best_epoch_and_the_test_error_are_marked(plt):
    loss, error, lr = drawn(plt, history(5, True), {"best_epoch": 3, "error_rate": 0.0123})
    for ax in (loss, error, lr):
        (best,) = labelled(ax, "best epoch")
        assert list(best.get_xdata()) == [3, 3] and "(3)" in best.get_label()
    (test,) = labelled(error, "test error")
    assert list(test.get_ydata()) == [pytest.approx(1.23), pytest.approx(1.23)]
    assert test.get_label() == "test error 1.23 %"
    (val,) = labelled(error, "validation")
    np.testing.assert_allclose(val.get_ydata(), [100 * 0.1 / e for e in range(1, 6)])
    legend = [t.get_text() for t in error.get_legend().get_texts()]
    assert "test error 1.23 %" in legend and "best epoch (3)" in legend
    assert NO_VALIDATION not in notes(error)


def test_without_validation_the_error_panel_says_how_to_get_it(plt):
    loss, error, _ = drawn(plt, history(4, False), {"best_epoch": 4, "error_rate": 0.02})
    assert NO_VALIDATION in notes(error)
    assert "--val-split N" in NO_VALIDATION
    assert not labelled(error, "validation") and not labelled(loss, "validation")
    (test,) = labelled(error, "test error")  # the panel still shows the test error
    assert test.get_ydata()[0] == pytest.approx(2.0)


def test_without_a_record_nothing_is_marked(plt):
    loss, error, lr = drawn(plt, history(3, True), None)
    for ax in (loss, error, lr):
        assert not labelled(ax, "best epoch") and not labelled(ax, "test error")
    assert not notes(error)


def test_curves_png_reads_the_record_saved_with_the_weights(tmp_path, plt):
    from arraynet.io import save_arrays

    weights = tmp_path / "model.safetensors"
    save_arrays(weights, {"w": np.zeros(2, np.float32)},
                {"metrics": {"best_epoch": 2, "error_rate": 0.05}})  # fmt: skip
    metrics = run_metrics(weights)
    assert metrics == {"best_epoch": 2, "error_rate": 0.05}
    save_arrays(tmp_path / "bare.safetensors", {"w": np.zeros(2, np.float32)}, {})
    assert run_metrics(tmp_path / "bare.safetensors") is None
    out = _curves(plt, history(3, False), tmp_path / "curves.png", metrics)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_make_plots_marks_what_the_run_recorded(tmp_path, monkeypatch):
    """`arraynet plot` hands curves.png the run's history and the metrics saved with its
    weights (the rest of make_plots, which needs data and a real model, is cut short)."""
    import json

    import arraynet.io.plots as plots
    from arraynet.io import save_arrays

    hist = history(3, False)
    (tmp_path / "state.json").write_text(json.dumps({"history": hist}))
    save_arrays(tmp_path / "model.safetensors", {"w": np.zeros(2, np.float32)},
                {"metrics": {"best_epoch": 2, "error_rate": 0.05}})  # fmt: skip
    seen = []

    class Stop(Exception):
        pass

    def curves(plt, h, path, metrics=None):
        seen.append((h, path, metrics))
        raise Stop

    monkeypatch.setattr(plots, "_curves", curves)
    with pytest.raises(Stop):
        plots.make_plots(tmp_path, backend=None)
    assert seen == [(hist, tmp_path / "curves.png", {"best_epoch": 2, "error_rate": 0.05})]
