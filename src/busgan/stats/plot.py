"""ROC curves of the two models overlaid, with the AUCs and DeLong's p in the legend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from busgan.fileio import atomic_path

if TYPE_CHECKING:
    from busgan.stats.noninferiority import Reliability

__all__ = ["plot_reliability", "plot_roc_overlay", "roc_points"]


def roc_points(y_true: ArrayLike, score: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(false-positive rate, true-positive rate) at every distinct threshold, from (0, 0) to (1, 1).

    Tied scores make one diagonal step, so the trapezoid area equals the AUC with ties counted
    as 1/2. Hand-written (sklearn's roc_curve gives the same points) because importing sklearn
    costs seconds, longer than the whole comparison.
    """
    y = np.asarray(y_true, dtype=bool)
    v = np.asarray(score, dtype=np.float64)
    order = np.argsort(-v, kind="stable")
    s, t = v[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]  # last case of each tie group
    tp = np.cumsum(t)[last]
    fp = last + 1 - tp
    return np.r_[0.0, fp / max(1, (~y).sum())], np.r_[0.0, tp / max(1, y.sum())]


def plot_roc_overlay(y_true: NDArray[np.bool_], score_a: NDArray[np.float64],
                     score_b: NDArray[np.float64], path: str | Path, result: dict[str, Any]) -> Path:
    """Write a PNG of both ROC curves (atomically) and return its path.

    ``result`` is the compare dict (names, AUC intervals, DeLong p). Uses the Agg canvas
    directly, not pyplot, so no display or global backend is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from busgan.stats.report import p_text

    fig = Figure(figsize=(5.5, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    level = f"{100 * (1 - result['alpha']):g}%"
    for key, score, style in (("a", score_a, "-"), ("b", score_b, "--")):
        fpr, tpr = roc_points(y_true, score)
        m = result["models"][key]
        u = m["auc"]
        ax.plot(fpr, tpr, style, lw=2,
                label=f"{m['name']}: AUC {u['estimate']:.3f} ({u['ci_low']:.3f}-{u['ci_high']:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1, label="chance")
    d = result["delong"]
    ax.plot([], [], " ", label=f"DeLong {p_text(d['p'])}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal",
           xlabel="1 - specificity (false-positive rate)", ylabel="sensitivity (true-positive rate)",
           title=f"ROC, {result['n']['total']} test images (AUC {level} CI)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_reliability(curves: Mapping[str, Reliability], path: str | Path, title: str = "Reliability") -> Path:
    """Write a PNG of reliability curves (one per arm: name -> ``Reliability``) and return it.

    Points on the diagonal are calibrated; marker area grows with the bin's number of cases.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1, label="perfectly calibrated")
    for name, c in curves.items():
        size = 8 + 120 * np.asarray(c.count, dtype=float) / max(1, sum(c.count))
        line, = ax.plot(c.mean_predicted, c.fraction_positive, "-", lw=1.5, label=name)
        ax.scatter(c.mean_predicted, c.fraction_positive, s=size, color=line.get_color())
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel="mean predicted probability of malignant",
           ylabel="fraction malignant", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    """Lay the figure out and write it as a PNG, atomically."""
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return target
