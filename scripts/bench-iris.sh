#!/usr/bin/env bash
# bench-iris.sh — wall-clock comparison of graft vs Keras 3 (JAX backend, CPU)
# on the iris pipeline (pipelines/iris.toml).
#
# What it measures (same model on both sides: standardised 4 features ->
# [Dropout0.1 -> Dense16 relu] x2 -> Dropout0.1 -> Dense3 softmax, Adam lr=0.01, sparse CE,
# batch 16, 150 epochs, shuffle, seed 42, no validation, no early stopping):
#   graft train loop   .timing.train_seconds from report.json, median of N runs
#   graft command      wall time of the whole `graft fit ...` process
#                      (start-up, CSV load, training, writing artefacts), median
#   keras fit cold     first model.fit() in a fresh Python process (includes JAX
#                      start-up, tracing and XLA compilation; imports excluded)
#   keras fit warm     model.fit() of a second, freshly built model in the same
#                      process
# Ratios: graft_train / keras_warm (like-for-like training loop) and
#         graft_command / keras_cold (what a user waits for vs Keras's fit).
# Goal "graft <= 0.1x Keras" is reported as met only when both ratios <= 0.1.
#
# Usage: scripts/bench-iris.sh            (run from anywhere)
# Env:   RUNS=5        number of graft runs
#        EPOCHS=150    epochs for both sides
#        PYTHON=...    interpreter (>= 3.12) used to create .venv-bench
#
# The Keras side lives in a venv at .venv-bench (git-ignored), created and
# populated with the pinned packages below only when they are missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

RUNS=${RUNS:-5}
EPOCHS=${EPOCHS:-150}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-iris.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

# ---------------------------------------------------------------- venv ----
ensure_venv

# --------------------------------------------------------------- graft ----
build_graft
[[ -f pipelines/iris.toml ]] || die "pipelines/iris.toml not found"

now() { date +%s.%N; }

train_times=()
cmd_times=()
for i in $(seq 1 "$RUNS"); do
    t0=$(now)
    graft_fit "$tmp/run" pipelines/iris.toml \
        --set validation.method=none \
        --set train.epochs="$EPOCHS" \
        --set train.early_stopping.patience=0
    t1=$(now)
    train=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["timing"]["train_seconds"])' \
        "$tmp/run/report.json") || die "no .timing.train_seconds in report.json"
    cmd=$(python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.4f}")' "$t0" "$t1")
    log "graft run $i/$RUNS: train ${train}s, command ${cmd}s"
    train_times+=("$train")
    cmd_times+=("$cmd")
done

# --------------------------------------------------------------- keras ----
log "running Keras (JAX, CPU)"
if ! "$VENV/bin/python" scripts/bench_iris_keras.py --epochs "$EPOCHS" \
        >"$tmp/keras.json" 2>"$tmp/keras.err"; then
    cat "$tmp/keras.err" >&2
    die "Keras benchmark failed"
fi
keras_json=$(tail -n 1 "$tmp/keras.json")

# --------------------------------------------------------------- table ----
python3 - "$keras_json" "${train_times[*]}" "${cmd_times[*]}" <<'PY'
import json, statistics, sys

keras = json.loads(sys.argv[1])
train = [float(v) for v in sys.argv[2].split()]
cmd = [float(v) for v in sys.argv[3].split()]
g_train = statistics.median(train)
g_cmd = statistics.median(cmd)
k_cold = float(keras["fit_seconds"])
k_warm = float(keras["fit_seconds_warm"])
r_train = g_train / k_warm
r_cmd = g_cmd / k_cold

print(f"iris benchmark: {keras.get('epochs')} epochs, batch {keras.get('batch_size')}, "
      f"graft runs {len(train)}; keras {keras['keras']} / jax {keras['jax']} (CPU)")
print(f"{'measure':<36}{'seconds':>10}")
print("-" * 46)
rows = [
    (f"graft train loop (median of {len(train)})", g_train),
    (f"graft whole command (median of {len(cmd)})", g_cmd),
    ("keras fit cold", k_cold),
    ("keras fit warm", k_warm),
]
for name, v in rows:
    print(f"{name:<36}{v:>10.4f}")
print("-" * 46)
print(f"{'graft_train / keras_warm':<36}{r_train:>9.3f}x")
print(f"{'graft_command / keras_cold':<36}{r_cmd:>9.3f}x")
print(f"keras train accuracy: {keras.get('train_accuracy')}")
ok_train, ok_cmd = r_train <= 0.1, r_cmd <= 0.1
print(f"goal graft <= 0.1x Keras: train loop {'MET' if ok_train else 'NOT MET'}, "
      f"command {'MET' if ok_cmd else 'NOT MET'} -> "
      f"{'MET' if ok_train and ok_cmd else 'NOT MET'}")
PY
