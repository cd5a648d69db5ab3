"""busgan prepare: layouts, duplicates, split, manifest, and every bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busgan.cli import main
from busgan.config import DataConfig, PhantomConfig
from busgan.data.prepare import MANIFEST_COLUMNS, prepare
from busgan.errors import BusganError


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUSGAN_NO_PROGRESS", "1")


def pattern(seed: int, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    coarse = np.random.default_rng(seed).integers(0, 256, (6, 6), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC))


def save(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pattern(seed, size)).save(path)
    return path


def tree(root: Path, classes: dict[str, int], start: int = 0, ext: str = ".png") -> Path:
    """root/<class>/img_<i><ext> with distinct pictures."""
    seed = start
    for name, n in classes.items():
        for i in range(n):
            save(root / name / f"img_{i}{ext}", seed)
            seed += 1
    return root


def cfg(source: Path | str, **kw: object) -> DataConfig:
    base: dict[str, object] = dict(source=str(source), size=32, test_per_class=2, val_fraction=0.2, workers=1)
    return DataConfig(**{**base, **kw})  # type: ignore[arg-type]


def manifest(work: Path) -> list[dict[str, str]]:
    with open(work / "data" / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def no_leaks(rows: list[dict[str, str]]) -> None:
    split_of: dict[str, set[str]] = {}
    for r in rows:
        for key in ("dup_group", "patient_id"):
            if r[key]:
                split_of.setdefault(f"{key}:{r[key]}", set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of.values()), split_of


def test_folder_per_class_with_seed_names(tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"BreastBenign": 8, "breastMALIGNANCY": 7}, ext=".bmp")
    summary = prepare(cfg(src), tmp_path / "w")
    rows = manifest(tmp_path / "w")
    assert list(rows[0]) == list(MANIFEST_COLUMNS) and len(rows) == 15
    assert summary["layout"] == "folders"
    assert summary["counts"]["test"] == {"benign": 2, "malignant": 2}
    assert summary["counts"]["val"] == {"benign": 1, "malignant": 1}  # 20% of 6 and of 5
    for r in rows:
        path = tmp_path / "w" / "data" / r["file"]
        with Image.open(path) as im:
            assert im.size == (32, 32) and im.mode == "L"
        assert r["file"].startswith(f"{r['split']}/{r['class']}/")
        assert (r["orig_width"], r["orig_height"]) == ("48", "40") and len(r["sha256"]) == 64
    assert json.loads((tmp_path / "w/data/prepare.json").read_text())["counts"] == summary["counts"]


def test_zero_one_folders_rgb_and_class_map(tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"0": 5, "1": 5, "lesion_b": 2, "junk": 3})
    with pytest.raises(BusganError, match=r"junk: unknown class folder.*class_map"):
        prepare(cfg(src), tmp_path / "w")
    s = prepare(cfg(src, color="rgb", class_map={"Lesion_B": "benign", "junk": "ignore"}, test_per_class=1),
                tmp_path / "w")
    assert sum(s["counts"][k]["benign"] for k in s["counts"]) == 7
    assert s["skipped"]["excluded_folders"] == {"junk": 3}
    with Image.open(tmp_path / "w/data" / manifest(tmp_path / "w")[0]["file"]) as im:
        assert im.mode == "RGB"
    with pytest.raises(BusganError, match="class_map.x"):
        prepare(cfg(src, class_map={"x": "maybe"}), tmp_path / "w2")


def busi(root: Path) -> Path:
    """A BUSI-like tree: masks beside images, a 'normal' folder, planted duplicates."""
    base = root / "Dataset_BUSI_with_GT"
    for cls, n, start in (("benign", 10, 0), ("malignant", 8, 100), ("normal", 3, 200)):
        for i in range(1, n + 1):
            img = save(base / cls / f"{cls} ({i}).png", start + i, (60 + i, 50))
            Image.fromarray((pattern(start + i, (60 + i, 50)) > 128).astype(np.uint8) * 255).save(
                base / cls / f"{cls} ({i})_mask.png")
            if i == 2:
                Image.open(img).save(base / cls / f"{cls} ({i})_mask_1.png")
    # exact copy within benign, near copy (rescaled) across classes, JPEG re-encode within malignant
    (base / "benign" / "benign (11).png").write_bytes((base / "benign" / "benign (1).png").read_bytes())
    Image.open(base / "benign" / "benign (3).png").resize((80, 66)).save(base / "malignant" / "malignant (9).png")
    Image.open(base / "malignant" / "malignant (4).png").convert("RGB").save(
        base / "malignant" / "malignant (10).jpg", quality=95)
    (base / "benign" / "Thumbs.db").write_bytes(b"\x00\x01")
    return root


def test_busi_masks_normal_and_duplicates(tmp_path: Path) -> None:
    src = busi(tmp_path / "src")
    s = prepare(cfg(src, test_per_class=3), tmp_path / "w")
    rows = manifest(tmp_path / "w")
    assert s["layout"] == "busi" and s["root"].endswith("Dataset_BUSI_with_GT")
    assert not any("mask" in r["source"] for r in rows) and s["skipped"]["masks"] == 20
    assert s["skipped"]["excluded_folders"] == {"normal": 3}
    assert s["skipped"]["non_images"] == ["benign/Thumbs.db"]
    assert len(rows) == 11 + 10
    d = s["duplicates"]
    assert d["groups"] == 3 and d["images_in_groups"] == 6 and d["cross_class_groups"] == 1
    assert d["exact_pairs"] == 1 and d["near_pairs"] == 2
    cross = next(g for g in d["list"] if len(g["classes"]) == 2)
    assert cross["split"] == "train"  # a picture labelled both ways never reaches test
    no_leaks(rows)
    assert s["original"]["sizes"] > 5  # mixed sizes handled


@pytest.mark.parametrize("seed", range(4))
def test_duplicates_never_leak_across_splits(tmp_path: Path, seed: int) -> None:
    src = busi(tmp_path / "src")
    prepare(cfg(src, test_per_class=4, seed=seed, val_fraction=0.3), tmp_path / "w")
    no_leaks(manifest(tmp_path / "w"))


def test_seed_train_test_layout_keeps_its_split(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    tree(src / "Train", {"BreastBenign": 10, "BreastMalignancy": 10}, start=0, ext=".bmp")
    tree(src / "Test", {"BreastBenign": 3, "BreastMalignancy": 4}, start=500, ext=".bmp")
    # a test image that also sits in Train (a leak in the given split)
    (src / "Train/BreastBenign/copy.bmp").write_bytes((src / "Test/BreastBenign/img_0.bmp").read_bytes())
    s = prepare(cfg(src, test_per_class=150), tmp_path / "w")  # test_per_class does not apply
    rows = manifest(tmp_path / "w")
    assert s["layout"] == "seed"
    assert s["counts"]["test"] == {"benign": 4, "malignant": 4} and s["duplicates"]["moved_to_test"] == 1
    assert {r["source"] for r in rows if r["split"] == "test"} >= {f"Test/BreastBenign/img_{i}.bmp" for i in range(3)}
    assert s["counts"]["val"] == {"benign": 2, "malignant": 2}
    no_leaks(rows)


def test_patients_stay_in_one_split(tmp_path: Path) -> None:
    src = tmp_path / "src"
    seed = 0
    for cls in ("benign", "malignant"):
        for p in range(8):
            for k in range(3):
                save(src / cls / f"patient{p:02d}" / f"{k}.png", seed)
                seed += 1
    s = prepare(cfg(src, test_per_class=6), tmp_path / "w")
    rows = manifest(tmp_path / "w")
    assert s["patients"] == 8 and s["counts"]["test"] == {"benign": 6, "malignant": 6}
    assert all(r["patient_id"] for r in rows)
    no_leaks(rows)


def test_deterministic_split(tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"benign": 12, "malignant": 12})
    split = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        prepare(cfg(src, seed=seed), tmp_path / name)
        split[name] = [(r["source"], r["split"]) for r in manifest(tmp_path / name)]
    assert split["a"] == split["b"] and sorted(split["a"]) != sorted(split["c"])


def test_phantom_source(tmp_path: Path) -> None:
    s = prepare(DataConfig(size=32, test_per_class=3, workers=2), tmp_path / "w",
                phantom=PhantomConfig(n_per_class=10, size=48, workers=2))
    assert s["source"] == "phantom" and s["counts"]["test"] == {"benign": 3, "malignant": 3}
    assert (tmp_path / "w/phantom/lesions.csv").is_file()
    assert s["duplicates"]["groups"] == 0
    stamp = (tmp_path / "w/phantom/lesions.csv").stat().st_mtime_ns
    assert prepare(DataConfig(size=32, test_per_class=3), tmp_path / "w",
                   phantom=PhantomConfig(n_per_class=10, size=48, workers=1)) == s  # same: reused
    with pytest.raises(BusganError, match="--force"):  # refused before the phantom is touched
        prepare(DataConfig(size=32, test_per_class=3), tmp_path / "w", phantom=PhantomConfig(n_per_class=11, size=48))
    assert (tmp_path / "w/phantom/lesions.csv").stat().st_mtime_ns == stamp


def test_reuse_refuse_force_and_no_damage(tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"benign": 6, "malignant": 6})
    work = tmp_path / "w"
    first = prepare(cfg(src), work)
    stamp = (work / "data/manifest.csv").stat().st_mtime_ns
    assert prepare(cfg(src), work) == first  # same data: kept as it is
    assert (work / "data/manifest.csv").stat().st_mtime_ns == stamp
    with pytest.raises(BusganError, match=r"data: already holds prepared data.*--force"):
        prepare(cfg(src, size=48), work)
    save(src / "benign" / "bad.png", 99)
    (src / "benign" / "bad.png").write_bytes((src / "benign" / "bad.png").read_bytes()[:60])
    with pytest.raises(BusganError, match=r"bad\.png: corrupt or truncated.*--bad-images skip"):
        prepare(cfg(src, size=48), work, force=True)
    assert (work / "data/manifest.csv").stat().st_mtime_ns == stamp  # old data intact
    assert sorted(p.name for p in work.iterdir()) == ["data"]       # no temporary leftovers
    s = prepare(cfg(src, size=48, bad_images="skip"), work, force=True)
    assert len(s["skipped"]["bad_images"]) == 1 and "bad.png" in s["skipped"]["bad_images"][0]
    with Image.open(work / "data" / manifest(work)[0]["file"]) as im:
        assert im.size == (48, 48)
    (tmp_path / "other").mkdir()
    (tmp_path / "other/data").mkdir()
    (tmp_path / "other/data/mine.txt").write_text("x")
    with pytest.raises(BusganError, match="not prepared data"):
        prepare(cfg(src, bad_images="skip"), tmp_path / "other")


def test_odd_image_modes_end_to_end(tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"benign": 4, "malignant": 4})
    rgba = np.dstack([np.stack([pattern(50, (30, 60))] * 3, -1), np.full((60, 30), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(src / "benign/rgba.png")
    Image.fromarray(pattern(51, (70, 20)).astype(np.uint16) * 257).save(src / "benign/deep.png")
    Image.fromarray(pattern(52)).convert("P").save(src / "malignant/pal.gif")
    Image.fromarray(pattern(53, (300, 200))).convert("RGB").save(src / "malignant/big.jpg")
    (src / "malignant/readme.txt").write_text("notes")
    s = prepare(cfg(src, test_per_class=1), tmp_path / "w")
    assert s["images"] == 12 and s["skipped"]["non_images"] == ["malignant/readme.txt"]
    assert {"RGBA", "P", "RGB", "L"} <= set(s["original"]["modes"])
    for r in manifest(tmp_path / "w"):
        with Image.open(tmp_path / "w/data" / r["file"]) as im:
            assert im.size == (32, 32) and im.mode == "L"


@pytest.mark.parametrize(("setup", "kw", "message"), [
    (lambda p: None, {}, r"src: source folder not found; give --source"),
    (lambda p: p.mkdir(), {}, r"src: no class folders"),
    (lambda p: save(p / "a.png", 1), {}, r"src: images but no class folders"),
    (lambda p: (tree(p, {"benign": 3}), (p / "malignant").mkdir()), {}, r"malignant: class folder has no images"),
    (lambda p: tree(p, {"benign": 3}), {}, r"src: no malignant folder"),
    (lambda p: tree(p, {"benign": 3, "malignant": 3}), {"test_per_class": 3}, r"class 'benign' has 3 images.*at most 2"),
    (lambda p: tree(p, {"benign": 3, "malignant": 3}), {"val_fraction": 1.0}, r"data.val_fraction"),
    (lambda p: (tree(p, {"benign": 3, "malignant": 3}), (p / "benign/x.jpg").write_text("?")), {}, r"x\.jpg: not an image"),
    (lambda p: (tree(p, {"Train/benign": 3, "Train/malignant": 3})), {}, r"unknown class folder 'Train'"),
    (lambda p: tree(p, {"benign": 3, "malignant": 3}), {"layout": "seed"}, r"no Train folder"),
])
def test_bad_inputs_one_line_errors(tmp_path: Path, setup, kw, message) -> None:  # type: ignore[no-untyped-def]
    setup(tmp_path / "src")
    with pytest.raises(BusganError, match=message) as err:
        prepare(cfg(tmp_path / "src", **kw), tmp_path / "w")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "w" / "data").exists()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = busi(tmp_path / "src")
    work = tmp_path / "w"
    args = ["prepare", "--work", str(work), "--source", str(src), "--size", "32", "--test-per-class", "2",
            "--workers", "2", "--contact-sheet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "duplicates: 3 groups of " in out and (work / "data/contact_sheet.png").is_file()
    assert main(args[:-1] + ["--size", "40"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert main(args[:-1] + ["--size", "40", "--force"]) == 0
