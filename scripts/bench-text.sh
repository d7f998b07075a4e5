#!/usr/bin/env bash
# bench-text.sh — wall-clock comparison of graft with Python on the text pipelines
# ("who said it": ../shared/data/spooky-authors/train.csv), CPU.
#
# What it measures:
#   LSTM s/epoch     `graft fit pipelines/who-said-it-lstm.toml` for EPOCHS epochs: mean of
#                    report.json's .history[].seconds, vs Keras 3 (JAX, CPU) on the same model
#                    (scripts/bench_text_python.py --lstm: TextVectorization(20000, 64) ->
#                    Embedding(20000, 64) -> LSTM(64) -> Dropout(0.5) -> Dense(3, softmax), Adam,
#                    batch 64): Keras's first epoch (tracing + XLA compilation) and the mean of the
#                    epochs after it. Keras gets the same rows (.data.rows, first rows of the CSV)
#                    and, when graft held out a validation split, the same share
#                    (.validation.rows / .data.rows) evaluated every epoch.
#   MiniLM           `graft embed all-minilm-l6-v2 CSV --limit SENTENCES --no-cache --batch 32`:
#                    items/s of its last stdout line, vs onnxruntime + tokenizers from Python
#                    (scripts/bench_text_python.py --minilm: dynamic padding, truncation 128,
#                    masked mean pooling in numpy)
# Goals: graft LSTM s/epoch <= 1.0x Keras (mean after the first epoch);
#        graft MiniLM sentences/s >= 1.0x Python.
#
# Usage: scripts/bench-text.sh            (run from anywhere)
# Env:   EPOCHS=2          LSTM epochs on both sides (Keras needs >= 2 for a warm epoch)
#        SENTENCES=2000    sentences embedded by MiniLM on both sides
#        PYTHON=...        interpreter (>= 3.12) used to create .venv-bench
#
# The Python side lives in a venv at .venv-bench (git-ignored), shared with bench-iris.sh and
# bench-embed.sh, created and populated with the pinned packages below only when they are missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

EPOCHS=${EPOCHS:-2}
SENTENCES=${SENTENCES:-2000}
BATCH=32
CSV="../shared/data/spooky-authors/train.csv"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-text.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

[[ "$EPOCHS" =~ ^[1-9][0-9]*$ ]] || die "EPOCHS must be a positive integer, got '$EPOCHS'"
[[ "$SENTENCES" =~ ^[1-9][0-9]*$ ]] || die "SENTENCES must be a positive integer, got '$SENTENCES'"

# ---------------------------------------------------------------- venv ----
ensure_venv
PY="$VENV/bin/python"

# --------------------------------------------------------------- graft ----
build_graft
[[ -f pipelines/who-said-it-lstm.toml ]] || die "pipelines/who-said-it-lstm.toml not found"
[[ -f "$CSV" ]] || die "$CSV not found (see ../shared/README.md)"

# ---------------------------------------------------------- graft LSTM ----
log "graft fit LSTM ($EPOCHS epochs)"
graft_fit "$tmp/fit" pipelines/who-said-it-lstm.toml -q \
    --set train.epochs="$EPOCHS" \
    --set train.early_stopping.patience=0 \
    --set model.lstm.bidirectional=false \
    --set model.lstm.embedding_dropout=0 \
    --set model.lstm.lowercase=true \
    --set model.lstm.embedding_dim=64 \
    --set model.lstm.units=64 \
    --set train.batch_size=64
# One line: {"epoch_seconds": [...], "train_seconds", "rows", "validation_split"}.
fit_json=$(python3 - "$tmp/fit/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
secs = [float(h["seconds"]) for h in r["history"]]
if not secs:
    sys.exit("empty .history")
data = r.get("data") or {}
val = r.get("validation") or {}
rows = data.get("rows")
split = 0.0
if val.get("evaluated_on") == "holdout" and rows and val.get("rows"):
    split = float(val["rows"]) / float(rows)
print(json.dumps({"epoch_seconds": secs, "train_seconds": float(r["timing"]["train_seconds"]),
                  "rows": rows, "validation_split": split}))
PY
) || die "report.json lacks .history[].seconds or .timing.train_seconds"
read -r k_limit k_split < <(python3 -c '
import json, sys
f = json.loads(sys.argv[1])
print(f["rows"] or 0, "%.6f" % f["validation_split"])' "$fit_json") || die "cannot read $fit_json"
log "graft LSTM: $fit_json"

# ---------------------------------------------------------- keras LSTM ----
keras_args=(--lstm --epochs "$EPOCHS" --validation-split "$k_split")
if [[ "$k_limit" != 0 ]]; then
    keras_args+=(--limit "$k_limit")
fi
log "Keras LSTM ($EPOCHS epochs, ${k_limit} rows (0 = all), validation split $k_split)"
"$PY" scripts/bench_text_python.py "${keras_args[@]}" >"$tmp/keras.json" 2>"$tmp/keras.err" \
    || { cat "$tmp/keras.err" >&2; die "Keras LSTM benchmark failed"; }
keras_json=$(tail -n 1 "$tmp/keras.json")

# -------------------------------------------------------- graft MiniLM ----
log "graft embed all-minilm-l6-v2 ($SENTENCES sentences, no cache)"
"$GRAFT" embed all-minilm-l6-v2 "$CSV" --model ../shared/models/all-minilm-l6-v2/model.onnx --backend ort --device cpu --text-column text --label-column author --limit "$SENTENCES" \
    --out "$tmp/text.safetensors" --no-cache --batch "$BATCH" \
    >"$tmp/embed.out" 2>"$tmp/embed.err" \
    || { cat "$tmp/embed.out" "$tmp/embed.err" >&2; die "graft embed failed"; }
embed_last=$(tail -n 1 "$tmp/embed.out")
read -r g_n g_s g_rate < <(python3 - "$embed_last" <<'PY'
import re, sys
m = re.fullmatch(r"\s*embedded (\d+) items in ([0-9.eE+-]+) s \(([0-9.eE+-]+) items/s\)\s*", sys.argv[1])
if not m:
    sys.exit(1)
print(m.group(1), m.group(2), m.group(3))
PY
) || die "no 'embedded N items in S s (R items/s)' last line from graft embed: $embed_last"

# ------------------------------------------------------- python MiniLM ----
log "python MiniLM (onnxruntime + tokenizers, $SENTENCES sentences)"
"$PY" scripts/bench_text_python.py --minilm --limit "$SENTENCES" --batch "$BATCH" \
    >"$tmp/minilm.json" 2>"$tmp/minilm.err" || { cat "$tmp/minilm.err" >&2; die "python MiniLM failed"; }
minilm_json=$(tail -n 1 "$tmp/minilm.json")

# --------------------------------------------------------------- table ----
python3 - "$fit_json" "$keras_json" "$g_n" "$g_s" "$g_rate" "$minilm_json" <<'PY'
import json, statistics, sys

fit = json.loads(sys.argv[1])
keras = json.loads(sys.argv[2])
g_n, g_s, g_rate = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
py = json.loads(sys.argv[6])

g_epoch = statistics.mean(fit["epoch_seconds"])
k_first = float(keras["first_epoch_seconds"])
k_rest = keras.get("mean_epoch_seconds_after_first")
k_rest = float(k_rest) if k_rest is not None else None
py_rate = float(py["sentences_per_s"])
r_minilm = g_rate / py_rate

print(f"text benchmark: who said it, CPU; LSTM {keras['epochs']} epochs on {keras['rows']} rows "
      f"({keras['train_rows']} trained, {keras['validation_rows']} validation), batch 64; "
      f"MiniLM {g_n} sentences, batch 32")
print(f"keras {keras['keras']} / jax {keras['jax']} (vectoriser: {keras['vectorizer']}); "
      f"onnxruntime {py['onnxruntime']} / tokenizers {py['tokenizers']}")
if int(py["sentences"]) != g_n:
    print(f"warning: graft embedded {g_n} sentences, python {py['sentences']}")
if fit.get("rows") and int(fit["rows"]) != int(keras["rows"]):
    print(f"warning: graft trained on {fit['rows']} rows, keras {keras['rows']}")
print(f"{'measure':<44}{'value':>12}")
print("-" * 56)
rows = [
    (f"graft LSTM s/epoch (mean of {len(fit['epoch_seconds'])})", g_epoch, "s"),
    ("graft LSTM train loop (train_seconds)", fit["train_seconds"], "s"),
    ("keras LSTM first epoch (with compile)", k_first, "s"),
    ("keras LSTM s/epoch after the first", k_rest, "s"),
    ("graft embed MiniLM", g_rate, "/s"),
    ("python ORT + tokenizers MiniLM", py_rate, "/s"),
]
for name, v, unit in rows:
    val = f"{v:>10.3f}{unit:>2}" if v is not None else f"{'-':>12}"
    print(f"{name:<44}{val}")
print("-" * 56)
if k_rest is not None:
    r_lstm = g_epoch / k_rest
    print(f"{'graft LSTM / keras s/epoch (after first)':<44}{r_lstm:>11.3f}x")
else:
    r_lstm = None
print(f"{'graft LSTM / keras first epoch':<44}{g_epoch / k_first:>11.3f}x")
print(f"{'graft MiniLM / python sentences/s':<44}{r_minilm:>11.3f}x")
acc = keras.get("history", {}).get("accuracy")
print(f"keras LSTM train accuracy per epoch: {acc}")
verdict = lambda ok: "MET" if ok else "NOT MET"
goals = [
    ("LSTM <= 1.0x keras s/epoch", None if r_lstm is None else r_lstm <= 1.0),
    ("MiniLM >= 1.0x python sentences/s", r_minilm >= 1.0),
]
for name, ok in goals:
    print(f"goal {name}: {'n/a (EPOCHS < 2)' if ok is None else verdict(ok)}")
print(f"all goals: {verdict(all(ok is True for _, ok in goals))}")
PY
