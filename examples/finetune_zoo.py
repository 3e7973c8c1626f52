"""Fine-tuning a zoo model: start from the shipped m9 weights and train on at a tenth of
its seed learning rate, in a run folder (checkpointed every epoch; resume=True continues).

    uv run python examples/finetune_zoo.py            # 1 epoch on 20,000 images
    uv run python examples/finetune_zoo.py --small    # a few hundred, for the test suite
"""

import sys
import tempfile
from pathlib import Path

import arraynet as an

small = "--small" in sys.argv
root = Path(__file__).resolve().parents[1]
data = an.datasets.load("mnist")
model = an.load_model(root / "models" / "m9.safetensors")  # layers, weights and metadata
print("shipped m9:", model.metadata["metrics"]["error_rate"], "test error (recorded)")
n_test = 1000 if small else len(data.y_test)
before = model.evaluate(data.x_test[:n_test], data.y_test[:n_test])

seed_recipe = an.zoo.entry("m9").recipe  # the zoo's registry: layout, recipe, seed figures
n = 512 if small else 20_000
with tempfile.TemporaryDirectory() as tmp:
    history = model.fit(
        data.x_train[:n], data.y_train[:n], recipe=seed_recipe, lr=seed_recipe.lr / 10,
        epochs=1, out_dir=Path(tmp) / "m9-finetune", verbose=True,
    )  # fmt: skip
after = model.evaluate(data.x_test[:n_test], data.y_test[:n_test])
print(f"test error before {100 * before['error_rate']:.2f}%, "
      f"after {100 * after['error_rate']:.2f}% (first {n_test} test images)")  # fmt: skip
