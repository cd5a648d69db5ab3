"""The data-efficiency curve (busgan.efficiency) without training: the draws, the training
sets each point trains on, the validation folder, the curve's means and the config key.
Classifier training and testing are replaced by stand-ins that record what they were given."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from busgan import CLASSES, arms, efficiency, layout
from busgan.config import Config, apply_override
from busgan.errors import BusganError
from busgan.fileio import write_json


def _pngs(folder: Path, n: int, value: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8), (value + i) % 256, np.uint8)).save(folder / f"img{i:03d}.png")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    work = tmp_path / "w"
    for i, cls in enumerate(CLASSES):
        _pngs(work / "data" / "train" / cls, 20 if cls == "benign" else 12, 10 * i)
        _pngs(work / "selected" / cls, 9, 100 + 10 * i)
    return work


@pytest.fixture
def standins(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Training records its training set and seed; testing returns an AUC made of both."""
    calls: list[dict[str, Any]] = []

    def fake_train(train_dir: Path, work: Path, out: Path, cfg: Any, init: Path | None = None,
                   per_class: int | None = None) -> Path:
        files = {c: sorted(p.name for p in (train_dir / c).iterdir()) for c in CLASSES}
        calls.append({"files": files, "seed": cfg.seed, "val": layout.data_split(work, "val"), "out": out})
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.keras").write_text(str(len(calls)))
        return out / "model.keras"

    def fake_evaluate(model: Path, test_dir: Path, out: Path, batch_size: int = 32) -> dict[str, float]:
        return {"auc": 0.5 + int(model.read_text()) / 100}

    import busgan.classifier.evaluate as evaluate
    monkeypatch.setattr(arms, "_train", fake_train)
    monkeypatch.setattr(evaluate, "evaluate_model", fake_evaluate)
    return calls


def test_draws_take_the_fraction_of_each_class_seeded(work: Path) -> None:
    a, b, c = (efficiency.real_draw(work, 0.25, s) for s in (1, 1, 2))
    assert {k: len(v) for k, v in a.items()} == {"benign": 5, "malignant": 3}
    assert a == b and a != c
    for cls, files in a.items():
        assert set(files) <= set((work / "data" / "train" / cls).iterdir())


def test_each_point_trains_on_its_draw_alone_and_with_synthetic(work: Path, standins: list) -> None:
    cfg = Config()
    cfg.arms.efficiency = [0.5, 0.25]
    cfg.compare.replicates = 2
    cfg.synthetic.per_class = 4
    for k in (1, 2):  # the full set's points come from stage test
        for arm, auc in (("real", 0.8 + k / 100), ("real+synthetic", 0.9 + k / 100)):
            write_json(layout.arm_test_dir(work, arm, k) / "metrics.json", {"auc": auc})
    summary = efficiency.data_efficiency(cfg, work, key="k1")
    assert len(standins) == 2 * 2 * 2  # fractions x replicates x (alone, with synthetic)
    for alone, mixed in zip(standins[0::2], standins[1::2]):
        assert alone["val"] == work / "data" / "val"
        assert all(n.startswith("real_") for c in CLASSES for n in alone["files"][c])
        for c in CLASSES:  # the same real draw, plus 4 synthetic images of the class
            assert [n for n in mixed["files"][c] if n.startswith("real_")] == alone["files"][c]
            assert sum(n.startswith("synthetic_") for n in mixed["files"][c]) == 4
    # fraction 0.25 first (sorted), replicate seeds differ
    assert len(standins[0]["files"]["benign"]) == 5 and len(standins[4]["files"]["benign"]) == 10
    assert standins[0]["seed"] != standins[2]["seed"]
    rows = list(csv.DictReader(open(work / "efficiency" / "efficiency.csv")))
    assert sorted({float(r["fraction"]) for r in rows}) == [0.25, 0.5, 1.0]
    points = {(p["fraction"], p["arm"]): p for p in summary["points"]}
    full = points[(1.0, "real")]
    assert full["mean_auc"] == pytest.approx(np.mean([0.81, 0.82]))
    assert full["sd_auc"] == pytest.approx(np.std([0.81, 0.82], ddof=1))
    quarter = [float(r["auc"]) for r in rows if r["fraction"] == "0.25" and r["arm"] == "real"]
    assert points[(0.25, "real")]["mean_auc"] == pytest.approx(np.mean(quarter))
    assert (work / "efficiency" / "efficiency.png").stat().st_size > 1000
    from busgan.report import Document
    doc = Document()
    efficiency.add_report_section(doc, work)
    text = doc.markdown(work)
    assert "| 12 |" in text and "trained on all real training images" in text
    assert "efficiency/efficiency.png" in text
    # a rerun under the same key trains nothing again
    efficiency.data_efficiency(cfg, work, key="k1")
    assert len(standins) == 8


def test_the_fractions_key_parses_lists_and_refuses_out_of_range() -> None:
    cfg = Config()
    apply_override(cfg, "arms.efficiency=0.25,0.5")
    assert cfg.arms.efficiency == [0.25, 0.5]
    with pytest.raises(BusganError, match="arms.efficiency"):
        apply_override(cfg, "arms.efficiency=0.5,1.5")
