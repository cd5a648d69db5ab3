"""ROC curves of the two models overlaid, with the AUCs and DeLong's p in the legend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from busgan.fileio import atomic_path

__all__ = ["plot_roc_overlay"]


def plot_roc_overlay(y_true: NDArray[np.bool_], score_a: NDArray[np.float64],
                     score_b: NDArray[np.float64], path: str | Path, result: dict[str, Any]) -> Path:
    """Write a PNG of both ROC curves (atomically) and return its path.

    ``result`` is the compare dict (names, AUC intervals, DeLong p). Uses the Agg canvas
    directly, not pyplot, so no display or global backend is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    from busgan.stats.report import p_text

    fig = Figure(figsize=(5.5, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    level = f"{100 * (1 - result['alpha']):g}%"
    for key, score, style in (("a", score_a, "-"), ("b", score_b, "--")):
        fpr, tpr, _ = roc_curve(y_true, score)
        m = result["models"][key]
        u = m["auc"]
        ax.plot(fpr, tpr, style, lw=2, drawstyle="default",
                label=f"{m['name']}: AUC {u['estimate']:.3f} ({u['ci_low']:.3f}-{u['ci_high']:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1, label="chance")
    d = result["delong"]
    ax.plot([], [], " ", label=f"DeLong {p_text(d['p'])}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal",
           xlabel="1 - specificity (false-positive rate)", ylabel="sensitivity (true-positive rate)",
           title=f"ROC, {result['n']['total']} test images (AUC {level} CI)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return target
