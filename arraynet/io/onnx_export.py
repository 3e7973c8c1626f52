"""ONNX export of a built Sequential model, and its check against onnxruntime.

The graph takes what the model takes (float32 NHWC images in [0, 1], batch axis "N") and
gives what it outputs (class probabilities when it ends in softmax). Convolutions, pooling
and batch norm run in ONNX's NCHW: one Transpose goes in before the first of them and one
comes back before Flatten, so the flattened order (and the dense weights) stay NHWC's.
Dropout is the identity at inference and is left out. Needs the `onnx` extra
(`uv sync --extra onnx`); the check also needs onnxruntime.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from arraynet.io.weights import atomic_write_bytes

OPSET = 17
IR_VERSION = 8  # the IR of opset 17 (onnx 1.12), so older runtimes read the file too
INPUT_NAME = "image"
TO_NCHW = (0, 3, 1, 2)
TO_NHWC = (0, 2, 3, 1)


class ExportError(ValueError):
    """A model that cannot be written as ONNX (or whose export does not check)."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise ExportError("ONNX export needs the onnx package: `uv sync --extra onnx`") from e
    return onnx


class _Graph:
    """Nodes and initializers of a graph being built, with unique tensor names."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, stem: str, value: np.ndarray) -> str:
        name = self.name(stem)
        arr = np.ascontiguousarray(value, dtype=np.float32)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, **attrs: Any) -> str:
        out = self.name(stem)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _host(backend: Any, arr: Any) -> np.ndarray:
    return np.asarray(backend.to_host(arr), dtype=np.float32)


def to_onnx(model: Any, doc: str = "") -> Any:
    """The ModelProto of a built `Sequential` (opset 17), checked by `onnx.checker`."""
    onnx = _onnx()
    helper = onnx.helper
    if model.backend is None:
        raise ExportError("the model is not built (build it or load weights first)")
    b = model.backend
    g = _Graph(onnx)
    x = INPUT_NAME
    rank = len(model.input_shape) + 1
    nchw = False  # True while the running tensor is (N, C, H, W) instead of NHWC

    def channels_first(t: str, why: str) -> str:
        if rank != 4:
            raise ExportError(f"{why} needs (height, width, channels) inputs")
        return t if nchw else g.node("Transpose", [t], "to_nchw", perm=list(TO_NCHW))

    for i, layer in enumerate(model.layers):
        kind = layer.config()["type"]
        label = f"layer {i} ({kind})"
        if kind == "conv2d":
            x, nchw = channels_first(x, label), True
            w = _host(b, layer.params["kernel"]).transpose(3, 2, 0, 1)  # (out, in, kh, kw)
            bias = _host(b, layer.params["bias"])
            pt, pb, pl, pr = (int(p) for p in layer.pad)
            x = g.node(
                "Conv",
                [x, g.const(f"conv{i}_w", w), g.const(f"conv{i}_b", bias)],
                f"conv{i}",
                kernel_shape=[layer.k, layer.k],
                strides=[layer.stride, layer.stride],
                pads=[pt, pl, pb, pr],
            )
        elif kind == "maxpool2d":
            x, nchw = channels_first(x, label), True
            x = g.node(
                "MaxPool", [x], f"pool{i}", kernel_shape=[layer.p] * 2, strides=[layer.p] * 2
            )
        elif kind == "batchnorm":
            if rank == 4:
                x, nchw = channels_first(x, label), True
            inputs = [x] + [
                g.const(f"bn{i}_{k}", _host(b, v))
                for k, v in (
                    ("gamma", layer.params["gamma"]),
                    ("beta", layer.params["beta"]),
                    ("mean", layer.buffers["running_mean"]),
                    ("var", layer.buffers["running_var"]),
                )
            ]
            x = g.node("BatchNormalization", inputs, f"bn{i}", epsilon=layer.eps)
        elif kind == "activation":
            op = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softmax": "Softmax"}
            if layer.fn not in op:
                raise ExportError(f"{label}: activation {layer.fn!r} has no ONNX export rule")
            # softmax is over the channels, axis 1 of NCHW (opset >= 13: one axis)
            attrs = {"axis": 1 if nchw else -1} if layer.fn == "softmax" else {}
            x = g.node(op[layer.fn], [x], layer.fn, **attrs)
        elif kind == "dropout":
            continue  # the identity at inference
        elif kind == "flatten":
            if nchw:  # flatten NHWC's order, as the model does
                x, nchw = g.node("Transpose", [x], "to_nhwc", perm=list(TO_NHWC)), False
            x, rank = g.node("Flatten", [x], "flatten", axis=1), 2
        elif kind == "dense":
            w, bias = _host(b, layer.params["kernel"]), _host(b, layer.params["bias"])
            x = g.node("Gemm", [x, g.const(f"fc{i}_w", w), g.const(f"fc{i}_b", bias)], f"fc{i}")
            rank = 2
        else:
            raise ExportError(f"{label}: no ONNX export rule for layer type {kind!r}")
        rank = 4 if kind in ("conv2d", "maxpool2d") else rank
    if nchw:
        x = g.node("Transpose", [x], "to_nhwc", perm=list(TO_NHWC))
    out_name = "probabilities" if model.fused_softmax else "output"
    g.nodes.append(helper.make_node("Identity", [x], [out_name], name=out_name))
    f32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes,
        "arraynet",
        [helper.make_tensor_value_info(INPUT_NAME, f32, ["N", *model.input_shape])],
        [helper.make_tensor_value_info(out_name, f32, ["N", *model.output_shape])],
        initializer=g.inits,
    )
    proto = helper.make_model(
        graph,
        producer_name="arraynet",
        doc_string=doc or "arraynet model: float32 NHWC images in [0, 1] -> model outputs",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    proto.ir_version = IR_VERSION
    helper.set_model_props(proto, {"arraynet_layout": json.dumps(model.config())})
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:  # a bug here, not the user's input
        raise ExportError(f"the exported graph does not validate: {_first_line(e)}") from None
    return proto


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def export_bytes(model: Any, doc: str = "") -> bytes:
    """The serialized ONNX file of a built model."""
    return to_onnx(model, doc).SerializeToString()


def export_onnx(model: Any, path: str | os.PathLike, doc: str = "") -> None:
    """Write a built model as an ONNX file (atomically: a temporary file, then renamed)."""
    atomic_write_bytes(path, export_bytes(model, doc))


def onnx_session(data: bytes | str | os.PathLike, threads: int = 1) -> Any:
    """An onnxruntime CPU session over an ONNX file's bytes or path."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ExportError("the ONNX check needs onnxruntime: `uv sync --extra onnx`") from e
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    src = data if isinstance(data, bytes) else os.fspath(data)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def onnx_outputs(session: Any, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The ONNX model's outputs for host float32 NHWC images, in batches."""
    name = session.get_inputs()[0].name
    parts = [
        session.run(None, {name: np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)})[0]
        for i in range(0, x.shape[0], batch_size)
    ]
    return np.concatenate(parts, axis=0)


def compare(model: Any, session: Any, x: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """arraynet's and onnxruntime's outputs on host images `x`: the largest difference, how
    many predicted classes differ, and (with `labels`) each one's test error."""
    b = model.backend
    ours = np.asarray(b.to_host(model.predict(b.from_host(x, b.dtype("float32")), 500)))
    theirs = onnx_outputs(session, x)
    if ours.shape != theirs.shape:
        raise ExportError(f"output shapes differ: arraynet {ours.shape}, onnx {theirs.shape}")
    p_ours, p_theirs = ours.argmax(axis=1), theirs.argmax(axis=1)
    res = {
        "images": int(x.shape[0]),
        "max_abs_diff": float(np.abs(ours.astype(np.float64) - theirs).max()),
        "class_mismatches": int((p_ours != p_theirs).sum()),
    }
    if labels is not None:
        n = labels.shape[0]
        res["arraynet_errors"] = int((p_ours != labels).sum())
        res["onnx_errors"] = int((p_theirs != labels).sum())
        res["arraynet_error_rate"] = res["arraynet_errors"] / n
        res["onnx_error_rate"] = res["onnx_errors"] / n
    return res
