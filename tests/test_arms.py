"""The arms of the comparison (busgan.arms) without training: replicates, balance, the
combined training set, the oracle's images and the reuse key. Classifier training is
replaced by a stand-in that records what it was asked to train on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from busgan import CLASSES, arms, layout
from busgan.config import Config
from busgan.data.prepare import prepare
from busgan.errors import BusganError
from busgan.fileio import write_json


def _pngs(folder: Path, n: int, value: int, size: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((size, size), (value + i) % 256, np.uint8)).save(folder / f"img{i:03d}.png")


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """arms._train replaced: writes a 'model' naming its seed and a train.json as training does."""
    calls: list[dict[str, Any]] = []

    def fake_train(train_dir: Path, work: Path, out: Path, cfg: Any, init: Path | None = None,
                   per_class: int | None = None) -> Path:
        calls.append({"train_dir": train_dir, "out": out, "seed": cfg.seed, "init": init,
                      "per_class": per_class})
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.keras").write_text(f"seed {cfg.seed} init {init}")
        write_json(out / "train.json", {"config": {"seed": cfg.seed}, "val_dir": str(work / "data" / "val"),
                                        "counts": {"train": {}, "val": {}}})
        return out / "model.keras"

    monkeypatch.setattr(arms, "_train", fake_train)
    return calls


def _work(tmp_path: Path, n_selected: dict[str, int]) -> Path:
    work = tmp_path / "w"
    for i, cls in enumerate(CLASSES):
        _pngs(work / "data" / "train" / cls, 5, 10 * i)
        _pngs(work / "selected" / cls, n_selected[cls], 100 + 10 * i)
    (work / "real").mkdir(parents=True)
    (work / "real" / "model.keras").write_text("the stage-1 model")
    write_json(work / "real" / "train.json", {"config": {"seed": 0}})
    return work


def test_replicate_seeds_are_distinct_for_every_replicate_and_round() -> None:
    cfg = Config()
    cfg.synthetic.rounds = 3
    seeds = [arms.replicate_seed(cfg, k, r) for k in range(1, 5) for r in range(1, 4)]
    assert len(set(seeds)) == len(seeds) and arms.replicate_seed(cfg, 1, 1) == cfg.classifier.seed


def test_real_arm_replicates_are_distinct_and_the_first_is_stage_one(tmp_path: Path, standin: list) -> None:
    cfg = Config()
    cfg.compare.replicates = 3
    work = _work(tmp_path, {"benign": 4, "malignant": 4})
    arms.train_real_arm(cfg, work, "key")
    models = [layout.arm_model(work, "real", k).read_text() for k in (1, 2, 3)]
    assert models[0] == "the stage-1 model" and len(set(models)) == 3
    assert [c["seed"] for c in standin] == [1, 2]


def test_synthetic_arm_balances_a_shortfall_and_validates_on_real(tmp_path: Path, standin: list,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    cfg = Config()
    cfg.synthetic.per_class, cfg.compare.replicates = 10, 2
    work = _work(tmp_path, {"benign": 3, "malignant": 7})
    with caplog.at_level("INFO", logger="busgan"):
        summary = arms.train_synthetic_arm(cfg, work, "key")
    assert summary["per_class_trained"] == 3 and summary["shortfall"]
    assert summary["selected"] == {"benign": 3, "malignant": 7}
    assert "trains on 3 per class (balanced)" in caplog.text
    assert [c["per_class"] for c in standin] == [3, 3]
    assert {c["seed"] for c in standin} == {0, 1}
    assert all(rep["val_dir"] == str(work / "data" / "val") for rep in summary["replicates"])


def test_an_arm_without_images_of_a_class_is_refused(tmp_path: Path, standin: list) -> None:
    work = _work(tmp_path, {"benign": 3, "malignant": 0})
    with pytest.raises(BusganError, match="no malignant image was selected"):
        arms.train_synthetic_arm(Config(), work, "key")


def test_replicates_are_reused_only_under_the_same_key(tmp_path: Path, standin: list) -> None:
    cfg = Config()
    work = _work(tmp_path, {"benign": 4, "malignant": 4})
    arms.train_synthetic_arm(cfg, work, "key-1")
    arms.train_synthetic_arm(cfg, work, "key-1")  # after an interruption: reused
    assert len(standin) == 1
    arms.train_synthetic_arm(cfg, work, "key-2")  # config or inputs changed: trained again
    assert len(standin) == 2


def test_combined_training_set_holds_all_real_and_a_draw_of_synthetic(tmp_path: Path) -> None:
    work = _work(tmp_path, {"benign": 6, "malignant": 6})
    out = tmp_path / "set"
    placed = arms.combined_training_set(work, out, per_class=4, seed=0)
    assert placed == {"real": {"benign": 5, "malignant": 5}, "synthetic": {"benign": 4, "malignant": 4}}
    for cls in CLASSES:
        names = sorted(p.name for p in (out / cls).iterdir())
        assert sum(n.startswith("real_") for n in names) == 5
        assert sum(n.startswith("synthetic_") for n in names) == 4
    arms.combined_training_set(work, tmp_path / "again", per_class=4, seed=0)
    draw = lambda d: sorted(p.name for c in CLASSES for p in (d / c).glob("synthetic_*"))  # noqa: E731
    assert draw(out) == draw(tmp_path / "again")  # a seeded draw
    first = (out / "benign").iterdir().__next__()
    assert first.stat().st_nlink >= 2  # links, not copies, on one file system


def test_oracle_images_are_new_and_take_the_generated_path(tmp_path: Path) -> None:
    cfg = Config()
    cfg.phantom.n_per_class, cfg.phantom.size = 6, 32
    cfg.data.size, cfg.data.test_per_class, cfg.data.workers = 32, 2, 1
    cfg.generate.n_per_class, cfg.gan.resolution = 6, 16
    work = tmp_path / "w"
    prepare(cfg.data, work, phantom=cfg.phantom)
    oracle_cfg = arms.oracle_phantom_config(cfg)
    assert oracle_cfg.seed != cfg.phantom.seed and oracle_cfg.n_per_class == cfg.generate.n_per_class
    from busgan.data.phantom import generate_phantom
    fresh = generate_phantom(tmp_path / "oracle", oracle_cfg)
    sources = sorted(fresh.glob("*/*.png"))
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert {digest(p) for p in sources}.isdisjoint(arms._prepared_hashes(work))
    dst = tmp_path / "gen" / "x.png"
    arms.to_generated_path(sources[0], dst, cfg)
    with Image.open(dst) as im:
        assert im.size == (16, 16) and im.mode == "L"
        got = np.asarray(im, np.float64)
    with Image.open(sources[0]) as im:  # independent path: Lanczos 32 -> 16 of the gray image
        want = np.asarray(im.convert("L").resize((16, 16), Image.LANCZOS), np.float64)
    assert np.abs(got - want).max() <= 1


def test_enabled_arms_follow_the_config() -> None:
    cfg = Config()
    assert arms.enabled_arms(cfg) == ("real", "synthetic", "real+synthetic", "oracle")
    cfg.data.source = "/data/busi"
    assert arms.enabled_arms(cfg) == ("real", "synthetic", "real+synthetic")  # oracle: phantom only
    cfg.arms.real_plus_synthetic = False
    assert arms.enabled_arms(cfg) == ("real", "synthetic")
    cfg.compare.replicates = 0
    with pytest.raises(BusganError, match="compare.replicates = 0"):
        arms.replicate_count(cfg)
