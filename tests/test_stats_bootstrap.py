"""Stratified bootstrap of the AUC difference: seeded, paired, consistent with DeLong."""

from __future__ import annotations

import numpy as np
import pytest

from busgan.errors import BusganError
from busgan.stats import bootstrap_auc_diff, delong_test


def pair_auc(x: np.ndarray, y: np.ndarray) -> float:
    """AUC from all positive-negative pairs, ties counted 1/2."""
    return float(((x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])).mean())


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(60, bool), np.zeros(90, bool)]
    a = rng.normal(size=150) + 1.5 * y
    b = 0.6 * a + rng.normal(size=150)
    return y, a, b


def test_seeded_and_close_to_delong(data):
    y, a, b = data
    r = bootstrap_auc_diff(y, a, b, n_resamples=2000, seed=1)
    assert r == bootstrap_auc_diff(y, a, b, n_resamples=2000, seed=1)
    assert r != bootstrap_auc_diff(y, a, b, n_resamples=2000, seed=2)
    d = delong_test(y, a, b)
    assert r.diff == pytest.approx(pair_auc(a[y], a[~y]) - pair_auc(b[y], b[~y]), rel=1e-12)
    assert r.diff == pytest.approx(d.diff, rel=1e-12)
    assert r.se == pytest.approx(d.se, rel=0.15)
    assert r.ci_low < r.diff < r.ci_high
    assert r.ci_low == pytest.approx(d.ci_low, abs=0.03) and r.ci_high == pytest.approx(d.ci_high, abs=0.03)
    assert 0.0 <= r.p <= 1.0 and r.n_resamples == 2000 and r.seed == 1


def test_each_resample_auc_is_exact_with_ties():
    """Replays the documented draws (one chunk: positives' indices, then negatives') and scores
    each resample from all its pairs, independent of the no-sort shortcut."""
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(23, bool), np.zeros(31, bool)]
    a = np.round(rng.normal(size=54) + y, 0)  # heavy ties
    b = np.round(rng.normal(size=54) + 0.5 * y, 1)
    r = bootstrap_auc_diff(y, a, b, n_resamples=300, seed=3)
    draw = np.random.default_rng(3)
    ip, ineg = draw.integers(0, 23, size=(300, 23)), draw.integers(0, 31, size=(300, 31))
    diffs = np.array([pair_auc(a[:23][i], a[23:][j]) - pair_auc(b[:23][i], b[23:][j])
                      for i, j in zip(ip, ineg)])
    assert r.se == pytest.approx(np.std(diffs, ddof=1), rel=1e-9)
    assert (r.ci_low, r.ci_high) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])), rel=1e-9)


def test_resamples_keep_class_counts():
    # One positive: every resample holds that positive, so the AUC of a model that ranks it on
    # top is 1 in every resample (a non-stratified bootstrap would draw resamples without it).
    y = np.r_[1, np.zeros(30)]
    a = np.r_[5.0, np.arange(30.0)]
    b = np.r_[5.0, np.zeros(30)]
    r = bootstrap_auc_diff(y, a, b, n_resamples=200, seed=0)
    assert np.isfinite(r.se) and r.ci_low <= r.diff <= r.ci_high


def test_identical_models(data):
    y, a, _ = data
    r = bootstrap_auc_diff(y, a, a, n_resamples=100)
    assert (r.diff, r.se, r.z, r.p, r.ci_low, r.ci_high) == (0.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def test_constant_difference_is_undefined_not_infinite():
    y = np.r_[np.ones(5, bool), np.zeros(5, bool)]
    r = bootstrap_auc_diff(y, y.astype(float), np.zeros(10), n_resamples=50)
    assert (r.diff, r.se, r.z, r.p) == (0.5, 0.0, None, None)
    assert "undefined" in r.note


def test_bad_arguments_are_refused(data):
    y, a, b = data
    with pytest.raises(BusganError, match="resamples"):
        bootstrap_auc_diff(y, a, b, n_resamples=1)
    with pytest.raises(BusganError, match="NaN"):
        bootstrap_auc_diff(y, a, np.where(y, np.nan, b))
