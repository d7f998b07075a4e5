#!/usr/bin/env bash
# bench-finetune.sh — seconds per phase-2 epoch of graft's fine-tuning against a JAX peer, CPU.
#
# What it measures, per benchmark, graft then the peer back to back:
#   minilm   `graft fit pipelines/who-said-it-bert-finetune.toml`: MiniLM's last two layers
#            (from `layernormalization_152`) + masked mean + Dropout/Dense(256)/ReLU/Dropout/Dense(3)
#            on the who-said-it training split (80% stratified holdout), batch 32, batches
#            bucketed by length; AdamW tail 5e-5 / head 1e-3, wd 0.01, clip 1.0.
#   effnet   `graft fit pipelines/cats-vs-dogs-finetune.toml`: EfficientNet-Lite0's last block +
#            1x1 head conv (from `add_54`) + Dropout/Dense(2) on the cats-vs-dogs training split,
#            batch 32; AdamW tail 1e-4 / head 1e-3.
#   graft s/epoch = mean of report.json's .fine_tune.phases["fine-tune"].history[].seconds (one
#   epoch = the training pass + the validation pass; the frozen front's states come from the
#   feature cache and are outside the phase anyway).
#   peer s/epoch  = scripts/bench_finetune_jax.py: the same tail run by a jax.numpy interpreter of
#   the ONNX nodes with the ONNX weights, the same head, loss, AdamW, clipping, batch size, length
#   bucketing and validation pass; front states from Python onnxruntime (cached under
#   target/bench-finetune). Every batch shape is compiled ahead of time: compilation is excluded.
#   Before timing, the peer checks its tail against onnxruntime's full model (<= 1e-4) and fails
#   otherwise.
# Goal: graft s/epoch <= 1.0x the peer's.
#
# Threads: both engines run on the same THREADS cores (the script pins itself with taskset to
# cores 0-(THREADS-1) when taskset is there; graft and the peer inherit it); graft with RAYON_NUM_THREADS=THREADS, JAX with XLA_FLAGS
# --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=THREADS, onnxruntime (the
# peer's front, untimed) with THREADS intra-op threads.
# Not part of CI: a full run takes tens of minutes (the MiniLM epochs, and the peer compiling
# about a hundred batch shapes on its first run; later runs reuse target/bench-finetune/xla).
#
# Usage: scripts/bench-finetune.sh [minilm|effnet|all]     (default all; run from anywhere)
# Env:   MINILM_EPOCHS=1, EFFNET_EPOCHS=3   timed phase-2 epochs on each side (EPOCHS=N sets both)
#        THREADS=2    cores for both engines
#        SKIP_BUILD=1 use target/release/graft as it is (no cargo build)
#        MIN_FREE_GB=13  least MemAvailable before graft's MiniLM fine-tune (it peaks at ~12 GB)
#        PYTHON=...   interpreter (>= 3.12) used to create .venv-bench
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

EPOCHS=${EPOCHS:-}
MINILM_EPOCHS=${EPOCHS:-${MINILM_EPOCHS:-1}}
EFFNET_EPOCHS=${EPOCHS:-${EFFNET_EPOCHS:-3}}
THREADS=${THREADS:-2}
WHICH=${1:-all}

# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
PINS+=(onnx==1.23.2)

for e in "$MINILM_EPOCHS" "$EFFNET_EPOCHS"; do
    [[ "$e" =~ ^[1-9][0-9]*$ ]] || die "EPOCHS, MINILM_EPOCHS and EFFNET_EPOCHS must be positive integers, got '$e'"
done
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer, got '$THREADS'"
case "$WHICH" in
    minilm) BENCHES=(minilm) ;;
    effnet) BENCHES=(effnet) ;;
    all) BENCHES=(effnet minilm) ;;
    *) die "unknown benchmark '$WHICH' (minilm, effnet or all)" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-finetune.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# ---------------------------------------------------------------- venv ----
ensure_venv
PY="$VENV/bin/python"
"$PY" -c 'import jax, jaxlib, onnx, onnxruntime, tokenizers, PIL; jax.numpy.zeros(1).block_until_ready()' \
    || die "the peer cannot load JAX / onnxruntime / onnx from $VENV (see the error above)"

# --------------------------------------------------------------- graft ----
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
    GRAFT="$ROOT/target/release/graft"
    [[ -x "$GRAFT" ]] || die "$GRAFT not found (SKIP_BUILD=1 uses the binary as built)"
else
    build_graft
fi
"$GRAFT" --version >/dev/null || die "$GRAFT does not run"

# Pin this shell, so graft and the peer (its children) share the same cores.
PIN="unpinned"
if command -v taskset >/dev/null 2>&1; then
    taskset -cp "0-$((THREADS - 1))" $$ >/dev/null || die "taskset cannot pin to cores 0-$((THREADS - 1))"
    PIN="taskset -c 0-$((THREADS - 1))"
fi
export RAYON_NUM_THREADS="$THREADS" BENCH_THREADS="$THREADS"

load() { cut -d' ' -f1-3 /proc/loadavg; }

pipeline_of() {
    case "$1" in
        minilm) echo pipelines/who-said-it-bert-finetune.toml ;;
        effnet) echo pipelines/cats-vs-dogs-finetune.toml ;;
    esac
}

results=()
for b in "${BENCHES[@]}"; do
    pipeline=$(pipeline_of "$b")
    epochs=$MINILM_EPOCHS
    [[ "$b" == effnet ]] && epochs=$EFFNET_EPOCHS
    if [[ "$b" == minilm ]]; then
        # graft holds the padded states [15664, 128, 384] and the split's copies: it peaked at
        # 12 GB here, and was killed by the OOM killer beside another fit.
        free_gb=$(awk '/^MemAvailable:/ {printf "%d", $2 / 1048576}' /proc/meminfo)
        ((free_gb >= ${MIN_FREE_GB:-13})) \
            || die "the MiniLM fine-tune needs ~12 GB of memory, $free_gb GB available (MIN_FREE_GB=${MIN_FREE_GB:-13})"
    fi
    [[ -f "$pipeline" ]] || die "$pipeline not found"
    log "[$b] graft fit $pipeline (phase 1: 3 epochs, phase 2: $epochs timed; load $(load))"
    before=$(load)
    graft_fit "$tmp/$b" "$pipeline" -q \
        --set train.epochs=3 \
        --set train.fine_tune.epochs="$epochs" \
        --set train.fine_tune.early_stopping.patience=0 \
        --set backbone.threads="$THREADS" \
        --set backbone.backend=ort
    graft_json=$(python3 - "$tmp/$b/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ph = [p for p in (r.get("fine_tune") or {}).get("phases", []) if p["name"] == "fine-tune"]
if not ph or not ph[0]["history"]:
    sys.exit("report.json has no fine-tune phase history")
secs = [float(h["seconds"]) for h in ph[0]["history"]]
rows, val = r["data"]["rows"], r["validation"]["rows"]
print(json.dumps({"epoch_seconds": secs, "phase_seconds": ph[0]["seconds"], "rows": rows,
                  "val_rows": val, "val_accuracy": ph[0]["history"][-1].get("val_accuracy")}))
PY
    ) || die "cannot read graft's phase-2 epochs from $tmp/$b/report.json"
    log "[$b] graft: $graft_json"

    log "[$b] JAX peer ($epochs timed epochs; load $(load))"
    "$PY" scripts/bench_finetune_jax.py --task "$b" --epochs "$epochs" --batch 32 \
        >"$tmp/$b.peer.json" 2>"$tmp/$b.peer.err" \
        || { cat "$tmp/$b.peer.err" >&2; die "JAX peer ($b) failed"; }
    grep '^peer:' "$tmp/$b.peer.err" >&2 || true
    peer_json=$(tail -n 1 "$tmp/$b.peer.json")
    results+=("$b" "$graft_json" "$peer_json" "$before -> $(load)")
done

python3 - "$THREADS" "$PIN" "${results[@]}" <<'PY'
import json, statistics, sys

threads, pin, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
names = {"minilm": "MiniLM last 2 layers + head, who said it",
         "effnet": "EfficientNet-Lite0 last block + head, cats vs dogs"}
print(f"fine-tuning benchmark, CPU, {threads} threads for both engines ({pin}); "
      "one epoch = train pass + validation pass; peer compile excluded")
print(f"{'benchmark':<52}{'graft s/ep':>11}{'JAX s/ep':>10}{'ratio':>8}  goal")
print("-" * 90)
ok_all = True
notes = []
for i in range(0, len(rest), 4):
    b, g, p, load = rest[i], json.loads(rest[i + 1]), json.loads(rest[i + 2]), rest[i + 3]
    gs = statistics.mean(g["epoch_seconds"])
    ps = float(p["seconds_per_epoch"])
    ratio = gs / ps
    ok = ratio <= 1.0
    ok_all &= ok
    print(f"{names[b]:<52}{gs:>11.2f}{ps:>10.2f}{ratio:>7.2f}x  {'MET' if ok else 'NOT MET'}")
    train_rows = g["rows"] - g["val_rows"]
    if (p["train_rows"], p["val_rows"]) != (train_rows, g["val_rows"]):
        notes.append(f"warning [{b}]: graft trained/validated {train_rows}/{g['val_rows']} rows, "
                     f"the peer {p['train_rows']}/{p['val_rows']}")
    ptrain = statistics.mean(h["train_seconds"] for h in p["history"])
    pval = statistics.mean(h["val_seconds"] for h in p["history"])
    notes.append(f"[{b}] rows {train_rows} train / {g['val_rows']} val, batch {p['batch']}; graft epochs "
                 f"{[round(s, 2) for s in g['epoch_seconds']]}, val_acc {g['val_accuracy']}; peer train "
                 f"{ptrain:.2f} s + val {pval:.2f} s per epoch, {p['train_shapes']} train + "
                 f"{p['predict_shapes']} predict shapes compiled in {p['compile_seconds']:.1f} s, tail check "
                 f"max |diff| {p['check_max_abs_diff']:.1e}; load average {load}")
print("-" * 90)
for n in notes:
    print(n)
print(f"jax {p['jax']}, onnxruntime {p['onnxruntime']}, XLA_FLAGS {p['xla_flags']}")
print(f"all goals: {'MET' if ok_all else 'NOT MET'}")
PY
