"""Classifier training: the step alone against the step fed by busgan's loader, in one run.

Both feed the same compiled busgan model (``build_classifier`` and ``compile_model`` with the
[classifier] section of ``--config``) through ``model.fit``, with the same workers:
  synthetic   a PyDataset handing out one fixed in-memory batch (no decoding): the step alone
  loader      ``make_datasets``' training stream over PNG files at the data size (decoding,
              resize to the input size, shift and flip augmentation), as train-real uses it
  ratio       loader / synthetic images/s; target >= 0.97 (issue 14, point 3)
Steady state: the first ``--warmup`` batches of each fit (compilation, workers starting) are not
timed. Rounds alternate (synthetic, loader, synthetic, ...) and the best of each is kept, so
another job slowing one round does not decide the ratio.

    KERAS_BACKEND=jax python benchmarks/classifier_speed.py                 # configs/demo.toml sizes
    KERAS_BACKEND=jax python benchmarks/classifier_speed.py --config configs/paper.toml --mixed \\
        --steps 40 --workers 8                                              # InceptionResNetV2 256x256
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("BUSGAN_NO_PROGRESS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


class Fixed(keras.utils.PyDataset):
    """One batch, handed out ``n`` times: the loader's cost removed, the fit loop kept."""

    def __init__(self, x: np.ndarray, y: np.ndarray, n: int, **kw) -> None:
        super().__init__(**kw)
        self.x, self.y, self.n = x, y, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        return self.x, self.y


class Clock(keras.callbacks.Callback):
    """The time at which batch ``warmup - 1`` ended: timing starts there."""

    def __init__(self, warmup: int) -> None:
        super().__init__()
        self.warmup, self.start = warmup, None

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if batch == self.warmup - 1:
            self.start = time.perf_counter()


def write_images(root: Path, per_class: int, size: int, seed: int = 0) -> None:
    """Smooth speckle PNGs (grayscale, as prepare writes them), half per class."""
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(seed)
    for c in ("benign", "malignant"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            im = gaussian_filter(rng.normal(100, 40, (size, size)), 1.0).clip(0, 255).astype(np.uint8)
            Image.fromarray(im).save(root / c / f"{c}_{i:05d}.png")


def timed_fit(model: keras.Model, data, batch: int, steps: int, warmup: int) -> float:
    clock = Clock(warmup)
    model.fit(data, epochs=1, steps_per_epoch=warmup + steps, callbacks=[clock], verbose=0)
    return steps * batch / (time.perf_counter() - clock.start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.toml", help="its [classifier] and data.size")
    ap.add_argument("--image-size", type=int, default=None, help="stored image side (default: data.size)")
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--mixed", action="store_true", help="mixed bfloat16")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per round")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each fit")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--row", action="store_true", help="one Markdown table row")
    a = ap.parse_args()

    from busgan.classifier.model import build_classifier
    from busgan.classifier.train import compile_model, dtype_policy, make_datasets, use_processes
    from busgan.config import load_config
    from busgan.stylegan2 import autodiff

    cfg = load_config(a.config)
    changes = {k: v for k, v in (("backbone", a.backbone), ("input_size", a.input_size),
                                 ("batch_size", a.batch), ("workers", a.workers)) if v is not None}
    ccfg = dataclasses.replace(cfg.classifier, weights="none", mixed_precision=a.mixed or cfg.classifier.mixed_precision,
                               **changes)
    image_size = a.image_size or cfg.data.size
    batch, n_batches = ccfg.batch_size, a.warmup + a.steps
    root = Path(tempfile.mkdtemp(prefix="busgan-clsspeed-"))
    try:
        write_images(root, math.ceil(n_batches * batch / 2), image_size)
        train, _, _ = make_datasets(root, root, ccfg, None)  # the validation stream is not used
        keras.utils.set_random_seed(0)
        with dtype_policy(ccfg.mixed_precision):
            model = build_classifier(ccfg)
        compile_model(model, ccfg)
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 255, (batch, ccfg.input_size, ccfg.input_size, 3)).astype(np.float32)
        y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, batch)]
        workers = max(1, ccfg.workers)
        fixed = Fixed(x, y, n_batches, workers=workers,
                      use_multiprocessing=use_processes(ccfg.loader) and workers > 1)
        best = {"synthetic": 0.0, "loader": 0.0}
        for _ in range(a.rounds):
            best["synthetic"] = max(best["synthetic"], timed_fit(model, fixed, batch, a.steps, a.warmup))
            best["loader"] = max(best["loader"], timed_fit(model, train, batch, a.steps, a.warmup))
        ratio = best["loader"] / best["synthetic"]
        device = autodiff.device_info()["device"]
        what = (f"{ccfg.backbone} {ccfg.input_size}x{ccfg.input_size} from {image_size}x{image_size} PNG, "
                f"batch {batch}, {'mixed bfloat16' if ccfg.mixed_precision else 'float32'}, "
                f"{workers} {'process' if use_processes(ccfg.loader) else 'thread'} workers")
        if a.row:
            print(f"| classifier step and loader | {device}, {what} | step alone {best['synthetic']:,.0f}, "
                  f"busgan's loader {best['loader']:,.0f} images/s; ratio **{ratio:.2f}** | ratio >= 0.97 |")
        else:
            print(f"backend {keras.backend.backend()}, {device}; {what}; best of {a.rounds} rounds of {a.steps} steps")
            print(f"{'synthetic (step alone)':>24}: {best['synthetic']:9.1f} images/s")
            print(f"{'busgan loader':>24}: {best['loader']:9.1f} images/s")
            print(f"{'ratio loader / synthetic':>24}: {ratio:9.3f}   (target >= 0.97)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
