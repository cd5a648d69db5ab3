"""The paper's test printout, line for line, and the same numbers as a metrics dict.

Each class gets its own section with that class as the positive one (the seed printed
"Benign" and "Malignancy" sections), each ratio with its numerator and denominator, then
accuracy, scikit-learn's classification report (3 digits) and the ROC AUC of the malignant
probability. Counts come from scikit-learn's ``confusion_matrix``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score

# (section header, line prefix, report name) per class, in busgan.CLASSES order: the seed's words.
SEED_NAMES: tuple[tuple[str, str, str], ...] = (
    ("Benign", "Benign", "Benign"),
    ("Malignancy", "Malig", "Malignant"),
)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def class_stats(y_true: np.ndarray, y_pred: np.ndarray, positive: int) -> dict[str, Any]:
    """One-vs-rest counts and ratios with ``positive`` as the positive class."""
    cm = confusion_matrix(y_true == positive, y_pred == positive, labels=[False, True])
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1_num, f1_den = 2 * precision * recall, precision + recall
    return {"confusion_matrix": cm.tolist(), "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "precision": precision, "sensitivity": recall, "specificity": _ratio(tn, tn + fp),
            "f1": _ratio(f1_num, f1_den), "f1_numerator": f1_num, "f1_denominator": f1_den}


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, prob_malignant: np.ndarray,
                    classes: tuple[str, ...]) -> dict[str, Any]:
    """Everything the report prints, as plain JSON-ready values."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    correct = int((y_true == y_pred).sum())
    both = len(np.unique(y_true)) == 2
    return {
        "n": int(len(y_true)),
        "correct": correct,
        "accuracy": _ratio(correct, len(y_true)),
        "auc": float(roc_auc_score(y_true, prob_malignant)) if both else float("nan"),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(range(len(classes)))).tolist(),
        "classes": {name: class_stats(y_true, y_pred, i) for i, name in enumerate(classes)},
        "classification_report": classification_report(
            y_true, y_pred, labels=list(range(len(classes))), target_names=list(classes),
            digits=3, output_dict=True, zero_division=0),
    }


def format_report(y_true: np.ndarray, y_pred: np.ndarray, metrics: dict[str, Any],
                  classes: tuple[str, ...], title: str | None = None) -> str:
    """The seed's printout (its spacing: numpy's matrix print, Python float repr)."""
    lines: list[str] = [title] if title else []
    for i, name in enumerate(classes):
        header, prefix, _ = SEED_NAMES[i] if i < len(SEED_NAMES) else (name, name, name)
        s = metrics["classes"][name]
        lines += [
            header,
            str(np.asarray(s["confusion_matrix"])),
            f"{prefix} precision: {s['precision']} ( {s['tp']} / {float(s['tp'] + s['fp'])} )",
            f"{prefix} recall(sensitivity): {s['sensitivity']} ( {s['tp']} / {float(s['tp'] + s['fn'])} )",
            f"{prefix} specificity: {s['specificity']} ( {s['tn']} / {float(s['tn'] + s['fp'])} )",
            f"{prefix} f_1 score: {s['f1']} ( {s['f1_numerator']} / {s['f1_denominator']} )",
            "",
        ]
    lines += [f"Accuracy: {metrics['accuracy']} ( {metrics['correct']} / {float(metrics['n'])} )", ""]
    names = [SEED_NAMES[i][2] if i < len(SEED_NAMES) else c for i, c in enumerate(classes)]
    lines.append(classification_report(y_true, y_pred, labels=list(range(len(classes))),
                                       target_names=names, digits=3, zero_division=0))
    lines.append(f"AUC: {metrics['auc']}")
    return "\n".join(lines) + "\n"
