# bench-lib.sh — shared by scripts/bench-*.sh (sourced, not run, after ROOT is set): logging, the
# one Python venv of pinned peers they all use, and the release build of graft.
# shellcheck shell=bash

VENV="$ROOT/.venv-bench"
# jax/jaxlib 0.12.0.1 require Python >= 3.12.
PINS=(keras==3.15.1 jax==0.12.0.1 jaxlib==0.12.0.1 numpy==2.5.5 pandas==3.1.1
      onnxruntime==1.32.0 pillow==13.0.0 safetensors==0.8.0 tokenizers==0.23.3)

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

py_ok() { # $1: interpreter; true if it runs and is >= 3.12
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
    local c v
    for c in ${PYTHON:-} python3.13 python3.12 python3; do
        if command -v "$c" >/dev/null 2>&1 && py_ok "$c"; then
            command -v "$c"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])(\.[0-9]+)*$' | sort -rV); do
            c="$(pyenv root)/versions/$v/bin/python3"
            if py_ok "$c"; then echo "$c"; return 0; fi
        done
    fi
    return 1
}

pins_installed() {
    [[ -x "$VENV/bin/python" ]] || return 1
    "$VENV/bin/python" - "${PINS[@]}" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}

# Creates or updates $VENV so that it holds ${PINS[@]}.
ensure_venv() {
    if ! pins_installed; then
        if [[ ! -x "$VENV/bin/python" ]] || ! py_ok "$VENV/bin/python"; then
            py=$(find_python) || die "need Python >= 3.12 for jax 0.12 (set PYTHON=/path/to/python3.12)"
            log "creating $VENV with $py"
            rm -rf "$VENV"
            "$py" -m venv "$VENV"
        fi
        log "installing ${PINS[*]} into $VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
        pins_installed || die "pinned packages still missing from $VENV"
    fi
}

# Builds graft in release mode and sets GRAFT to the binary; then makes sure graft runs on ONNX
# Runtime (ensure_ort), so that no benchmark silently measures tract.
# GRAFT_BIN=/path/to/graft skips the build and uses that binary (on a machine where others build).
build_graft() {
    if [[ -n "${GRAFT_BIN:-}" ]]; then
        GRAFT=$GRAFT_BIN
        log "using $GRAFT (GRAFT_BIN), not building"
    else
        log "building graft (release)"
        cargo build --release --quiet
        GRAFT="$ROOT/target/release/graft"
    fi
    [[ -x "$GRAFT" ]] || die "$GRAFT not found after build"
    ensure_ort
}

# Installs the pinned ONNX Runtime with scripts/setup-ort.sh (idempotent), exports ORT_DYLIB_PATH,
# and checks that graft loads it (`graft bench --backend ort` on a fixture): stops the benchmark
# with the reason when it cannot. Every graft command of a benchmark that runs a model passes
# `--backend ort` (or `--set backbone.backend=ort`) besides, so none falls back to tract.
ensure_ort() {
    local line err
    line=$("$ROOT/scripts/setup-ort.sh" | tail -n 1) \
        || die "scripts/setup-ort.sh failed: cannot install ONNX Runtime, and these benchmarks compare graft on ONNX Runtime"
    [[ "$line" == ORT_DYLIB_PATH=* ]] || die "scripts/setup-ort.sh printed no ORT_DYLIB_PATH=... line (got: $line)"
    export ORT_DYLIB_PATH="${line#ORT_DYLIB_PATH=}"
    err=$("$GRAFT" bench "$ROOT/tests/fixtures/tiny_cnn.onnx" --backend ort --device cpu --batch 1 --iters 1 \
        --warmup 0 2>&1 >/dev/null) \
        || die "graft cannot run on ONNX Runtime ($ORT_DYLIB_PATH): $err"
    log "ONNX Runtime: $ORT_DYLIB_PATH"
}

# cpu_run OUT ERR CMD...: runs CMD with stdout to OUT and stderr to ERR; prints "WALL CPU" (seconds:
# wall clock, and the command's user + system CPU time including its threads and children). On
# failure prints nothing and returns the command's status.
cpu_run() {
    local out=$1 err=$2
    shift 2
    python3 - "$out" "$err" "$@" <<'PY'
import os, sys, time
out, err, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.perf_counter()
with open(out, "wb") as o, open(err, "wb") as e:
    pid = os.fork()
    if pid == 0:
        os.dup2(o.fileno(), 1)
        os.dup2(e.fileno(), 2)
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
code = os.waitstatus_to_exitcode(status)
if code != 0:
    sys.exit(code if code > 0 else 1)
print(f"{wall:.4f} {ru.ru_utime + ru.ru_stime:.4f}")
PY
}

# graft_fit OUT PIPELINE [ARGS...]: runs `graft fit PIPELINE --out OUT ARGS...` into a fresh OUT; on
# failure shows its log and stops; checks that it wrote OUT/report.json.
graft_fit() {
    local out=$1 pipeline=$2
    shift 2
    rm -rf "$out"
    if ! "$GRAFT" fit "$pipeline" --out "$out" "$@" >"$out.log" 2>&1; then
        cat "$out.log" >&2
        die "graft fit $pipeline failed"
    fi
    [[ -f "$out/report.json" ]] || die "graft wrote no $out/report.json"
}
