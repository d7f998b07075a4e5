#!/usr/bin/env python3
"""JAX peer of graft's fine-tuning phase 2, for scripts/bench-finetune.sh.

The frozen front runs once in Python onnxruntime, cut at the unfreeze tensor (onnx.utils
extract_model); its states are cached under --cache. The tail (every node after the unfreeze
tensor up to the backbone's output) is run by a small ONNX interpreter written in jax.numpy, so
the op sequence is the file's, node for node: MatMul, Add, Mul, Div, Sub, Reshape, Transpose,
Softmax, Erf, LayerNormalization, Identity, Conv (groups, strides, pads, dilations), Clip,
GlobalAveragePool, Flatten. Its parameters are the tail's float initializers with more than one
element (as graft's `Tail`), read from the ONNX file; scalars and shapes stay constants.

--task minilm   all-MiniLM-L6-v2, tail from `layernormalization_152` (layers 5 and 6) to
                `last_hidden_state`, the additive mask `[B, 1, 1, S]` (0 valid, the file's
                `negbig` at padding) as graft's SequenceMask, masked mean pooling, then graft's
                head: Dropout(0.2), Dense(384, 256), ReLU, Dropout(0.2), Dense(256, 3).
                Batches as graft's trainer buckets them (src/train/mod.rs `batches`): shuffle,
                pools of 32 batches sorted by length, batches of --batch, batch order shuffled,
                each batch cut to its longest row. Validation: rows sorted by length, chunks of
                max(batch, 256) rows, each cut to its longest row (`predict_masked`).
--task effnet   EfficientNet-Lite0, tail from `add_54` (last block + 1x1 head conv) to
                `features`, then Dropout(0.2), Dense(1280, 2); batches of --batch in shuffled
                order, validation in chunks of 256 (`predict_with`).

Phase-2 training step as graft's (src/nn/optim.rs): softmax cross-entropy (mean), global-norm
clipping at 1.0 over tail + head, AdamW (beta 0.9/0.999, eps 1e-7 outside the root, bias
correction folded into the step, decoupled decay `w *= 1 - lr * wd` on tensors of rank >= 2),
tail lr / head lr from the pipeline. The rows: a stratified holdout of --val-fraction (per class
round(n * fraction), as src/data/split.rs), rows kept in file order.

Before timing, the JAX tail's forward on a few batches of front states must match onnxruntime's
full model at the tail's end tensor (max |diff| <= 1e-4 at valid tokens); otherwise exit 1.

Compilation is excluded: the batch plan of every timed epoch is drawn first and each distinct
batch shape (train step and validation forward) is compiled ahead of time (jit .lower().compile()).
One timed epoch = the training pass over the train rows + the validation pass, like graft's
`EpochRecord.seconds`. Prints exactly one JSON line to stdout.
"""

import os
import sys

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
# Every Conv through lax.conv_general_dilated (see --naive-conv).
NAIVE_CONV = "--naive-conv" in sys.argv
# Before jax is imported: CPU only, XLA's intra-op pool limited to THREADS.
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + f" --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={THREADS}"
).strip()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

try:
    import numpy as np
    import onnx
    import onnx.utils
    from onnx import numpy_helper
    import onnxruntime as ort
    import jax
    import jax.numpy as jnp
    from jax import lax
except Exception as e:  # noqa: BLE001
    sys.exit(f"error: cannot load the peer's packages (numpy, onnx, onnxruntime, jax): {e!r}")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO / ".." / "shared"
MINILM = SHARED / "models" / "all-minilm-l6-v2"
EFFNET = SHARED / "models" / "efficientnet-lite0" / "model.onnx"
SPOOKY = SHARED / "data" / "spooky-authors" / "train.csv"
CATS = SHARED / "data" / "cats-vs-dogs" / "train"

TASKS = {
    "minilm": dict(model=MINILM / "model.onnx", start="layernormalization_152", end="last_hidden_state",
                   side="unsqueeze_12", hidden=[256], dropout=0.2, tail_lr=5e-5, head_lr=1e-3),
    "effnet": dict(model=EFFNET, start="add_54", end="features", side=None,
                   hidden=[], dropout=0.2, tail_lr=1e-4, head_lr=1e-3),
}
WEIGHT_DECAY, CLIP, B1, B2, EPS = 0.01, 1.0, 0.9, 0.999, 1e-7


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the ONNX tail ----

class Tail:
    """The nodes of `model` after `start` up to `end`, as a jax function of (params, x, side)."""

    def __init__(self, model, start, end, side):
        g = model.graph
        producer = {o: i for i, n in enumerate(g.node) for o in n.output}
        inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        # Nodes that depend on `start`, in file (topological) order, up to `end`.
        live, nodes = {start}, []
        for n in g.node[producer[start] + 1: producer[end] + 1]:
            if any(i in live for i in n.input):
                nodes.append(n)
                live.update(n.output)
        self.nodes = nodes
        self.start, self.end, self.side = start, end, side
        used = [i for n in nodes for i in n.input if i in inits]
        self.params = {}
        self.consts = {}
        for name in dict.fromkeys(used):
            a = inits[name]
            if a.dtype == np.float32 and a.size > 1:
                self.params[name] = a
            else:
                self.consts[name] = a
        reads = {i for n in nodes for i in n.input} - live - set(inits) - {start}
        want = {side} if side else set()
        if reads != want:
            raise SystemExit(f"error: the tail reads {sorted(reads)}, expected {sorted(want)}")
        ops = {n.op_type for n in nodes}
        unknown = ops - set(OPS)
        if unknown:
            raise SystemExit(f"error: the JAX peer lacks ops {sorted(unknown)}")

    def __call__(self, params, x, side=None):
        env = {self.start: x}
        if self.side:
            env[self.side] = side
        env.update(params)
        for n in self.nodes:
            ins = [env[i] if i in env else self.consts[i] for i in n.input]
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            env[n.output[0]] = OPS[n.op_type](ins, attrs)
        return env[self.end]


def _reshape(ins, a):
    x, shp = ins
    shape = [x.shape[i] if s == 0 else int(s) for i, s in enumerate(np.asarray(shp).tolist())]
    return jnp.reshape(x, shape)


def _layer_norm(ins, a):
    x, g, b = ins
    axis, eps = a.get("axis", -1), a.get("epsilon", 1e-5)
    mean = jnp.mean(x, axis=axis, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axis, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * g + b


def _conv(ins, a):
    x, w = ins[0], ins[1]
    k = len(w.shape) - 2
    pads = a.get("pads", [0] * 2 * k)
    strides = a.get("strides", [1] * k)
    dil = a.get("dilations", [1] * k)
    group = a.get("group", 1)
    plain = k == 2 and all(s == 1 for s in strides) and all(d == 1 for d in dil)
    if NAIVE_CONV or not plain:
        y = lax.conv_general_dilated(
            x, w,
            window_strides=strides,
            padding=[(pads[i], pads[i + k]) for i in range(k)],
            rhs_dilation=dil,
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            feature_group_count=group,
        )
    elif group == 1 and w.shape[2:] == (1, 1) and not any(pads):
        # A 1x1 convolution is a matrix product (XLA:CPU's conv path is ~3x slower here).
        y = jnp.einsum("nchw,oc->nohw", x, w[:, :, 0, 0])
    elif group == x.shape[1] == w.shape[0] and w.shape[1] == 1:
        # Depthwise: a sum of kh * kw shifted products (XLA:CPU's grouped-conv gradient is ~15x
        # slower).
        kh, kw = w.shape[2:]
        xp = jnp.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
        oh, ow = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
        y = sum(xp[:, :, i: i + oh, j: j + ow] * w[None, :, 0, i, j, None, None]
                for i in range(kh) for j in range(kw))
    else:
        y = lax.conv_general_dilated(
            x, w, window_strides=strides, padding=[(pads[i], pads[i + k]) for i in range(k)],
            dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=group)
    if len(ins) > 2:
        y = y + ins[2].reshape(1, -1, 1, 1)
    return y


def _softmax(ins, a):
    return jax.nn.softmax(ins[0], axis=a.get("axis", -1))


OPS = {
    "MatMul": lambda i, a: jnp.matmul(i[0], i[1]),
    "Add": lambda i, a: i[0] + i[1],
    "Sub": lambda i, a: i[0] - i[1],
    "Mul": lambda i, a: i[0] * i[1],
    "Div": lambda i, a: i[0] / i[1],
    "Reshape": _reshape,
    "Transpose": lambda i, a: jnp.transpose(i[0], a["perm"]),
    "Softmax": _softmax,
    "Erf": lambda i, a: jax.scipy.special.erf(i[0]),
    "LayerNormalization": _layer_norm,
    "Identity": lambda i, a: i[0],
    "Conv": _conv,
    "Clip": lambda i, a: jnp.clip(i[0], i[1].reshape(()), i[2].reshape(())),
    "GlobalAveragePool": lambda i, a: jnp.mean(i[0], axis=(2, 3), keepdims=True),
    "Flatten": lambda i, a: jnp.reshape(i[0], (i[0].shape[0], -1)),
}


# ------------------------------------------------------------------------------- the front ----

def ort_session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def cut_front(model_path, inputs, outputs, out):
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        onnx.utils.extract_model(str(model_path), str(tmp), inputs, outputs)
        tmp.rename(out)
    return out


def read_spooky():
    import csv
    with open(SPOOKY, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = sorted({r["author"] for r in rows})
    return [r["text"] for r in rows], np.array([labels.index(r["author"]) for r in rows], np.int32)


def tokenizer():
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(MINILM / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(128)
    return tok


def text_feeds(encs):
    s = max(len(e.ids) for e in encs)
    ids = np.zeros((len(encs), s), np.int64)
    mask = np.zeros((len(encs), s), np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def minilm_states(cache, threads):
    """Front states at the unfreeze tensor for every sentence: (flat [tokens, 384], offsets, lengths, y)."""
    f = cache / "minilm-states.npz"
    texts, y = read_spooky()
    if f.exists():
        z = np.load(f)
        return z["flat"], z["offsets"], z["lengths"], y, texts
    cfg = TASKS["minilm"]
    front = cut_front(cfg["model"], ["input_ids", "attention_mask", "token_type_ids"], [cfg["start"]],
                      cache / "minilm-front.onnx")
    sess = ort_session(front, threads)
    encs = tokenizer().encode_batch(texts)
    lengths = np.array([len(e.ids) for e in encs], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    flat = np.zeros((int(lengths.sum()), 384), np.float32)
    order = np.argsort(lengths, kind="stable")
    t0 = time.perf_counter()
    for s in range(0, len(order), 64):
        idx = order[s: s + 64]
        out = sess.run([cfg["start"]], text_feeds([encs[i] for i in idx]))[0]
        for j, i in enumerate(idx):
            flat[offsets[i]: offsets[i] + lengths[i]] = out[j, : lengths[i]]
    log(f"peer: front states of {len(texts)} sentences in {time.perf_counter() - t0:.1f} s")
    tmp = cache / "minilm-states.tmp.npz"
    np.savez(tmp, flat=flat, offsets=offsets, lengths=lengths)
    tmp.rename(f)
    return flat, offsets, lengths, y, texts


def cat_images():
    from PIL import Image
    paths, y = [], []
    classes = sorted(p.name for p in CATS.iterdir() if p.is_dir())
    for c, name in enumerate(classes):
        for p in sorted((CATS / name).iterdir()):
            paths.append(p)
            y.append(c)

    def load(p):
        # The manifest's preprocessing: stretch to 224 x 224, (x - 127) / 128, NCHW.
        im = Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR)
        return ((np.asarray(im, np.float32) - 127.0) / 128.0).transpose(2, 0, 1)

    return paths, np.array(y, np.int32), load


def effnet_states(cache, threads):
    f = cache / "effnet-states.npy"
    paths, y, load = cat_images()
    if f.exists():
        return np.load(f), y, paths, load
    cfg = TASKS["effnet"]
    front = cut_front(cfg["model"], ["input"], [cfg["start"]], cache / "effnet-front.onnx")
    sess = ort_session(front, threads)
    t0 = time.perf_counter()
    parts = []
    for s in range(0, len(paths), 32):
        x = np.stack([load(p) for p in paths[s: s + 32]])
        parts.append(sess.run([cfg["start"]], {"input": x})[0])
    states = np.concatenate(parts)
    log(f"peer: front states of {len(paths)} images in {time.perf_counter() - t0:.1f} s")
    np.save(cache / "effnet-states.tmp.npy", states)
    (cache / "effnet-states.tmp.npy").rename(f)
    return states, y, paths, load


# ------------------------------------------------------------------------- batches & split ----

def stratified_split(y, fraction, rng):
    train, val = [], []
    for c in np.unique(y):
        g = rng.permutation(np.flatnonzero(y == c))
        n_val = min(max(int(round(len(g) * fraction)), 1), len(g) - 1) if len(g) >= 2 else 0
        val.extend(g[:n_val])
        train.extend(g[n_val:])
    return np.sort(np.array(train)), np.sort(np.array(val))


def epoch_batches(n, size, lengths, rng):
    """graft's `batches`: shuffle; with lengths, pools of 32 batches sorted by length (stable),
    then the batch order shuffled."""
    order = rng.permutation(n)
    if lengths is None:
        return [order[s: s + size] for s in range(0, n, size)]
    out = []
    for p in range(0, n, size * 32):
        pool = order[p: p + size * 32]
        pool = pool[np.argsort(lengths[pool], kind="stable")]
        out.extend(pool[s: s + size] for s in range(0, len(pool), size))
    return [out[i] for i in rng.permutation(len(out))]


# ------------------------------------------------------------------------------ the model ----

def init_head(widths, rng):
    head = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        std = np.sqrt(2.0 / (a + b)) if last else np.sqrt(2.0 / a)  # Glorot last, He before
        head.append({"w": (rng.standard_normal((a, b)) * std).astype(np.float32), "b": np.zeros(b, np.float32)})
    return head


def head_forward(head, z, dropout, key, train):
    for i, layer in enumerate(head):
        if train and dropout > 0:
            key, sub = jax.random.split(key)
            keep = jax.random.bernoulli(sub, 1.0 - dropout, z.shape)
            z = jnp.where(keep, z / (1.0 - dropout), 0.0)
        z = z @ layer["w"] + layer["b"]
        if i < len(head) - 1:
            z = jax.nn.relu(z)
    return z


def build(task, tail, cfg, negbig):
    def features(params, x, valid):
        if task == "minilm":
            mask = ((1.0 - valid) * negbig)[:, None, None, :]
            h = tail(params["tail"], x, mask)
            return jnp.sum(h * valid[:, :, None], axis=1) / jnp.sum(valid, axis=1, keepdims=True)
        return tail(params["tail"], x)

    def loss_fn(params, x, valid, y, key):
        logits = head_forward(params["head"], features(params, x, valid), cfg["dropout"], key, True)
        logp = jax.nn.log_softmax(logits)
        loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return loss, logits

    lrs = {"tail": cfg["tail_lr"], "head": cfg["head_lr"]}

    def step(params, m, v, t, x, valid, y, key):
        (loss, logits), g = jax.value_and_grad(loss_fn, has_aux=True)(params, x, valid, y, key)
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in jax.tree_util.tree_leaves(g)))
        g = jax.tree_util.tree_map(lambda a: a * jnp.where(norm > CLIP, CLIP / norm, 1.0), g)
        t = t + 1
        c1 = 1.0 - B1 ** t
        c2 = 1.0 - B2 ** t
        new = {}
        for part in ("tail", "head"):
            lr = lrs[part]

            def upd(w, m_, v_, g_):
                if w.ndim >= 2:
                    w = w * (1.0 - lr * WEIGHT_DECAY)
                m_ = B1 * m_ + (1.0 - B1) * g_
                v_ = B2 * v_ + (1.0 - B2) * g_ * g_
                return w - lr * jnp.sqrt(c2) / c1 * m_ / (jnp.sqrt(v_) + EPS), m_, v_

            out = jax.tree_util.tree_map(upd, params[part], m[part], v[part], g[part])
            new[part] = out
        split = lambda i: {p: jax.tree_util.tree_map(lambda o: o[i], new[p], is_leaf=lambda o: isinstance(o, tuple))
                           for p in new}
        hits = jnp.sum(jnp.argmax(logits, axis=1) == y)
        return split(0), split(1), split(2), t, loss * y.shape[0], hits

    def predict(params, x, valid):
        return jax.nn.softmax(head_forward(params["head"], features(params, x, valid), 0.0, None, False))

    return jax.jit(step, donate_argnums=(0, 1, 2)), jax.jit(predict)


# ------------------------------------------------------------------------------------ main ----

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--limit", type=int, default=0, help="first N rows only (quick checks)")
    ap.add_argument("--cache", type=Path, default=REPO / "target" / "bench-finetune")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--naive-conv", action="store_true",
                    help="run every Conv through lax.conv_general_dilated (slow on XLA:CPU for 1x1 and "
                         "depthwise gradients); by default 1x1 convs are einsums and depthwise convs "
                         "shifted sums")
    args = ap.parse_args()
    cfg = TASKS[args.task]
    args.cache.mkdir(parents=True, exist_ok=True)
    # Compiled executables persist across runs of this script (compilation is excluded anyway).
    jax.config.update("jax_compilation_cache_dir", str(args.cache / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    rng = np.random.default_rng(args.seed)
    model = onnx.load(str(cfg["model"]))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    negbig = float(inits["negbig"].reshape(())) if "negbig" in inits else 0.0
    tail = Tail(model, cfg["start"], cfg["end"], cfg["side"])

    t0 = time.perf_counter()
    if args.task == "minilm":
        flat, offsets, lengths, y, texts = minilm_states(args.cache, THREADS)
        width = 384
    else:
        states, y, paths, load = effnet_states(args.cache, THREADS)
        lengths = None
        width = 1280
    front_seconds = time.perf_counter() - t0
    n = len(y) if not args.limit else min(args.limit, len(y))
    y = y[:n]
    classes = int(y.max()) + 1

    def gather(rows):
        if args.task == "effnet":
            return states[rows], np.ones((len(rows), 1), np.float32)
        s = int(lengths[rows].max())
        x = np.zeros((len(rows), s, width), np.float32)
        valid = np.zeros((len(rows), s), np.float32)
        for j, i in enumerate(rows):
            x[j, : lengths[i]] = flat[offsets[i]: offsets[i] + lengths[i]]
            valid[j, : lengths[i]] = 1.0
        return x, valid

    params = {"tail": {k: jnp.asarray(a) for k, a in tail.params.items()},
              "head": init_head([width] + cfg["hidden"] + [classes], rng)}
    params["head"] = jax.tree_util.tree_map(jnp.asarray, params["head"])
    step, predict = build(args.task, tail, cfg, negbig)

    # Faithfulness: the JAX tail vs onnxruntime's full model at the tail's end tensor.
    full = ort_session(cfg["model"], THREADS)
    fwd = jax.jit(lambda p, x, side: tail(p, x, side))
    worst = 0.0
    check = rng.choice(n, size=48, replace=False)
    for part in np.array_split(check, 3):
        x, valid = gather(part)
        if args.task == "minilm":
            ref = full.run([cfg["end"]], text_feeds(tokenizer().encode_batch([texts[i] for i in part])))[0]
            side = jnp.asarray(((1.0 - valid) * negbig)[:, None, None, :])
            got = np.asarray(fwd(params["tail"], jnp.asarray(x), side))
            diff = np.abs(got - ref)[valid.astype(bool)]
        else:
            out_name = cfg["end"]
            ext = cut_front(cfg["model"], ["input"], [out_name], args.cache / "effnet-features.onnx")
            ref = ort_session(ext, THREADS).run([out_name], {"input": np.stack([load(paths[i]) for i in part])})[0]
            got = np.asarray(fwd(params["tail"], jnp.asarray(x), None))
            diff = np.abs(got - ref)
        worst = max(worst, float(diff.max()))
    log(f"peer: JAX tail vs onnxruntime at `{cfg['end']}`: max |diff| {worst:.2e} on {len(check)} rows")
    if not worst <= 1e-4:
        sys.exit(f"error: the JAX tail differs from onnxruntime by {worst:.3e} (> 1e-4): not a faithful peer")

    tr, va = stratified_split(y, args.val_fraction, rng)
    tr_len = None if lengths is None else lengths[tr]
    plans = [epoch_batches(len(tr), args.batch, tr_len, rng) for _ in range(args.epochs)]
    plans = [[tr[b] for b in plan] for plan in plans]
    vchunk = max(args.batch, 256)
    # graft batches validation rows by length (`predict_masked`): sorted, then chunked.
    va_order = va if lengths is None else va[np.argsort(lengths[va], kind="stable")]
    vplan = [va_order[s: s + vchunk] for s in range(0, len(va_order), vchunk)]

    # Ahead-of-time compilation of every batch shape the timed epochs use.
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    t = jnp.zeros((), jnp.float32)
    key = jax.random.PRNGKey(args.seed)
    spec = lambda shape, dt=jnp.float32: jax.ShapeDtypeStruct(shape, dt)
    shape_of = (lambda rows: (len(rows), int(lengths[rows].max()))) if lengths is not None else (
        lambda rows: (len(rows),))
    xs = lambda s: spec((s[0], s[1], width)) if len(s) == 2 else spec((s[0],) + states.shape[1:])
    vs = lambda s: spec((s[0], s[1])) if len(s) == 2 else spec((s[0], 1))
    c0 = time.perf_counter()
    steps, preds = {}, {}
    for plan in plans:
        for rows in plan:
            s = shape_of(rows)
            if s not in steps:
                steps[s] = step.lower(params, m, v, t, xs(s), vs(s), spec((s[0],), jnp.int32), key).compile()
    for rows in vplan:
        s = shape_of(rows)
        if s not in preds:
            preds[s] = predict.lower(params, xs(s), vs(s)).compile()
    compile_seconds = time.perf_counter() - c0
    log(f"peer: compiled {len(steps)} train-step and {len(preds)} predict shapes in {compile_seconds:.1f} s")

    history = []
    for e, plan in enumerate(plans):
        started = time.perf_counter()
        loss_sum, hits = 0.0, 0
        for rows in plan:
            x, valid = gather(rows)
            key, sub = jax.random.split(key)
            params, m, v, t, l, h = steps[shape_of(rows)](params, m, v, t, x, valid, y[rows], sub)
            loss_sum, hits = loss_sum + l, hits + h
        loss_sum, hits = float(loss_sum), int(hits)
        trained = time.perf_counter()
        probs = []
        for rows in vplan:
            x, valid = gather(rows)
            probs.append(np.asarray(preds[shape_of(rows)](params, x, valid)))
        p = np.concatenate(probs)
        val_acc = float(np.mean(np.argmax(p, 1) == y[va_order]))
        val_loss = float(-np.mean(np.log(np.clip(p[np.arange(len(va)), y[va_order]], 1e-7, 1.0))))
        done = time.perf_counter()
        history.append(dict(epoch=e + 1, seconds=done - started, train_seconds=trained - started,
                            val_seconds=done - trained, loss=loss_sum / len(tr), accuracy=hits / len(tr),
                            val_loss=val_loss, val_accuracy=val_acc))
        log(f"peer: epoch {e + 1}: {done - started:.2f} s (train {trained - started:.2f} s), "
            f"loss {loss_sum / len(tr):.4f} acc {hits / len(tr):.4f} val_acc {val_acc:.4f}")

    print(json.dumps(dict(
        task=args.task, rows=int(n), train_rows=int(len(tr)), val_rows=int(len(va)), batch=args.batch,
        tail_nodes=len(tail.nodes), tail_parameters=int(sum(a.size for a in tail.params.values())),
        check_max_abs_diff=worst, front_seconds=front_seconds, compile_seconds=compile_seconds,
        train_shapes=len(steps), predict_shapes=len(preds),
        seconds_per_epoch=float(np.mean([h["seconds"] for h in history])), history=history,
        naive_conv=NAIVE_CONV, jax=jax.__version__, onnxruntime=ort.__version__, threads=THREADS,
        xla_flags=os.environ["XLA_FLAGS"])))


if __name__ == "__main__":
    main()
