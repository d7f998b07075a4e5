#!/usr/bin/env bash
# setup-ort.sh — install the ONNX Runtime shared library used by graft.
#
# graft uses the Rust crate `ort` (2.0.0-rc.15) with the `load-dynamic`
# feature, which dlopen()s libonnxruntime.so (>= 1.31) at run time from the
# path in ORT_DYLIB_PATH.  This script fetches the official PyPI wheel with
# pip (no other network access), checks it against a pinned sha256 and
# extracts the shared libraries.
#
# Usage:
#   scripts/setup-ort.sh [--gpu] [--dest DIR] [--cache DIR] [--print-path]
#
#   (default)     CPU build  (onnxruntime 1.32.0)      -> .ort/cpu/
#   --gpu         CUDA build (onnxruntime-gpu 1.31.1)  -> .ort/gpu/
#                 NOTE: the PyPI onnxruntime-gpu 1.31.x wheels are built for
#                 CUDA 13 (libcudart.so.13, libcublas.so.13, libcurand.so.10,
#                 cuDNN 9 for CUDA 13); the CUDA provider needs those at run time.
#   --dest DIR    install into DIR instead of .ort/cpu or .ort/gpu
#   --cache DIR   wheel cache (default .ort/wheels)
#   --print-path  only print the absolute path of libonnxruntime.so
#                 (exit 0 if it is installed, 1 if not)
#
# On success the last line on stdout is
#   ORT_DYLIB_PATH=/abs/path/to/libonnxruntime.so
# so `eval "$(scripts/setup-ort.sh | tail -n1)"; export ORT_DYLIB_PATH` works.
#
# Idempotent: when the libraries exist and the stamp file records the pinned
# wheel's sha256, nothing is downloaded or extracted.
set -euo pipefail

# ---------------------------------------------------------------- pins ------
# Linux x86_64, CPython 3.11 tag; the libraries inside do not depend on Python.
CPU_PKG=onnxruntime
CPU_VERSION=1.32.0
CPU_WHEEL=onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl
CPU_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
CPU_LIBS=(libonnxruntime.so.1.32.0 libonnxruntime_providers_shared.so)

GPU_PKG=onnxruntime-gpu
GPU_VERSION=1.31.1
GPU_WHEEL=onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl
GPU_SHA256=e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6
GPU_LIBS=(libonnxruntime.so.1.31.1 libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)

# ORT C API version the library must provide (API version == ORT minor).
MIN_ORT_API=31

PIP_PLATFORM_ARGS=(
  --platform manylinux_2_27_x86_64
  --platform manylinux_2_28_x86_64
  --platform manylinux_2_17_x86_64
  --python-version 3.11
  --implementation cp
)

# -------------------------------------------------------------- helpers -----
PROG=$(basename "$0")
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}

MODE=cpu
DEST=
CACHE=
PRINT_PATH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --gpu) MODE=gpu ;;
    --cpu) MODE=cpu ;;
    --dest) [ $# -ge 2 ] || die "--dest needs a directory"; DEST=$2; shift ;;
    --dest=*) DEST=${1#--dest=} ;;
    --cache) [ $# -ge 2 ] || die "--cache needs a directory"; CACHE=$2; shift ;;
    --cache=*) CACHE=${1#--cache=} ;;
    --print-path) PRINT_PATH=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

if [ "$MODE" = gpu ]; then
  PKG=$GPU_PKG; VERSION=$GPU_VERSION; WHEEL=$GPU_WHEEL; SHA256=$GPU_SHA256; LIBS=("${GPU_LIBS[@]}")
else
  PKG=$CPU_PKG; VERSION=$CPU_VERSION; WHEEL=$CPU_WHEEL; SHA256=$CPU_SHA256; LIBS=("${CPU_LIBS[@]}")
fi
VERSIONED_LIB=libonnxruntime.so.$VERSION

DEST=${DEST:-$ROOT/.ort/$MODE}
CACHE=${CACHE:-$ROOT/.ort/wheels}
if [ "$PRINT_PATH" = 0 ]; then
  mkdir -p "$DEST" || die "cannot create $DEST"
fi
if [ -d "$DEST" ]; then DEST=$(cd "$DEST" && pwd); else DEST=$(realpath -m "$DEST"); fi
LIB="$DEST/libonnxruntime.so"
STAMP="$DEST/.graft-ort-stamp"
STAMP_LINE="$PKG $VERSION $WHEEL sha256=$SHA256"

installed() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_LINE" ] || return 1
  [ -e "$LIB" ] || return 1
  local f
  for f in "${LIBS[@]}"; do [ -f "$DEST/$f" ] || return 1; done
  return 0
}

if [ "$PRINT_PATH" = 1 ]; then
  echo "$LIB"
  if installed; then exit 0; fi
  log "$PKG $VERSION is not installed in $DEST yet (run scripts/setup-ort.sh$([ "$MODE" = gpu ] && echo ' --gpu'))"
  exit 1
fi

if installed; then
  log "$PKG $VERSION already installed in $DEST"
  echo "ORT_DYLIB_PATH=$LIB"
  exit 0
fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=...)"

sha_of() { "$PYTHON" - "$1" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
EOF
}

mkdir -p "$CACHE" || die "cannot create wheel cache $CACHE"

# Serialise concurrent runs sharing the cache.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.lock"
  flock 9
  # Another run may have finished the job while we waited.
  if installed; then
    log "$PKG $VERSION already installed in $DEST"
    echo "ORT_DYLIB_PATH=$LIB"
    exit 0
  fi
fi

# --------------------------------------------------------------- fetch ------
WHL="$CACHE/$WHEEL"
if [ -f "$WHL" ]; then
  got=$(sha_of "$WHL")
  if [ "$got" = "$SHA256" ]; then
    log "using cached $WHL"
  else
    log "cached $WHEEL has sha256 $got, expected $SHA256; deleting it"
    rm -f "$WHL"
  fi
fi

if [ ! -f "$WHL" ]; then
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "pip is not available for $PYTHON"
  TMPDL=$(mktemp -d "$CACHE/.download.XXXXXX")
  trap 'rm -rf "$TMPDL"' EXIT
  log "downloading $PKG==$VERSION with pip (this wheel is $([ "$MODE" = gpu ] && echo '~256 MB' || echo '~28 MB'))"
  if ! "$PYTHON" -m pip download --no-deps --no-cache-dir --only-binary=:all: \
        "${PIP_PLATFORM_ARGS[@]}" --dest "$TMPDL" "$PKG==$VERSION" >&2; then
    die "pip download of $PKG==$VERSION failed (network/index problem?). You can also place $WHEEL in $CACHE manually."
  fi
  [ -f "$TMPDL/$WHEEL" ] || die "pip did not produce $WHEEL; got: $(cd "$TMPDL" && echo *)"
  got=$(sha_of "$TMPDL/$WHEEL")
  if [ "$got" != "$SHA256" ]; then
    rm -f "$TMPDL/$WHEEL"
    die "sha256 mismatch for $WHEEL: got $got, expected $SHA256 (bad wheel deleted)"
  fi
  mv -f "$TMPDL/$WHEEL" "$WHL"
  rm -rf "$TMPDL"
  trap - EXIT
fi

# ------------------------------------------------------------- extract ------
rm -f "$STAMP"
log "extracting ${LIBS[*]} into $DEST"
"$PYTHON" - "$WHL" "$DEST" "${LIBS[@]}" <<'EOF' || die "extraction from $WHEEL failed"
import os, sys, zipfile
whl, dest, *libs = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = set(z.namelist())
    for lib in libs:
        member = "onnxruntime/capi/" + lib
        if member not in names:
            sys.exit(f"{member} not found in {os.path.basename(whl)}")
        tmp = os.path.join(dest, "." + lib + ".part")
        with z.open(member) as src, open(tmp, "wb") as out:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(dest, lib))
EOF

# Stable names: libonnxruntime.so (for ORT_DYLIB_PATH) and the SONAME.
ln -sfn "$VERSIONED_LIB" "$DEST/libonnxruntime.so"
ln -sfn "$VERSIONED_LIB" "$DEST/libonnxruntime.so.1"

# -------------------------------------------------------------- verify ------
# Load the library, ask for its version and for the C API graft's `ort` needs.
"$PYTHON" - "$LIB" "$VERSION" "$MIN_ORT_API" <<'EOF' >&2 || die "$LIB is not loadable or too old"
import ctypes, sys
path, want, api = sys.argv[1], sys.argv[2], int(sys.argv[3])
class OrtApiBase(ctypes.Structure):
    _fields_ = [("GetApi", ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32)),
                ("GetVersionString", ctypes.CFUNCTYPE(ctypes.c_char_p))]
lib = ctypes.CDLL(path)
get_base = lib.OrtGetApiBase
get_base.restype = ctypes.POINTER(OrtApiBase)
base = get_base().contents
ver = base.GetVersionString().decode()
if ver != want:
    sys.exit(f"loaded version {ver}, expected {want}")
if not base.GetApi(api):
    sys.exit(f"ONNX Runtime {ver} does not provide C API version {api}")
print(f"setup-ort.sh: loaded ONNX Runtime {ver} (C API {api} OK) from {path}")
EOF

echo "$STAMP_LINE" > "$STAMP"
echo "ORT_DYLIB_PATH=$LIB"
