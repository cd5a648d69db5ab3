"""Stage 6: predict a test folder, report it in the paper's layout, save predictions and figures.

The report (the seed's confusion matrices and rates) is logged at INFO on this module's
logger, which ``busgan test`` and ``busgan run`` show on the terminal; the Python API is quiet
unless the caller configures logging. It is also written to ``report.txt``.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from busgan import CLASSES
from busgan.layout import PREDICTION_COLUMNS
from busgan.classifier.dataset import ImageFolderDataset, scan_classes
from busgan.classifier.model import input_size, load_classifier
from busgan.classifier.plots import plot_confusion, plot_roc
from busgan.classifier.report import compute_metrics, format_report
from busgan.fileio import atomic_write_text, write_json

log = logging.getLogger(__name__)


def predict_files(model: Any, files: list[Path], batch_size: int) -> np.ndarray:
    """Class probabilities (n, classes), streamed in batches."""
    data = ImageFolderDataset(files, None, size=input_size(model), batch_size=batch_size, workers=2)
    return np.asarray(model.predict(data, verbose=0), dtype=np.float64)


def write_predictions(path: Path, rel_files: list[str], y_true: np.ndarray, probs: np.ndarray) -> None:
    """predictions.csv: file, true_label, pred_label, prob_<class>... (labels as class names)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(PREDICTION_COLUMNS)
    for f, t, p in zip(rel_files, y_true, probs):
        writer.writerow([f, CLASSES[t], CLASSES[int(np.argmax(p))], *(repr(float(v)) for v in p)])
    atomic_write_text(path, buf.getvalue())


def evaluate_model(model_path: Path, test_dir: Path, out_dir: Path, batch_size: int = 32) -> dict:
    """Predict ``test_dir`` with a busgan model, log the report and write it out.

    Writes predictions.csv, metrics.json, report.txt, roc.png and confusion.png in ``out_dir``
    and returns the metrics (accuracy, auc, per-class sensitivity/specificity ...).
    """
    model_path, test_dir, out_dir = Path(model_path), Path(test_dir), Path(out_dir)
    model = load_classifier(model_path)
    files, y_true = scan_classes(test_dir)
    probs = predict_files(model, files, batch_size)
    y_pred = probs.argmax(axis=1)
    metrics = compute_metrics(y_true, y_pred, probs[:, 1], CLASSES)
    text = format_report(y_true, y_pred, metrics, CLASSES, title=str(model_path))
    log.info("%s", text.removesuffix("\n"))
    out_dir.mkdir(parents=True, exist_ok=True)
    rel = [f.relative_to(test_dir).as_posix() for f in files]
    write_predictions(out_dir / "predictions.csv", rel, y_true, probs)
    atomic_write_text(out_dir / "report.txt", text)
    plot_roc(y_true, probs[:, 1], out_dir / "roc.png", f"ROC, AUC = {metrics['auc']:.4f}")
    plot_confusion(y_true, y_pred, list(CLASSES), out_dir / "confusion.png",
                   f"accuracy = {metrics['accuracy']:.3f}")
    metrics.update(model=str(model_path), test_dir=str(test_dir))
    write_json(out_dir / "metrics.json", metrics)
    return metrics
