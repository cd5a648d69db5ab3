"""McNemar's test of two classifiers' paired correct/incorrect outcomes on the same cases.

Table orientation (the paper's): rows = model A correct / incorrect, columns = model B correct /
incorrect, so b = A right & B wrong and c = A wrong & B right. Only b and c carry evidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import binom, chi2
from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar

from busgan.errors import BusganError

__all__ = ["McNemarResult", "mcnemar", "mcnemar_table"]


@dataclass(frozen=True)
class McNemarResult:
    """All common McNemar variants for one 2x2 table (two-sided p-values).

    ``statistic`` = min(b, c), what statsmodels' exact test reports. With b = c = 0 (no
    discordant pair) every p is 1 and both chi-squares are 0. ``mid_p`` is the doubled one-sided
    mid-p, capped at 1, so it is 1 whenever b = c.
    """
    table: list[list[int]]
    b: int
    c: int
    n: int
    n_discordant: int
    statistic: int
    exact_p: float
    mid_p: float
    chi2: float
    chi2_p: float
    chi2_cc: float
    chi2_cc_p: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar_table(table: ArrayLike) -> McNemarResult:
    """McNemar's tests of a 2x2 table of non-negative counts [[a, b], [c, d]].

    Exact: min(1, 2 * BinomCDF(min(b, c); b + c, 1/2)); mid-p: that minus P(X = min(b, c));
    chi-square (b - c)^2 / (b + c) and the corrected (|b - c| - 1)^2 / (b + c) (as statsmodels
    and R compute it, so b = c > 0 gives 1 / (b + c)), each on 1 degree of freedom.
    """
    t = np.asarray(table)
    if t.shape != (2, 2) or not np.all(np.isfinite(t.astype(float))) or np.any(t < 0) \
            or np.any(t != np.round(t)):
        raise BusganError(f"McNemar table {t.tolist()!r}: expected a 2x2 table of non-negative "
                          "counts [[both right, A right B wrong], [A wrong B right, both wrong]]")
    t = t.astype(np.int64)
    b, c = int(t[0, 1]), int(t[1, 0])
    nd, k = b + c, min(b, c)
    if nd == 0:
        exact_p = mid_p = chi2_p = chi2_cc_p = 1.0
        stat = stat_cc = 0.0
    else:
        # statsmodels gives the exact and both chi-square tests; it has no mid-p, written below.
        ex = _sm_mcnemar(t, exact=True)
        exact_p = float(ex.pvalue)
        # b = c: the two tails meet at the observed count and the mid-p is exactly 1.
        mid_p = 1.0 if b == c else float(min(1.0, 2.0 * binom.cdf(k, nd, 0.5) - binom.pmf(k, nd, 0.5)))
        plain = _sm_mcnemar(t, exact=False, correction=False)
        corr = _sm_mcnemar(t, exact=False, correction=True)
        stat, stat_cc = float(plain.statistic), float(corr.statistic)
        chi2_p, chi2_cc_p = float(chi2.sf(stat, 1)), float(chi2.sf(stat_cc, 1))
    return McNemarResult(table=t.tolist(), b=b, c=c, n=int(t.sum()), n_discordant=nd, statistic=k,
                         exact_p=exact_p, mid_p=mid_p, chi2=stat, chi2_p=chi2_p,
                         chi2_cc=stat_cc, chi2_cc_p=chi2_cc_p)


def mcnemar(correct_a: ArrayLike, correct_b: ArrayLike) -> McNemarResult:
    """McNemar's tests from two boolean vectors: was model A / model B right on each case?"""
    a = np.asarray(correct_a)
    b = np.asarray(correct_b)
    for name, v in (("correct_a", a), ("correct_b", b)):
        if v.ndim != 1 or not (v.dtype == bool or np.isin(v, (0, 1)).all()):
            raise BusganError(f"{name}: expected a 1-D vector of booleans (was the model right "
                              "on each case?), e.g. pred == y_true")
    if a.size != b.size:
        raise BusganError(f"correct_a has {a.size} cases but correct_b has {b.size}; "
                          "both models must be scored on the same cases")
    a, b = a.astype(bool), b.astype(bool)
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    return mcnemar_table(table)
