"""Stratified bootstrap of the AUC difference of two models scored on the same cases.

Positives and negatives are resampled separately (with replacement), so every resample keeps
the class counts and has an AUC. Seeded: the same data, seed and count give the same interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm, rankdata

from busgan.errors import BusganError
from busgan.stats._checks import binary_labels, check_alpha, finite_scores

__all__ = ["BootstrapResult", "bootstrap_auc_diff"]

_CHUNK_ELEMENTS = 4_000_000  # resampled scores ranked at once (~32 MB per model)


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile CI of AUC_a - AUC_b, the bootstrap SE, and pROC's bootstrap z / p.

    z = diff / se and p = 2 P(N(0,1) > |z|); a zero SE (every resample gives the same difference)
    gives z = 0, p = 1 if diff = 0, else z = p = None with a note.
    """
    n_resamples: int
    seed: int
    alpha: float
    diff: float
    se: float
    ci_low: float
    ci_high: float
    z: float | None
    p: float | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _aucs(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """AUC of each row (resample) from the rank sum of its positives (Mann-Whitney)."""
    m, n = x.shape[1], y.shape[1]
    r = rankdata(np.concatenate([x, y], axis=1), axis=1)
    return (r[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)


def bootstrap_auc_diff(y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike,
                       n_resamples: int = 2000, seed: int = 0, alpha: float = 0.05) -> BootstrapResult:
    """Stratified bootstrap (``n_resamples``, seeded) of AUC_a - AUC_b; the two models are
    resampled together, so their pairing is kept."""
    alpha = check_alpha(alpha)
    if int(n_resamples) != n_resamples or n_resamples < 2:
        raise BusganError(f"bootstrap resamples: {n_resamples!r}; give a whole number >= 2 "
                          "(2000 is the usual choice)")
    pos = binary_labels(y_true)
    a = finite_scores(score_a, pos.size, "score_a")
    b = finite_scores(score_b, pos.size, "score_b")
    xa, ya, xb, yb = a[pos], a[~pos], b[pos], b[~pos]
    m, n = xa.size, ya.size
    diff = float(_aucs(xa[None], ya[None])[0] - _aucs(xb[None], yb[None])[0])
    rng = np.random.default_rng(int(seed))
    chunk = max(1, _CHUNK_ELEMENTS // (m + n))  # depends on the data only: same draws for a seed
    diffs = np.empty(int(n_resamples))
    for start in range(0, int(n_resamples), chunk):
        k = min(chunk, int(n_resamples) - start)
        ip = rng.integers(0, m, size=(k, m))
        ineg = rng.integers(0, n, size=(k, n))
        diffs[start:start + k] = _aucs(xa[ip], ya[ineg]) - _aucs(xb[ip], yb[ineg])
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    se = 0.0 if diffs.min() == diffs.max() else float(np.std(diffs, ddof=1))
    note = ""
    z: float | None
    p: float | None
    if se > 0.0:
        z = diff / se
        p = float(min(1.0, 2.0 * norm.sf(abs(z))))
    elif diff == 0.0:
        z, p = 0.0, 1.0
    else:
        z = p = None
        note = "every resample gives the same AUC difference: the bootstrap z and p are undefined"
    return BootstrapResult(int(n_resamples), int(seed), alpha, diff, se, float(low), float(high), z, p, note)
