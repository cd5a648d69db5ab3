"""Proportion intervals against statistics.md and scipy's binomtest(...).proportion_ci."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from busgan.errors import BusganError
from busgan.stats import proportion, proportion_ci


def test_reference_7_of_50():
    assert proportion_ci(7, 50, "exact") == pytest.approx((0.0581917, 0.2673960), abs=5e-8)
    assert proportion_ci(7, 50, "wilson") == pytest.approx((0.0695083, 0.2618619), abs=5e-8)


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
def test_random_counts_agree_with_scipy(alpha):
    rng = np.random.default_rng(int(alpha * 1000))
    for _ in range(25):
        n = int(rng.integers(1, 400))
        k = int(rng.integers(0, n + 1))
        for method in ("exact", "wilson"):
            ref = binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method=method)
            got = proportion_ci(k, n, method, alpha)
            assert got == pytest.approx((ref.low, ref.high), rel=1e-9, abs=1e-12)


def test_boundaries():
    for method in ("exact", "wilson"):
        lo, hi = proportion_ci(0, 20, method)
        assert lo == 0.0 and 0.0 < hi < 1.0
        lo, hi = proportion_ci(20, 20, method)
        assert 0.0 < lo < 1.0 and hi == 1.0
        lo, hi = proportion_ci(1, 1, method)
        assert 0.0 < lo < 1.0 and hi == 1.0


def test_proportion_dict():
    d = proportion(7, 50)
    assert d["k"] == 7 and d["n"] == 50 and d["estimate"] == 0.14
    assert set(d) == {"k", "n", "estimate", "wilson_low", "wilson_high", "exact_low", "exact_high"}


@pytest.mark.parametrize("k, n", [(0, 0), (3, 2), (-1, 5), (1.5, 4)])
def test_impossible_counts_are_refused(k, n):
    with pytest.raises(BusganError, match="proportion"):
        proportion_ci(k, n)


def test_unknown_method_is_refused():
    with pytest.raises(BusganError, match="wilson"):
        proportion_ci(1, 2, "agresti")  # type: ignore[arg-type]
