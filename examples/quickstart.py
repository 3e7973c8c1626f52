"""Quickstart: a small CNN on MNIST from Python (1-2 minutes on 2 CPU cores).

uv run python examples/quickstart.py            # 10,000 training images, 2 epochs
uv run python examples/quickstart.py --small    # 500 (1,000 test images), for the tests
"""

import sys

import arraynet as an
from arraynet.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPool2D

small = "--small" in sys.argv
data = an.datasets.load("mnist")  # uint8 (N, 28, 28, 1) images, int64 labels
n, n_test = (500, 1000) if small else (10_000, 10_000)
x, y = data.x_train[:n], data.y_train[:n]
x_test, y_test = data.x_test[:n_test], data.y_test[:n_test]

model = an.Sequential(
    [
        Conv2D(16, 5, padding="same"), Activation("relu"), MaxPool2D(2),
        Conv2D(32, 5, padding="same"), Activation("relu"), MaxPool2D(2), Dropout(0.2),
        Flatten(), Dense(data.num_classes), Activation("softmax"),
    ],
    input_shape=data.input_shape,
)  # fmt: skip

history = model.fit(x, y, epochs=2, batch_size=32, lr=1e-3, validation_split=0.1, verbose=True)
result = model.evaluate(x_test, y_test)
print(f"test error {100 * result['error_rate']:.2f}% ({result['correct']}/{result['total']})")

model.save("quickstart.safetensors")  # safetensors + JSON: layers, metadata
again = an.load_model("quickstart.safetensors")
probs = again.predict(x_test[:5])  # class probabilities, (5, 10)
print("first five predictions:", probs.argmax(axis=1).tolist(), "labels:", y_test[:5].tolist())
