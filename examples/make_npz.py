"""Write a small dataset as an .npz (x_train, y_train, x_test, y_test), to try `--data`:

    uv run python examples/make_npz.py my.npz                        # 1,000 + 500 MNIST images
    uv run python examples/make_npz.py my.npz --train 5000 --test 1000
    uv run arraynet train --model m9 --data my.npz --epochs 1 --out runs/npz

The images are the first N of MNIST's training and test sets, uint8 (N, 28, 28, 1), with
int64 labels: the format any dataset of your own takes (images (N, H, W) or (N, H, W, C),
uint8 or float; labels (N,) or one-hot (N, K)). MNIST is found as the CLI finds it
(ARRAYNET_DATA, else the `arraynet data fetch` cache).
"""

import argparse

import numpy as np

import arraynet as an

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out", help="the .npz file to write")
parser.add_argument("--train", type=int, default=1000, help="training images (default 1000)")
parser.add_argument("--test", type=int, default=500, help="test images (default 500)")
args = parser.parse_args()

data = an.datasets.load("mnist")
np.savez_compressed(
    args.out,
    x_train=data.x_train[: args.train], y_train=data.y_train[: args.train],
    x_test=data.x_test[: args.test], y_test=data.y_test[: args.test],
)  # fmt: skip
print(f"{args.out}: {min(args.train, len(data.y_train))} training and "
      f"{min(args.test, len(data.y_test))} test images, {data.input_shape}")  # fmt: skip
