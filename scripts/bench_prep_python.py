#!/usr/bin/env python3
"""Preprocessing alone with Pillow: the Python peer of `graft embed` on the GlobalAveragePool
fixture (tests/fixtures/gap_224.onnx), for scripts/bench-embed.sh.

Every image under --data (sorted): Pillow open -> [draft("RGB", (224, 224)) with --draft] ->
ImageOps.exif_transpose -> convert("RGB") -> resize 224x224 BILINEAR -> (x - 127) / 128 -> NCHW
float32, in batches of --batch, each batch through the fixture on onnxruntime with one thread (the
model costs next to nothing). One process, one thread: the caller measures its CPU seconds.

--draft lets libjpeg-turbo decode JPEGs at a reduced DCT scale (1/2, 1/4, 1/8) that still covers
224x224, as graft does for large JPEGs.

Prints one JSON line: {"images": n, "seconds": s, "cpu_seconds": c, "draft": bool, ...}; cpu_seconds
is this process's user + system time over the timed span (listing, decoding, inference).
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed_python import list_images  # noqa: E402

SIZE = 224


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load(path, draft):
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if draft:
            im.draft("RGB", (SIZE, SIZE))
        im = ImageOps.exif_transpose(im)
        im = im.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
        x = np.asarray(im, dtype=np.float32)
    return ((x - 127.0) / 128.0).transpose(2, 0, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="tests/fixtures/gap_224.onnx")
    p.add_argument("--data", required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--draft", action="store_true")
    args = p.parse_args()

    import onnxruntime as ort
    import PIL

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.model, sess_options=so, providers=["CPUExecutionProvider"])
    c0, t0 = cpu(), time.perf_counter()
    paths, _, _ = list_images(args.data, None)
    rows = 0
    for start in range(0, len(paths), args.batch):
        x = np.stack([load(p, args.draft) for p in paths[start:start + args.batch]])
        rows += len(sess.run(None, {"input": x})[0])
    seconds, cpu_seconds = time.perf_counter() - t0, cpu() - c0
    if rows != len(paths):
        sys.exit(f"error: {rows} rows for {len(paths)} images")
    print(json.dumps({
        "images": len(paths),
        "seconds": round(seconds, 4),
        "cpu_seconds": round(cpu_seconds, 4),
        "draft": args.draft,
        "pillow": PIL.__version__,
        "onnxruntime": ort.__version__,
    }), flush=True)


if __name__ == "__main__":
    main()
