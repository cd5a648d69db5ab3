"""Primary figure (mean AUC difference over replicates), its interval, the non-inferiority decision
and the per-arm extras, checked against hand computation and scikit-learn."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

from busgan.errors import BusganError
from busgan.stats.bootstrap import bootstrap_auc_diff
from busgan.stats.noninferiority import (Reliability, arm_descriptives, brier_score,
                                         interval_from_variances, non_inferiority,
                                         non_inferiority_decision, primary_interval,
                                         reliability_curve, sensitivity_at_specificity,
                                         single_class_warning)
from busgan.stats.plot import plot_reliability

Z975 = 1.959963984540054  # z_{0.975}

# Hand-worked example: positives P1, P2, negatives N1, N2 (labels in that order).
Y4 = np.array([1, 1, 0, 0])
A1 = np.array([0.8, 0.7, 0.3, 0.2])  # both positives above both negatives: AUC 1
A2 = np.array([0.6, 0.9, 0.1, 0.5])  # AUC 1
R1 = np.array([0.9, 0.4, 0.6, 0.1])  # P1>N1, P1>N2, P2<N1, P2>N2: AUC 3/4
R2 = np.array([0.2, 0.6, 0.5, 0.3])  # P1<N1, P1<N2, P2>N1, P2>N2: AUC 1/2


def exact_bootstrap_variance(y, arm, ref):
    """Ideal stratified bootstrap: every ordered resample of positives x negatives, AUCs by sklearn."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    figs = []
    for ip in itertools.product(pos, repeat=pos.size):
        for ineg in itertools.product(neg, repeat=neg.size):
            idx = np.r_[ip, ineg]
            ya = y[idx]
            figs.append(np.mean([roc_auc_score(ya, s[idx]) for s in arm])
                        - np.mean([roc_auc_score(ya, s[idx]) for s in ref]))
    return float(np.var(figs))  # population variance over equally likely resamples


def test_hand_worked_primary_interval_and_decision():
    # Figure: mean(1, 1) - mean(3/4, 1/2) = 3/8; paired differences (1/4, 1/2).
    # Between: s_d^2 = 2 * (1/8)^2 / 1 = 1/32, divided by K = 2: 1/64.
    # Ideal bootstrap (a2 = resampled copies of P2, b1 = copies of N1, each 0/1/2 w.p. 1/4, 1/2,
    # 1/4): AUC*(R1) = 1 - a2 b1 / 4, AUC*(R2) = a2 / 2, so figure* = 1/2 + a2 (b1 - 2) / 8 with
    # variance (1.5 * 1.5 - 1) / 64 = 1.25 / 64. Total variance 2.25 / 64: se = 3/16 exactly.
    var_boot_exact = 1.25 / 64
    assert exact_bootstrap_variance(Y4, [A1, A2], [R1, R2]) == pytest.approx(var_boot_exact, rel=1e-12)
    lo, hi, half = interval_from_variances(0.375, var_boot_exact, 1 / 64)
    assert half == pytest.approx(Z975 * 3 / 16, rel=1e-12)
    assert (lo, hi) == pytest.approx((0.375 - Z975 * 3 / 16, 0.375 + Z975 * 3 / 16), rel=1e-12)

    iv = primary_interval(Y4, [A1, A2], [R1, R2], n_resamples=40_000, seed=3)
    assert iv.aucs_arm == (1.0, 1.0) and iv.aucs_ref == (0.75, 0.5)
    assert iv.figure == 0.375 and iv.paired
    assert iv.var_between == pytest.approx(1 / 32, rel=1e-12)
    assert iv.var_between_term == pytest.approx(1 / 64, rel=1e-12)
    assert iv.var_boot == pytest.approx(var_boot_exact, rel=0.04)  # Monte Carlo vs ideal bootstrap
    assert iv.se ** 2 == pytest.approx(iv.var_boot + 1 / 64, rel=1e-12)
    assert iv.lower == pytest.approx(0.375 - Z975 * iv.se, rel=1e-12)
    assert iv.upper == pytest.approx(0.375 + Z975 * iv.se, rel=1e-12)
    assert iv.half_width == pytest.approx(Z975 * 3 / 16, rel=0.03)
    assert iv.boot_low <= iv.figure <= iv.boot_high

    d = non_inferiority_decision(iv, margin=0.05)
    assert d.non_inferior  # lower about +0.0075 > -0.05
    assert not d.powered  # half-width about 0.367 >= 0.05
    assert d.null_hypothesis.startswith("H0: AUC(synthetic) - AUC(real) <= -0.05")
    assert "H0 rejected: non-inferior" in d.statement and "not below the margin" in d.statement
    assert "\n" not in d.statement


def test_single_replicate_example_and_bootstrap_convention():
    # K = 1: figure = 1 - 3/4; figure* = a2 b1 / 4, variance (2.25 - 1) / 16 = 0.078125.
    assert exact_bootstrap_variance(Y4, [A1], [R1]) == pytest.approx(0.078125, rel=1e-12)
    iv, d = non_inferiority(Y4, [A1], [R1], n_resamples=40_000, seed=5)
    assert iv.figure == 0.25 and iv.var_between_term == 0.0 and "one replicate" in iv.note
    assert iv.var_boot == pytest.approx(0.078125, rel=0.04)
    assert not d.non_inferior and not d.powered  # lower about 0.25 - 0.548 < -0.05
    assert "H0 not rejected" in d.statement and "too small" in d.statement
    # One replicate per arm: the same resamples as the existing two-model bootstrap.
    b = bootstrap_auc_diff(Y4, A1, R1, n_resamples=40_000, seed=5)
    assert iv.var_boot == pytest.approx(b.se ** 2, rel=1e-12)
    assert (iv.boot_low, iv.boot_high) == pytest.approx((b.ci_low, b.ci_high), abs=1e-12)


@pytest.fixture(scope="module")
def noisy():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(40, int), np.zeros(50, int)]
    base = rng.normal(size=90) + 1.0 * y
    reps = [1 / (1 + np.exp(-(base + rng.normal(scale=0.8, size=90)))) for _ in range(8)]
    return y, reps


def test_joint_paired_resampling(noisy):
    y, reps = noisy
    # Identical arms: figure 0 and no bootstrap variance at all.
    iv = primary_interval(y, reps[:3], reps[:3], n_resamples=500, seed=1)
    assert iv.figure == 0.0 and iv.var_boot == 0.0 and iv.var_between_term == 0.0
    assert (iv.lower, iv.upper, iv.boot_low, iv.boot_high) == (0.0, 0.0, 0.0, 0.0)
    # A monotone transform ranks every resample the same: zero variance only if the same cases
    # are drawn for both arms.
    iv = primary_interval(y, [0.5 * reps[0] + 0.1], [reps[0] ** 3], n_resamples=500, seed=1)
    assert iv.figure == 0.0 and iv.var_boot == 0.0
    # Replicates swapped between the arms: every resample's mean is the same, so var_boot is 0,
    # while the paired differences are (d, -d): s_d^2 = 2 d^2, divided by K = 2 gives d^2.
    dd = roc_auc_score(y, reps[0]) - roc_auc_score(y, reps[1])
    iv = primary_interval(y, [reps[0], reps[1]], [reps[1], reps[0]], n_resamples=500, seed=1)
    assert iv.figure == pytest.approx(0.0, abs=1e-15) and iv.var_boot == 0.0
    assert iv.var_between == pytest.approx(2 * dd ** 2, rel=1e-12)
    assert iv.var_between_term == pytest.approx(dd ** 2, rel=1e-12)
    assert iv.half_width == pytest.approx(Z975 * abs(dd), rel=1e-12)


@pytest.mark.parametrize("k", [2, 4])
def test_between_replicate_variance_divided_by_k(noisy, k):
    y, reps = noisy
    arm, ref = reps[:k], reps[k:2 * k]
    aa = np.array([roc_auc_score(y, s) for s in arm])
    ar = np.array([roc_auc_score(y, s) for s in ref])
    iv = primary_interval(y, arm, ref, n_resamples=300, seed=2)
    assert iv.figure == pytest.approx(aa.mean() - ar.mean(), rel=1e-12)
    assert iv.figure == pytest.approx(np.mean(aa - ar), rel=1e-12)
    s2 = np.var(aa - ar, ddof=1)
    assert iv.var_between == pytest.approx(s2, rel=1e-10)
    assert iv.var_between_term == pytest.approx(s2 / k, rel=1e-10)
    assert iv.se ** 2 == pytest.approx(iv.var_boot + s2 / k, rel=1e-10)
    assert iv.half_width == pytest.approx(Z975 * math.sqrt(iv.var_boot + s2 / k), rel=1e-10)


def test_unequal_replicate_counts(noisy):
    y, reps = noisy
    aa = np.array([roc_auc_score(y, s) for s in reps[:3]])
    ar = np.array([roc_auc_score(y, s) for s in reps[3:5]])
    iv = primary_interval(y, reps[:3], reps[3:5], n_resamples=300, seed=2)
    assert not iv.paired and iv.var_between is None
    assert iv.figure == pytest.approx(aa.mean() - ar.mean(), rel=1e-12)
    assert iv.var_between_term == pytest.approx(np.var(aa, ddof=1) / 3 + np.var(ar, ddof=1) / 2,
                                                rel=1e-10)


def test_seeded_and_deterministic(noisy):
    y, reps = noisy
    a = primary_interval(y, reps[:2], reps[2:4], n_resamples=300, seed=7)
    assert a == primary_interval(y, reps[:2], reps[2:4], n_resamples=300, seed=7)
    assert a.var_boot != primary_interval(y, reps[:2], reps[2:4], n_resamples=300, seed=8).var_boot


def test_decision_flips_exactly_at_the_margin(noisy):
    y, reps = noisy
    iv = primary_interval(y, reps[:2], reps[2:4], n_resamples=300, seed=0)
    assert -1.0 < iv.lower < 0.0
    at = -iv.lower
    assert not non_inferiority_decision(iv, at).non_inferior  # lower == -margin: H0 kept
    assert non_inferiority_decision(iv, np.nextafter(at, 1.0)).non_inferior
    assert not non_inferiority_decision(iv, np.nextafter(at, 0.0)).non_inferior
    assert not non_inferiority_decision(iv, iv.half_width).powered  # half-width == margin
    assert non_inferiority_decision(iv, np.nextafter(iv.half_width, 1.0)).powered
    with pytest.raises(BusganError, match="margin"):
        non_inferiority_decision(iv, 0.0)


def sklearn_sensitivity_at_fpr(y, s, f):
    """Highest TPR on sklearn's piecewise-linear ROC path at false-positive rate f."""
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    best = -np.inf
    for x0, x1, y0, y1 in zip(fpr[:-1], fpr[1:], tpr[:-1], tpr[1:]):
        if x0 <= f <= x1:
            best = max(best, max(y0, y1) if x1 == x0 else y0 + (y1 - y0) * (f - x0) / (x1 - x0))
    return best


@pytest.mark.parametrize("n_neg", [7, 10, 40, 53])
@pytest.mark.parametrize("spec, fpr", [(0.9, 0.1), (0.8, 0.2), (0.95, 0.05), (1.0, 0.0), (0.0, 1.0)])
def test_sensitivity_at_specificity_matches_sklearn_roc(n_neg, spec, fpr):
    rng = np.random.default_rng(n_neg)
    y = np.r_[np.ones(30, int), np.zeros(n_neg, int)]
    s = np.round(rng.normal(size=y.size) + y, 1)  # rounding makes ties
    got = sensitivity_at_specificity(y, s, spec)
    assert got == pytest.approx(sklearn_sensitivity_at_fpr(y, s, fpr), abs=1e-12)


def test_sensitivity_at_specificity_by_hand():
    # 10 negatives at 0.1, 0.2, ..., 1.0; positives at 0.95, 0.85, 0.6 (tied with a negative),
    # 0.05. ROC vertices (false positives, true positives), thresholds from the top:
    # (0,0) (1,0) (1,1) (2,1) (2,2) (3,2) (4,2) (5,3) ... (10,3) (10,4); the tie at 0.6 makes the
    # diagonal step (4,2) -> (5,3).
    y = np.r_[np.zeros(10, int), np.ones(4, int)]
    s = np.r_[np.arange(1, 11) / 10, [0.95, 0.85, 0.6, 0.05]]
    assert sensitivity_at_specificity(y, s, 0.9) == 0.25  # 1 FP: top of the step (1,0)-(1,1)
    assert sensitivity_at_specificity(y, s, 0.8) == 0.5  # 2 FPs: top of (2,1)-(2,2)
    assert sensitivity_at_specificity(y, s, 0.85) == 0.25  # 1.5 FPs: on the flat (1,1)-(2,1)
    assert sensitivity_at_specificity(y, s, 0.55) == pytest.approx(0.625, abs=1e-12)  # mid-diagonal
    assert sensitivity_at_specificity(y, s, 0.5) == 0.75  # 5 FPs: end of the diagonal
    assert sensitivity_at_specificity(y, s, 1.0) == 0.0 and sensitivity_at_specificity(y, s, 0.0) == 1.0


def test_brier_and_reliability_match_sklearn():
    rng = np.random.default_rng(4)
    y = (rng.random(300) < 0.4).astype(int)
    p = np.clip(0.4 * y + 0.6 * rng.random(300), 0, 1)
    p[:6] = [0.0, 1.0, 0.2, 0.5, 0.7, 0.3]  # values on bin edges
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p), rel=1e-12)
    for bins in (5, 10, 7):
        c = reliability_curve(y, p, bins)
        pt, pp = calibration_curve(y, p, n_bins=bins, strategy="uniform")
        assert np.allclose(c.fraction_positive, pt, rtol=0, atol=1e-12)
        assert np.allclose(c.mean_predicted, pp, rtol=0, atol=1e-12)
        assert sum(c.count) == 300 and len(c.edges) == bins + 1
    with pytest.raises(BusganError, match=r"\[0, 1\]"):
        brier_score([0, 1], [0.2, 1.2])


def test_single_class_warning():
    w = single_class_warning([0.1, 0.3, 0.5, 0.49])  # 0.5 is benign, as busgan test's argmax
    assert w is not None and "benign for all 4" in w
    w = single_class_warning(np.array([0.6, 0.9, 0.51]), name="synthetic")
    assert w is not None and w.startswith("synthetic predicts malignant for all 3")
    assert single_class_warning([0.5, 0.51]) is None
    assert single_class_warning([0.2, 0.4], threshold=0.3) is None


def test_arm_descriptives_and_reliability_plot(tmp_path, noisy):
    y, reps = noisy
    d = arm_descriptives(y, reps[0])
    assert d["brier"] == pytest.approx(brier_score_loss(y, reps[0]), rel=1e-12)
    assert d["single_class_warning"] is None
    assert d["sensitivity_at_specificity"]["sensitivity"] == pytest.approx(
        sklearn_sensitivity_at_fpr(y, reps[0], 0.1), abs=1e-12)
    curves = {"real": reliability_curve(y, reps[0]), "synthetic": reliability_curve(y, reps[1])}
    assert isinstance(curves["real"], Reliability)
    out = plot_reliability(curves, tmp_path / "reliability.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
