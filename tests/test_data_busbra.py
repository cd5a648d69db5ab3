"""BUS-BRA: Images/ + bus_data.csv (+ k-fold partition files), split by Case."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busgan.cli import main
from busgan.config import DataConfig
from busgan.data.prepare import prepare
from busgan.errors import BusganError

# The release's columns (bus_data.csv: ID, Histology, Pathology, BIRADS, Device, Width,
# Height, Side, BBOX, Case; 5-fold-cv.csv: ID, Pathology, kFold, valid_1..valid_5).
COLUMNS = ["ID", "Histology", "Pathology", "BIRADS", "Device", "Width", "Height", "Side", "BBOX", "Case"]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUSGAN_NO_PROGRESS", "1")


def picture(seed: int) -> Image.Image:
    coarse = np.random.default_rng(seed).integers(0, 256, (5, 5), dtype=np.uint8)
    return Image.fromarray(coarse).resize((28, 22), Image.Resampling.BICUBIC)


def write_csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",",
              bom: bool = False) -> None:
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)


def cases() -> dict[str, tuple[str, str]]:
    """ID -> (Case, Pathology): 12 benign and 8 malignant patients with 1-3 images each.

    IDs are numbered independently of the Case column, so only the CSV ties images to patients."""
    rng = np.random.default_rng(7)
    out: dict[str, tuple[str, str]] = {}
    k = 0
    for case in range(1, 21):
        label = "benign" if case <= 12 else "malignant"
        for _ in range(int(rng.integers(1, 4))):
            k += 1
            out[f"bus_{k:04d}-{'lr'[k % 2]}"] = (str(100 + case), label)
    return out


def fold_of(case: str) -> int:
    return int(case) % 5 + 1


def busbra(root: Path, table: dict[str, tuple[str, str]] | None = None, **csv_kw: object) -> Path:
    """The release's tree: Images/, Masks/, bus_data.csv, 5-fold-cv.csv."""
    table = table if table is not None else cases()
    (root / "Images").mkdir(parents=True)
    (root / "Masks").mkdir()
    rows = []
    for n, (key, (case, label)) in enumerate(sorted(table.items())):
        picture(n).save(root / "Images" / f"{key}.png")
        Image.new("L", (28, 22)).save(root / "Masks" / f"mask_{key[4:]}.png")
        birads = 3 if label == "benign" else 5
        rows.append([key, "Fibroadenoma", label, birads, "GE", 28, 22, "left", "[1, 2, 3, 4]", case])
    write_csv(root / "bus_data.csv", COLUMNS, rows, **csv_kw)  # type: ignore[arg-type]
    write_csv(root / "5-fold-cv.csv", ["ID", "Pathology", "kFold", "valid_1"],
              [[k, lab, fold_of(c), 1] for k, (c, lab) in sorted(table.items())])
    return root


def cfg(source: Path, **kw: object) -> DataConfig:
    base: dict[str, object] = dict(source=str(source), size=16, test_per_class=4, val_fraction=0.2,
                                   workers=1, near_duplicate_bits=0)
    return DataConfig(**{**base, **kw})  # type: ignore[arg-type]


def manifest(work: Path) -> list[dict[str, str]]:
    with open(work / "data" / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def one_split_per_patient(rows: list[dict[str, str]]) -> None:
    splits: dict[str, set[str]] = {}
    for r in rows:
        splits.setdefault(r["patient_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values()), splits


def test_auto_detected_and_split_by_case(tmp_path: Path) -> None:
    table = cases()
    busbra(tmp_path / "src" / "BUSBRA", table)  # the zip's wrapper folder is entered
    summary = prepare(cfg(tmp_path / "src"), tmp_path / "w")
    rows = manifest(tmp_path / "w")
    assert summary["layout"] == "busbra" and summary["images"] == len(table) == len(rows)
    assert summary["skipped"]["masks"] == len(table)
    for r in rows:
        key = Path(r["source"]).stem
        assert r["source"] == f"Images/{key}.png"
        assert (r["patient_id"], r["class"]) == table[key]
        assert Path(r["file"]).name == key.replace("-", "_") + ".png"
    one_split_per_patient(rows)
    assert summary["counts"]["test"] == {"benign": 4, "malignant": 4}
    assert summary["patients"] == 20 and summary["busbra"]["cases"] == 20
    n_benign = sum(lab == "benign" for _, lab in table.values())
    assert summary["busbra"]["birads"] == {"3": n_benign, "5": len(table) - n_benign}


def test_prepare_through_busgan_run_keeps_every_patient_in_one_split(tmp_path: Path) -> None:
    src = busbra(tmp_path / "src")
    config = tmp_path / "busbra.toml"
    config.write_text(f'[data]\nsource = "{src}"\nlayout = "busbra"\nsize = 16\ntest_per_class = 3\n'
                      "val_fraction = 0.25\nworkers = 1\n")
    assert main(["run", str(config), "--work", str(tmp_path / "w"), "--only", "prepare"]) == 0
    rows = manifest(tmp_path / "w")
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    one_split_per_patient(rows)


def test_partition_file_fixes_the_test_fold(tmp_path: Path) -> None:
    table = cases()
    src = busbra(tmp_path / "src", table)
    summary = prepare(cfg(src, folds_csv="5-fold-cv.csv", test_fold=2), tmp_path / "w")
    rows = manifest(tmp_path / "w")
    test_ids = {Path(r["source"]).stem for r in rows if r["split"] == "test"}
    assert test_ids == {k for k, (case, _) in table.items() if fold_of(case) == 2}
    assert summary["duplicates"]["moved_to_test"] == 0
    one_split_per_patient(rows)
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert summary["busbra"]["folds"] == {"csv": "5-fold-cv.csv", "column": "kFold", "test_fold": 2}
    # another file, another column name, given by an absolute path, on the command line
    other = tmp_path / "ten.csv"
    write_csv(other, ["ID", "fold"], [[k, float(fold_of(c) % 3)] for k, (c, _) in table.items()])
    code = main(["prepare", "--work", str(tmp_path / "w2"), "--source", str(src), "--size", "16",
                 "--workers", "1", "--folds-csv", str(other), "--fold-column", "fold", "--test-fold", "0"])
    assert code == 0
    rows = manifest(tmp_path / "w2")
    assert {Path(r["source"]).stem for r in rows if r["split"] == "test"} == \
        {k for k, (c, _) in table.items() if fold_of(c) % 3 == 0}


def test_semicolons_bom_extra_labels_and_class_map(tmp_path: Path) -> None:
    table = cases()
    table["bus_0999-l"] = ("999", "normal")
    src = busbra(tmp_path / "src", table, delimiter=";", bom=True)
    with pytest.raises(BusganError, match=r"bus_data\.csv, line \d+: Pathology 'normal' is not benign or malignant"):
        prepare(cfg(src), tmp_path / "w")
    summary = prepare(cfg(src, class_map={"normal": "ignore"}), tmp_path / "w")
    assert summary["images"] == len(table) - 1
    assert summary["skipped"]["excluded_folders"] == {"bus_data.csv: Pathology=normal": 1}


def edit_csv(path: Path, fn: object) -> None:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows = fn(rows)  # type: ignore[operator]
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def drop_column(name: str):  # noqa: ANN201
    def fn(rows: list[list[str]]) -> list[list[str]]:
        i = rows[0].index(name)
        return [r[:i] + r[i + 1:] for r in rows]
    return fn


@pytest.mark.parametrize("break_it, kw, message", [
    (lambda s: edit_csv(s / "bus_data.csv", drop_column("Case")), {},
     r"bus_data\.csv: no column 'Case' \(it has ID, Histology"),
    (lambda s: (s / "Images" / "bus_0001-r.png").unlink(), {},
     r"bus_data\.csv, line 2: no image bus_0001-r\.png in .*Images; add the image or delete the row"),
    (lambda s: picture(99).save(s / "Images" / "bus_7777-l.png"), {},
     r"Images/bus_7777-l\.png: no row in .*bus_data\.csv; add its row \(ID 'bus_7777-l'\)"),
    (lambda s: edit_csv(s / "bus_data.csv", lambda r: r + [r[1]]), {},
     r"bus_data\.csv, line \d+: ID 'bus_0001-r' appears twice"),
    (lambda s: None, {"test_fold": 7, "folds_csv": "5-fold-cv.csv"},
     r"5-fold-cv\.csv: no fold 7 in column 'kFold' \(folds: 1, 2, 3, 4, 5\)"),
    (lambda s: None, {"folds_csv": "5-fold-cv.csv", "fold_column": "fold"},
     r"5-fold-cv\.csv: no column 'fold'"),
    (lambda s: edit_csv(s / "5-fold-cv.csv", lambda r: r[:-1]), {"folds_csv": "5-fold-cv.csv"},
     r"5-fold-cv\.csv: no row for 1 image\(s\) of bus_data\.csv"),
    (lambda s: None, {"folds_csv": "missing.csv"}, r"data\.folds_csv: .*missing\.csv not found"),
    (lambda s: None, {"folds_csv": "5-fold-cv.csv", "layout": "folders"}, r"data\.folds_csv: a partition file is read only for the BUS-BRA layout \(this source is .folders.\)"),
])
def test_bad_inputs_are_one_line_errors(tmp_path: Path, break_it: object, kw: dict[str, object],
                                        message: str) -> None:
    src = busbra(tmp_path / "src")
    break_it(src)  # type: ignore[operator]
    with pytest.raises(BusganError, match=message) as e:
        prepare(cfg(src, **kw), tmp_path / "w")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "w" / "data").exists()


def test_folds_csv_needs_the_busbra_layout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for cls in ("benign", "malignant"):
        for i in range(6):
            (src / cls).mkdir(parents=True, exist_ok=True)
            picture(10 * i + (cls == "benign")).save(src / cls / f"{i}.png")
    with pytest.raises(BusganError, match=r"data\.folds_csv: a partition file is read only for the BUS-BRA layout"):
        prepare(cfg(src, folds_csv="folds.csv"), tmp_path / "w")
