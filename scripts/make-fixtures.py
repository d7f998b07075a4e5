#!/usr/bin/env python3
"""Writes the tiny ONNX fixtures under tests/fixtures/ that the backend conformance tests run on
both engines. Independent of graft's own ONNX writer on purpose (uses the `onnx` package).

    python3 -m pip install onnx==1.23.2 numpy && python3 scripts/make-fixtures.py

Deterministic: the same files every run (fixed seed)."""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
rng = np.random.default_rng(0)


def init(name, shape, scale=0.5):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def save(model, name):
    model.producer_name = "graft/scripts/make-fixtures.py"
    onnx.checker.check_model(model)
    path = os.path.join(OUT, name)
    onnx.save(model, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def tiny_cnn():
    """image [N,3,8,8] -> Conv 3x3 (4) -> Relu -> GlobalAveragePool -> Flatten -> Gemm (3) -> Softmax:
    a miniature pretrained classifier, with a classifier to cut off."""
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["features"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["features", "fc_w", "fc_b"], ["logits"], transB=1, name="classifier"),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1, name="softmax"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        [init("conv_w", (4, 3, 3, 3)), init("conv_b", (4,)), init("fc_w", (3, 4)), init("fc_b", (3,))],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    helper.set_model_props(m, {"fixture": "tiny_cnn"})
    save(m, "tiny_cnn.onnx")


def tiny_text():
    """input_ids i64 [N,S] -> Gather (embedding 10x4) -> ReduceMean over S -> MatMul (4x2) + Add:
    integer inputs and a MatMul classifier."""
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["embedded"], axis=0, name="embedding"),
        helper.make_node("ReduceMean", ["embedded"], ["pooled"], axes=[1], keepdims=0, name="pool"),
        helper.make_node("MatMul", ["pooled", "w"], ["mm"], name="classifier"),
        helper.make_node("Add", ["mm", "b"], ["logits"], name="bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", "S"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [init("emb", (10, 4)), init("w", (4, 2)), init("b", (2,))],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    save(m, "tiny_text.onnx")


def tiny_cam():
    """A miniature fine-tuned graft image model, for Grad-CAM against finite differences:
    image [N,3,8,8] -> Conv 3x3 (4) -> Relu -> Conv 1x1 (6) -> Relu (`features`, the last spatial map)
    -> GlobalAveragePool -> Flatten -> Gemm (5) -> Relu -> Gemm (3) -> Softmax (`probabilities`).
    The head after the pooling is not linear, so d score / d features depends on the features.
    Carries graft's image metadata (labels, preprocessing), so `graft explain` takes it."""
    nodes = [
        helper.make_node("Conv", ["image", "conv1_w", "conv1_b"], ["conv1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("Conv", ["relu1", "conv2_w", "conv2_b"], ["conv2"], name="conv2"),
        helper.make_node("Relu", ["conv2"], ["features"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["features"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["pooled"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["pooled", "fc1_w", "fc1_b"], ["hidden"], transB=1, name="fc1"),
        helper.make_node("Relu", ["hidden"], ["hidden_relu"], name="relu3"),
        helper.make_node("Gemm", ["hidden_relu", "fc2_w", "fc2_b"], ["logits"], transB=1, name="fc2"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1, name="softmax"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cam",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])],
        [
            init("conv1_w", (4, 3, 3, 3)),
            init("conv1_b", (4,), 0.1),
            init("conv2_w", (6, 4, 1, 1)),
            init("conv2_b", (6,), 0.1),
            init("fc1_w", (5, 6), 1.0),
            init("fc1_b", (5,), 0.1),
            init("fc2_w", (3, 5), 1.0),
            init("fc2_b", (3,), 0.1),
        ],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    pre = {"size": 8, "resize": "stretch", "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0],
           "layout": "NCHW", "dtype": "f32"}
    helper.set_model_props(m, {
        "graft.version": "fixture",
        "graft.task": "image",
        "graft.labels": json.dumps(["ant", "bee", "cat"]),
        "graft.preprocess": json.dumps(pre),
    })
    save(m, "tiny_cam.onnx")


def gap_224():
    """input [N,3,224,224] -> GlobalAveragePool -> Flatten -> features [N,3]: a backbone that costs
    nothing, so that `graft embed` on it measures preprocessing alone (scripts/bench-embed.sh)."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["features"], axis=1, name="flatten"),
    ]
    graph = helper.make_graph(
        nodes,
        "gap_224",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3])],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    helper.set_model_props(m, {"fixture": "gap_224"})
    save(m, "gap_224.onnx")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    tiny_cnn()
    tiny_text()
    tiny_cam()
    gap_224()
