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
# The pipeline part (PARTS=pipeline) measures the input pipeline itself:
#   preprocessing alone   `graft embed` on tests/fixtures/gap_224.onnx (GlobalAveragePool: the
#                         EfficientNet-Lite0 recipe, decode + resize + normalise, then a model that
#                         costs nothing; ORT with 1 thread, no cache) vs scripts/bench_prep_python.py
#                         (Pillow + the same fixture on ORT, 1 thread), in photos per CPU-second
#                         (graft: user + system time of the whole command, all threads; Pillow: its
#                         timed span, and its whole process for reference)
#   12 MP JPEGs           the same on BIG_N 4032x3024 JPEGs upscaled from the shared photos (made in
#                         the temp folder): graft's scaled DCT decode, graft with GRAFT_FULL_DECODE=1,
#                         Pillow with draft("RGB", (224, 224)), Pillow without
#   file reads            successful openat() calls per image file, counted with strace -f, for
#                         `graft embed efficientnet-lite0 --limit READS_N` with a fresh cache (hash +
#                         decode) and with --no-cache
#   starvation            `graft embed efficientnet-lite0 --threads 1` (the engine on one core): the
#                         share of the pipeline the engine waited for prepared batches (graft's own
#                         "engine started in ...; waited W s for prepared batches (P% ...)" line)
# Goals: preprocessing >= 1.5x Pillow per CPU-second; 12 MP >= 1.2x Pillow draft() and >= 3x graft's
#        full decode per CPU-second; every file opened once; the engine waits < 5% with --threads 1.
#
# ONNX Runtime: scripts/setup-ort.sh runs first (bench-lib.sh's ensure_ort) and every graft command
# here passes --backend ort; the benchmark stops if graft cannot load ONNX Runtime.
#
# Usage: scripts/bench-embed.sh            (run from anywhere)
# Env:   LIMIT=N         use only N images, taken in turn from each class folder (sorted within
#                        a class), copied into a temp folder that every side reads and that
#                        graft fit gets as data.path (quick runs; unset = all 2000)
#        EPOCHS=30       head epochs on both sides
#        CACHED_RUNS=3   timed cached re-runs of graft embed
#        PYTHON=...      interpreter (>= 3.12) used to create .venv-bench
#        PARTS=classic,pipeline   which parts to run (classic: the measurements above the pipeline
#                        part; pipeline: the pipeline part)
#        BIG_N=48        12 MP JPEGs made for the pipeline part
#        READS_N=64      images whose opens are counted
#
# The Python side lives in a venv at .venv-bench (git-ignored), shared with bench-iris.sh and
# bench-text.sh, created and populated with the pinned packages below only when they are missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

LIMIT=${LIMIT:-}
EPOCHS=${EPOCHS:-30}
CACHED_RUNS=${CACHED_RUNS:-3}
PARTS=${PARTS:-classic,pipeline}
BIG_N=${BIG_N:-48}
READS_N=${READS_N:-64}
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

want() { [[ ",$PARTS," == *",$1,"* ]]; }

if want classic; then
# ---------------------------------------------------------------- cut ----
log "cutting the backbone"
"$GRAFT" cut "$MODEL" --at auto -o "$tmp/backbone.onnx" >"$tmp/cut.log" 2>&1 \
    || { cat "$tmp/cut.log" >&2; die "graft cut failed"; }
[[ -f "$tmp/backbone.onnx" ]] || die "graft cut wrote no $tmp/backbone.onnx"

# -------------------------------------------------------- graft embed ----
log "graft embed (no cache)"
t0=$(now)
"$GRAFT" embed efficientnet-lite0 "$DATA" --backend ort --device cpu --out "$tmp/features.safetensors" --no-cache --batch "$BATCH" \
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
"$GRAFT" embed efficientnet-lite0 "$DATA" --backend ort --device cpu --out "$tmp/cached.safetensors" --batch "$BATCH" \
    >"$tmp/fill.out" 2>"$tmp/fill.err" \
    || { cat "$tmp/fill.out" "$tmp/fill.err" >&2; die "graft embed (filling the cache) failed"; }
cached_walls=()
for i in $(seq 1 "$CACHED_RUNS"); do
    t0=$(now)
    "$GRAFT" embed efficientnet-lite0 "$DATA" --backend ort --device cpu --out "$tmp/cached.safetensors" --batch "$BATCH" \
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
    --set backbone.backend=ort \
    --set backbone.device=cpu \
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
fi

# ------------------------------------------------ pipeline measurements ----
if want pipeline; then
GAP="$ROOT/tests/fixtures/gap_224.onnx"
[[ -f "$GAP" ]] || die "$GAP not found (scripts/make-fixtures.py writes it)"
# The EfficientNet-Lite0 preprocessing (224x224 stretch, (x - 127) / 128, NCHW) on a backbone
# that only averages: graft embed on it is preprocessing alone.
cat >"$tmp/gap.toml" <<TOML
name = "gap-224"
kind = "image"
source = "$GAP"
[input]
name = "input"
size = 224
layout = "NCHW"
resize = "stretch"
mean = [127.0, 127.0, 127.0]
std = [128.0, 128.0, 128.0]
TOML

# prep_graft NAME DATA [ENV=VALUE...]: graft embed on the GlobalAveragePool fixture, ORT with one
# thread, no cache; prints "IMAGES WALL CPU" (CPU: the whole process, all its threads).
prep_graft() {
    local name=$1 data=$2 wc n
    shift 2
    wc=$(env "$@" bash -c 'source "$1/scripts/bench-lib.sh"; shift; cpu_run "$@"' _ "$ROOT" \
        "$tmp/$name.out" "$tmp/$name.err" "$GRAFT" embed "$tmp/gap.toml" "$data" --backend ort --device cpu \
        --threads 1 --no-cache --batch "$BATCH" -q --out "$tmp/$name.safetensors") \
        || { cat "$tmp/$name.out" "$tmp/$name.err" >&2; die "graft embed ($name) failed"; }
    n=$(embed_line "$tmp/$name.out" | cut -d' ' -f1) || die "no 'embedded ...' line from graft embed ($name)"
    echo "$n $wc"
}
# prep_pillow NAME DATA [--draft]: the JSON line of scripts/bench_prep_python.py, plus the whole
# process's wall and CPU seconds.
prep_pillow() {
    local name=$1 data=$2 wc
    shift 2
    wc=$(cpu_run "$tmp/$name.json" "$tmp/$name.err" "$PY" scripts/bench_prep_python.py --model "$GAP" \
        --data "$data" --batch "$BATCH" "$@") || { cat "$tmp/$name.err" >&2; die "Pillow ($name) failed"; }
    python3 -c 'import json, sys; d = json.loads(sys.argv[1]); w, c = sys.argv[2].split()
d["process_wall"], d["process_cpu"] = float(w), float(c); print(json.dumps(d))' "$(tail -n 1 "$tmp/$name.json")" "$wc"
}

log "preprocessing alone on $DATA: graft (ORT, 1 thread) and Pillow"
prep_g=$(prep_graft prep "$DATA")
prep_p=$(prep_pillow prep-pillow "$DATA")

log "making $BIG_N 12 MP JPEGs (4032x3024, quality 92) from the shared photos"
"$PY" - "$DATA" "$tmp/big" "$BIG_N" <<'PY' || die "cannot make the 12 MP JPEGs"
import sys
from itertools import zip_longest
from pathlib import Path
from PIL import Image
src, dst, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
by_class = {}
for p in sorted(q for q in src.rglob("*") if q.suffix.lower() in {".jpg", ".jpeg", ".png"}):
    by_class.setdefault(p.relative_to(src).parts[0], []).append(p)
for p in [p for row in zip_longest(*by_class.values()) for p in row if p is not None][:n]:
    out = (dst / p.relative_to(src)).with_suffix(".jpg")
    out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(p) as im:
        im.convert("RGB").resize((4032, 3024), Image.BICUBIC).save(out, quality=92)
PY
big_scaled=$(prep_graft big-scaled "$tmp/big")
big_full=$(prep_graft big-full "$tmp/big" GRAFT_FULL_DECODE=1)
big_draft=$(prep_pillow big-draft "$tmp/big" --draft)
big_pillow=$(prep_pillow big-pillow "$tmp/big")

# How often graft opens each image file: strace counts successful openat() calls per path, on
# READS_N images, with a fresh cache (hash + decode) and with --no-cache.
reads_json='{}'
if command -v strace >/dev/null 2>&1; then
    log "file reads: strace -f -e trace=openat on graft embed --limit $READS_N"
    for mode in cache no-cache; do
        flags=(--cache "$tmp/reads-cache")
        [[ $mode == no-cache ]] && flags=(--no-cache)
        rm -rf "$tmp/reads-cache"
        strace -f -qq -e trace=openat -o "$tmp/strace-$mode.log" "$GRAFT" embed efficientnet-lite0 "$DATA" \
            --backend ort --device cpu --limit "$READS_N" "${flags[@]}" -q --out "$tmp/reads.safetensors" \
            >"$tmp/reads.out" 2>"$tmp/reads.err" || { cat "$tmp/reads.err" >&2; die "graft embed under strace failed"; }
    done
    reads_json=$(python3 - "$tmp/strace-cache.log" "$tmp/strace-no-cache.log" "$DATA" "$READS_N" <<'PY'
import json, re, sys
from collections import Counter
from itertools import chain
from pathlib import Path
data, n = Path(sys.argv[3]).resolve(), int(sys.argv[4])
exts = {".jpg", ".jpeg", ".png", ".webp"}
# graft embed --limit N takes the first N images in class order, sorted within a class.
classes = sorted(d for d in data.iterdir() if d.is_dir())
files = list(chain.from_iterable(sorted(f for f in c.iterdir() if f.suffix.lower() in exts) for c in classes))[:n]
out = {}
for mode, log in (("cache", sys.argv[1]), ("no_cache", sys.argv[2])):
    opens = Counter()
    for line in open(log):
        m = re.search(r'openat\([^,]+, "([^"]+)"', line)
        if m and "= -1" not in line:
            opens[str(Path(m.group(1)).resolve())] += 1
    counts = [opens[str(f.resolve())] for f in files]
    out[mode] = {"files": len(files), "min": min(counts), "max": max(counts), "mean": sum(counts) / len(counts)}
print(json.dumps(out))
PY
    ) || die "cannot count the opens"
else
    log "strace not installed: file reads not measured (apt-get install strace)"
fi

log "starvation: graft embed efficientnet-lite0 --threads 1 (engine on one core, decoding on the rest)"
"$GRAFT" embed efficientnet-lite0 "$DATA" --backend ort --device cpu --threads 1 --no-cache --batch "$BATCH" \
    --out "$tmp/starve.safetensors" -q >"$tmp/starve.out" 2>"$tmp/starve.err" \
    || { cat "$tmp/starve.out" "$tmp/starve.err" >&2; die "graft embed --threads 1 failed"; }
starve_line=$(grep -E '^engine started in' "$tmp/starve.out") || die "no 'engine started in ...' line from graft embed"

python3 - "$prep_g" "$prep_p" "$big_scaled" "$big_full" "$big_draft" "$big_pillow" "$reads_json" \
    "$starve_line" "$(embed_line "$tmp/starve.out")" "$(cat /proc/loadavg)" "$(nproc)" <<'PY'
import json, re, sys
def graft(s):
    n, wall, cpu = s.split()
    return int(n), float(wall), float(cpu)
pg, pp = graft(sys.argv[1]), json.loads(sys.argv[2])
bs, bf, bd, bp = graft(sys.argv[3]), graft(sys.argv[4]), json.loads(sys.argv[5]), json.loads(sys.argv[6])
reads = json.loads(sys.argv[7])
starve, last = sys.argv[8], sys.argv[9].split()
print(f"pipeline benchmark: batch 32, ORT 1 thread, {sys.argv[11]} cores; load average at the end: {sys.argv[10]}")
print("graft: the whole command (CPU = user + system of the process, all threads); Pillow: one process,")
print("CPU of its timed span (list, decode, resize, normalise, ORT) and of the whole process")
print(f"{'measure':<46}{'images':>7}{'wall s':>9}{'CPU s':>9}{'img/CPU-s':>11}")
print("-" * 82)
rate = lambda n, c: n / c
rows = [("graft, shared photos", pg[0], pg[1], pg[2]),
        ("Pillow, shared photos (timed span)", pp["images"], pp["seconds"], pp["cpu_seconds"]),
        ("Pillow, shared photos (whole process)", pp["images"], pp["process_wall"], pp["process_cpu"]),
        ("graft, 12 MP JPEGs, scaled decode", bs[0], bs[1], bs[2]),
        ("graft, 12 MP JPEGs, full decode", bf[0], bf[1], bf[2]),
        ("Pillow draft(), 12 MP (timed span)", bd["images"], bd["seconds"], bd["cpu_seconds"]),
        ("Pillow draft(), 12 MP (whole process)", bd["images"], bd["process_wall"], bd["process_cpu"]),
        ("Pillow no draft, 12 MP (timed span)", bp["images"], bp["seconds"], bp["cpu_seconds"])]
for name, n, w, c in rows:
    print(f"{name:<46}{n:>7}{w:>9.2f}{c:>9.2f}{rate(n, c):>11.1f}")
print("-" * 82)
r_prep = rate(pg[0], pg[2]) / rate(pp["images"], pp["cpu_seconds"])
r_big = rate(bs[0], bs[2]) / rate(bd["images"], bd["cpu_seconds"])
r_full = rate(bs[0], bs[2]) / rate(bf[0], bf[2])
print(f"{'graft / Pillow per CPU-second, shared photos':<60}{r_prep:>8.2f}x")
print(f"{'graft scaled / Pillow draft() per CPU-second, 12 MP':<60}{r_big:>8.2f}x")
print(f"{'graft scaled / graft full decode per CPU-second, 12 MP':<60}{r_full:>8.2f}x")
for mode, r in reads.items():
    print(f"opens per image file ({mode.replace('_', '-')}, strace openat, {r['files']} files): "
          f"min {r['min']}, max {r['max']}, mean {r['mean']:.2f}")
m = re.search(r"\(([0-9.]+)% of the", starve)
share = float(m.group(1))
print(f"--threads 1: {starve}; {last[0]} images at {last[2]} items/s")
verdict = lambda ok: "MET" if ok else "NOT MET"
goals = [("preprocessing >= 1.5x Pillow per CPU-second (vs its timed span)", r_prep >= 1.5),
         ("12 MP >= 1.2x Pillow draft() per CPU-second (vs its timed span)", r_big >= 1.2),
         ("12 MP scaled >= 3x graft full decode per CPU-second", r_full >= 3.0),
         ("each file opened once", bool(reads) and all(r["max"] == 1 for r in reads.values())),
         ("engine waits < 5% of the run with --threads 1", share < 5.0)]
for name, ok in goals:
    print(f"goal {name}: {verdict(ok)}")
PY
fi
