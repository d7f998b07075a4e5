#!/usr/bin/env python3
"""Python peer of `graft embed` for images: onnxruntime + Pillow, the plain way.

For every image under DATA (recursively, sorted paths; subfolders are the classes):
  Pillow open -> ImageOps.exif_transpose -> convert("RGB") -> resize to 224x224 (BILINEAR)
  -> (x - 127) / 128 -> NCHW float32, in batches of --batch (32),
then the cut backbone runs on onnxruntime (CPUExecutionProvider, default threads) and the
features of every batch are collected. Decoding and inference alternate in one thread: this is
the pipeline a Python user writes without extra effort, and what graft's embed is compared with.

Timing: ``seconds`` covers listing the folder, decoding, preprocessing, inference and collecting
the features (the same span as graft's "embedded N items in S s" line); creating the ORT
session is reported apart as ``session_seconds``.

--raw measures the raw ORT ceiling instead: one batch of --batch images is decoded once, then
the backbone runs on that pre-made tensor until as many images as the folder (or --limit) holds
have gone through (the last batch cut to the remainder); one warm-up run is not timed.

Prints exactly one JSON line to stdout:
  default  {"images": n, "seconds": s, "images_per_s": r, ...}
  --raw    {"raw_images_per_s": r, "images": n, "seconds": s, ...}

Usage:
  bench_embed_python.py --model backbone.onnx [--data DIR] [--limit N] [--batch 32] [--raw]
                        [--output NAME] [--save-features F.safetensors]
--output picks a graph output by name (default: the model's first output), e.g. "logits" to run
the full EfficientNet-Lite0 classifier for a quick check. --save-features writes the features
(``features`` f32 [N, D]) and class indices (``labels`` f32 [N]) like graft embed does
(needs the ``safetensors`` package).
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT / ".." / "shared" / "data" / "cats-vs-dogs" / "train"

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SIZE = 224


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="ONNX backbone (input `input` f32 [N,3,224,224])")
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="image folder, subfolders = classes (default: ../shared/data/cats-vs-dogs/train)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--limit", type=int, default=None, help="use only the first N images (sorted)")
    p.add_argument("--raw", action="store_true", help="measure the raw ORT ceiling on pre-made tensors")
    p.add_argument("--output", default=None, help="output name to fetch (default: first output)")
    p.add_argument("--threads", type=int, default=0,
                   help="ORT intra-op threads (default 0 = onnxruntime's default)")
    p.add_argument("--save-features", default=None, metavar="F.safetensors",
                   help="also write features/labels as safetensors (not in the timed span)")
    args = p.parse_args()
    if args.batch < 1:
        p.error("--batch must be >= 1")
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    return args


def list_images(root, limit):
    """Sorted image paths under root and their class index (first-level subfolder, sorted)."""
    root = Path(root)
    if not root.is_dir():
        sys.exit(f"error: {root}: not a folder")
    paths = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS
    )
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        sys.exit(f"error: {root}: no images found")
    classes = sorted({p.relative_to(root).parts[0] for p in paths if len(p.relative_to(root).parts) > 1})
    index = {c: i for i, c in enumerate(classes)}
    labels = [index.get(p.relative_to(root).parts[0], -1) if len(p.relative_to(root).parts) > 1 else -1
              for p in paths]
    return paths, labels, classes


def load_image(path):
    """One image as f32 [3, 224, 224], (x - 127) / 128."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        im = im.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
        x = np.asarray(im, dtype=np.float32)
    x = (x - 127.0) / 128.0
    return x.transpose(2, 0, 1)


def make_session(model, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads > 0:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def main():
    args = parse_args()
    import onnxruntime as ort
    import PIL

    t0 = time.perf_counter()
    sess = make_session(args.model, args.threads)
    session_seconds = time.perf_counter() - t0
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        sys.exit(f"error: {args.model}: expected one input, found {[i.name for i in inputs]}")
    in_name = inputs[0].name
    out_names = [o.name for o in sess.get_outputs()]
    out_name = args.output or out_names[0]
    if out_name not in out_names:
        sys.exit(f"error: {args.model}: no output {out_name!r} (outputs: {out_names})")

    common = {
        "batch": args.batch,
        "model": str(args.model),
        "output": out_name,
        "session_seconds": round(session_seconds, 4),
        "onnxruntime": ort.__version__,
        "pillow": PIL.__version__,
        "threads": args.threads or "default",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }

    if args.raw:
        paths, _, _ = list_images(args.data, args.limit)
        n = len(paths)
        x = np.stack([load_image(p) for p in paths[: args.batch]])
        # Pad up to a full batch by repeating (folders smaller than one batch).
        if len(x) < args.batch:
            x = np.concatenate([x] * (args.batch // len(x) + 1))[: args.batch]
        x = np.ascontiguousarray(x)
        sess.run([out_name], {in_name: x})  # warm-up, not timed
        done = 0
        t0 = time.perf_counter()
        while done < n:
            b = min(args.batch, n - done)
            y = sess.run([out_name], {in_name: x[:b]})[0]
            done += len(y)
        seconds = time.perf_counter() - t0
        print(json.dumps({
            "raw_images_per_s": round(n / seconds, 3),
            "images": n,
            "seconds": round(seconds, 4),
            **common,
        }), flush=True)
        return

    t0 = time.perf_counter()
    paths, labels, classes = list_images(args.data, args.limit)
    feats = []
    for start in range(0, len(paths), args.batch):
        batch = np.stack([load_image(p) for p in paths[start:start + args.batch]])
        feats.append(sess.run([out_name], {in_name: batch})[0])
    features = np.concatenate(feats)
    seconds = time.perf_counter() - t0
    n = len(paths)
    if features.shape[0] != n:
        sys.exit(f"error: got {features.shape[0]} feature rows for {n} images")
    if not np.isfinite(features).all():
        sys.exit("error: non-finite features")

    if args.save_features:
        from safetensors.numpy import save_file

        save_file({
            "features": np.ascontiguousarray(features.reshape(n, -1), dtype=np.float32),
            "labels": np.asarray(labels, dtype=np.float32),
        }, args.save_features)

    print(json.dumps({
        "images": n,
        "seconds": round(seconds, 4),
        "images_per_s": round(n / seconds, 3),
        "feature_shape": list(features.shape),
        "classes": classes,
        **common,
    }), flush=True)


if __name__ == "__main__":
    main()
