#!/usr/bin/env bash
# gpu-embed-check.sh — issue 10's GPU measurement: `graft embed --device cuda` on COUNT photos
# (copies of a few hundred real ones, run with --no-cache), reporting the engine's start-up time
# apart from the steady-state throughput, and the backbone alone (`graft bench`) for reference.
#
# Usage: scripts/gpu-embed-check.sh
# Env:
#   GRAFT     graft binary (default target/release/graft, else .device/graft, unpacked from
#             .device/graft.gz when only that is there)
#   MODEL     EfficientNet-Lite0 ONNX (default ../shared/..., else .device/efficientnet-lite0.onnx)
#   PHOTOS    folder of source photos copied round-robin (default ../shared cats-vs-dogs train/cat,
#             else .device/photos)
#   COUNT     photos to embed (default 20000)
#   BATCHES   batch sizes (default "64 256")
#   TUNINGS   CUDA tunings to try, each `plain` or flags joined by commas (default "plain tf32"; flags: nhwc
#             and tf32)
#   DEVICE    cuda (default) or cpu (to try the script on a machine without a GPU)
#   PARTS     split CUDA ONNX Runtime (scripts/split-for-device.sh), joined into .ort/gpu when
#             that folder has no CUDA provider yet (default .device/gp)
# graft embed reports the engine's start-up and its first run (where CUDA chooses kernels) apart
# from the steady state: the photos after the first batch over the pipeline's seconds after it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pick() { for f in "$@"; do [[ -e "$f" ]] && { echo "$f"; return; }; done; }
COUNT=${COUNT:-20000}
DEVICE=${DEVICE:-cuda}
MODEL=${MODEL:-$(pick ../shared/models/efficientnet-lite0/model.onnx .device/efficientnet-lite0.onnx)}
PHOTOS=${PHOTOS:-$(pick ../shared/data/cats-vs-dogs/train/cat .device/photos)}
if [[ -z "${GRAFT:-}" ]]; then
  [[ -x target/release/graft || -x .device/graft || ! -f .device/graft.gz ]] ||
    { gunzip -c .device/graft.gz > .device/graft && chmod +x .device/graft; }
  GRAFT=$(pick target/release/graft .device/graft)
fi
[[ -x "${GRAFT:-}" && -f "${MODEL:-}" && -d "${PHOTOS:-}" ]] ||
  { echo "gpu-embed-check: need GRAFT, MODEL and PHOTOS (got '${GRAFT:-}' '${MODEL:-}' '${PHOTOS:-}')" >&2; exit 2; }

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
echo "$(nproc) cores"

if [[ "$DEVICE" == cuda ]]; then
  if [[ ! -f .ort/gpu/libonnxruntime_providers_cuda.so ]]; then
    PARTS=${PARTS:-.device/gp}
    if ! command -v zstd >/dev/null && ! python3 -c 'import zstandard' 2>/dev/null; then
      python3 -m pip install -q --no-index --no-deps --target /tmp/graft-zstd .device/zstandard-*.whl
      export PYTHONPATH=/tmp/graft-zstd${PYTHONPATH:+:$PYTHONPATH}
    fi
    scripts/split-for-device.sh --join "$PARTS" .ort/gpu >/dev/null
  fi
  export ORT_DYLIB_PATH=$PWD/.ort/gpu/libonnxruntime.so
  # The CUDA provider needs CUDA 13's runtime, cuBLAS, cuDNN, cuFFT and cuRAND: the nvidia-* pip
  # packages of the machine's python3 have them.
  nvlibs=$(python3 -c '
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
print(":".join(sorted({os.path.dirname(f) for r in roots for f in glob.glob(os.path.join(r, "nvidia", "**", "lib*.so*"), recursive=True)})))' 2>/dev/null || true)
  export LD_LIBRARY_PATH=${nvlibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
else
  export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.ort/cpu/libonnxruntime.so}
fi

WORK=$(mktemp -d /tmp/graft-gpu-embed.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mapfile -t SRC < <(find "$PHOTOS" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | sort)
(( ${#SRC[@]} > 0 )) || { echo "gpu-embed-check: no photos in $PHOTOS" >&2; exit 2; }
mkdir -p "$WORK/photos"
for ((i = 0; i < COUNT; i++)); do
  s=${SRC[i % ${#SRC[@]}]}
  cp "$s" "$WORK/photos/$i.${s##*.}"
done
echo "== $COUNT photos (copies of ${#SRC[@]} from $PHOTOS), $(du -sh "$WORK/photos" | cut -f1)"

for tuning in ${TUNINGS:-plain tf32}; do
  flags=()
  [[ "$tuning" == plain ]] || for f in ${tuning//,/ }; do flags+=("--$f"); done
  echo "== backbone alone (graft bench, batch 64) ${flags[*]}"
  "$GRAFT" bench "$MODEL" --backend ort --device "$DEVICE" --batch 64 --iters 20 --warmup 3 "${flags[@]}" || true

  for b in ${BATCHES:-64 256}; do
    echo "== graft embed --device $DEVICE --batch $b ${flags[*]}"
    log=$WORK/embed-$b.log
    /usr/bin/time -f "peak RSS %M KB, %e s wall, %U s user, %S s sys" \
      "$GRAFT" embed models/efficientnet-lite0.toml "$WORK/photos" --model "$MODEL" --out "$WORK/f.safetensors" \
      --no-cache --quiet --backend ort --device "$DEVICE" --batch "$b" "${flags[@]}" 2>&1 | tee "$log"
    sed -nE "s/^engine started in ([0-9.]+) s, first run ([0-9.]+) s.*\(([0-9.]+%) of.*steady state ([0-9.]+) items\/s/$tuning, batch $b: engine start-up \1 s, first run \2 s (kernel choice), engine waited \3 of the pipeline, steady state \4 photos\/s/p" "$log"
  done
done
