"""Classifier training throughput (images/s) at the paper's size, float32 vs mixed bfloat16.

Usage: KERAS_BACKEND=jax python benchmarks/classifier_speed.py [--size 256 --batch 32 --steps 30]
Random images, weights=None (speed does not depend on the weights), the seed's head, Adam,
one XLA-compiled train step; the first steps (compilation) are not timed. Both precisions
are measured in one run so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def build(size: int, backbone: str) -> keras.Model:
    base = getattr(keras.applications, backbone)(include_top=False, weights=None,
                                                 input_shape=(size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    x = keras.layers.Dense(1024, activation="relu")(x)
    out = keras.layers.Dense(2, activation="softmax", dtype="float32")(x)
    return keras.Model(base.input, out)


def measure(size: int, batch: int, steps: int, warmup: int, policy: str, backbone: str) -> float:
    keras.mixed_precision.set_global_policy(policy)
    model = build(size, backbone)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  jit_compile=True)
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 2, batch), 2)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss).ravel()[0])  # wait for the device
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--backbone", default="InceptionResNetV2")
    ap.add_argument("--policies", default="float32,mixed_bfloat16")
    a = ap.parse_args()
    print(f"backend {keras.backend.backend()}, {a.backbone} {a.size}x{a.size}, batch {a.batch}")
    results = {}
    for policy in a.policies.split(","):
        results[policy] = measure(a.size, a.batch, a.steps, a.warmup, policy, a.backbone)
        print(f"{policy:>16}: {results[policy]:8.1f} images/s")
    if len(results) == 2:
        (p0, r0), (p1, r1) = results.items()
        print(f"ratio {p1} / {p0}: {r1 / r0:.2f}")


if __name__ == "__main__":
    main()
