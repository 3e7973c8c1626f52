"""PyTorch twins of arraynet's zoo layouts, for speed comparisons (scripts only)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from arraynet.zoo import build_layout  # noqa: E402


def torch_model(name: str) -> Any:
    """The zoo layout `name` as a torch.nn.Sequential (NCHW input; same shapes and parameter
    counts; a final softmax is left to the loss, as arraynet's fused loss does)."""
    import torch
    import torch.nn as nn

    layers = []
    c = 1
    flat = False
    for cfg in build_layout(name).config()["layers"]:
        t = cfg["type"]
        if t == "conv2d":
            pad = cfg["kernel_size"] // 2 if cfg["padding"] == "same" else cfg["padding"]
            pad = 0 if pad == "valid" else pad
            layers.append(nn.Conv2d(c, cfg["filters"], cfg["kernel_size"], cfg["stride"], pad))
            c = cfg["filters"]
        elif t == "dense":
            layers.append(nn.LazyLinear(cfg["units"]))
        elif t == "activation":
            fn = cfg["fn"]
            if fn != "softmax":
                layers.append({"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid()}[fn])
        elif t == "maxpool2d":
            layers.append(nn.MaxPool2d(cfg["pool_size"]))
        elif t == "dropout":
            layers.append(nn.Dropout(cfg["rate"]))
        elif t == "flatten":
            layers.append(nn.Flatten())
            flat = True
        elif t == "batchnorm":
            layers.append(nn.LazyBatchNorm1d() if flat else nn.LazyBatchNorm2d())
    net = nn.Sequential(*layers)
    with torch.no_grad():
        net(torch.zeros(2, 1, 28, 28))  # materialise the lazy layers
    return net
