#!/usr/bin/env python3
"""Runs a graft-exported ONNX model with plain onnxruntime (no graft code) and prints predictions.

Proves that an exported model works outside graft: everything needed to prepare the inputs is read
from the model's own metadata (onnxruntime's get_modelmeta().custom_metadata_map):
  graft.labels      JSON list of class names, in output order (required)
  graft.preprocess  JSON object, required for --images:
                      size    int, the square input side
                      resize  "stretch" (straight to size x size) or "shorter_side_crop" (the
                              centred square of the image, resized to size x size: the same as
                              shorter side to size, then a centred crop)
                      mean    [3], std [3]: x = (pixel - mean) / std per RGB channel, with pixel
                              values on the 0..255 scale (EfficientNet-Lite0: mean 127, std 128)
                      layout  "NCHW" or "NHWC"
                      dtype   "f32" (normalised float32) or "u8" (raw uint8 pixels, no
                              normalisation; mean/std are then ignored)
Images: Pillow open -> EXIF orientation (ImageOps.exif_transpose) -> RGB -> resize (BILINEAR) as
above. Texts: the tokenizer.json given with --tokenizer, padding turned off, truncated at
--max-length (128, or `max_length` from graft.text when present); each text is run ALONE, unpadded
(a batch of one; an empty text is one padding token with attention 0), as a deployment feeds a single
sentence; inputs input_ids and attention_mask (and token_type_ids when the model has it), int64.

The output read is `probabilities` (or the model's only output): it must be [N, len(labels)],
finite, with rows summing to 1.

Usage:
  check_onnx_python.py --model M.onnx --images DIR_OR_FILE [...]
  check_onnx_python.py --model M.onnx --texts "a" "b" --tokenizer tokenizer.json
  check_onnx_python.py --model M.onnx --texts-csv data.csv [--text-column text] --tokenizer tokenizer.json
Prints one JSON line per input, in input order (folders: sorted paths, recursively):
  {"id": path | 1-based text number, "label": best label, "probabilities": {label: p}}
Exits non-zero (2) with a message on stderr on any problem.

With --compare-graft GRAFT (texts only), the same texts also go through `GRAFT predict --json
--device cpu` (batched and padded as graft pads them); the labels must agree on every text. A
summary goes to stderr ("labels agree with graft predict on N/N texts; max |dp| ..."); exits 1 when
any label differs.

Needs: python3 -m pip install onnxruntime==1.32.0 pillow tokenizers numpy
(checked on Python 3.11.7 with onnxruntime 1.32.0, pillow 13.0.0, tokenizers 0.23.3, numpy 2.4.6).
"""

import argparse
import json
import sys
from pathlib import Path

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
BATCH = 32
OUTPUT = "probabilities"


class CheckError(Exception):
    pass


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="exported ONNX model")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", nargs="+", metavar="DIR_OR_FILE", help="image files or folders")
    what.add_argument("--texts", nargs="+", metavar="TEXT", help="texts to classify")
    what.add_argument("--texts-csv", metavar="CSV", help="a CSV whose --text-column holds the texts")
    p.add_argument("--text-column", default="text", help="the text column of --texts-csv (default: text)")
    p.add_argument("--tokenizer", help="tokenizer.json (required with texts)")
    p.add_argument("--compare-graft", metavar="GRAFT",
                   help="graft binary: compare labels with `graft predict` on the same texts")
    p.add_argument("--max-length", type=int, default=None,
                   help="text truncation (default: graft.preprocess max_length, else 128)")
    args = p.parse_args()
    if args.images is None and not args.tokenizer:
        p.error("texts need --tokenizer tokenizer.json")
    if args.images is not None and args.compare_graft:
        p.error("--compare-graft compares texts only")
    return args


def read_csv_texts(path, column):
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if column not in (reader.fieldnames or []):
                raise CheckError(f"{path}: no column {column!r} (columns: {reader.fieldnames})")
            return [row[column] for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CheckError(f"{path}: cannot read CSV: {e}") from e


# -------------------------------------------------------------- metadata ----
def read_meta(sess):
    meta = sess.get_modelmeta().custom_metadata_map
    if "graft.labels" not in meta:
        raise CheckError("model metadata has no graft.labels")
    try:
        labels = json.loads(meta["graft.labels"])
    except json.JSONDecodeError as e:
        raise CheckError(f"graft.labels is not JSON: {e}") from e
    if not isinstance(labels, list) or not labels or not all(isinstance(l, str) for l in labels):
        raise CheckError(f"graft.labels must be a non-empty JSON list of strings, got {labels!r}")
    pre = None
    if "graft.preprocess" in meta:
        try:
            pre = json.loads(meta["graft.preprocess"])
        except json.JSONDecodeError as e:
            raise CheckError(f"graft.preprocess is not JSON: {e}") from e
        if not isinstance(pre, dict):
            raise CheckError(f"graft.preprocess must be a JSON object, got {pre!r}")
    return labels, pre


def image_spec(pre):
    if pre is None:
        raise CheckError("model metadata has no graft.preprocess (needed for images)")
    spec = {}
    size = pre.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise CheckError(f"graft.preprocess.size must be a positive int, got {size!r}")
    spec["size"] = size
    resize = pre.get("resize")
    if resize not in ("stretch", "shorter_side_crop"):
        raise CheckError(f"graft.preprocess.resize must be stretch or shorter_side_crop, got {resize!r}")
    spec["resize"] = resize
    layout = pre.get("layout")
    if layout not in ("NCHW", "NHWC"):
        raise CheckError(f"graft.preprocess.layout must be NCHW or NHWC, got {layout!r}")
    spec["layout"] = layout
    dtype = pre.get("dtype")
    if dtype not in ("f32", "u8"):
        raise CheckError(f"graft.preprocess.dtype must be f32 or u8, got {dtype!r}")
    spec["dtype"] = dtype
    if dtype == "f32":
        for key in ("mean", "std"):
            v = pre.get(key)
            if (not isinstance(v, list) or len(v) != 3
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
                raise CheckError(f"graft.preprocess.{key} must be a list of 3 numbers, got {v!r}")
            spec[key] = [float(x) for x in v]
        if any(s == 0 for s in spec["std"]):
            raise CheckError(f"graft.preprocess.std has a zero: {spec['std']}")
    return spec


# ---------------------------------------------------------------- images ----
def list_images(items):
    paths = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise CheckError(f"{p}: no images found")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise CheckError(f"{p}: no such file or folder")
    return paths


def load_image(path, spec):
    import numpy as np
    from PIL import Image, ImageOps

    size = spec["size"]
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
            if spec["resize"] == "stretch":
                im = im.resize((size, size), Image.BILINEAR)
            else:
                # The centred square of side min(w, h), resized to size x size in one step (what
                # graft's resizer does with fit_into_destination at (0.5, 0.5)).
                w, h = im.size
                side = min(w, h)
                left, top = (w - side) / 2, (h - side) / 2
                im = im.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
            x = np.asarray(im, dtype=np.uint8)  # HWC
    except (OSError, ValueError) as e:
        raise CheckError(f"{path}: cannot read image: {e}") from e
    if spec["dtype"] == "f32":
        mean = np.asarray(spec["mean"], dtype=np.float32)
        std = np.asarray(spec["std"], dtype=np.float32)
        x = (x.astype(np.float32) - mean) / std
    if spec["layout"] == "NCHW":
        x = x.transpose(2, 0, 1)
    return x


def predict_images(sess, items, pre):
    import numpy as np

    spec = image_spec(pre)
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise CheckError(f"an image model must have one input, found {[i.name for i in inputs]}")
    want = "tensor(float)" if spec["dtype"] == "f32" else "tensor(uint8)"
    if inputs[0].type != want:
        raise CheckError(f"input {inputs[0].name} is {inputs[0].type}, graft.preprocess.dtype "
                         f"{spec['dtype']} needs {want}")
    paths = list_images(items)
    for start in range(0, len(paths), BATCH):
        chunk = paths[start:start + BATCH]
        x = np.ascontiguousarray(np.stack([load_image(p, spec) for p in chunk]))
        yield [str(p) for p in chunk], run(sess, {inputs[0].name: x})


# ----------------------------------------------------------------- texts ----
def predict_texts(sess, texts, tokenizer_path, max_length):
    """Each text alone: a batch of one, unpadded."""
    import numpy as np
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(tokenizer_path))
    except Exception as e:  # noqa: BLE001 - any load failure is a problem
        raise CheckError(f"{tokenizer_path}: cannot load tokenizer: {e}") from e
    tok.no_padding()
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_truncation(max_length=max_length)

    names = [i.name for i in sess.get_inputs()]
    for need in ("input_ids", "attention_mask"):
        if need not in names:
            raise CheckError(f"a text model needs input {need}, model has {names}")
    extra = [n for n in names if n not in ("input_ids", "attention_mask", "token_type_ids")]
    if extra:
        raise CheckError(f"unexpected model inputs {extra}")
    for i, text in enumerate(texts):
        e = tok.encode(text)
        ids, mask, types = e.ids, e.attention_mask, e.type_ids
        if not ids:
            # An empty text: one padding token that nothing attends to (what graft feeds).
            ids, mask, types = [pad_id if pad_id is not None else 0], [0], [0]
        feed = {
            "input_ids": np.array([ids], dtype=np.int64),
            "attention_mask": np.array([mask], dtype=np.int64),
        }
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.array([types], dtype=np.int64)
        yield [str(i + 1)], run(sess, feed)


def graft_predictions(graft, model, texts, csv_path, column):
    """Labels and probabilities from `graft predict --json` on the same texts, in order."""
    import subprocess

    cmd = [graft, "predict", model, "--json", "--device", "cpu"]
    if csv_path is not None:
        cmd += [csv_path, "--text-column", column]
    else:
        for t in texts:
            cmd += ["--text", t]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise CheckError(f"cannot run {graft}: {e}") from e
    if out.returncode != 0:
        raise CheckError(f"graft predict failed ({out.returncode}): {out.stderr.strip()}")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    if len(rows) != len(texts):
        raise CheckError(f"graft predict gave {len(rows)} predictions for {len(texts)} texts")
    return rows


# ------------------------------------------------------------------ main ----
def run(sess, feed):
    outs = [o.name for o in sess.get_outputs()]
    if OUTPUT in outs:
        name = OUTPUT
    elif len(outs) == 1:
        name = outs[0]
    else:
        raise CheckError(f"model has no output {OUTPUT!r} (outputs: {outs})")
    try:
        return sess.run([name], feed)[0]
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several types
        raise CheckError(f"onnxruntime failed: {e}") from e


def check_probs(p, n, labels):
    import numpy as np

    if p.ndim != 2 or p.shape != (n, len(labels)):
        raise CheckError(f"output shape {list(p.shape)}, expected [{n}, {len(labels)}] "
                         f"({len(labels)} labels)")
    if not np.isfinite(p).all():
        raise CheckError("output has non-finite values")
    sums = p.astype(np.float64).sum(axis=1)
    if (p < -1e-6).any() or (np.abs(sums - 1.0) > 1e-3).any():
        raise CheckError(f"output rows are not probabilities (row sums {sums.min():.6f}..{sums.max():.6f})")


def main():
    args = parse_args()
    import onnxruntime as ort

    try:
        try:
            so = ort.SessionOptions()
            so.log_severity_level = 3  # errors only: keep stderr for real problems
            sess = ort.InferenceSession(args.model, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            raise CheckError(f"{args.model}: onnxruntime cannot load the model: {e}") from e
        labels, pre = read_meta(sess)
        texts = None
        if args.images is not None:
            batches = predict_images(sess, args.images, pre)
        else:
            meta = sess.get_modelmeta().custom_metadata_map
            try:
                text = json.loads(meta.get("graft.text", "{}"))
            except ValueError as e:
                raise CheckError(f"graft.text is not JSON: {e}") from e
            max_length = args.max_length
            if max_length is None:
                max_length = text.get("max_length", (pre or {}).get("max_length", 128))
            if not isinstance(max_length, int) or max_length < 1:
                raise CheckError(f"bad max length {max_length!r}")
            texts = args.texts if args.texts is not None else read_csv_texts(args.texts_csv, args.text_column)
            batches = predict_texts(sess, texts, args.tokenizer, max_length)
        results = []
        for ids, probs in batches:
            check_probs(probs, len(ids), labels)
            for i, row in zip(ids, probs):
                result = {
                    "id": i,
                    "label": labels[int(row.argmax())],
                    "probabilities": {l: float(v) for l, v in zip(labels, row)},
                }
                results.append(result)
                print(json.dumps(result, ensure_ascii=False), flush=True)
        if args.compare_graft:
            theirs = graft_predictions(args.compare_graft, args.model, texts, args.texts_csv, args.text_column)
            differ = [k for k, (a, b) in enumerate(zip(results, theirs)) if a["label"] != b["label"]]
            dp = max((abs(a["probabilities"][l] - b["probabilities"][l])
                      for a, b in zip(results, theirs) for l in labels), default=0.0)
            print(f"labels agree with graft predict on {len(texts) - len(differ)}/{len(texts)} texts "
                  f"({100.0 * (len(texts) - len(differ)) / max(len(texts), 1):.2f}%); max |dp| {dp:.2e}",
                  file=sys.stderr)
            for k in differ[:10]:
                print(f"  text {k + 1}: onnxruntime alone {results[k]['label']}, graft predict "
                      f"{theirs[k]['label']} ({theirs[k]['id']})", file=sys.stderr)
            if differ:
                sys.exit(1)
    except CheckError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
