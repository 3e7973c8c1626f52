"""Distillation: targets mixing labels with teachers' probabilities, and honest teachers."""

from __future__ import annotations

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.io import WeightsError, load_arrays, load_model
from arraynet.jobs import train_model
from arraynet.train.distill import distillation_targets, teacher_probabilities
from arraynet.zoo import recipe_for


def _teacher(tmp_path, data_dir, seed: int, val_split: int) -> str:
    out = tmp_path / f"t{seed}-v{val_split}"
    train_model(
        "m8", get_backend("numpy"), seed=seed, out_dir=out, data_dir=str(data_dir),
        train_limit=300, val_split=val_split, epochs=1, quiet_data=True,
    )  # fmt: skip
    return str(out / "model.safetensors")


def _student(tmp_path, data_dir, teachers, out="s", epochs=3, resume=False, val_split=100):
    recipe = recipe_for("m8").with_overrides(distill=0.5, epochs=3, batch_size=32)
    return train_model(
        "m8", get_backend("numpy"), recipe=recipe, seed=5, out_dir=tmp_path / out,
        data_dir=str(data_dir), train_limit=300, val_split=val_split, epochs=epochs,
        quiet_data=True, teachers=teachers, resume=resume,
    )  # fmt: skip


def test_targets_are_the_stated_mix():
    onehot = np.eye(3)[[0, 2]]
    teacher = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    y = distillation_targets(onehot, teacher, 0.25)
    np.testing.assert_allclose(y, 0.25 * teacher + 0.75 * onehot)
    np.testing.assert_allclose(y.sum(axis=1), 1.0)


def test_teacher_probabilities_average_the_teachers(tmp_path, data_dir):
    b = get_backend("numpy")
    paths = [_teacher(tmp_path, data_dir, s, 100) for s in (0, 1)]
    x = b.from_host(np.random.default_rng(0).random((7, 28, 28, 1)), dtype=b.dtype("float32"))
    want = sum(load_model(p, b)[0].predict(x) for p in paths) / 2
    np.testing.assert_allclose(teacher_probabilities(paths, x, b), want, rtol=1e-6)


@pytest.mark.slow
def test_distilled_run_resumes_exactly_and_names_its_teachers(tmp_path, data_dir):
    teachers = [_teacher(tmp_path, data_dir, s, 100) for s in (0, 1)]
    straight = _student(tmp_path, data_dir, teachers, out="a")
    _student(tmp_path, data_dir, teachers, out="b", epochs=1)
    resumed = _student(tmp_path, data_dir, None, out="b", resume=True)
    assert resumed["error_rate"] == straight["error_rate"]
    a, meta = load_arrays(tmp_path / "a" / "model.safetensors")
    c, _ = load_arrays(tmp_path / "b" / "model.safetensors")
    for k in a:
        np.testing.assert_array_equal(a[k], c[k])
    assert [t["weights"] for t in meta["teachers"]] == teachers
    # the targets matter: without teachers the same seed ends elsewhere
    plain = train_model(
        "m8", get_backend("numpy"), recipe=recipe_for("m8").with_overrides(epochs=3, batch_size=32),
        seed=5, out_dir=tmp_path / "plain", data_dir=str(data_dir), train_limit=300,
        val_split=100, quiet_data=True,
    )  # fmt: skip
    p, _ = load_arrays(tmp_path / "plain" / "model.safetensors")
    assert plain["epochs_run"] == 3 and not np.array_equal(p["1.kernel"], a["1.kernel"])


@pytest.mark.slow
def test_a_changed_teacher_stops_the_resume(tmp_path, data_dir):
    teachers = [_teacher(tmp_path, data_dir, 0, 100)]
    _student(tmp_path, data_dir, teachers, out="b", epochs=1)
    other = _teacher(tmp_path, data_dir, 3, 100)
    with open(teachers[0], "wb") as f, open(other, "rb") as g:
        f.write(g.read())
    with pytest.raises(WeightsError, match="changed since the run began"):
        _student(tmp_path, data_dir, None, out="b", resume=True)


def test_a_teacher_that_saw_the_validation_images_is_refused(tmp_path, data_dir):
    teachers = [_teacher(tmp_path, data_dir, 0, 0)]
    with pytest.raises(WeightsError, match="same 100 validation images"):
        _student(tmp_path, data_dir, teachers)
    with pytest.raises(ValueError, match="needs teachers"):
        _student(tmp_path, data_dir, None)
