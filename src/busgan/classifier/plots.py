"""PNG figures: learning curves, ROC curve, confusion matrix (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from busgan.fileio import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_learning_curve(history: dict[str, list[float]], path: Path) -> None:
    """Loss and accuracy per epoch, training against validation (the seed's two panels)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for name, style in ((key, "-o"), (f"val_{key}", "-s")):
            if name in history:
                ax.plot(range(1, len(history[name]) + 1), history[name], style, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
        ax.grid(alpha=0.3)
    _save(fig, path)


def plot_roc(y_true: np.ndarray, score: np.ndarray, path: Path, title: str) -> None:
    """ROC curve of the malignant probability, AUC in the legend."""
    fig, ax = plt.subplots(figsize=(5, 5))
    RocCurveDisplay.from_predictions(y_true, score, ax=ax, name="malignant", plot_chance_level=True)
    # scikit-learn labels the axes "(Positive label: 1)"; say which class is positive instead
    ax.set_xlabel("false positive rate (benign called malignant)")
    ax.set_ylabel("true positive rate (malignant recall)")
    ax.set_title(title)
    _save(fig, path)


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    """The 2x2 confusion matrix (rows: true class, columns: predicted)."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=list(range(len(labels))),
                                            display_labels=labels, ax=ax, colorbar=False)
    ax.set_title(title)
    _save(fig, path)
