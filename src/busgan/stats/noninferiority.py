"""The primary figure of a study (mean AUC difference over replicates), its non-inferiority test,
and per-arm descriptive extras (sensitivity at 90% specificity, Brier score, reliability curve).

Why this module: one classifier run is a coin toss (issue 10), so an arm is trained K times and
judged by the mean over its replicates; and the study's claim is "as good as", which only a
non-inferiority test with a margin fixed before the run can show (a non-significant difference
cannot). Two sources of variance enter the interval:

* the test set: a stratified bootstrap over test cases, the same resampled cases for every
  replicate of every arm (paired, as in ``bootstrap.py``: positives and negatives are resampled
  separately, so every resample has both classes and an AUC), and
* training: the between-replicate variance of the per-replicate AUC differences, divided by K.

AUCs count ties as 1/2 (the convention of ``delong.py`` and ``bootstrap.py``); malignant is the
positive class and the probability of malignant is the score.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm

from busgan.errors import BusganError
from busgan.progress import progress
from busgan.stats._checks import binary_labels, check_alpha, finite_scores
from busgan.stats.bootstrap import _CHUNK_ELEMENTS, _counts, _Model
from busgan.stats.plot import roc_points

__all__ = ["NonInferiority", "PrimaryInterval", "Reliability", "arm_descriptives", "brier_score",
           "interval_from_variances", "non_inferiority", "non_inferiority_decision",
           "primary_interval", "reliability_curve", "sensitivity_at_specificity",
           "single_class_warning"]


# --------------------------------------------------------------------------------------------
# The primary figure and its interval


@dataclass(frozen=True)
class PrimaryInterval:
    """Mean-over-replicates AUC difference of an arm vs the reference arm, with its interval.

    ``figure`` = mean_k AUC(arm_k) - mean_j AUC(ref_j) (``auc_arm`` - ``auc_ref``).
    ``var_boot``: bootstrap variance of that figure over test cases (all replicates of both arms
    on the same resampled cases). ``var_between_term``: what training adds, already divided by
    K: with K paired replicates (equal counts, paired by index) s_d^2 / K, s_d^2 the sample
    variance (divisor K - 1) of the per-replicate differences (``var_between``); with unequal
    counts s_arm^2 / K_arm + s_ref^2 / K_ref (``var_between`` None); 0 with one replicate per
    arm (it cannot be estimated; ``note`` says so).
    ``se`` = sqrt(var_boot + var_between_term); ``half_width`` = z_{1-alpha/2} * se;
    ``lower``/``upper`` = figure -/+ half_width, clipped to [-1, 1] (the range of a difference of
    AUCs). ``boot_low``/``boot_high``: percentile interval of the bootstrap figures, test-set
    variance only, for reference.
    """
    arm: str
    reference: str
    alpha: float
    figure: float
    auc_arm: float
    auc_ref: float
    aucs_arm: tuple[float, ...]
    aucs_ref: tuple[float, ...]
    paired: bool
    var_boot: float
    var_between: float | None
    var_between_term: float
    se: float
    half_width: float
    lower: float
    upper: float
    boot_low: float
    boot_high: float
    n_resamples: int
    seed: int
    n_pos: int
    n_neg: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["aucs_arm"], d["aucs_ref"] = list(self.aucs_arm), list(self.aucs_ref)
        return d


def interval_from_variances(figure: float, var_boot: float, var_between_term: float,
                            alpha: float = 0.05) -> tuple[float, float, float]:
    """(lower, upper, half_width) of figure +- z_{1-alpha/2} sqrt(var_boot + var_between_term).

    Normal approximation: the figure is a mean over many test cases and K replicates. The
    bounds are clipped to [-1, 1]; ``half_width`` is not (it is what the power check needs).
    """
    alpha = check_alpha(alpha)
    if not (var_boot >= 0.0 and var_between_term >= 0.0):  # also refuses NaN
        raise BusganError(f"variances must be >= 0, got {var_boot!r} and {var_between_term!r}")
    half = float(norm.isf(alpha / 2)) * math.sqrt(var_boot + var_between_term)
    return max(-1.0, figure - half), min(1.0, figure + half), half


def _replicates(probs: Sequence[ArrayLike], size: int, name: str) -> list[NDArray[np.float64]]:
    if isinstance(probs, np.ndarray) and probs.ndim == 1:
        raise BusganError(f"{name}: expected a list of probability vectors (one per replicate), "
                          "got one vector; wrap it in a list for K = 1")
    out = [finite_scores(p, size, f"{name} replicate {k}") for k, p in enumerate(probs)]
    if not out:
        raise BusganError(f"{name}: no replicates; give at least one probability vector")
    return out


def _sample_var(v: NDArray[np.float64]) -> float:
    """Sample variance (divisor K - 1); exactly 0 for a constant vector."""
    return 0.0 if v.min() == v.max() else float(np.var(v, ddof=1))


def primary_interval(y_true: ArrayLike, arm: Sequence[ArrayLike], reference: Sequence[ArrayLike],
                     alpha: float = 0.05, n_resamples: int = 2000, seed: int = 0,
                     names: tuple[str, str] = ("synthetic", "real")) -> PrimaryInterval:
    """The primary figure and its 1 - alpha interval (see ``PrimaryInterval`` for definitions).

    ``arm``/``reference``: one probability vector per replicate (K_arm and K_ref of them), all
    scored on the cases of ``y_true`` (0/1, 1 = malignant) in the same order. Equal counts are
    paired by index (replicate k of both arms share seed k); the mean of the paired differences
    equals the difference of the means, so the figure is the same either way, only the
    between-replicate term differs. Seeded: the same inputs and seed give the same interval;
    with one replicate per arm the resamples are exactly those of ``bootstrap_auc_diff``.
    """
    alpha = check_alpha(alpha)
    if int(n_resamples) != n_resamples or n_resamples < 2:
        raise BusganError(f"bootstrap resamples: {n_resamples!r}; give a whole number >= 2 "
                          "(2000 is the usual choice)")
    pos = binary_labels(y_true)
    a = _replicates(arm, pos.size, names[0])
    r = _replicates(reference, pos.size, names[1])
    models = [_Model(s[pos], s[~pos]) for s in a + r]
    m, n = int(pos.sum()), int((~pos).sum())
    ka, kr = len(a), len(r)
    once = (np.ones((1, m), np.int64), np.ones((1, n), np.int64))
    aucs = np.array([mod.aucs(*once)[0] for mod in models])
    aucs_a, aucs_r = aucs[:ka], aucs[ka:]
    figure = float(aucs_a.mean() - aucs_r.mean())

    rng = np.random.default_rng(int(seed))
    chunk = max(1, _CHUNK_ELEMENTS // (m + n))  # same draws as bootstrap.py for the same seed
    figures = np.empty(int(n_resamples))
    starts = range(0, int(n_resamples), chunk)
    if len(starts) > 1:
        starts = progress(starts, desc="bootstrap", unit="chunk")
    for start in starts:
        k = min(chunk, int(n_resamples) - start)
        u = _counts(rng.integers(0, m, size=(k, m)), m)  # one draw of cases for all models
        w = _counts(rng.integers(0, n, size=(k, n)), n)
        boot = np.stack([mod.aucs(u, w) for mod in models], axis=1)
        figures[start:start + k] = boot[:, :ka].mean(axis=1) - boot[:, ka:].mean(axis=1)
    var_boot = 0.0 if figures.min() == figures.max() else float(np.var(figures, ddof=1))
    boot_low, boot_high = (float(q) for q in np.quantile(figures, [alpha / 2, 1 - alpha / 2]))

    notes = []
    paired = ka == kr
    var_between: float | None
    if paired:
        var_between = _sample_var(aucs_a - aucs_r) if ka > 1 else 0.0
        term = var_between / ka
    else:
        var_between = None
        term = sum(_sample_var(x) / x.size for x in (aucs_a, aucs_r) if x.size > 1)
    single = [nm for nm, kk in zip(names, (ka, kr)) if kk == 1]
    if single:
        notes.append(f"one replicate of {' and '.join(single)}: the between-replicate variance "
                     "cannot be estimated there and is taken as 0, so the interval covers the "
                     "test set only, not the variation between training runs")
    lower, upper, half = interval_from_variances(figure, var_boot, term, alpha)
    return PrimaryInterval(
        arm=names[0], reference=names[1], alpha=alpha, figure=figure,
        auc_arm=float(aucs_a.mean()), auc_ref=float(aucs_r.mean()),
        aucs_arm=tuple(float(x) for x in aucs_a), aucs_ref=tuple(float(x) for x in aucs_r),
        paired=paired, var_boot=var_boot, var_between=var_between, var_between_term=float(term),
        se=math.sqrt(var_boot + term), half_width=half, lower=lower, upper=upper,
        boot_low=boot_low, boot_high=boot_high, n_resamples=int(n_resamples), seed=int(seed),
        n_pos=m, n_neg=n, note="; ".join(notes))


# --------------------------------------------------------------------------------------------
# The pre-specified non-inferiority decision


@dataclass(frozen=True)
class NonInferiority:
    """Non-inferiority of an arm vs the reference at a margin fixed before the run.

    H0: AUC(arm) - AUC(ref) <= -margin, rejected (``non_inferior``) when the lower bound of the
    two-sided 1 - alpha interval is strictly above -margin: a one-sided test at level alpha / 2.
    ``powered``: half_width < margin, i.e. an arm exactly as good as the reference (figure 0)
    would be shown non-inferior; otherwise the test set (or K) is too small for this margin.
    """
    arm: str
    reference: str
    figure: float
    lower: float
    upper: float
    half_width: float
    margin: float
    alpha: float
    non_inferior: bool
    powered: bool
    null_hypothesis: str
    statement: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def non_inferiority_decision(interval: PrimaryInterval, margin: float = 0.05) -> NonInferiority:
    """The decision and its one-line statement for an interval from ``primary_interval``."""
    mg = float(margin)
    if not 0.0 < mg < 1.0:
        raise BusganError(f"compare.margin: {margin!r}; give an AUC difference between 0 and 1, "
                          "e.g. 0.05")
    arm, ref = interval.arm, interval.reference
    level = f"{100 * (1 - interval.alpha):g}%"
    h0 = (f"H0: AUC({arm}) - AUC({ref}) <= -{mg:g} (one-sided, level {interval.alpha / 2:g}; "
          f"H1: > -{mg:g})")
    holds = interval.lower > -mg
    powered = interval.half_width < mg
    verdict = ("H0 rejected: non-inferior" if holds else "H0 not rejected: non-inferiority not shown")
    text = (f"{arm} vs {ref}: mean AUC difference {interval.figure:+.3f}, {level} CI "
            f"{interval.lower:+.3f} to {interval.upper:+.3f}; {h0}: {verdict} at margin {mg:g}")
    if not powered:
        text += f"; the interval half-width {interval.half_width:.3f} is not below the margin"
        text += (f" (shown only because {arm} looks better than {ref})" if holds else
                 f", so this test set is too small to show non-inferiority at {mg:g} unless "
                 f"{arm} is better than {ref}")
    return NonInferiority(arm, ref, interval.figure, interval.lower, interval.upper,
                          interval.half_width, mg, interval.alpha, bool(holds), bool(powered),
                          h0, text)


def non_inferiority(y_true: ArrayLike, arm: Sequence[ArrayLike], reference: Sequence[ArrayLike],
                    margin: float = 0.05, alpha: float = 0.05, n_resamples: int = 2000,
                    seed: int = 0, names: tuple[str, str] = ("synthetic", "real"),
                    ) -> tuple[PrimaryInterval, NonInferiority]:
    """``primary_interval`` and ``non_inferiority_decision`` in one call."""
    iv = primary_interval(y_true, arm, reference, alpha, n_resamples, seed, names)
    return iv, non_inferiority_decision(iv, margin)


# --------------------------------------------------------------------------------------------
# Per-arm descriptive extras


def _probabilities(p: ArrayLike, size: int | None = None, name: str = "probabilities"
                   ) -> NDArray[np.float64]:
    a = np.asarray(p, dtype=np.float64)
    s = finite_scores(a, a.size if size is None else size, name)
    if s.size == 0 or not np.all(np.isfinite(s)) or s.min() < 0.0 or s.max() > 1.0:
        raise BusganError(f"{name}: expected finite probabilities in [0, 1] (one per test case)")
    return s


def sensitivity_at_specificity(y_true: ArrayLike, score: ArrayLike,
                               specificity: float = 0.90) -> float:
    """Sensitivity of the ROC curve at the given specificity (default 90%).

    Why not the best threshold's sensitivity: with few negatives no threshold may give exactly
    90% specificity, and the nearest one changes from run to run. The ROC curve here is the
    piecewise-linear path through the points of every distinct threshold (as in ``roc_points``
    and sklearn's ``roc_curve``; a point between two vertices is reached by randomising between
    the two thresholds). The value is the highest true-positive rate on that path at
    false-positive rate 1 - specificity: where a vertex lies exactly there, the highest TPR of
    such vertices (top of a vertical step); otherwise linear interpolation between the last
    vertex with specificity above the target and the next. Specificities are compared as
    TN / n_neg (so 9 of 10 meets 0.90 exactly, which 1 - 0.9 in floating point would miss).
    """
    sp = float(specificity)
    if not 0.0 <= sp <= 1.0:
        raise BusganError(f"specificity {specificity!r}: give a value between 0 and 1, e.g. 0.9")
    pos = binary_labels(y_true)
    s = finite_scores(score, pos.size)
    fpr, tpr = roc_points(pos, s)
    n_neg = int((~pos).sum())
    fp = np.rint(fpr * n_neg).astype(np.int64)  # exact counts back from the rates
    spec = (n_neg - fp) / n_neg
    i = int(np.flatnonzero(spec >= sp)[-1])  # spec is non-increasing; vertex 0 has spec 1
    if spec[i] == sp or i == spec.size - 1:
        return float(tpr[i])
    frac = (spec[i] - sp) / (spec[i] - spec[i + 1])
    return float(tpr[i] + frac * (tpr[i + 1] - tpr[i]))


def brier_score(y_true: ArrayLike, probability: ArrayLike) -> float:
    """Mean squared difference of the probability of malignant and the 0/1 label.

    A calibration-and-discrimination measure: 0 is perfect, 0.25 is a constant 0.5.
    """
    pos = binary_labels(y_true, need_both=False)
    p = _probabilities(probability, pos.size)
    return float(np.mean((p - pos) ** 2))


@dataclass(frozen=True)
class Reliability:
    """Reliability-curve data: ``n_bins`` equal-width bins of the predicted probability.

    Bin b holds probabilities in (edges[b], edges[b+1]], the first also 0: sklearn's
    ``calibration_curve(strategy="uniform")``. Only non-empty bins are listed: ``bin`` their
    index, ``count`` their cases, ``mean_predicted`` and ``fraction_positive`` (the curve).
    """
    edges: tuple[float, ...]
    bin: tuple[int, ...]
    count: tuple[int, ...]
    mean_predicted: tuple[float, ...]
    fraction_positive: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in asdict(self).items()}


def reliability_curve(y_true: ArrayLike, probability: ArrayLike, n_bins: int = 10) -> Reliability:
    """Observed fraction of malignant cases against the mean predicted probability, per bin."""
    if int(n_bins) != n_bins or n_bins < 1:
        raise BusganError(f"reliability bins: {n_bins!r}; give a whole number >= 1, e.g. 10")
    pos = binary_labels(y_true, need_both=False)
    p = _probabilities(probability, pos.size)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    idx = np.searchsorted(edges[1:-1], p, side="left")
    count = np.bincount(idx, minlength=int(n_bins))
    total = np.bincount(idx, weights=p, minlength=int(n_bins))
    hits = np.bincount(idx, weights=pos.astype(np.float64), minlength=int(n_bins))
    keep = np.flatnonzero(count)
    return Reliability(tuple(float(e) for e in edges), tuple(int(b) for b in keep),
                       tuple(int(c) for c in count[keep]),
                       tuple(float(x) for x in total[keep] / count[keep]),
                       tuple(float(x) for x in hits[keep] / count[keep]))


def single_class_warning(probabilities: ArrayLike, threshold: float = 0.5,
                         name: str = "the classifier") -> str | None:
    """A warning when every test case gets the same predicted class, else None.

    Why: a classifier that calls everything benign can still have an AUC well above 0.5 (its
    ranking may be fine) while its accuracy, sensitivity and McNemar test are meaningless.
    Predicted malignant when the probability is above ``threshold`` (as ``busgan test``'s
    argmax of two probabilities: a tie at 0.5 is benign).
    """
    p = _probabilities(probabilities)
    malignant = p > float(threshold)
    if malignant.all() or not malignant.any():
        cls = "malignant" if malignant.all() else "benign"
        return (f"{name} predicts {cls} for all {p.size} test images (probability of malignant "
                f"{p.min():.3g} to {p.max():.3g}, threshold {float(threshold):g}); its accuracy, "
                "sensitivity, specificity and McNemar test say nothing about the method")
    return None


def arm_descriptives(y_true: ArrayLike, probability: ArrayLike, specificity: float = 0.90,
                     n_bins: int = 10, name: str = "the classifier") -> dict[str, Any]:
    """One classifier's extras for the report, as plain JSON-ready values."""
    return {
        "sensitivity_at_specificity": {
            "specificity": float(specificity),
            "sensitivity": sensitivity_at_specificity(y_true, probability, specificity)},
        "brier": brier_score(y_true, probability),
        "reliability": reliability_curve(y_true, probability, n_bins).to_dict(),
        "single_class_warning": single_class_warning(probability, name=name),
    }
