#!/usr/bin/env python3
"""Classic CAM of a graft-exported image model, computed with onnx + onnxruntime + numpy and no
graft code: the independent reference for `graft explain --json` (Grad-CAM equals CAM for a frozen
backbone with a linear head after global average pooling).

  1. The feature map A is the input of the model's last GlobalAveragePool; it is added to the
     graph's outputs (onnx) and read with onnxruntime (CPU), beside `probabilities`.
  2. The head is the Gemm after that pooling (only Flatten / Reshape / Dropout / Identity in
     between, else this script refuses): its weight initializer W [C, K] (transposed when transB).
  3. map = relu(sum_c W[c, k] A[c]) / max, k = the most probable class (or --class).

Images are read as graft.preprocess says (Pillow: EXIF orientation, RGB, BILINEAR resize when the
size differs, then (x - mean) / std); give images already at the model's size to compare maps
exactly (resizers differ).

Usage: cam_python.py --model M.onnx --images A.png B.png [--class NAME]
Prints one JSON line per image: {"image", "class", "probability", "map": [[...]]}.
Needs: onnx==1.23.2 onnxruntime==1.32.0 pillow numpy (.venv-test, scripts/setup-test.sh)."""

import argparse
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageOps

PASS_THROUGH = {"Flatten", "Reshape", "Dropout", "Identity"}


def fail(msg):
    print(f"cam_python: {msg}", file=sys.stderr)
    sys.exit(2)


def head(model):
    """(feature map name, head weights [C, K]) of a GlobalAveragePool -> ... -> Gemm model."""
    g = model.graph
    pools = [n for n in g.node if n.op_type == "GlobalAveragePool"]
    if not pools:
        fail("no GlobalAveragePool")
    pool = pools[-1]
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    x = pool.output[0]
    while True:
        nexts = consumers.get(x, [])
        if len(nexts) != 1:
            fail(f"`{x}` feeds {len(nexts)} nodes, expected one")
        n = nexts[0]
        if n.op_type == "Gemm":
            break
        if n.op_type not in PASS_THROUGH:
            fail(f"{n.op_type} between the pooling and the head: not a linear head")
        x = n.output[0]
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    if attrs.get("transA", 0) != 0 or n.input[0] != x:
        fail("the head Gemm must take the pooled features as its first, untransposed input")
    w = inits[n.input[1]].astype(np.float64) * attrs.get("alpha", 1.0)
    return pool.input[0], (w.T if attrs.get("transB", 0) else w)


def load(path, pre):
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    size = pre["size"]
    if img.size != (size, size):
        if pre["resize"] == "shorter_side_crop":
            w, h = img.size
            s = min(w, h)
            img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        img = img.resize((size, size), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32)
    x = (x - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
    return x.transpose(2, 0, 1) if pre["layout"] == "NCHW" else x


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--class", dest="cls")
    a = p.parse_args()
    model = onnx.load(a.model)
    meta = {m.key: m.value for m in model.metadata_props}
    labels = json.loads(meta["graft.labels"])
    pre = json.loads(meta["graft.preprocess"])
    if pre["dtype"] != "f32":
        fail("a model with float input is expected")
    feature, w = head(model)
    model.graph.output.append(helper.make_tensor_value_info(feature, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.stack([load(i, pre) for i in a.images])
    probs, fmap = sess.run(["probabilities", feature], {"image": x})
    for path, pr, A in zip(a.images, probs, fmap):
        k = labels.index(a.cls) if a.cls else int(np.argmax(pr))
        cam = np.tensordot(w[:, k], A.astype(np.float64), axes=(0, 0))
        cam = np.maximum(cam, 0.0)
        if cam.max() > 0:
            cam = cam / cam.max()
        print(json.dumps({"image": path, "class": labels[k], "probability": float(pr[k]), "map": cam.tolist()}))


if __name__ == "__main__":
    main()
