"""The BUS-BRA release (Gomez-Flores et al. 2024): ``Images/<ID>.png``, ``Masks/`` and ``bus_data.csv``.

``bus_data.csv`` gives each image (column ``ID``, the file name without ``.png``) its patient
(``Case``) and label (``Pathology``: benign / malignant); other columns (BIRADS, Histology,
Device, ...) are ignored. Every row needs its image and every image its row. An optional
k-fold partition CSV (the release's ``5-fold-cv.csv`` / ``10-fold-cv.csv``: ``ID`` and a fold
column, ``kFold``) fixes the test set to one fold.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from busgan import CLASSES
from busgan.data.images import is_image_name
from busgan.errors import BusganError, shown
from busgan.imaging import IMAGE_SUFFIXES

CSV_NAME = "bus_data.csv"
IMAGES, MASKS = "Images", "Masks"
REQUIRED = ("ID", "Case", "Pathology")


def named(folder: Path, name: str, want_dir: bool) -> Path | None:
    """The entry of ``folder`` called ``name`` (case-insensitively), or None."""
    for p in sorted(folder.iterdir()):
        if p.name.lower() == name.lower() and (p.is_dir() if want_dir else p.is_file()):
            return p
    return None


def is_busbra(root: Path) -> bool:
    """Whether ``root`` looks like the BUS-BRA release (it holds ``bus_data.csv``)."""
    return named(root, CSV_NAME, want_dir=False) is not None


def read_table(path: Path, required: tuple[str, ...], fix: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV with a header holding ``required`` (BOM, ',' ';' or tab)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BusganError(f"{shown(path)}: not UTF-8 text; save it as UTF-8 CSV") from None
    except OSError as e:
        raise BusganError(f"{shown(path)}: cannot be read ({e.strerror or e}); check its permissions") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise BusganError(f"{shown(path)}: empty; {fix}")
    head = lines[0]
    delimiter = max(",;\t", key=head.count)  # Excel in some locales writes ';'
    try:
        reader = csv.DictReader(lines, delimiter=delimiter)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        rows = [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None})
                for row in reader]
    except csv.Error as e:
        raise BusganError(f"{shown(path)}: not a readable CSV ({e}); {fix}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise BusganError(f"{shown(path)}: no column {', '.join(repr(c) for c in missing)} (it has "
                          f"{', '.join(header) or 'none'}); {fix}")
    return rows


def _image_id(value: str) -> str:
    """An ``ID`` cell as an image stem (a trailing image suffix, which some copies carry, dropped)."""
    stem, dot, suffix = value.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in IMAGE_SUFFIXES else value


def _fold(value: str) -> str:
    """A fold cell normalised ('2.0' -> '2'), so integer and float spellings match."""
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() else value


def read_folds(path: Path, column: str, test_fold: int, ids: set[str], known: set[str]) -> dict[str, str]:
    """ID -> 'test' (the ``test_fold`` rows) or 'train', for every ID of ``ids``; IDs outside
    ``known`` (the IDs of bus_data.csv) are refused."""
    fix = f"give data.folds_csv a BUS-BRA partition file (ID and {column} columns) or set data.fold_column"
    rows = read_table(path, ("ID", column), fix)
    fold_of: dict[str, str] = {}
    for line, row in rows:
        key = _image_id(row["ID"])
        if not key:
            continue
        if key not in known:
            raise BusganError(f"{shown(path)}, line {line}: ID {key!r} is not in {CSV_NAME}; "
                              "use the partition file of this release")
        if not row[column]:
            raise BusganError(f"{shown(path)}, line {line}: empty {column} for ID {key!r}; fill it in")
        if key in ids:
            fold_of[key] = _fold(row[column])
    absent = sorted(ids - set(fold_of))
    if absent:
        raise BusganError(f"{shown(path)}: no row for {len(absent)} image(s) of {CSV_NAME} (e.g. ID "
                          f"{absent[0]!r}); use the partition file of this release")
    want = str(test_fold)
    if want not in fold_of.values():
        folds = ", ".join(sorted(set(fold_of.values()), key=lambda v: (len(v), v)))
        raise BusganError(f"{shown(path)}: no fold {want} in column {column!r} (folds: {folds}); "
                          "set data.test_fold to one of them")
    return {k: "test" if v == want else "train" for k, v in fold_of.items()}


def scan(root: Path, class_map: Mapping[str, str], folds: tuple[str, str, int] | None, found: Any) -> None:
    """Add BUS-BRA's labelled images to ``found`` (an importers.Found); ``folds`` is
    (partition CSV, fold column, test fold) or None. Pathology values map like class folders."""
    from busgan.data.importers import IGNORE, Item, class_of, link_problem  # importers imports this module

    table = named(root, CSV_NAME, want_dir=False)
    images = named(root, IMAGES, want_dir=True)
    if table is None or images is None:
        raise BusganError(f"{root}: a BUS-BRA folder needs {CSV_NAME} and an {IMAGES}/ folder beside it; "
                          "point --source at the unpacked release or choose another --layout")
    found.inputs.append(table)
    fix = f"BUS-BRA's {CSV_NAME} has the columns ID, Case, Pathology (and BIRADS, ...); fix its header"
    rows = read_table(table, REQUIRED, fix)

    on_disk: dict[str, Path] = {}
    for p in sorted(images.iterdir()):
        if p.name.startswith("."):
            continue
        rel = p.relative_to(root).as_posix()
        problem = link_problem(p)
        if problem is not None:
            found.links.append(f"{rel} ({problem})")
        elif not p.is_file() or not is_image_name(p):
            found.skipped.append(rel)
        elif p.stem in on_disk:
            raise BusganError(f"{shown(p)}: a second image with ID {p.stem!r} (beside {on_disk[p.stem].name}); "
                              "keep one of them")
        else:
            on_disk[p.stem] = p
    masks = named(root, MASKS, want_dir=True)
    if masks is not None:
        found.masks += sum(1 for p in masks.rglob("*") if p.is_file() and not p.name.startswith("."))

    labelled: dict[str, tuple[str, str]] = {}   # ID -> (class, case)
    ignored: set[str] = set()                  # IDs whose Pathology maps to 'ignore'
    for line, row in rows:
        key, case, label = _image_id(row["ID"]), row["Case"], row["Pathology"]
        if not key:
            raise BusganError(f"{shown(table)}, line {line}: empty ID; fill it in or delete the row")
        if key in labelled or key in ignored:
            raise BusganError(f"{shown(table)}, line {line}: ID {key!r} appears twice; keep one row")
        if key not in on_disk:
            raise BusganError(f"{shown(table)}, line {line}: no image {key}.png in {shown(images)}; "
                              "add the image or delete the row")
        if not case:
            raise BusganError(f"{shown(table)}, line {line}: empty Case for ID {key!r}; BUS-BRA's patient "
                              "(Case) decides the split: fill it in")
        cls = class_of(label, class_map, "busbra")
        if cls is None:
            raise BusganError(f"{shown(table)}, line {line}: Pathology {label!r} is not benign or malignant; "
                              f"fix it or map it: --set 'data.class_map={{\"{label}\"=\"benign\"}}' "
                              "(or \"malignant\", \"ignore\")")
        if cls == IGNORE:
            ignored.add(key)
            where = f"{table.name}: Pathology={label}"
            found.excluded[where] = found.excluded.get(where, 0) + 1
            continue
        labelled[key] = (cls, case)
    unrowed = sorted(set(on_disk) - set(labelled) - ignored)
    if unrowed:
        more = f" (and {len(unrowed) - 1} more)" if len(unrowed) > 1 else ""
        raise BusganError(f"{shown(on_disk[unrowed[0]])}: no row in {shown(table)}{more}; add its row "
                          f"(ID {unrowed[0]!r}) or move the image out of {images.name}/")

    split_of: dict[str, str] = {}
    if folds is not None:
        csv_name, column, test_fold = folds
        path = Path(csv_name).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise BusganError(f"data.folds_csv: {shown(path)} not found; give the partition CSV's path "
                              f"(absolute, or relative to {shown(root)})")
        found.inputs.append(path)
        split_of = read_folds(path, column, test_fold, set(labelled), set(labelled) | ignored)
    for cls in CLASSES:
        if not any(c == cls for c, _ in labelled.values()):
            raise BusganError(f"{shown(table)}: no {cls} rows; BUS-BRA's Pathology must hold benign and "
                              "malignant images (or map a value with data.class_map)")
        if split_of and not any(c == cls and split_of[k] == "test" for k, (c, _) in labelled.items()):
            raise BusganError(f"data.test_fold: fold {folds[2] if folds else ''} holds no {cls} image; "
                              "choose another fold")
    for key in sorted(labelled):
        cls, case = labelled[key]
        path = on_disk[key]
        found.items.append(Item(path, path.relative_to(root).as_posix(), cls, case,
                                split_of.get(key, ""), name=key))
    report: dict[str, Any] = {"csv": table.name, "cases": len({c for _, c in labelled.values()})}
    if rows and "BIRADS" in rows[0][1]:
        report["birads"] = dict(sorted(Counter(row["BIRADS"] for _, row in rows
                                               if _image_id(row["ID"]) in labelled).items()))
    if folds is not None:
        report["folds"] = {"csv": folds[0], "column": folds[1], "test_fold": folds[2]}
    found.notes["busbra"] = report
