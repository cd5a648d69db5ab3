"""DeLong's test against pROC's aSAH values, a brute-force O(mn) DeLong, and the edge cases."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm, rankdata

from busgan.errors import BusganError
from busgan.stats import auc_ci, delong_cov, delong_test, midranks, roc_points

# pROC's aSAH data set (113 patients), the source of statistics.md's reference values.
ASAH = Path(__file__).parent / "data" / "aSAH.csv"
REL = 1e-9


def brute_delong(y: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong 1988 straight from the definition: psi over all m x n pairs."""
    pos = np.asarray(y, dtype=bool)
    v10, v01, aucs = [], [], []
    for s in scores:
        x, yy = s[pos][:, None], s[~pos][None, :]
        psi = (x > yy) + 0.5 * (x == yy)
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    m, n = int(pos.sum()), int((~pos).sum())
    s10 = np.cov(np.stack(v10)) if m > 1 else np.zeros((len(scores), len(scores)))
    s01 = np.cov(np.stack(v01)) if n > 1 else np.zeros((len(scores), len(scores)))
    return np.array(aucs), np.atleast_2d(s10) / m + np.atleast_2d(s01) / n


def brute_test(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    aucs, cov = brute_delong(y, a, b)
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    z = (aucs[0] - aucs[1]) / se
    return aucs[0] - aucs[1], z, 2 * norm.sf(abs(z))


@pytest.fixture(scope="module")
def asah() -> dict[str, np.ndarray]:
    with open(ASAH, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {k: np.array([float(r[k]) for r in rows]) for k in ("wfns", "ndka", "s100b")}
    out["y"] = np.array([r["outcome"] == "Poor" for r in rows])
    return out


def _no_nan(obj: object) -> None:
    if isinstance(obj, dict):
        for v in obj.values():
            _no_nan(v)
    elif isinstance(obj, float):
        assert math.isfinite(obj)


# --- pROC 1.18 reference values (statistics.md) -------------------------------------------

def test_asah_aucs_variances_covariances(asah):
    aucs, cov = delong_cov(asah["y"], asah["wfns"], asah["ndka"], asah["s100b"])
    assert aucs == pytest.approx([0.823678861788618, 0.611957994579946, 0.731368563685637], rel=REL)
    assert np.diag(cov) == pytest.approx([0.00146991470882363, 0.0031908105493913,
                                          0.00266868245717244], rel=REL)
    assert cov[0, 1] == pytest.approx(-0.000532967856762438, rel=REL)
    assert cov[1, 2] == pytest.approx(-0.000756164938056579, rel=REL)
    assert cov[2, 0] == pytest.approx(0.00119615567376754, rel=REL)
    assert np.array_equal(cov, cov.T)


@pytest.mark.parametrize("a, b, z, p", [
    ("wfns", "s100b", 2.20898359144091, 0.0271757822291882),
    ("wfns", "ndka", 2.79777591868904, 0.00514557970691098),
    ("ndka", "s100b", -1.39077002573558, 0.164295175223054),
])
def test_asah_paired_tests(asah, a, b, z, p):
    r = delong_test(asah["y"], asah[a], asah[b])
    assert r.z == pytest.approx(z, rel=REL)
    assert r.p == pytest.approx(p, rel=REL)
    assert r.note == ""


def test_asah_difference_ci(asah):
    r = delong_test(asah["y"], asah["wfns"], asah["s100b"])
    assert r.ci_low == pytest.approx(0.0104061769564846, rel=REL)
    assert r.ci_high == pytest.approx(0.174214419249478, rel=REL)
    assert r.var_a == pytest.approx(0.00146991470882363, rel=REL)
    assert r.cov_ab == pytest.approx(0.00119615567376754, rel=REL)


def test_asah_single_auc_ci(asah):
    ci = auc_ci(asah["y"], asah["ndka"])
    assert (ci.ci_low, ci.auc, ci.ci_high) == pytest.approx(
        (0.501244999271703, 0.611957994579946, 0.722670989888189), rel=REL)
    r = delong_test(asah["y"], asah["wfns"], asah["ndka"])
    assert (r.auc_b_low, r.auc_b_high) == pytest.approx((ci.ci_low, ci.ci_high), rel=REL)


def test_asah_symmetry_and_self(asah):
    ab = delong_test(asah["y"], asah["wfns"], asah["s100b"])
    ba = delong_test(asah["y"], asah["s100b"], asah["wfns"])
    assert ba.z == pytest.approx(-ab.z, rel=1e-12)
    assert ba.p == pytest.approx(ab.p, rel=1e-12)
    assert (ba.ci_low, ba.ci_high) == pytest.approx((-ab.ci_high, -ab.ci_low), rel=1e-12)
    same = delong_test(asah["y"], asah["ndka"], asah["ndka"])
    assert (same.z, same.p, same.diff) == (0.0, 1.0, 0.0)


# --- independent references on random data with ties -------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    m, n = rng.integers(2, 60, size=2)
    y = rng.permutation(np.r_[np.ones(m, bool), np.zeros(n, bool)])
    a = np.round(rng.normal(size=m + n) + y, 1 if seed % 2 else 0)  # heavy ties when rounded to 0 dp
    b = np.round(0.5 * a + rng.normal(size=m + n), 1)
    aucs, cov = delong_cov(y, a, b)
    ref_aucs, ref_cov = brute_delong(y, a, b)
    assert aucs == pytest.approx(ref_aucs, rel=1e-12)
    assert cov == pytest.approx(ref_cov, rel=1e-9, abs=1e-15)
    r = delong_test(y, a, b)
    diff, z, p = brute_test(y, a, b)
    assert (r.diff, r.z, r.p) == pytest.approx((diff, z, p), rel=1e-9, abs=1e-15)
    # and the ROC curve drawn in the report encloses the same area
    fpr, tpr = roc_points(y, a)
    assert np.trapezoid(tpr, fpr) == pytest.approx(r.auc_a, rel=1e-12)


def test_midranks_equal_scipy_rankdata():
    rng = np.random.default_rng(1)
    for x in (rng.integers(0, 7, 200).astype(float), rng.normal(size=50), np.zeros(5),
              np.array([3.0]), np.array([-0.0, 0.0, 1.0, np.inf, -np.inf])):
        assert np.array_equal(midranks(x), rankdata(x, method="average"))


def test_auc_never_above_one_and_exact_at_perfect_separation():
    n = 200_000
    y = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    s = np.r_[np.linspace(0.5 + 1e-9, 1, n), np.linspace(0, 0.5, n)]
    r = auc_ci(y, s)
    assert r.auc == 1.0 and r.se == 0.0 and (r.ci_low, r.ci_high) == (1.0, 1.0)


def test_labels_may_be_bool_int_or_float():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 40)
    y[:2] = (0, 1)
    s = rng.normal(size=40)
    ref = auc_ci(y.astype(bool), s)
    assert auc_ci(y, s) == ref and auc_ci(y.astype(float), s) == ref


# --- edge cases: defined results, never a crash or NaN ------------------------------------

def test_one_positive():
    y = np.array([1, 0, 0, 0, 0, 0])
    a = np.array([0.9, 0.1, 0.5, 0.95, 0.3, 0.2])
    b = np.array([0.4, 0.1, 0.5, 0.3, 0.2, 0.6])
    r = delong_test(y, a, b)
    _, ref_cov = brute_delong(y, a, b)  # the brute force also takes the positives' term as 0
    assert r.var_a == pytest.approx(ref_cov[0, 0]) and r.cov_ab == pytest.approx(ref_cov[0, 1])
    assert r.z is not None and math.isfinite(r.z) and 0.0 <= r.p <= 1.0
    assert "only one positive" in r.note
    _no_nan(asdict(r))


def test_one_negative():
    y = np.array([0, 1, 1, 1, 1])
    a = np.array([0.5, 0.9, 0.2, 0.7, 0.6])
    b = np.array([0.1, 0.3, 0.2, 0.4, 0.8])
    r = delong_test(y, a, b)
    assert "only one negative" in r.note
    _no_nan(asdict(r))
    assert "only one negative" in auc_ci(y, a).note


def test_one_of_each_class():
    r = delong_test([1, 0], [0.9, 0.1], [0.2, 0.8])
    assert (r.auc_a, r.auc_b, r.se) == (1.0, 0.0, 0.0)
    assert r.z is None and r.p is None and r.ci_low is None
    assert "one positive and one negative" in r.note and "undefined" in r.note


def test_all_scores_equal():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(20, bool), np.zeros(30, bool)]
    flat = np.full(50, 0.5)
    good = rng.normal(size=50) + 2 * y
    ci = auc_ci(y, flat)
    assert (ci.auc, ci.se, ci.ci_low, ci.ci_high) == (0.5, 0.0, 0.5, 0.5)
    r = delong_test(y, flat, good)  # the other model's variance keeps the test defined
    _, z, p = brute_test(y, flat, good)
    assert (r.z, r.p) == pytest.approx((z, p), rel=1e-9)
    both = delong_test(y, flat, np.zeros(50))
    assert (both.z, both.p, both.ci_low, both.ci_high) == (0.0, 1.0, 0.0, 0.0)


def test_perfect_separation_in_one_model():
    rng = np.random.default_rng(4)
    y = np.r_[np.ones(25, bool), np.zeros(25, bool)]
    perfect = y + rng.uniform(0, 0.5, 50)
    noisy = rng.normal(size=50) + y
    r = delong_test(y, perfect, noisy)
    assert r.auc_a == 1.0 and r.var_a == 0.0 and (r.auc_a_low, r.auc_a_high) == (1.0, 1.0)
    _, z, p = brute_test(y, perfect, noisy)
    assert (r.z, r.p) == pytest.approx((z, p), rel=1e-9)


def test_perfect_separation_in_both_models():
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(10, bool), np.zeros(12, bool)]
    r = delong_test(y, y + rng.uniform(0, 0.5, 22), 3 * y + rng.uniform(0, 2, 22))
    assert (r.auc_a, r.auc_b, r.se, r.z, r.p) == (1.0, 1.0, 0.0, 0.0, 1.0)


def test_zero_variance_but_different_aucs_is_undefined_not_infinite():
    y = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    r = delong_test(y, y.astype(float), np.ones(20))
    assert (r.auc_a, r.auc_b, r.diff, r.se) == (1.0, 0.5, 0.5, 0.0)
    assert r.z is None and r.p is None and r.ci_low is None and r.ci_high is None
    assert "undefined" in r.note


def test_identical_and_monotone_equivalent_models():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 80).astype(bool)
    a = rng.normal(size=80) + y
    for b in (a.copy(), np.exp(a), 3 * a - 1):  # same ranking, so the same ROC curve
        r = delong_test(y, a, b)
        assert (r.z, r.p, r.diff, r.se) == (0.0, 1.0, 0.0, 0.0)


@pytest.mark.parametrize("bad, match", [
    (dict(a=[0.1, np.nan, 0.3, 0.4]), "NaN"),
    (dict(b=[0.1, 0.2, 0.3, np.nan]), "NaN"),
    (dict(y=[1, 1, 1, 1]), "no negative"),
    (dict(y=[0, 0, 0, 0]), "no positive"),
    (dict(y=[0, 1, 2, 1]), "not 0 or 1"),
    (dict(y=["b", "m", "b", "m"]), "0/1"),
    (dict(a=[0.1, 0.2, 0.3]), "expected 4 scores"),
    (dict(a=["x", "y", "z", "w"]), "numbers"),
])
def test_bad_input_is_refused(bad, match):
    args = dict(y=[0, 1, 0, 1], a=[0.1, 0.2, 0.3, 0.4], b=[0.4, 0.3, 0.2, 0.1]) | bad
    with pytest.raises(BusganError, match=match):
        delong_test(args["y"], args["a"], args["b"])


def test_bad_alpha_is_refused():
    with pytest.raises(BusganError, match="alpha"):
        delong_test([0, 1], [0.1, 0.2], [0.2, 0.1], alpha=5)
