"""A custom CNN on an .npz dataset of another shape: 32x32 colour images, 5 classes.

    uv run python examples/custom_cnn_npz.py my.npz       # x_train, y_train, x_test, y_test
    uv run python examples/custom_cnn_npz.py              # writes and uses a synthetic one
    uv run python examples/custom_cnn_npz.py --small      # tiny, for the test suite

The same data train from the command line with a layout file:

    uv run arraynet zoo --export m9 > my.json   # then edit: input_shape, layers, recipe
    uv run arraynet train --model my.json --data my.npz --out runs/mine
"""

import sys
from pathlib import Path

import numpy as np

import arraynet as an
from arraynet.layers import Activation, BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D


def synthetic_npz(path: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """Five classes of 32x32 RGB noise, each with a bright square in its own place and
    colour (a stand-in for a real dataset)."""
    g = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = g.integers(0, 5, n)
        x = (g.random((n, 32, 32, 3)) * 90).astype(np.uint8)
        for i, c in enumerate(y):
            r, q = 4 + 12 * (c // 3), 2 + 10 * (c % 3)
            x[i, r : r + 10, q : q + 10, c % 3] = 255
        return x, y

    (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)


args = [a for a in sys.argv[1:] if not a.startswith("--")]
small = "--small" in sys.argv
path = Path(args[0]) if args else Path("synthetic-32x32x3.npz")
if not args:
    synthetic_npz(path, 300 if small else 5000, 100 if small else 1000)

data = an.datasets.load(path)
print(data)
model = an.Sequential(
    [
        Conv2D(16, 3, padding="same"), BatchNorm(), Activation("relu"), MaxPool2D(2),
        Conv2D(32, 3, padding="same"), BatchNorm(), Activation("relu"), MaxPool2D(2),
        Dropout(0.25), Flatten(), Dense(64), Activation("relu"),
        Dense(data.num_classes), Activation("softmax"),
    ],
    input_shape=data.input_shape,
)  # fmt: skip
model.fit(
    data.x_train, data.y_train, epochs=2 if small else 8, batch_size=32, lr=2e-3,
    validation_split=0.1, augment={"zoom": [0.9, 1.1], "rotation": 10.0, "shift": 0.1, "p": 0.5},
    out_dir=None, verbose=True,
)  # fmt: skip
res = model.evaluate(data.x_test, data.y_test)
print(f"test error {100 * res['error_rate']:.2f}% ({res['correct']}/{res['total']})")
