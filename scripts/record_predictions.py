"""Record, in each models/*.json, a fingerprint of its model's 10,000 test predictions.

    uv run python scripts/record_predictions.py [NAME ...]   # default: every record

`predictions_sha256` is the SHA-256 of the predicted classes of the MNIST test images, one
byte each in test-set order, scored as `arraynet evaluate` scores them (eval mode, batches
of 500, numpy; an ensemble sums its members' probabilities in order). With it,
tests/test_models.py fails if any one test image is classified otherwise than when the
record was written, not only if the count changes. A record whose `correct` count does not
match its weights is refused (nothing is written); each record is rewritten atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arraynet.backends import get_backend  # noqa: E402
from arraynet.cli import script_errors  # noqa: E402
from arraynet.data import load_mnist  # noqa: E402
from arraynet.io import atomic_write_json, load_model, refresh_manifest  # noqa: E402
from arraynet.jobs import make_dataset, predict_probs  # noqa: E402

MODELS = REPO / "models"


def digest(pred: np.ndarray) -> str:
    """SHA-256 of predicted classes, one byte each, in order."""
    return hashlib.sha256(np.asarray(pred, dtype=np.uint8).tobytes()).hexdigest()


def model_outputs(models: Path, data_dir: str | None = None):
    """A function name -> (10000, classes) outputs of models/<name>.safetensors (cached),
    and the test labels."""
    b = get_backend("numpy")
    m = load_mnist(data_dir, quiet=True)
    test = make_dataset(m.test_images, m.test_labels, b)
    cache: dict[str, np.ndarray] = {}

    def outputs(name: str) -> np.ndarray:
        if name not in cache:
            model, _ = load_model(models / f"{name}.safetensors", b)
            cache[name] = np.asarray(b.to_host(predict_probs(model, test.x, False)))
        return cache[name]

    return outputs, test.labels


def predictions(name: str, record: dict, outputs, models: Path) -> np.ndarray:
    """Predicted classes of a record: its own weights, or its ensemble members summed."""
    if "members" not in record:
        return outputs(name).argmax(axis=1)
    total = None
    for member in record["members"]:
        out = outputs(Path(member["weights"]).stem)
        total = out if total is None else total + out
    return total.argmax(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="record names (default: all in models/)")
    ap.add_argument("--models-dir", default=str(MODELS))
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    with script_errors("record_predictions"):
        models = Path(args.models_dir)
        names = args.names or sorted(p.stem for p in models.glob("*.json"))
        records = {n: json.loads((models / f"{n}.json").read_text()) for n in names}
        outputs, labels = model_outputs(models, args.data_dir)
        for name, rec in records.items():
            pred = predictions(name, rec, outputs, models)
            correct = int((pred == labels).sum())
            if correct != rec["correct"]:
                raise ValueError(
                    f"{name}: the weights score {correct} correct, the record says "
                    f"{rec['correct']}; nothing written"
                )
            rec["predictions_sha256"] = digest(pred)
            atomic_write_json(models / f"{name}.json", rec)
            refresh_manifest(models / f"{name}.json")  # models/SHA256SUMS
            print(f"{name}: {correct}/{len(labels)} correct, {rec['predictions_sha256'][:16]}")


if __name__ == "__main__":
    main()
