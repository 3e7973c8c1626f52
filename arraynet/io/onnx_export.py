"""ONNX export of a built Sequential model, and its check against onnxruntime.

The graph takes what the model takes (float32 NHWC images in [0, 1], batch axis "N") and
gives what it outputs (class probabilities when it ends in softmax). Each layer class
carries its own rule, `onnx_nodes(g, x)`, which adds its nodes through a `GraphBuilder`;
a kind without one is a one-line ExportError. Convolutions, pooling and batch norm run in
ONNX's NCHW: one Transpose goes in before the first of them and one comes back before
Flatten, so the flattened order (and the dense weights) stay NHWC's. Dropout is the
identity at inference and is left out. Needs the `onnx` extra (`uv sync --extra onnx`);
the check also needs onnxruntime.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from arraynet.io.weights import atomic_write_bytes
from arraynet.layers import Layer

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


class GraphBuilder:
    """The graph being built: what a layer's ONNX rule (`Layer.onnx_nodes(g, x)`) gets.

    It does every `onnx` call, so layer files never import onnx (see the `OnnxGraph`
    protocol in `arraynet.layers.base`). Each name it hands out is unique. `rank` is the
    running tensor's rank (batch axis included); `nchw` is True while an image tensor is
    in ONNX's (N, C, H, W) order instead of NHWC.
    """

    def __init__(self, onnx: Any, backend: Any, rank: int) -> None:
        self.onnx = onnx
        self.backend = backend
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0
        self.rank = rank
        self.nchw = False
        self.index = -1  # the layer whose rule runs
        self.label = "the model"

    def name(self, stem: str) -> str:
        """A fresh tensor name."""
        self.count += 1
        return f"{stem}_{self.count}"

    def initializer(self, stem: str, value: Any) -> str:
        """Add a constant: a backend array (copied to the host) or a host one, stored as
        float32. Returns its name."""
        host = value if isinstance(value, np.ndarray) else self.backend.to_host(value)
        name = self.name(stem)
        arr = np.ascontiguousarray(host, dtype=np.float32)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: list[str], stem: str | None = None, **attrs: Any) -> str:
        """Add one `op` node with ONNX attributes `attrs`; returns its output's name."""
        out = self.name(stem or op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def channels_first(self, x: str) -> str:
        """`x` in NCHW (a Transpose unless it already is); only for image tensors."""
        if self.rank != 4:
            raise ExportError(f"{self.label} needs (height, width, channels) inputs")
        if not self.nchw:
            x, self.nchw = self.node("Transpose", [x], "to_nchw", perm=list(TO_NCHW)), True
        return x

    def channels_last(self, x: str) -> str:
        """`x` in NHWC again (a Transpose when it is NCHW)."""
        if self.nchw:
            x, self.nchw = self.node("Transpose", [x], "to_nhwc", perm=list(TO_NHWC)), False
        return x

    def error(self, why: str) -> ExportError:
        """The error to raise for the current layer (`raise g.error(...)`)."""
        return ExportError(f"{self.label}: {why}")

    def add_layer(self, index: int, layer: Layer, x: str) -> str:
        """Run layer `index`'s ONNX rule on tensor `x`; returns the rule's output."""
        self.index, self.label = index, f"layer {index} ({layer.kind})"
        if type(layer).onnx_nodes is Layer.onnx_nodes:
            raise ExportError(
                f"{self.label}: no ONNX export rule (layer kind {layer.kind!r} has no ONNX "
                "rule: give its class an onnx_nodes(g, x) method)"
            )
        x = layer.onnx_nodes(self, x)
        self.rank = len(layer.output_shape) + 1
        return x


def to_onnx(model: Any, doc: str = "") -> Any:
    """The ModelProto of a built `Sequential` (opset 17), checked by `onnx.checker`: each
    layer adds its own nodes (`Layer.onnx_nodes`) to one `GraphBuilder`."""
    onnx = _onnx()
    helper = onnx.helper
    if model.backend is None:
        raise ExportError("the model is not built (build it or load weights first)")
    g = GraphBuilder(onnx, model.backend, len(model.input_shape) + 1)
    x = INPUT_NAME
    for i, layer in enumerate(model.layers):
        x = g.add_layer(i, layer, x)
    x = g.channels_last(x)
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
