"""Confidence intervals of a proportion (accuracy, sensitivity, specificity)."""

from __future__ import annotations

from typing import Any, Literal

from statsmodels.stats.proportion import proportion_confint

from busgan.errors import BusganError
from busgan.stats._checks import check_alpha

__all__ = ["proportion", "proportion_ci"]

_METHODS = {"wilson": "wilson", "exact": "beta"}  # exact = Clopper-Pearson (statsmodels: "beta")


def proportion_ci(k: int, n: int, method: Literal["wilson", "exact"] = "wilson",
                  alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided 1 - alpha interval of k successes in n trials: Wilson score or Clopper-Pearson.

    Always finite, inside [0, 1]; k = 0 gives a lower bound of 0 and k = n an upper bound of 1.
    n = 0 is refused (a proportion of nothing has no interval).
    """
    alpha = check_alpha(alpha)
    if method not in _METHODS:
        raise BusganError(f"interval method {method!r}: use 'wilson' or 'exact'")
    if int(n) != n or int(k) != k or n < 1 or not 0 <= k <= n:
        raise BusganError(f"proportion {k}/{n}: need whole numbers with 0 <= k <= n and n >= 1")
    low, high = proportion_confint(int(k), int(n), alpha=alpha, method=_METHODS[method])
    # Both methods give exactly 0 at k = 0 and 1 at k = n; Wilson's arithmetic misses by 1 ulp.
    return (0.0 if k == 0 else max(0.0, float(low))), (1.0 if k == n else min(1.0, float(high)))


def proportion(k: int, n: int, alpha: float = 0.05) -> dict[str, Any]:
    """k/n with both intervals, as stored in stats.json (flat keys, plain floats)."""
    w = proportion_ci(k, n, "wilson", alpha)
    e = proportion_ci(k, n, "exact", alpha)
    return {"k": int(k), "n": int(n), "estimate": k / n,
            "wilson_low": w[0], "wilson_high": w[1], "exact_low": e[0], "exact_high": e[1]}
