"""Every shipped model in models/ loads, has its zoo layout, and classifies test digits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.io import load_model
from arraynet.zoo import LAYOUTS, build_layout
from tests.conftest import REPO

MODELS = REPO / "models"
ENSEMBLE = "ensemble"  # models/ensemble.json records a combination of shipped weights
SHIPPED = sorted(p.stem for p in MODELS.glob("*.json") if p.stem != ENSEMBLE)


def test_every_metadata_file_has_weights():
    for name in SHIPPED:
        assert (MODELS / f"{name}.safetensors").is_file(), name


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model(name, data_dir):
    from arraynet.data import load_mnist

    meta = json.loads((MODELS / f"{name}.json").read_text())
    b = get_backend("numpy")
    model, _ = load_model(MODELS / f"{name}.safetensors", b)
    zoo_name = meta["layout"] if name == "best" else meta.get("model", name)
    assert zoo_name in LAYOUTS, name
    assert model.config() == build_layout(zoo_name).config()
    m = load_mnist(data_dir, quiet=True)
    x = (m.test_images[:200].astype(np.float32) / 255.0)[..., None]
    pred = np.asarray(model.forward(x, False)).argmax(1)
    # allow for the model's own error rate on these 200 digits, plus slack
    wrong = int((pred != m.test_labels[:200]).sum())
    assert wrong <= max(2, 3 * meta["error_rate"] * 200), f"{name}: {wrong}/200 wrong"


def test_ensemble_record_names_shipped_members(data_dir):
    from arraynet.data import load_mnist
    from arraynet.run import predict_probs

    p = MODELS / f"{ENSEMBLE}.json"
    assert p.is_file(), "models/ensemble.json (scripts/ship_ensemble.py) is shipped"
    rec = json.loads(p.read_text())
    b = get_backend("numpy")
    m = load_mnist(data_dir, quiet=True)
    x = (m.test_images[:200].astype(np.float32) / 255.0)[..., None]
    total = 0
    for member in rec["members"]:
        path = REPO / member["weights"]
        assert path.is_file() and path.parent == MODELS, member["weights"]
        total = total + np.asarray(predict_probs(load_model(path, b)[0], x, False))
    wrong = int((total.argmax(1) != m.test_labels[:200]).sum())
    assert len(rec["members"]) >= 2 and wrong <= max(2, 3 * rec["error_rate"] * 200)
