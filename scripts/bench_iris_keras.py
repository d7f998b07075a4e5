#!/usr/bin/env python3
"""Keras 3 (JAX backend, CPU) reference for graft's iris pipeline benchmark.

Architecture and training setup mirror pipelines/iris.toml:
  standardise features (mean / population std, fitted on the whole data set)
  Dropout(0.1) -> Dense(16, relu) -> Dropout(0.1) -> Dense(16, relu) -> Dropout(0.1) -> Dense(3, softmax)
  Adam(lr=0.01), sparse categorical cross-entropy, batch_size=16,
  epochs=150, shuffle=True, seed 42, no validation split.

Only the wall time of ``model.fit(...)`` is measured:
  fit_seconds       first fit in the process, as a user sees it (includes JAX
                    backend start-up, tracing and XLA compilation);
  fit_seconds_warm  a second fit on a freshly built and compiled model in the
                    same process (backend already initialised; the new model's
                    train step is still traced/compiled again).

Prints exactly one JSON line to stdout, e.g.
  {"fit_seconds": 3.1, "fit_seconds_warm": 2.4, "train_accuracy": 0.98,
   "keras": "3.15.1", "jax": "0.12.0.1", ...}
"""

import os

# Must be set before keras / jax are imported.
os.environ["KERAS_BACKEND"] = "jax"
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from keras_cold_warm import compile_classifier, report  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT / ".." / "shared" / "data" / "iris" / "iris.csv"

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
TARGET = "species"
SEED = 42
LEARNING_RATE = 0.01
BATCH_SIZE = 16


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="iris CSV (default: <repo>/../shared/data/iris/iris.csv)")
    p.add_argument("--epochs", type=int, default=150)
    return p.parse_args()


def load(path):
    import numpy as np
    import pandas as pd

    df = pd.read_csv(path)
    missing = [c for c in FEATURES + [TARGET] if c not in df.columns]
    if missing:
        sys.exit(f"error: {path}: missing columns {missing}")
    x = df[FEATURES].to_numpy(dtype="float32")
    classes = sorted(df[TARGET].astype(str).unique())
    index = {c: i for i, c in enumerate(classes)}
    y = df[TARGET].astype(str).map(index).to_numpy(dtype="int32")
    # Standardise, fitted on the data (population std, like sklearn's StandardScaler).
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    x = ((x - mean) / std).astype("float32")
    return x, y, len(classes)


def build(keras, n_features, n_classes):
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential([
        keras.Input(shape=(n_features,)),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    compile_classifier(keras, model, LEARNING_RATE)
    return model


def main():
    args = parse_args()
    x, y, n_classes = load(args.data)
    import keras


    report(lambda: build(keras, x.shape[1], n_classes), x, y, args.epochs, BATCH_SIZE)


if __name__ == "__main__":
    main()
