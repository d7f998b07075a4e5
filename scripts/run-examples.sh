#!/usr/bin/env bash
# Runs the library examples (examples/) and checks that each does what its name says; .ci/run runs
# it after the tests. Needs ../shared (EfficientNet-Lite0 and the cats-vs-dogs photos). About 30 s
# on 2 cores with the photos' features cached, plus a release build of the examples.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
example() { cargo run --quiet --release --example "$@"; }
graft="${CARGO_TARGET_DIR:-target}/release/graft"
cargo build --quiet --release --bin graft

# 1. Own feature matrix -> head -> ONNX file -> verification; `graft verify` accepts the file.
example train_head_on_features -- "$out/own" | tee "$out/own.txt"
grep -q "^verification passed" "$out/own.txt" || { echo "train_head_on_features: no verification line" >&2; exit 1; }
"$graft" verify "$out/own/model.onnx" --data "$out/own/features.csv"

# 2. The cats-vs-dogs pipeline built in code, trained, exported and verified.
example pipeline_in_code -- "$out/cvd" | tee "$out/cvd.txt"
grep -q "^verification passed" "$out/cvd.txt" || { echo "pipeline_in_code: no verification line" >&2; exit 1; }

# 3. One model shared by several threads: the same labels as `graft predict` on the shared photos.
photos=../shared/data/cats-vs-dogs/train
example predict_service -- "$out/cvd/model.onnx" "$photos" > "$out/service.tsv"
"$graft" predict "$out/cvd/model.onnx" "$photos" | cut -f1,2 > "$out/cli.tsv"
[ -s "$out/cli.tsv" ] || { echo "graft predict printed nothing" >&2; exit 1; }
if ! cmp -s "$out/service.tsv" "$out/cli.tsv"; then
    echo "predict_service and graft predict disagree:" >&2
    diff "$out/service.tsv" "$out/cli.tsv" | head -20 >&2
    exit 1
fi
echo "examples: ok ($(wc -l < "$out/cli.tsv") photos labelled alike by predict_service and graft predict)"
