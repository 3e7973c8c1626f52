"""The shipped weights in models/ and the figures quoted for them.

Every weights file has a JSON record; each model scores exactly the `correct` count its
record holds on all 10,000 test images (slow: it runs every shipped model), an ensemble
record is rescored from its members, and the results tables (models/README.md) and the
figures the docs' zoo page quotes agree with the records.
"""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.io import load_model
from arraynet.zoo import LAYOUTS, build_layout
from tests.conftest import REPO

MODELS = REPO / "models"
RECORDS = {p.stem: json.loads(p.read_text()) for p in sorted(MODELS.glob("*.json"))}
ENSEMBLES = sorted(n for n, r in RECORDS.items() if "members" in r)  # no weights of their own
SHIPPED = sorted(n for n in RECORDS if n not in ENSEMBLES)
TEST_IMAGES = 10000


def test_every_weights_file_has_a_record_and_back():
    weights = sorted(p.stem for p in MODELS.glob("*.safetensors"))
    assert weights == SHIPPED, "each models/*.safetensors needs its models/*.json, and back"
    assert ENSEMBLES, "models/ensemble.json (scripts/ship_ensemble.py) is shipped"


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_record_counts_agree_with_its_error_rate(name):
    rec = RECORDS[name]
    assert rec["total"] == TEST_IMAGES and 0 < rec["correct"] <= rec["total"]
    assert rec["error_rate"] == pytest.approx((rec["total"] - rec["correct"]) / rec["total"])


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_has_its_zoo_layout(name):
    rec = RECORDS[name]
    model, _ = load_model(MODELS / f"{name}.safetensors", get_backend("numpy"))
    zoo_name = rec.get("layout") or rec.get("model", name)
    assert zoo_name in LAYOUTS, name
    assert model.config() == build_layout(zoo_name).config()


# -- the recorded test scores, image for image -------------------------------------------
FINGERPRINT = (
    "some test image is classified otherwise than when the record was written (a retrained "
    "model: run scripts/record_predictions.py NAME)"
)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the records' `predictions_sha256`: the predicted classes, one byte each, in order
_digest = _script("record_predictions").digest


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_record_has_a_prediction_fingerprint(name):
    fp = RECORDS[name].get("predictions_sha256")
    assert isinstance(fp, str) and re.fullmatch(r"[0-9a-f]{64}", fp), f"{name}: {FINGERPRINT}"


def test_fingerprint_sees_one_changed_image():
    """Two swapped predictions keep the count but change the fingerprint."""
    pred = np.arange(10000) % 10
    swapped = pred.copy()
    swapped[[3, 4]] = swapped[[4, 3]]
    assert _digest(pred) != _digest(swapped) and (pred == 1).sum() == (swapped == 1).sum()


@pytest.fixture(scope="module")
def scored(data_dir):
    """Outputs of each shipped model on the whole test set, computed once, as `arraynet
    evaluate` computes them (numpy, eval mode, batches of 500)."""
    return _script("record_predictions").model_outputs(MODELS, str(data_dir))


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_scores_exactly_its_record(name, scored):
    """One test image classified otherwise than when the record was written changes the
    count, and fails here."""
    outputs, labels = scored
    pred = outputs(name).argmax(axis=1)
    correct = int((pred == labels).sum())
    assert (correct, len(labels)) == (RECORDS[name]["correct"], RECORDS[name]["total"]), name
    assert _digest(pred) == RECORDS[name]["predictions_sha256"], f"{name}: {FINGERPRINT}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ENSEMBLES)
def test_ensemble_scores_exactly_its_record(name, scored):
    """As `arraynet evaluate W1 W2 ...` scores an ensemble: the members' probabilities
    summed in order, then the argmax (the members' outputs are the ones scored above)."""
    outputs, labels = scored
    rec = RECORDS[name]
    names = []
    for member in rec["members"]:
        path = REPO / member["weights"]
        assert path.parent == MODELS and path.stem in SHIPPED, member["weights"]
        assert member["error_rate"] == RECORDS[path.stem]["error_rate"], member["weights"]
        names.append(path.stem)
    assert len(names) >= 2
    total = None
    for n in names:
        total = outputs(n) if total is None else total + outputs(n)
    correct = int((total.argmax(axis=1) == labels).sum())
    assert correct == rec["correct"], name
    assert _digest(total.argmax(axis=1)) == rec["predictions_sha256"], f"{name}: {FINGERPRINT}"


# -- the tables and the README's figures ------------------------------------------------
def test_models_readme_is_the_table_of_the_records():
    """models/README.md is exactly what `scripts/train_zoo.py --table-only` renders."""
    assert _script("train_zoo").table_text(MODELS) == (MODELS / "README.md").read_text()


README = (REPO / "docs" / "zoo.md").read_text()  # the docs page that quotes the figures
# (record, a pattern of that page whose group 1 is the figure it quotes for that record)
QUOTED = [
    ("m10", r"\bm10 (\d+\.\d\d) %"),
    ("m11", r"\bm11 (\d+\.\d\d) %"),
    ("m12", r"\bm12 \((\d+\.\d\d) % against"),
    ("m14-fast", r"against (\d+\.\d\d) % for `m14-fast`"),
    ("m14-fast", r"\| \*\*`m14-fast`\*\* \|[^\n]*\| \*\*(\d+\.\d\d) %\*\* \|"),
    ("m14-fast", r"`arraynet evaluate` gives (\d+\.\d\d) % on numpy"),
    ("best", r"\| \*\*`models/best`\*\*[^\n]*\| \*\*(\d+\.\d\d) %\*\* \|"),
    ("ensemble", r"\| ensemble of 5 \|[^\n]*\| (\d+\.\d\d) % \| `models/ensemble\.json` \|"),
]


def _percent(name: str) -> str:
    return f"{100 * RECORDS[name]['error_rate']:.2f}"


@pytest.mark.parametrize("name,pattern", QUOTED)
def test_readme_quotes_the_recorded_error(name, pattern):
    found = re.findall(pattern, README) or re.findall(pattern, " ".join(README.split()))
    assert found, f"docs/zoo.md no longer quotes {name} as /{pattern}/: update this test"
    assert set(found) == {_percent(name)}, f"docs/zoo.md quotes {name} at {found} %"


WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_readme_summary_of_the_seed_zoo():
    """'N reach the seed's error or better (...); ... end A-B test images above it'."""
    text = " ".join(README.split())  # the sentence may wrap anywhere
    m = re.search(
        r"(\w+) reach the seed's error or better \((.*?)\);(.*?) end (\d+)-(\d+) test images "
        r"above it",
        text,
    )
    assert m, "README.md no longer summarises m1-m12 against the seed: update this test"
    seed_zoo = [f"m{i}" for i in range(1, 13)]
    assert all(n in RECORDS for n in seed_zoo)
    above = {
        n: round((RECORDS[n]["error_rate"] - RECORDS[n]["seed_error"]) * TEST_IMAGES)
        for n in seed_zoo
    }
    good = sorted(n for n in seed_zoo if above[n] <= 0)
    bad = sorted(n for n in seed_zoo if above[n] > 0)
    assert sorted(re.findall(r"\bm\d+\b", m.group(2))) == good
    assert sorted(re.findall(r"\bm\d+\b", m.group(3))) == bad
    assert m.group(1).lower() == WORDS[len(good)]
    assert (int(m.group(4)), int(m.group(5))) == (min(above[n] for n in bad), max(above.values()))
