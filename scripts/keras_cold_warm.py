"""Shared by the Keras peers of graft's benchmarks: time `model.fit` on a freshly built model twice
in one process (cold: includes JAX tracing and XLA compilation; warm: a second fresh model) and
print one JSON line. Import it after setting KERAS_BACKEND=jax and JAX_PLATFORMS=cpu."""

import json
import platform
import sys
import time


def compile_classifier(keras, model, learning_rate=0.001):
    """Adam + sparse categorical cross-entropy, as every graft classifier trains."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def timed_fit(model, x, y, epochs, batch_size):
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    seconds = time.perf_counter() - t0
    probs = model.predict(x, batch_size=256, verbose=0)
    return seconds, float((probs.argmax(axis=1) == y).mean())


def report(build, x, y, epochs, batch_size, **extra):
    """`build()` returns a compiled model; prints {fit_seconds, fit_seconds_warm, ...extra}."""
    import jax
    import keras

    if keras.backend.backend() != "jax":
        sys.exit(f"error: keras backend is {keras.backend.backend()!r}, expected 'jax'")
    cold, acc = timed_fit(build(), x, y, epochs, batch_size)
    warm, acc_warm = timed_fit(build(), x, y, epochs, batch_size)
    print(json.dumps({
        "fit_seconds": round(cold, 4),
        "fit_seconds_warm": round(warm, 4),
        "train_accuracy": round(acc, 4),
        "train_accuracy_warm": round(acc_warm, 4),
        "epochs": epochs,
        "batch_size": batch_size,
        "samples": int(len(x)),
        **extra,
        "keras": keras.__version__,
        "jax": jax.__version__,
        "jax_devices": [str(d) for d in jax.devices()],
        "python": platform.python_version(),
    }), flush=True)
