"""The verdict over arms and replicates (stats.verdict) on predictions.csv files made here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from busgan.config import CompareConfig
from busgan.errors import BusganError
from busgan.stats.delong import delong_test
from busgan.stats.noninferiority import non_inferiority
from busgan.stats.verdict import write_verdict

N = 60


def _write(path: Path, y: np.ndarray, p: np.ndarray, order: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    idx = np.arange(len(y)) if order is None else order
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "true_label", "pred_label", "prob_benign", "prob_malignant"])
        for i in idx:
            w.writerow([f"{'malignant' if y[i] else 'benign'}/img{i:03d}.png",
                        "malignant" if y[i] else "benign", "malignant" if p[i] > 0.5 else "benign",
                        repr(float(1 - p[i])), repr(float(p[i]))])
    return path


@pytest.fixture
def study(tmp_path: Path) -> tuple[np.ndarray, dict[str, list[np.ndarray]], dict[str, list[Path]]]:
    rng = np.random.default_rng(0)
    y = np.arange(N) % 2 == 1
    scores = {arm: [np.clip(0.5 + (0.25 - 0.1 * j) * (2 * y - 1) + rng.normal(0, 0.25, N), 0.01, 0.99)
                    for _ in range(2)] for j, arm in enumerate(("real", "synthetic", "oracle"))}
    shuffled = rng.permutation(N)  # the files' row order must not matter
    paths = {arm: [_write(tmp_path / arm / f"rep{k}.csv", y, s, shuffled if k else None)
                   for k, s in enumerate(reps)] for arm, reps in scores.items()}
    return y, scores, paths


def test_primary_decision_and_per_replicate_tests_match_references(study, tmp_path: Path) -> None:
    y, scores, paths = study
    cfg = CompareConfig(bootstrap=300, margin=0.1)
    v = write_verdict(paths, tmp_path / "stats", cfg)
    _, direct = non_inferiority(y, scores["synthetic"], scores["real"], 0.1, 0.05, 300, 0,
                                names=("synthetic", "real"))
    assert v["primary"]["decision"]["non_inferior"] == direct.non_inferior
    assert v["primary"]["decision"]["lower"] == pytest.approx(direct.lower)
    for arm in scores:
        assert v["aucs"][arm] == pytest.approx([roc_auc_score(y, s) for s in scores[arm]])
    row = next(r for r in v["per_replicate"] if r["arm"] == "oracle" and r["replicate"] == 2)
    assert row["delong_p"] == pytest.approx(delong_test(y, scores["real"][1], scores["oracle"][1]).p)
    assert set(v["secondary"]) == {"oracle"} and v["replicates"] == {"real": 2, "synthetic": 2, "oracle": 2}
    md = (tmp_path / "stats" / "stats.md").read_text()
    assert "significantly different" not in md and "Null hypothesis" in md
    assert "conditional on this one GAN training" in md
    assert json.loads((tmp_path / "stats" / "stats.json").read_text())["margin"] == 0.1
    assert (tmp_path / "stats" / "reliability.png").stat().st_size > 0


def test_predictions_of_other_test_cases_are_refused(study, tmp_path: Path) -> None:
    y, scores, paths = study
    paths["synthetic"][1] = _write(tmp_path / "short.csv", y[:40], scores["synthetic"][1][:40])
    with pytest.raises(BusganError, match="short.csv cover different test images"):
        write_verdict(paths, tmp_path / "stats", CompareConfig(bootstrap=200))


def test_the_primary_arms_are_required(study, tmp_path: Path) -> None:
    _, _, paths = study
    with pytest.raises(BusganError, match="needs the real and synthetic arms"):
        write_verdict({"real": paths["real"]}, tmp_path / "stats", CompareConfig())
