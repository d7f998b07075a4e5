#!/usr/bin/env bash
# bench-embed.sh — wall-clock comparison of `graft embed` / `graft fit` (transfer learning on
# images) with their plain Python peers, on ../shared/data/cats-vs-dogs/train (CPU).
#
# What it measures:
#   graft embed           `graft embed efficientnet-lite0 DATA --no-cache --batch 32`: the
#                         items/s of its last stdout line ("embedded N items in S s (R items/s)")
#   python pipeline       scripts/bench_embed_python.py: Pillow decode + EXIF + RGB + bilinear
#                         224x224 + (x-127)/128, batches of 32, onnxruntime on the backbone that
#                         `graft cut --at auto` wrote (decode and inference alternate, one thread)
#   raw ceiling           the backbone alone on pre-made tensors, batch 32: bench_embed_python.py
#                         --raw (onnxruntime from Python) and `graft bench --backend ort`; the
#                         ceiling is the faster of the two
#   graft embed cached    wall time of a whole `graft embed` command whose features are already
#                         in graft's cache (median of CACHED_RUNS, after one run that fills it)
#   head fit              Dropout(0.2) -> Dense(2, softmax), Adam 1e-3, batch 32, 30 epochs on the
#                         1280-d features: graft fit's .timing.train_seconds vs Keras 3 (JAX, CPU)
#                         model.fit on the features file graft embed wrote
#                         (scripts/bench_head_keras.py; cold = first fit in the process, warm =
#                         second fit of a fresh model)
# Goals: graft embed >= 1.25x python pipeline and >= 0.8x raw ceiling (items/s);
#        cached re-run <= 2 s; head fit: graft train loop <= 0.2x keras fit warm.
#
# Usage: scripts/bench-embed.sh            (run from anywhere)
# Env:   LIMIT=N         use only N images, taken in turn from each class folder (sorted within
#                        a class), copied into a temp folder that every side reads and that
#                        graft fit gets as data.path (quick runs; unset = all 2000)
#        EPOCHS=30       head epochs on both sides
#        CACHED_RUNS=3   timed cached re-runs of graft embed
#        PYTHON=...      interpreter (>= 3.12) used to create .venv-bench
#
# The Python side lives in a venv at .venv-bench (git-ignored), shared with bench-iris.sh and
# bench-text.sh, created and populated with the pinned packages below only when they are missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

LIMIT=${LIMIT:-}
EPOCHS=${EPOCHS:-30}
CACHED_RUNS=${CACHED_RUNS:-3}
BATCH=32
DATA_FULL="../shared/data/cats-vs-dogs/train"
MODEL="../shared/models/efficientnet-lite0/model.onnx"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-embed.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

# ---------------------------------------------------------------- venv ----
ensure_venv
PY="$VENV/bin/python"

# --------------------------------------------------------------- graft ----
build_graft
[[ -f pipelines/cats-vs-dogs.toml ]] || die "pipelines/cats-vs-dogs.toml not found"
[[ -f "$MODEL" ]] || die "$MODEL not found (see ../shared/README.md)"
[[ -d "$DATA_FULL" ]] || die "$DATA_FULL not found (see ../shared/README.md)"

now() { date +%s.%N; }
elapsed() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.4f}")' "$1" "$2"; }

# Parses "embedded N items in S s (R items/s)" from the last line of $1; prints "N S R".
embed_line() {
    local last
    last=$(tail -n 1 "$1")
    python3 - "$last" <<'PY' || return 1
import re, sys
# A cached run says "(all N cached)" instead of a rate: its rate is printed as 0.
m = re.fullmatch(r"\s*embedded (\d+) items in ([0-9.eE+-]+) s \((?:([0-9.eE+-]+) items/s|all \d+ cached)\)\s*",
                 sys.argv[1])
if not m:
    sys.exit(1)
print(m.group(1), m.group(2), m.group(3) or 0)
PY
}

# --------------------------------------------------------------- data ----
DATA="$DATA_FULL"
FIT_SET=()
if [[ -n "$LIMIT" ]]; then
    [[ "$LIMIT" =~ ^[1-9][0-9]*$ ]] || die "LIMIT must be a positive integer, got '$LIMIT'"
    DATA="$tmp/images"
    # LIMIT images taken in turn from each class folder (sorted paths within a class, so every
    # class stays in: the head needs two), copied (not linked: a directory walker may skip
    # symlinks) with their class folders.
    python3 - "$DATA_FULL" "$DATA" "$LIMIT" <<'PY' || die "cannot copy $LIMIT images"
import shutil, sys
from itertools import zip_longest
from pathlib import Path
src, dst, limit = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
exts = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
by_class = {}
for p in sorted(q for q in src.rglob("*") if q.is_file() and q.suffix.lower() in exts):
    by_class.setdefault(p.relative_to(src).parts[0], []).append(p)
turns = [p for row in zip_longest(*by_class.values()) for p in row if p is not None][:limit]
for p in turns:
    out = dst / p.relative_to(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(p, out)
PY
    FIT_SET=(--set "data.path=$DATA")
    log "LIMIT=$LIMIT: using $LIMIT images, copied to $DATA"
fi

# ---------------------------------------------------------------- cut ----
log "cutting the backbone"
"$GRAFT" cut "$MODEL" --at auto -o "$tmp/backbone.onnx" >"$tmp/cut.log" 2>&1 \
    || { cat "$tmp/cut.log" >&2; die "graft cut failed"; }
[[ -f "$tmp/backbone.onnx" ]] || die "graft cut wrote no $tmp/backbone.onnx"

# -------------------------------------------------------- graft embed ----
log "graft embed (no cache)"
t0=$(now)
"$GRAFT" embed efficientnet-lite0 "$DATA" --out "$tmp/features.safetensors" --no-cache --batch "$BATCH" \
    >"$tmp/embed.out" 2>"$tmp/embed.err" \
    || { cat "$tmp/embed.out" "$tmp/embed.err" >&2; die "graft embed failed"; }
t1=$(now)
read -r g_n g_s g_rate < <(embed_line "$tmp/embed.out") \
    || die "no 'embedded N items in S s (R items/s)' last line from graft embed: $(tail -n 1 "$tmp/embed.out")"
g_wall=$(elapsed "$t0" "$t1")
[[ -f "$tmp/features.safetensors" ]] || die "graft embed wrote no $tmp/features.safetensors"
log "graft embed: $g_n items in ${g_s}s ($g_rate items/s), command ${g_wall}s"

# ---------------------------------------------------- python pipeline ----
log "python pipeline (onnxruntime + Pillow)"
"$PY" scripts/bench_embed_python.py --model "$tmp/backbone.onnx" --data "$DATA" --batch "$BATCH" \
    >"$tmp/py.json" 2>"$tmp/py.err" || { cat "$tmp/py.err" >&2; die "python pipeline failed"; }
py_json=$(tail -n 1 "$tmp/py.json")

# -------------------------------------------------------- raw ceiling ----
log "raw ceiling: python onnxruntime on pre-made tensors"
"$PY" scripts/bench_embed_python.py --model "$tmp/backbone.onnx" --data "$DATA" --batch "$BATCH" --raw \
    >"$tmp/raw.json" 2>"$tmp/raw.err" || { cat "$tmp/raw.err" >&2; die "python raw ceiling failed"; }
raw_json=$(tail -n 1 "$tmp/raw.json")

log "raw ceiling: graft bench --backend ort"
"$GRAFT" bench "$tmp/backbone.onnx" --backend ort --device cpu --batch "$BATCH" --iters 20 --warmup 2 \
    >"$tmp/bench.out" 2>"$tmp/bench.err" \
    || { cat "$tmp/bench.out" "$tmp/bench.err" >&2; die "graft bench failed"; }
bench_rate=$(python3 - "$(cat "$tmp/bench.out")" <<'PY'
import re, sys
m = re.search(r"([0-9.eE+-]+) items/s", sys.argv[1])
print(m.group(1) if m else "")
PY
)
[[ -n "$bench_rate" ]] || die "no 'items/s' in graft bench output: $(cat "$tmp/bench.out")"

# ---------------------------------------------------- cached re-run ----
log "graft embed (cached): one run to fill the cache, then $CACHED_RUNS timed runs"
"$GRAFT" embed efficientnet-lite0 "$DATA" --out "$tmp/cached.safetensors" --batch "$BATCH" \
    >"$tmp/fill.out" 2>"$tmp/fill.err" \
    || { cat "$tmp/fill.out" "$tmp/fill.err" >&2; die "graft embed (filling the cache) failed"; }
cached_walls=()
for i in $(seq 1 "$CACHED_RUNS"); do
    t0=$(now)
    "$GRAFT" embed efficientnet-lite0 "$DATA" --out "$tmp/cached.safetensors" --batch "$BATCH" \
        >"$tmp/cached.out" 2>"$tmp/cached.err" \
        || { cat "$tmp/cached.out" "$tmp/cached.err" >&2; die "graft embed (cached) failed"; }
    t1=$(now)
    embed_line "$tmp/cached.out" >/dev/null \
        || die "no 'embedded ...' last line from cached graft embed: $(tail -n 1 "$tmp/cached.out")"
    w=$(elapsed "$t0" "$t1")
    log "cached run $i/$CACHED_RUNS: ${w}s ($(tail -n 1 "$tmp/cached.out"))"
    cached_walls+=("$w")
done

# ----------------------------------------------------------- head fit ----
log "graft fit head ($EPOCHS epochs)"
graft_fit "$tmp/fit" pipelines/cats-vs-dogs.toml -q \
    --set train.epochs="$EPOCHS" \
    --set train.early_stopping.patience=0 \
    --set validation.method=none \
    ${FIT_SET[@]+"${FIT_SET[@]}"}
fit_json=$(python3 - "$tmp/fit/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["timing"]
print(json.dumps({"train_seconds": float(t["train_seconds"]), "total_seconds": float(t["total_seconds"]),
                  "rows": (r.get("data") or {}).get("rows")}))
PY
) || die "no .timing.train_seconds / .timing.total_seconds in report.json"

log "keras head ($EPOCHS epochs) on graft's features"
"$PY" scripts/bench_head_keras.py "$tmp/features.safetensors" --epochs "$EPOCHS" \
    >"$tmp/keras.json" 2>"$tmp/keras.err" || { cat "$tmp/keras.err" >&2; die "Keras head benchmark failed"; }
keras_json=$(tail -n 1 "$tmp/keras.json")

# --------------------------------------------------------------- table ----
python3 - "$g_n" "$g_s" "$g_rate" "$g_wall" "$py_json" "$raw_json" "$bench_rate" \
    "${cached_walls[*]}" "$fit_json" "$keras_json" "${LIMIT:-all}" <<'PY'
import json, statistics, sys

g_n, g_s, g_rate, g_wall = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
py = json.loads(sys.argv[5])
raw = json.loads(sys.argv[6])
bench_rate = float(sys.argv[7])
cached = statistics.median(float(v) for v in sys.argv[8].split())
fit = json.loads(sys.argv[9])
keras = json.loads(sys.argv[10])
limit = sys.argv[11]

py_rate = float(py["images_per_s"])
raw_py = float(raw["raw_images_per_s"])
ceiling = max(raw_py, bench_rate)
r_py = g_rate / py_rate
r_ceiling = g_rate / ceiling
k_cold, k_warm = float(keras["fit_seconds"]), float(keras["fit_seconds_warm"])
r_head = fit["train_seconds"] / k_warm

print(f"embed benchmark: cats-vs-dogs, {g_n} images (LIMIT={limit}), batch 32, CPU; "
      f"onnxruntime {py['onnxruntime']} / pillow {py['pillow']} (python), "
      f"keras {keras['keras']} / jax {keras['jax']}")
if int(py["images"]) != g_n:
    print(f"warning: graft embedded {g_n} images, python {py['images']}")
if fit.get("rows") is not None and int(fit["rows"]) != int(keras["samples"]):
    print(f"warning: graft fit trained on {fit['rows']} rows, keras on {keras['samples']}")
print(f"{'measure':<44}{'items/s':>10}{'seconds':>10}")
print("-" * 64)
rows = [
    ("graft embed (no cache)", g_rate, g_s),
    ("  whole command", g_n / g_wall, g_wall),
    ("python pipeline (ORT + Pillow)", py_rate, float(py["seconds"])),
    ("raw ceiling: python ORT, pre-made tensors", raw_py, float(raw["seconds"])),
    ("raw ceiling: graft bench --backend ort", bench_rate, None),
    ("graft embed cached re-run (median command)", None, cached),
    (f"graft fit head train loop ({fit['rows'] or '?'} rows)", None, fit["train_seconds"]),
    ("graft fit head whole fit (total_seconds)", None, fit["total_seconds"]),
    (f"keras head fit cold ({keras['samples']} rows)", None, k_cold),
    ("keras head fit warm", None, k_warm),
]
fmt = lambda v, w, d: f"{v:>{w}.{d}f}" if v is not None else f"{'-':>{w}}"
for name, rate, sec in rows:
    print(f"{name:<44}{fmt(rate, 10, 1)}{fmt(sec, 10, 3)}")
print("-" * 64)
print(f"{'graft embed / python pipeline':<44}{r_py:>9.3f}x")
print(f"{'graft embed / raw ceiling (python ORT)':<44}{g_rate / raw_py:>9.3f}x")
print(f"{'graft embed / raw ceiling (graft bench)':<44}{g_rate / bench_rate:>9.3f}x")
print(f"{'graft head train / keras warm':<44}{r_head:>9.3f}x")
print(f"{'graft head train / keras cold':<44}{fit['train_seconds'] / k_cold:>9.3f}x")
print(f"keras head train accuracy: {keras.get('train_accuracy')}")
verdict = lambda ok: "MET" if ok else "NOT MET"
goals = [
    ("graft embed >= 1.25x python pipeline", r_py >= 1.25),
    (f"graft embed >= 0.8x raw ceiling ({ceiling:.1f} items/s, the faster one)", r_ceiling >= 0.8),
    (f"cached re-run <= 2 s ({cached:.3f} s)", cached <= 2.0),
    (f"head fit <= 0.2x keras (train loop vs warm fit, {r_head:.3f}x)", r_head <= 0.2),
]
for name, ok in goals:
    print(f"goal {name}: {verdict(ok)}")
print(f"all goals: {verdict(all(ok for _, ok in goals))}")
PY
