"""Find the labelled images of a source folder: folder per class, BUSI, the seed's Train/Test
tree, or BUS-BRA (``Images/`` + ``bus_data.csv``, see ``busbra.py``).

Class folders are recognised by name, case-insensitively and ignoring spaces, '_' and '-':
``benign``/``BreastBenign``/``0`` and ``malignant``/``malignancy``/``BreastMalignancy``/``1``;
``data.class_map`` maps any other name to 'benign', 'malignant' or 'ignore'. Images inside a
subfolder of a class folder carry that subfolder's name as their patient id. Class folders may
hold DICOM files too (``dicom.py``): their patient is the header's PatientID, pseudonymised.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from busgan import CLASSES
from busgan.data import busbra
from busgan.data.dicom import DicomReport, Pseudonymiser, is_dicom_name, read_header
from busgan.data.images import is_image_name, is_mask_name
from busgan.errors import BusganError, shown

KNOWN_NAMES: dict[str, str] = {
    "benign": "benign", "breastbenign": "benign", "0": "benign",
    "malignant": "malignant", "malignancy": "malignant", "breastmalignancy": "malignant",
    "breastmalignant": "malignant", "1": "malignant",
}
IGNORE = "ignore"
SPLIT_NAMES = {"train": "train", "training": "train", "test": "test", "testing": "test"}


@dataclass(frozen=True)
class Item:
    """One source image."""
    path: Path
    rel: str            # path relative to the source root, '/'-separated
    cls: str            # 'benign' or 'malignant'
    patient: str = ""   # patient id when known (DICOM: pseudonymised)
    split: str = ""     # a split fixed by the source layout ('train' / 'test'), else ''
    name: str = ""      # stem for the output name ('' = from the path inside the class folder)
    dicom: bool = False
    frame: int | None = None  # the frame of a multi-frame DICOM file split into images
    group: str = ""     # images that must share a split without being a patient (a clip's frames)


@dataclass(frozen=True)
class ImportOptions:
    """The ``[data]`` keys that decide what an import finds beyond layout and class map."""
    folds_csv: str = ""           # BUS-BRA partition CSV ('' = none)
    fold_column: str = "kFold"
    test_fold: int = 1
    dicom_frames: str = "refuse"  # multi-frame DICOM: 'refuse', 'split' or 'skip'
    patient_salt: str = ""        # '' = the one in salt_file (made on first use)
    salt_file: Path | None = None


@dataclass
class Found:
    """What a source folder holds."""
    root: Path
    layout: str
    items: list[Item] = field(default_factory=list)
    masks: int = 0                                       # BUSI mask files skipped
    skipped: list[str] = field(default_factory=list)     # non-image files (relative paths)
    excluded: dict[str, int] = field(default_factory=dict)  # folder -> images not imported
    links: list[str] = field(default_factory=list)       # symbolic links not followed: 'rel (why)'
    inputs: list[Path] = field(default_factory=list)     # metadata files read (label CSVs)
    notes: dict[str, Any] = field(default_factory=dict)  # per-format reports ('busbra', 'dicom')
    identity: str = ""                                   # what else decides the items (salt hash)


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def class_of(name: str, class_map: Mapping[str, str], layout: str) -> str | None:
    """'benign', 'malignant', 'ignore', or None when the folder name is not recognised."""
    mapped = {_key(k): v.strip().lower() for k, v in class_map.items()}
    key = _key(name)
    if key in mapped:
        return mapped[key]
    if key in KNOWN_NAMES:
        return KNOWN_NAMES[key]
    if layout == "busi" and key == "normal":
        return IGNORE
    return None


def _check_map(class_map: Mapping[str, str]) -> None:
    for k, v in class_map.items():
        if v.strip().lower() not in (*CLASSES, IGNORE):
            raise BusganError(f"data.class_map.{k}: {v!r} is not 'benign', 'malignant' or 'ignore'; fix the mapping")


def detect_layout(root: Path) -> str:
    """'busbra' (bus_data.csv), 'seed' (Train/Test folders), 'busi' (mask files or a 'normal'
    folder) or 'folders'."""
    if busbra.is_busbra(root):
        return "busbra"
    dirs = _visible_dirs(root)
    names = {_key(d.name) for d in dirs}
    if {SPLIT_NAMES.get(n) for n in names} >= {"train", "test"}:
        return "seed"
    if "normal" in names:
        return "busi"
    for d in dirs:
        if any(is_mask_name(p) for p in d.iterdir() if p.is_file()):
            return "busi"
    return "folders"


def resolve_root(source: str | Path) -> Path:
    """The source folder, descending through a lone wrapper folder (e.g. ``Dataset_BUSI_with_GT``)."""
    root = Path(source).expanduser()
    if not root.exists():
        raise BusganError(f"{root}: source folder not found; give --source a folder of class folders, "
                          "a BUSI folder or the seed's Train/Test tree (or 'phantom')")
    if not root.is_dir():
        raise BusganError(f"{root}: is a file, not a folder; give --source the folder that holds the class folders")
    dirs = _visible_dirs(root)
    has_images = any(is_image_name(p) or is_dicom_name(p) for p in root.iterdir() if p.is_file())
    if len(dirs) == 1 and not has_images and class_of(dirs[0].name, {}, "busi") is None \
            and _key(dirs[0].name) not in SPLIT_NAMES and not busbra.is_busbra(root):
        return dirs[0]
    return root


def link_problem(path: Path) -> str | None:
    """Why the symbolic link ``path`` is not read (None: not a link, or a link to a file).

    A dangling link (its target is gone), a link loop, and a link to a folder (never
    followed: it may lead back up the tree or outside the source) are reported, never
    silently skipped.
    """
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        return "dangling link: its target does not exist"
    except (RuntimeError, OSError):  # RuntimeError: 'Symlink loop' (Python < 3.13), ELOOP
        return "link loop"
    if target.is_dir():
        if path.parent.resolve().is_relative_to(target):
            return "link loop: points to a folder above it"
        return "link to a folder: not followed"
    return None if target.is_file() else "link to something that is not a file"


@dataclass
class _Dicom:
    """DICOM handling during one scan: pseudonyms, the multi-frame policy, the report."""
    frames: str
    pseudonym: Pseudonymiser
    report: DicomReport = field(default_factory=DicomReport)


def _add_dicom(p: Path, rel: str, inner: tuple[str, ...], item: Item, found: Found, dcm: _Dicom) -> int:
    """Add the image(s) of one DICOM file (``item`` as a plain image would be); return how many."""
    header = read_header(p)
    if header is not None and not header.is_image:  # DICOMDIR-like records, reports: no pixels
        found.skipped.append(rel)
        return 0
    if header is not None and header.patient_key:  # the header's patient, never stored in clear
        item = dataclasses.replace(item, patient=dcm.pseudonym(header.patient_key))
    item = dataclasses.replace(item, dicom=True)
    frames = header.frames if header is not None else 1
    if frames == 1:
        items = [item]
    elif dcm.frames == "split":
        stem = "_".join([*inner[:-1], p.stem])
        items = [dataclasses.replace(item, frame=i, name=f"{stem}_f{i + 1:03d}", group=f"dicom:{rel}")
                 for i in range(frames)]
    elif dcm.frames == "skip":
        dcm.report.skipped_multi_frame.append(rel)
        items = []
    else:
        raise BusganError(f"{shown(p)}: multi-frame DICOM ({frames} frames, a cine clip?); set "
                          "data.dicom_frames to 'split' (every frame an image, all in one split) or "
                          "'skip', or export a single frame")
    dcm.report.add(rel, header, len(items))
    found.items.extend(items)
    return len(items)


def _scan_class(folder: Path, root: Path, cls: str, split: str, found: Found, busi: bool, dcm: _Dicom) -> int:
    """Add the images under one class folder; return how many."""
    n = 0
    for p in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        rel = p.relative_to(root).as_posix()
        problem = link_problem(p)
        if problem is not None:
            found.links.append(f"{rel} ({problem})")
            continue
        if not p.is_file():
            continue
        inner = p.relative_to(folder).parts
        patient = "/".join(inner[:-1]) if len(inner) > 1 and not busi else ""
        if is_image_name(p):
            if is_mask_name(p):
                found.masks += 1
                continue
            found.items.append(Item(p, rel, cls, patient, split))
            n += 1
        elif is_dicom_name(p):
            n += _add_dicom(p, rel, inner, Item(p, rel, cls, patient, split), found, dcm)
        else:
            found.skipped.append(rel)
    return n


def _is_picture(p: Path) -> bool:
    return p.is_file() and ((is_image_name(p) and not is_mask_name(p)) or is_dicom_name(p))


def _scan_classes(base: Path, root: Path, class_map: Mapping[str, str], layout: str,
                  split: str, found: Found, dcm: _Dicom) -> None:
    dirs = _visible_dirs(base)
    if not dirs:
        loose = any(_is_picture(p) for p in base.iterdir())
        what = "images but no class folders" if loose else "no class folders"
        raise BusganError(f"{base}: {what}; put the images in benign/ and malignant/ subfolders")
    seen: dict[str, list[Path]] = {c: [] for c in CLASSES}
    for p in sorted(base.iterdir()):  # a class folder behind a broken link is named too
        problem = link_problem(p) if not p.name.startswith((".", "__")) else None
        if problem is not None and not p.is_dir():
            found.links.append(f"{p.relative_to(root).as_posix()} ({problem})")
    for d in dirs:
        cls = class_of(d.name, class_map, layout)
        if cls is None:
            raise BusganError(
                f"{d}: unknown class folder '{d.name}'; rename it (benign, malignant, BreastBenign, "
                f"BreastMalignancy, 0, 1) or map it: --set 'data.class_map={{\"{d.name}\"=\"benign\"}}' "
                "(or \"malignant\", \"ignore\")")
        if cls == IGNORE:
            found.excluded[d.relative_to(root).as_posix()] = sum(1 for p in d.rglob("*") if _is_picture(p))
            continue
        if _scan_class(d, root, cls, split, found, layout == "busi", dcm) == 0:
            raise BusganError(f"{d}: class folder has no images; add images or remove the folder")
        seen[cls].append(d)
    for cls, folders in seen.items():
        if not folders:
            raise BusganError(f"{base}: no {cls} folder; add one (e.g. {base / cls}) "
                              "or map an existing folder with data.class_map")


FRAME_POLICIES = ("refuse", "split", "skip")


def find_images(source: str | Path, layout: str = "auto", class_map: Mapping[str, str] | None = None,
                options: ImportOptions | None = None) -> Found:
    """Every labelled image of ``source``, in a deterministic order, with what was skipped."""
    class_map = dict(class_map or {})
    opts = options or ImportOptions()
    _check_map(class_map)
    if opts.dicom_frames not in FRAME_POLICIES:
        raise BusganError(f"data.dicom_frames: {opts.dicom_frames!r}; use one of {', '.join(FRAME_POLICIES)}")
    root = resolve_root(source)
    if layout == "auto":
        layout = detect_layout(root)
    if opts.folds_csv and layout != "busbra":
        raise BusganError(f"data.folds_csv: a partition file is read only for the BUS-BRA layout (this source "
                          f"is '{layout}'); clear data.folds_csv or point --source at a BUS-BRA folder")
    found = Found(root, layout)
    dcm = _Dicom(opts.dicom_frames, Pseudonymiser(opts.patient_salt, opts.salt_file))
    if layout == "seed":
        splits = {SPLIT_NAMES.get(_key(d.name)): d for d in _visible_dirs(root)}
        for want in ("train", "test"):
            if want not in splits:
                raise BusganError(f"{root}: no {want.capitalize()} folder for the seed layout; "
                                  "add it or use --layout folders")
        for split in ("train", "test"):
            _scan_classes(splits[split], root, class_map, layout, split, found, dcm)
    elif layout in ("folders", "busi"):
        _scan_classes(root, root, class_map, layout, "", found, dcm)
    elif layout == "busbra":
        folds = (opts.folds_csv, opts.fold_column, opts.test_fold) if opts.folds_csv else None
        busbra.scan(root, class_map, folds, found)
    else:
        raise BusganError(f"data.layout: unknown layout {layout!r}; use auto, folders, busi, seed or busbra")
    if dcm.report.files:
        found.notes["dicom"] = dataclasses.asdict(dcm.report)
        found.identity = dcm.pseudonym.identity()
    return found
