"""Writes the JPEG fixtures of src/preprocess/jpeg/tests.rs into tests/fixtures/jpeg.

Run with a Python that has Pillow (scripts/bench-lib.sh makes .venv-bench):
    .venv-bench/bin/python scripts/make-jpeg-fixtures.py
Pillow writes the sampling, restart, quantisation and colour-space variants from one shared
photo; a few small files come from jpeg-decoder's reference images (MIT/Apache-2.0) when a git
mirror of image-rs/jpeg-decoder is at $JD_REPO. Each baseline file gets libjpeg-turbo's 1/8-scale
decode (Pillow draft) beside it as a binary PPM, the reference the tests compare against.
"""
import os
import subprocess
import sys

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "jpeg")
SRC = os.path.join(ROOT, "..", "shared", "data", "cats-vs-dogs", "train", "cat", "cat.1.jpg")
JD_REPO = os.environ.get("JD_REPO", "/work/.mirror/image-rs+jpeg-decoder/repo")
JD_FILES = ["16bit-qtables.jpg", "extraneous-data.jpg", "grayscale_16x24_sampling2x2.jpg", "restarts.jpg",
            "mozilla/jpg-cmyk-1.jpg", "mozilla/jpg-size-1x1.jpg", "mozilla/jpg-size-15x15.jpg",
            "mozilla/jpg-size-33x33.jpg", "mozilla/jpg-progressive.jpg"]


def main():
    os.makedirs(OUT, exist_ok=True)
    base = Image.open(SRC).convert("RGB")
    for w, h in [(301, 203), (17, 9), (64, 48)]:
        im = base.resize((w, h), Image.BICUBIC)
        for name, sub in [("444", 0), ("422", 1), ("420", 2)]:
            im.save(f"{OUT}/c{name}_{w}x{h}.jpg", quality=90, subsampling=sub)
        im.convert("L").save(f"{OUT}/gray_{w}x{h}.jpg", quality=90)
    im = base.resize((301, 203), Image.BICUBIC)
    im.save(f"{OUT}/rst_blocks_420.jpg", quality=85, subsampling=2, restart_marker_blocks=3)
    im.save(f"{OUT}/rst_rows_444.jpg", quality=85, subsampling=0, restart_marker_rows=1)
    im.convert("L").save(f"{OUT}/rst_gray.jpg", quality=85, restart_marker_blocks=5)
    im.save(f"{OUT}/q100_420.jpg", quality=100, subsampling=2)
    im.save(f"{OUT}/q16bit.jpg", qtables=[[300] + [400] * 63, [350] + [500] * 63], subsampling=2)
    im.save(f"{OUT}/optimized_420.jpg", quality=75, subsampling=2, optimize=True)
    im.save(f"{OUT}/progressive.jpg", quality=90, progressive=True)
    small = base.resize((64, 48), Image.BICUBIC)
    small.save(f"{OUT}/rgb_space.jpg", quality=90, keep_rgb=True)
    small.convert("CMYK").save(f"{OUT}/cmyk.jpg", quality=90)
    if os.path.isdir(JD_REPO):
        for rel in JD_FILES:
            data = subprocess.run(["git", "-C", JD_REPO, "show", f"HEAD:tests/reftest/images/{rel}"],
                                  capture_output=True, check=True).stdout
            with open(f"{OUT}/jd_{os.path.basename(rel)}", "wb") as f:
                f.write(data)
    else:
        print(f"{JD_REPO} not found: jpeg-decoder's reference images not copied", file=sys.stderr)
    for name in sorted(os.listdir(OUT)):
        if not name.endswith(".jpg"):
            continue
        im = Image.open(f"{OUT}/{name}")
        if im.mode not in ("RGB", "L") or im.info.get("progressive"):
            continue
        im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
        im.convert("RGB").save(f"{OUT}/{name[:-4]}.draft.ppm")


if __name__ == "__main__":
    sys.exit(main())
