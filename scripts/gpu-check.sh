#!/usr/bin/env bash
# gpu-check.sh — on a machine with an NVIDIA GPU (H100/H200, CUDA 13, no internet): confirm that
# ONNX Runtime's CUDA execution provider runs the EfficientNet-Lite0 backbone through graft, and
# print images/s on CUDA against the CPU of the same machine.
#
# Usage: scripts/gpu-check.sh [MODEL]
#   MODEL       default: ../shared/models/efficientnet-lite0/model.onnx, else .device/efficientnet-lite0.onnx
# Env:
#   GRAFT       the graft binary (default target/release/graft, else .device/graft)
#   PARTS       folder of ort-gpu.tar.zst.partNN made by scripts/split-for-device.sh (default .device/parts),
#               joined into .ort/gpu when no CUDA-enabled ONNX Runtime is there yet
#   BATCHES     batch sizes to time (default "32 64")
#   ITERS       timed runs per measurement (default 20)
#
# The CUDA provider needs CUDA 13's cuBLAS, cuDNN 9, cuFFT, cuRAND and the CUDA runtime: this script
# puts the lib/ folders of the nvidia-* pip packages of the machine's python3 (PyTorch for CUDA 13)
# on LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODEL=${1:-}
if [[ -z "$MODEL" ]]; then
  for m in ../shared/models/efficientnet-lite0/model.onnx .device/efficientnet-lite0.onnx; do
    [[ -f "$m" ]] && MODEL=$m && break
  done
fi
[[ -f "${MODEL:-}" ]] || { echo "gpu-check: no model (pass MODEL)" >&2; exit 2; }
GRAFT=${GRAFT:-}
if [[ -z "$GRAFT" ]]; then
  for g in target/release/graft .device/graft; do [[ -x "$g" ]] && GRAFT=$g && break; done
fi
[[ -x "${GRAFT:-}" ]] || { echo "gpu-check: no graft binary (build with cargo build --release or set GRAFT)" >&2; exit 2; }

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi not available"
nproc

if [[ ! -f .ort/gpu/libonnxruntime_providers_cuda.so ]]; then
  PARTS=${PARTS:-.device/parts}
  echo "== joining the CUDA ONNX Runtime from $PARTS"
  if ! command -v zstd >/dev/null && ! python3 -c 'import zstandard' 2>/dev/null && ls .whl/zstandard-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --find-links .whl --target /tmp/graft-zstd zstandard
    export PYTHONPATH=/tmp/graft-zstd${PYTHONPATH:+:$PYTHONPATH}
  fi
  scripts/split-for-device.sh --join "$PARTS" .ort/gpu >/dev/null
fi
export ORT_DYLIB_PATH=$PWD/.ort/gpu/libonnxruntime.so

nvlibs=$(python3 - <<'PY' 2>/dev/null || true
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
# nvidia-* wheels keep their libraries in nvidia/<name>/lib (CUDA 13 wheels may nest one level more).
libs = {os.path.dirname(f) for r in roots for f in glob.glob(os.path.join(r, "nvidia", "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(libs)))
PY
)
export LD_LIBRARY_PATH=${nvlibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "== CUDA libraries from: ${nvlibs:-none found}"

echo "== CUDA provider loads and runs the backbone"
"$GRAFT" bench "$MODEL" --backend ort --device cuda --batch 8 --iters 1 --warmup 1

ITERS=${ITERS:-20}
for b in ${BATCHES:-32 64}; do
  echo "== batch $b"
  cpu=$("$GRAFT" bench "$MODEL" --backend ort --device cpu --batch "$b" --iters "$(( ITERS / 4 + 1 ))" --warmup 1)
  gpu=$("$GRAFT" bench "$MODEL" --backend ort --device cuda --batch "$b" --iters "$ITERS" --warmup 3)
  echo "$cpu"
  echo "$gpu"
  c=$(sed -E 's/.*, ([0-9.]+) items\/s.*/\1/' <<<"$cpu")
  g=$(sed -E 's/.*, ([0-9.]+) items\/s.*/\1/' <<<"$gpu")
  python3 -c "print(f'batch $b: CUDA {float($g):.0f} img/s vs CPU {float($c):.0f} img/s = {float($g)/float($c):.1f}x')"
done
