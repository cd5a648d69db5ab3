"""Are the class GANs independent? The same latent through both class generators.

``sgan_out/benign/seedN`` and ``sgan_out/malignant/seedN`` come from the same latent, so their
pixel correlation, over many seeds, says whether the two generators make the same pictures
(they did when both started from one seed). The reference: the same statistic for random pairs
of real training images of the two classes, at the generated images' size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from busgan import CLASSES
from busgan.imaging import fit, list_images

MAX_PAIRS = 500


def _gray(path: Path, size: int | None = None) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("L")
        if size is not None and im.size != (size, size):
            im = fit(im, size, "crop")
        return np.asarray(im, np.float64).ravel()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def paired_correlations(generated: Path, real_train: Path, seed: int = 0) -> dict[str, Any]:
    """Median correlation of same-seed generated pairs, and of random real pairs (median, 99th
    percentile); ``warning`` when the generated pairs exceed the real pairs' 99th percentile."""
    first, second = (generated / c for c in CLASSES)
    names = sorted({p.name for p in list_images(first)} & {p.name for p in list_images(second)})[:MAX_PAIRS]
    if not names:
        return {"pairs": 0, "note": "no seed was generated for both classes"}
    size = Image.open(first / names[0]).size[0]
    gen = [_corr(_gray(first / n), _gray(second / n)) for n in names]
    rng = np.random.default_rng(seed)
    reals = [list_images(real_train / c) for c in CLASSES]
    k = min(MAX_PAIRS, len(reals[0]) * len(reals[1]))
    pairs = [(rng.integers(len(reals[0])), rng.integers(len(reals[1]))) for _ in range(k)]
    real = [_corr(_gray(reals[0][i], size), _gray(reals[1][j], size)) for i, j in pairs]
    out = {"pairs": len(gen), "generated_median": float(np.median(gen)), "real_pairs": len(real),
           "real_median": float(np.median(real)), "real_p99": float(np.percentile(real, 99))}
    out["warning"] = out["generated_median"] > out["real_p99"]
    return out
