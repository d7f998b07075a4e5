#!/usr/bin/env python3
"""Keras 3 (JAX backend, CPU) reference for graft's transfer-learning head (cats vs dogs).

Reads the features file that `graft embed` writes (safetensors: ``features`` f32 [N, D],
``labels`` f32 class index per row) and trains the same head as pipelines/cats-vs-dogs.toml:
  Dropout(0.2) -> Dense(n_classes, softmax)
  Adam(lr=1e-3), sparse categorical cross-entropy, batch_size=32, epochs=30, shuffle=True,
  seed 42, no validation split, no early stopping.

Only the wall time of ``model.fit(...)`` is measured (like bench_iris_keras.py):
  fit_seconds       first fit in the process (includes JAX backend start-up, tracing and
                    XLA compilation; imports excluded);
  fit_seconds_warm  a second fit on a freshly built and compiled model in the same process
                    (backend initialised; the new model's train step is traced/compiled again).

Prints exactly one JSON line to stdout, e.g.
  {"fit_seconds": 4.1, "fit_seconds_warm": 3.2, "train_accuracy": 0.99, "samples": 2000,
   "features": 1280, "classes": 2, "keras": "3.15.1", "jax": "0.12.0.1", ...}
"""

import os

# Must be set before keras / jax are imported.
os.environ["KERAS_BACKEND"] = "jax"
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import sys  # noqa: E402
from keras_cold_warm import compile_classifier, report  # noqa: E402

SEED = 42
LEARNING_RATE = 1e-3
BATCH_SIZE = 32
DROPOUT = 0.2


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("features", help="safetensors file written by `graft embed` (features, labels)")
    p.add_argument("--epochs", type=int, default=30)
    return p.parse_args()


def load(path):
    import numpy as np
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except Exception as e:  # noqa: BLE001 - report any read problem the same way
        sys.exit(f"error: {path}: {e}")
    for name in ("features", "labels"):
        if name not in tensors:
            sys.exit(f"error: {path}: no tensor {name!r} (has {sorted(tensors)})")
    x = np.ascontiguousarray(tensors["features"], dtype=np.float32)
    if x.ndim != 2:
        sys.exit(f"error: {path}: features has shape {list(x.shape)}, expected [N, D]")
    labels = np.asarray(tensors["labels"]).reshape(-1)
    if len(labels) != len(x):
        sys.exit(f"error: {path}: {len(labels)} labels for {len(x)} feature rows")
    if not np.isfinite(x).all():
        sys.exit(f"error: {path}: non-finite features")
    y = labels.astype(np.int32)
    if (y != labels).any() or y.min() < 0:
        sys.exit(f"error: {path}: labels must be non-negative class indices")
    n_classes = int(y.max()) + 1
    if n_classes < 2:
        sys.exit(f"error: {path}: only one class in labels")
    return x, y, n_classes


def build(keras, n_features, n_classes):
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential([
        keras.Input(shape=(n_features,)),
        keras.layers.Dropout(DROPOUT),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    compile_classifier(keras, model, LEARNING_RATE)
    return model


def main():
    args = parse_args()
    x, y, n_classes = load(args.features)
    import keras


    report(lambda: build(keras, x.shape[1], n_classes), x, y, args.epochs, BATCH_SIZE, features=int(x.shape[1]), classes=n_classes)


if __name__ == "__main__":
    main()
