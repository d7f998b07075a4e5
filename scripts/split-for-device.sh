#!/usr/bin/env bash
# split-for-device.sh — pack the GPU ONNX Runtime libraries (.ort/gpu, made by
# `scripts/setup-ort.sh --gpu`) into zstd-compressed parts small enough for a
# transfer channel that takes at most ~60 MB per file, and put them back
# together on the other side.
#
# Usage:
#   scripts/split-for-device.sh [--size 50M] [SRC_DIR [OUT_DIR]]
#       Pack SRC_DIR (default .ort/gpu) into OUT_DIR (default .ort/gpu-parts):
#         ort-gpu.tar.zst.partNN  tar of SRC_DIR (libonnxruntime.so.*,
#                                 libonnxruntime_providers_{shared,cuda}.so,
#                                 symlinks, stamp) | zstd -19 (ZSTD_LEVEL) -T2 | split -b 50M -d
#         MANIFEST.sha256         sha256sum of every part (sha256sum -c format)
#         FILES.sha256            sha256sum of every regular file inside the tar
#       Re-running with unchanged inputs and intact parts does nothing.
#
#   scripts/split-for-device.sh --join PARTS_DIR OUT_DIR
#       Verify the parts against MANIFEST.sha256, decompress, unpack into
#       OUT_DIR, verify every file against FILES.sha256, and print
#         ORT_DYLIB_PATH=/abs/OUT_DIR/libonnxruntime.so
#       Decompression uses the `zstd` CLI, else Python's `zstandard` module,
#       else Python >= 3.14 `compression.zstd`.  Needs no network.
set -euo pipefail

PROG=$(basename "$0")
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
PREFIX=ort-gpu.tar.zst.part
SIZE=50M
JOIN=0
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --join) JOIN=1 ;;
    --size) [ $# -ge 2 ] || die "--size needs a value like 50M"; SIZE=$2; shift ;;
    --size=*) SIZE=${1#--size=} ;;
    -h|--help) usage; exit 0 ;;
    --) shift; ARGS+=("$@"); break ;;
    -*) die "unknown option: $1 (see --help)" ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done

# Python helper: zstd (de)compression stdin -> stdout without the CLI.
# (The script is passed with -c: stdin carries the data.)
PY_ZSTD=$(cat <<'EOF'
import sys
mode = sys.argv[1]
inp, out = sys.stdin.buffer, sys.stdout.buffer
try:
    import zstandard as zs
    if mode == "c":
        zs.ZstdCompressor(level=19, threads=2).copy_stream(inp, out)
    else:
        zs.ZstdDecompressor().copy_stream(inp, out)
except ImportError:
    from compression import zstd  # Python >= 3.14
    if mode == "c":
        c = zstd.ZstdCompressor(level=19)
        for chunk in iter(lambda: inp.read(1 << 20), b""):
            out.write(c.compress(chunk))
        out.write(c.flush())
    else:
        d = zstd.ZstdDecompressor()
        for chunk in iter(lambda: inp.read(1 << 20), b""):
            while chunk:  # may hold the end of one frame and the next
                if d.eof:
                    d = zstd.ZstdDecompressor()
                out.write(d.decompress(chunk))
                chunk = d.unused_data if d.eof else b""
EOF
)
py_zstd() { "$PYTHON" -c "$PY_ZSTD" "$1"; }  # $1 = c|d
have_py_zstd() {
  "$PYTHON" -c 'import zstandard' 2>/dev/null ||
    "$PYTHON" -c 'from compression import zstd' 2>/dev/null
}

# ---------------------------------------------------------------- join ------
if [ "$JOIN" = 1 ]; then
  [ ${#ARGS[@]} -eq 2 ] || die "usage: $PROG --join PARTS_DIR OUT_DIR"
  PARTS=${ARGS[0]}; OUT=${ARGS[1]}
  [ -f "$PARTS/MANIFEST.sha256" ] || die "$PARTS/MANIFEST.sha256 not found"
  [ -f "$PARTS/FILES.sha256" ] || die "$PARTS/FILES.sha256 not found"
  PARTS=$(cd "$PARTS" && pwd)

  mapfile -t PART_FILES < <(awk '{print $2}' "$PARTS/MANIFEST.sha256")
  [ ${#PART_FILES[@]} -gt 0 ] || die "empty manifest"
  log "verifying ${#PART_FILES[@]} parts in $PARTS"
  (cd "$PARTS" && sha256sum --quiet --strict -c MANIFEST.sha256) ||
    die "part checksum mismatch or missing part in $PARTS (re-send the failing parts)"

  if command -v zstd >/dev/null 2>&1; then
    decompress() { zstd -d -q -c; }
  elif have_py_zstd; then
    decompress() { py_zstd d; }
  else
    die "no zstd decompressor: install the zstd CLI or Python 'zstandard' (or use Python >= 3.14)"
  fi

  mkdir -p "$OUT" || die "cannot create $OUT"
  OUT=$(cd "$OUT" && pwd)
  STAGE=$(mktemp -d "$OUT/.join.XXXXXX")
  trap 'rm -rf "$STAGE"' EXIT
  log "decompressing into $OUT"
  (cd "$PARTS" && cat "${PART_FILES[@]}") | decompress | tar -x -C "$STAGE" -f - ||
    die "decompress/untar failed"
  (cd "$STAGE" && sha256sum --quiet --strict -c "$PARTS/FILES.sha256") ||
    die "unpacked files do not match FILES.sha256"
  shopt -s dotglob
  for f in "$STAGE"/*; do
    mv -f "$f" "$OUT/"
  done
  shopt -u dotglob
  rm -rf "$STAGE"
  trap - EXIT
  [ -e "$OUT/libonnxruntime.so" ] || die "$OUT/libonnxruntime.so missing after unpack"
  log "ok: $(awk '{print $2}' "$PARTS/FILES.sha256" | tr '\n' ' ')"
  echo "ORT_DYLIB_PATH=$OUT/libonnxruntime.so"
  exit 0
fi

# --------------------------------------------------------------- split ------
[ ${#ARGS[@]} -le 2 ] || die "too many arguments (see --help)"
SRC=${ARGS[0]:-$ROOT/.ort/gpu}
OUT=${ARGS[1]:-$ROOT/.ort/gpu-parts}
[ -d "$SRC" ] || die "$SRC does not exist (run scripts/setup-ort.sh --gpu first)"
SRC=$(cd "$SRC" && pwd)
[ -f "$SRC/libonnxruntime_providers_cuda.so" ] ||
  die "$SRC/libonnxruntime_providers_cuda.so not found (run scripts/setup-ort.sh --gpu first)"
[ -e "$SRC/libonnxruntime.so" ] || die "$SRC/libonnxruntime.so not found"
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
case "$OUT/" in "$SRC"/*) die "OUT_DIR must not be inside SRC_DIR" ;; esac

# Regular files (and symlinks/stamp) to pack; skip temp files from setup-ort.sh.
mapfile -t ENTRIES < <(cd "$SRC" && find . -mindepth 1 -maxdepth 1 \
  \( -type f -o -type l \) ! -name '.*.part' -printf '%P\n' | LC_ALL=C sort)
NEW_FILES=$(cd "$SRC" && for e in "${ENTRIES[@]}"; do
  [ -L "$e" ] || sha256sum "$e"; done)

if [ -f "$OUT/MANIFEST.sha256" ] && [ -f "$OUT/FILES.sha256" ] &&
   [ "$(cat "$OUT/FILES.sha256")" = "$NEW_FILES" ] &&
   (cd "$OUT" && sha256sum --quiet --strict -c MANIFEST.sha256 >/dev/null 2>&1); then
  log "parts in $OUT are up to date"
  (cd "$OUT" && stat -c '  %s %n' "$PREFIX"*) >&2
  exit 0
fi

if command -v zstd >/dev/null 2>&1; then
  compress() { zstd -"${ZSTD_LEVEL:-19}" -T2 -q -c; }
else
  log "zstd not found; trying: apt-get update && apt-get install -y zstd"
  if command -v apt-get >/dev/null 2>&1 &&
     { apt-get update -qq && apt-get install -y -qq zstd; } >&2 &&
     command -v zstd >/dev/null 2>&1; then
    compress() { zstd -"${ZSTD_LEVEL:-19}" -T2 -q -c; }
  else
    log "apt-get unavailable or failed; trying Python 'zstandard' from PyPI"
    have_py_zstd || "$PYTHON" -m pip install -q zstandard >&2 ||
      die "could not get a zstd compressor (apt-get and pip both failed)"
    compress() { py_zstd c; }
  fi
fi

rm -f "$OUT/MANIFEST.sha256" "$OUT/FILES.sha256" "$OUT/$PREFIX"*
log "packing ${ENTRIES[*]} from $SRC (zstd -${ZSTD_LEVEL:-19} -T2, parts of $SIZE)"
(cd "$SRC" && tar --owner=0 --group=0 --numeric-owner -c -f - "${ENTRIES[@]}") |
  compress | split -b "$SIZE" -d -a 2 - "$OUT/$PREFIX" ||
  die "tar | zstd | split failed"

(cd "$OUT" && sha256sum "$PREFIX"* > MANIFEST.sha256.tmp && mv MANIFEST.sha256.tmp MANIFEST.sha256)
printf '%s\n' "$NEW_FILES" > "$OUT/FILES.sha256"
log "wrote $OUT:"
(cd "$OUT" && stat -c '  %s %n' "$PREFIX"* MANIFEST.sha256 FILES.sha256) >&2
echo "PARTS_DIR=$OUT"
