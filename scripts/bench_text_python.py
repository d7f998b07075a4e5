#!/usr/bin/env python3
"""Python references for graft's text benchmarks (who said it: ../shared/data/spooky-authors).

--lstm    Keras 3 (JAX backend, CPU), the seed's LSTM text classifier:
            TextVectorization(max_tokens=20000, output_sequence_length=64) adapted on the texts
            Embedding(20000, 64) -> LSTM(64) -> Dropout(0.5) -> Dense(3, softmax)
            Adam (lr 1e-3), sparse categorical cross-entropy, batch 64, --epochs (2), shuffle,
            seed 42, optional --validation-split (Keras takes the last fraction of the rows).
          Keras 3's TextVectorization needs TensorFlow; with the JAX backend it can only run
          outside the jitted model anyway, so the texts are vectorised once before fit. When
          TensorFlow is not installed an equivalent numpy vectoriser is used (same defaults:
          lowercase + strip punctuation, whitespace split, vocabulary by frequency with 0 = padding
          and 1 = [UNK], at most 20000 entries, sequences cut/padded at the end to 64). The
          JSON says which one ran. Vectorising is not part of the epoch times.
          Each epoch is timed with a callback: ``first_epoch_seconds`` includes tracing and XLA
          compilation, ``mean_epoch_seconds_after_first`` is the mean of the others (null with
          --epochs 1).
          Prints {"first_epoch_seconds", "mean_epoch_seconds_after_first", "epoch_seconds": [...],
          "fit_seconds", "rows", ...}.

--minilm  Python onnxruntime + `tokenizers` sentence embeddings with all-MiniLM-L6-v2 on the
          first --limit sentences (2000): tokenizer.json with its fixed padding turned off,
          dynamic padding per batch, truncation at 128; batches of --batch (32); masked mean
          pooling over last_hidden_state and L2 normalisation in numpy. The timed span covers
          tokenising, inference and pooling (CSV reading and session creation excluded).
          Prints {"sentences": n, "seconds": s, "sentences_per_s": r, ...}.

Exactly one JSON line goes to stdout.
"""

import os

# Must be set before keras / jax are imported.
os.environ["KERAS_BACKEND"] = "jax"
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from keras_cold_warm import compile_classifier  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT / ".." / "shared"
DEFAULT_DATA = SHARED / "data" / "spooky-authors" / "train.csv"
DEFAULT_MINILM = SHARED / "models" / "all-minilm-l6-v2"

SEED = 42
MAX_TOKENS = 20000
SEQ_LEN = 64
EMBED_DIM = 64
LSTM_UNITS = 64
DROPOUT = 0.5
LSTM_BATCH = 64
MAX_LENGTH = 128

# keras.layers.TextVectorization's default "lower_and_strip_punctuation" pattern.
STRIP_PUNCT = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--lstm", action="store_true", help="Keras LSTM seconds per epoch")
    mode.add_argument("--minilm", action="store_true", help="ORT + tokenizers MiniLM sentences/s")
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="CSV (default: ../shared/data/spooky-authors/train.csv)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="author")
    p.add_argument("--limit", type=int, default=None,
                   help="first N rows (default: all for --lstm, 2000 for --minilm)")
    p.add_argument("--epochs", type=int, default=2, help="--lstm: epochs (default 2)")
    p.add_argument("--validation-split", type=float, default=0.0,
                   help="--lstm: fraction of rows held out and evaluated each epoch (default 0)")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size (default: 64 for --lstm, 32 for --minilm)")
    p.add_argument("--model-dir", default=str(DEFAULT_MINILM),
                   help="--minilm: folder with model.onnx and tokenizer.json")
    p.add_argument("--threads", type=int, default=0,
                   help="--minilm: ORT intra-op threads (default 0 = onnxruntime's default)")
    args = p.parse_args()
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    if not 0.0 <= args.validation_split < 1.0:
        p.error("--validation-split must be in [0, 1)")
    if args.batch is None:
        args.batch = LSTM_BATCH if args.lstm else 32
    if args.minilm and args.limit is None:
        args.limit = 2000
    return args


def read_rows(path, text_col, label_col, limit):
    import pandas as pd

    df = pd.read_csv(path, nrows=limit, keep_default_na=False, dtype=str)
    missing = [c for c in (text_col, label_col) if c and c not in df.columns]
    if missing:
        sys.exit(f"error: {path}: missing columns {missing} (has {list(df.columns)})")
    if df.empty:
        sys.exit(f"error: {path}: no rows")
    texts = df[text_col].astype(str).tolist()
    labels = df[label_col].astype(str).tolist() if label_col else None
    return texts, labels


# ------------------------------------------------------------------ lstm ----
class NumpyTextVectorization:
    """keras.layers.TextVectorization(max_tokens, output_sequence_length) with default options."""

    name = "numpy-equivalent"

    def __init__(self, max_tokens, length):
        self.max_tokens = max_tokens
        self.length = length
        self.index = {}

    @staticmethod
    def _tokens(text):
        return STRIP_PUNCT.sub("", text.lower()).split()

    def adapt(self, texts):
        counts = Counter()
        for t in texts:
            counts.update(self._tokens(t))
        # Most frequent first, ties by token; 0 = padding, 1 = [UNK].
        vocab = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_tokens - 2]
        self.index = {tok: i + 2 for i, (tok, _) in enumerate(vocab)}

    def __call__(self, texts):
        out = np.zeros((len(texts), self.length), dtype=np.int32)
        for r, t in enumerate(texts):
            ids = [self.index.get(tok, 1) for tok in self._tokens(t)][: self.length]
            out[r, : len(ids)] = ids
        return out


def vectorize(keras, texts):
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        tv = NumpyTextVectorization(MAX_TOKENS, SEQ_LEN)
        tv.adapt(texts)
        return tv(texts), tv.name
    tv = keras.layers.TextVectorization(max_tokens=MAX_TOKENS, output_sequence_length=SEQ_LEN)
    tv.adapt(np.array(texts, dtype=object))
    return np.asarray(tv(np.array(texts, dtype=object)), dtype=np.int32), "keras.TextVectorization"


def run_lstm(args):
    texts, labels = read_rows(args.data, args.text_column, args.label_column, args.limit)
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v in labels], dtype=np.int32)

    import jax
    import keras

    if keras.backend.backend() != "jax":
        sys.exit(f"error: keras backend is {keras.backend.backend()!r}, expected 'jax'")

    t0 = time.perf_counter()
    x, vectorizer = vectorize(keras, texts)
    vectorize_seconds = time.perf_counter() - t0

    keras.utils.set_random_seed(SEED)
    model = keras.Sequential([
        keras.Input(shape=(SEQ_LEN,), dtype="int32"),
        keras.layers.Embedding(MAX_TOKENS, EMBED_DIM),
        keras.layers.LSTM(LSTM_UNITS),
        keras.layers.Dropout(DROPOUT),
        keras.layers.Dense(len(classes), activation="softmax"),
    ])
    compile_classifier(keras, model)

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []
            self._t = None

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t)

    timer = EpochTimer()
    t0 = time.perf_counter()
    hist = model.fit(
        x, y,
        batch_size=args.batch,
        epochs=args.epochs,
        shuffle=True,
        validation_split=args.validation_split or None,
        callbacks=[timer],
        verbose=0,
    )
    fit_seconds = time.perf_counter() - t0
    rest = timer.seconds[1:]
    n_val = int(len(x) * args.validation_split)
    history = {k: [round(float(v), 4) for v in vs] for k, vs in hist.history.items()}

    print(json.dumps({
        "first_epoch_seconds": round(timer.seconds[0], 4),
        "mean_epoch_seconds_after_first": round(sum(rest) / len(rest), 4) if rest else None,
        "epoch_seconds": [round(s, 4) for s in timer.seconds],
        "fit_seconds": round(fit_seconds, 4),
        "vectorize_seconds": round(vectorize_seconds, 4),
        "vectorizer": vectorizer,
        "epochs": args.epochs,
        "batch_size": args.batch,
        "rows": len(x),
        "train_rows": len(x) - n_val,
        "validation_rows": n_val,
        "classes": classes,
        "history": history,
        "keras": keras.__version__,
        "jax": jax.__version__,
        "jax_devices": [str(d) for d in jax.devices()],
        "python": platform.python_version(),
    }), flush=True)


# ---------------------------------------------------------------- minilm ----
def run_minilm(args):
    import onnxruntime as ort
    import tokenizers
    from tokenizers import Tokenizer

    texts, _ = read_rows(args.data, args.text_column, None, args.limit)
    model_dir = Path(args.model_dir)
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")  # longest in batch
    tok.enable_truncation(max_length=MAX_LENGTH)

    so = ort.SessionOptions()
    if args.threads > 0:
        so.intra_op_num_threads = args.threads
    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), sess_options=so,
                                providers=["CPUExecutionProvider"])
    session_seconds = time.perf_counter() - t0
    in_names = {i.name for i in sess.get_inputs()}
    out_name = "last_hidden_state" if "last_hidden_state" in {o.name for o in sess.get_outputs()} \
        else sess.get_outputs()[0].name

    t0 = time.perf_counter()
    out = []
    tokens = 0
    for start in range(0, len(texts), args.batch):
        enc = tok.encode_batch(texts[start:start + args.batch])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in in_names:
            feed["token_type_ids"] = np.array([e.type_ids for e in enc], dtype=np.int64)
        hidden = sess.run([out_name], feed)[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        out.append(pooled)
        tokens += int(mask.sum())
    emb = np.concatenate(out)
    seconds = time.perf_counter() - t0
    n = len(texts)
    if emb.shape[0] != n or not np.isfinite(emb).all():
        sys.exit(f"error: bad embeddings, shape {list(emb.shape)}")

    print(json.dumps({
        "sentences": n,
        "seconds": round(seconds, 4),
        "sentences_per_s": round(n / seconds, 3),
        "tokens": tokens,
        "embedding_dim": int(emb.shape[1]),
        "batch": args.batch,
        "session_seconds": round(session_seconds, 4),
        "onnxruntime": ort.__version__,
        "tokenizers": tokenizers.__version__,
        "threads": args.threads or "default",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }), flush=True)


def main():
    args = parse_args()
    if args.lstm:
        run_lstm(args)
    else:
        run_minilm(args)


if __name__ == "__main__":
    main()
