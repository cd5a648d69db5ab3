"""Stage 7: compare two classifiers' predictions on the same test images.

Reads two ``predictions.csv`` files written by ``busgan test`` (columns ``file, true_label,
pred_label, prob_benign, prob_malignant``; malignant is the positive class, ``prob_malignant``
the score), matches them by ``file`` and runs every test into one dict (docs/stats.md, "The
result dict"), written as stats.json, stats.md and roc_overlay.png.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from busgan import CLASSES, __version__
from busgan.config import CompareConfig
from busgan.errors import BusganError
from busgan.layout import PREDICTION_COLUMNS
from busgan.fileio import atomic_write_text, sha256_file, write_json
from busgan.stats._checks import binary_labels, check_alpha, finite_scores
from busgan.stats.bootstrap import bootstrap_auc_diff
from busgan.stats.delong import delong_test
from busgan.stats.intervals import proportion
from busgan.stats.mcnemar_tests import mcnemar

__all__ = ["Predictions", "compare_arrays", "compare_predictions", "match_predictions",
           "read_predictions", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
COLUMNS = PREDICTION_COLUMNS
POSITIVE = CLASSES[1]


@dataclass(frozen=True)
class Predictions:
    """One model's predictions: parallel arrays in file order (``y_true``/``y_pred``: 1 = malignant)."""
    path: Path
    files: list[str]
    y_true: NDArray[np.bool_]
    y_pred: NDArray[np.bool_]
    score: NDArray[np.float64]


def _csv_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "predictions.csv"
    if not p.is_file():
        raise BusganError(f"{p}: not found; give a predictions.csv written by `busgan test` "
                          "or the folder that holds it")
    return p


def read_predictions(path: str | Path) -> Predictions:
    """Read and check one predictions.csv (or the folder holding it)."""
    p = _csv_path(path)
    try:
        return _read_predictions(p)
    except UnicodeDecodeError as e:
        raise BusganError(f"{p}: not UTF-8 text (byte {e.start}: {e.reason}); give the "
                          "predictions.csv written by `busgan test`, or save the file as "
                          "CSV UTF-8") from None
    except csv.Error as e:
        raise BusganError(f"{p}: not a readable CSV file ({e}); give the predictions.csv "
                          "written by `busgan test`") from None


def _read_predictions(p: Path) -> Predictions:
    # utf-8-sig: a CSV saved by Excel starts with a byte-order mark, which must not end up
    # in the first column's name
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise BusganError(f"{p}: missing column(s) {', '.join(missing)}; expected the header "
                              f"{','.join(COLUMNS)} as written by `busgan test`")
        files: list[str] = []
        y_true: list[bool] = []
        y_pred: list[bool] = []
        score: list[float] = []
        seen: dict[str, int] = {}
        for line, row in enumerate(reader, start=2):
            name = (row["file"] or "").strip()
            if not name:
                raise BusganError(f"{p} line {line}: empty file name; every row must name its image")
            if name in seen:
                raise BusganError(f"{p} line {line}: {name!r} already appears on line {seen[name]}; "
                                  "each test image must appear once (rerun `busgan test`)")
            seen[name] = line
            labels = []
            for col in COLUMNS[1:3]:  # true_label, pred_label
                v = (row[col] or "").strip()
                if v not in CLASSES:
                    raise BusganError(f"{p} line {line}: {col} {v!r} is not one of "
                                      f"{', '.join(CLASSES)}; fix the file or rerun `busgan test`")
                labels.append(v == POSITIVE)
            probs = []
            for col in COLUMNS[3:]:  # prob_benign, prob_malignant
                try:
                    v = float(row[col])
                except (TypeError, ValueError):
                    v = math.nan
                if not math.isfinite(v):
                    raise BusganError(f"{p} line {line}: {col} {row[col]!r} is not a finite number; "
                                      "fix the file or rerun `busgan test`")
                if not 0.0 <= v <= 1.0:
                    raise BusganError(f"{p} line {line}: {col} {row[col]!r} is outside [0, 1], "
                                      "so it is not a probability; fix the file or rerun `busgan test`")
                probs.append(v)
            files.append(name)
            y_true.append(labels[0])
            y_pred.append(labels[1])
            score.append(probs[1])
    if not files:
        raise BusganError(f"{p}: no predictions (header only); rerun `busgan test`")
    return Predictions(p, files, np.array(y_true), np.array(y_pred), np.array(score))


def match_predictions(a: Predictions, b: Predictions) -> tuple[Predictions, Predictions]:
    """``b`` reordered to ``a``'s file order; refuses different image sets or true labels."""
    index_b = {f: i for i, f in enumerate(b.files)}
    only_a = [f for f in a.files if f not in index_b]
    only_b = sorted(set(b.files) - set(a.files))
    if only_a or only_b:
        ex = (only_a or only_b)[0]
        raise BusganError(f"{a.path} and {b.path} cover different test images ({len(only_a)} only in "
                          f"the first, {len(only_b)} only in the second, e.g. {ex!r}); run "
                          "`busgan test` for both models on the same test folder")
    order = np.array([index_b[f] for f in a.files], dtype=np.int64)
    bt = b.y_true[order]
    bad = np.flatnonzero(bt != a.y_true)
    if bad.size:
        f = a.files[int(bad[0])]
        la, lb = CLASSES[int(a.y_true[bad[0]])], CLASSES[int(bt[bad[0]])]
        raise BusganError(f"{a.path} and {b.path} disagree on the true label of {bad.size} image(s), "
                          f"e.g. {f!r}: {la} vs {lb}; both must come from the same labelled test set")
    return a, Predictions(b.path, list(a.files), bt, b.y_pred[order], b.score[order])


def _model_summary(name: str, y: NDArray[np.bool_], pred: NDArray[np.bool_], alpha: float,
                   auc: float, se: float, lo: float, hi: float) -> dict[str, Any]:
    correct = pred == y
    return {
        "name": name,
        "accuracy": proportion(int(correct.sum()), y.size, alpha),
        "sensitivity": proportion(int(correct[y].sum()), int(y.sum()), alpha),
        "specificity": proportion(int(correct[~y].sum()), int((~y).sum()), alpha),
        "auc": {"estimate": auc, "se": se, "ci_low": lo, "ci_high": hi},
    }


def _check_settings(alpha: float, bootstrap: int) -> float:
    if int(bootstrap) != bootstrap or bootstrap < 0 or bootstrap == 1:
        raise BusganError(f"compare.bootstrap: {bootstrap!r}; give 0 (off) or a number of "
                          "resamples such as 2000")
    return check_alpha(alpha, "compare.alpha")


def compare_arrays(y_true: ArrayLike, pred_a: ArrayLike, pred_b: ArrayLike, score_a: ArrayLike,
                   score_b: ArrayLike, alpha: float = 0.05, bootstrap: int = 2000, seed: int = 0,
                   names: tuple[str, str] = ("real", "synthetic")) -> dict[str, Any]:
    """Every test of the stage on arrays (1 = malignant/positive); the result dict of docs/stats.md.

    ``bootstrap``: resamples of the AUC difference (0 = none), as in ``CompareConfig``.
    """
    alpha = _check_settings(alpha, bootstrap)
    y = binary_labels(y_true)
    pa = binary_labels(pred_a, "pred_a", need_both=False)
    pb = binary_labels(pred_b, "pred_b", need_both=False)
    if pa.size != y.size or pb.size != y.size:
        raise BusganError(f"pred_a/pred_b: expected {y.size} predictions each, got {pa.size} and {pb.size}")
    sa = finite_scores(score_a, y.size, "score_a")
    sb = finite_scores(score_b, y.size, "score_b")
    d = delong_test(y, sa, sb, alpha)
    ca, cb = pa == y, pb == y
    boot = bootstrap_auc_diff(y, sa, sb, int(bootstrap), seed, alpha) if bootstrap else None
    notes = [x for x in (d.note, boot.note if boot else "") if x]
    se_a, se_b = math.sqrt(d.var_a), math.sqrt(d.var_b)
    return {
        "schema": SCHEMA_VERSION,
        "busgan_version": __version__,
        "names": {"a": names[0], "b": names[1]},
        "positive_class": POSITIVE,
        "alpha": alpha,
        "n": {"total": int(y.size), "positive": int(y.sum()), "negative": int((~y).sum())},
        "models": {
            "a": _model_summary(names[0], y, pa, alpha, d.auc_a, se_a, d.auc_a_low, d.auc_a_high),
            "b": _model_summary(names[1], y, pb, alpha, d.auc_b, se_b, d.auc_b_low, d.auc_b_high),
        },
        "mcnemar": mcnemar(ca, cb).to_dict(),
        "mcnemar_positives": mcnemar(ca[y], cb[y]).to_dict(),
        "mcnemar_negatives": mcnemar(ca[~y], cb[~y]).to_dict(),
        "delong": d.to_dict(),
        "bootstrap": boot.to_dict() if boot else None,
        "notes": notes,
    }


def compare_predictions(a: Path, b: Path, out_dir: Path, cfg: CompareConfig,
                        names: tuple[str, str] = ("real", "synthetic")) -> dict[str, Any]:
    """Stage 7 for the pipeline: read, match, test; write stats.json, stats.md, roc_overlay.png.

    Every file is written atomically, stats.json last (its presence means all three exist);
    the returned dict is what stats.json holds.
    """
    from busgan.stats.plot import plot_roc_overlay  # matplotlib only when a plot is made
    from busgan.stats.report import format_markdown

    _check_settings(cfg.alpha, cfg.bootstrap)
    pa, pb = match_predictions(read_predictions(a), read_predictions(b))
    if pa.y_true.all() or not pa.y_true.any():
        only = CLASSES[int(pa.y_true[0])]
        raise BusganError(f"{pa.path}: every test image is {only}; the AUC and DeLong's test need "
                          "both classes, so test both models on a set with benign and malignant images")
    result = compare_arrays(pa.y_true, pa.y_pred, pb.y_pred, pa.score, pb.score, alpha=cfg.alpha,
                            bootstrap=cfg.bootstrap, seed=cfg.seed, names=names)
    result["inputs"] = {k: {"path": str(p.path), "sha256": sha256_file(p.path)}
                        for k, p in (("a", pa), ("b", pb))}
    result["config"] = dataclasses.asdict(cfg)
    out = Path(out_dir)
    result["files"] = {"json": "stats.json", "markdown": "stats.md", "roc_plot": "roc_overlay.png"}
    plot_roc_overlay(pa.y_true, pa.score, pb.score, out / "roc_overlay.png", result)
    atomic_write_text(out / "stats.md", format_markdown(result))
    write_json(out / "stats.json", result)
    return result
