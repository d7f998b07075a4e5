#!/usr/bin/env bash
# setup-test.sh — everything the test suite needs beyond cargo, idempotent and offline after the
# first run:
#   - the ONNX Runtime shared library (scripts/setup-ort.sh: pinned PyPI wheel, sha256-checked, .ort/cpu);
#   - .venv-test, a Python venv with onnxruntime, pillow, tokenizers, numpy and onnx (to add an inner
#     tensor as an output: the explain test), for the tests that run
#     graft's exported models in a plain Python ONNX Runtime session with no graft code, and
#     tensorboard, whose own reader checks graft's event files;
#   - Debian's chromium (headless, renders report.html), when apt-get can install it; the test that
#     needs it skips with a message otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup-ort.sh >/dev/null

PINS=(onnxruntime==1.32.0 pillow==13.0.0 tokenizers==0.23.3 numpy==2.4.6 onnx==1.23.2 tensorboard==2.21.0)
VENV=.venv-test
if ! "$VENV/bin/python" - "${PINS[@]}" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
sys.exit(0 if all(version(p.split("==")[0]) == p.split("==")[1] for p in sys.argv[1:]) else 1)
PY
then
  echo "setup-test: creating $VENV (${PINS[*]})" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}"
fi
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup-test: installing chromium (apt-get)" >&2
    (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) ||
      echo "setup-test: chromium could not be installed; the report.html rendering test will skip" >&2
  else
    echo "setup-test: no chromium and no root apt-get; the report.html rendering test will skip" >&2
  fi
fi
echo "setup-test: ready (ORT library in .ort/cpu, Python in $VENV)" >&2
