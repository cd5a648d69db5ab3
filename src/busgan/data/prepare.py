"""Stage 0: turn a source folder (or the phantom) into ``WORK/data`` with a manifest.

Output: ``data/{train,val,test}/{benign,malignant}/*.png``, ``data/manifest.csv`` (one row per
image) and ``data/prepare.json`` (counts, duplicates, what was skipped). Everything is built in a
temporary folder beside ``data/`` and renamed into place at the end, so a failure or Ctrl-C
never damages data prepared before.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from busgan import CLASSES
from busgan.config import DataConfig, PhantomConfig, config_hash, result_values
from busgan.data.duplicates import UnionFind, find_pairs, perceptual_hash, pixel_hash
from busgan.data.images import load_image, to_color
from busgan.imaging import fit
from busgan.data.dicom import SALT_FILE, load_dicom
from busgan.data.importers import Found, ImportOptions, Item, find_images
from busgan.data.parallel import imap, worker_count
from busgan.data.phantom import generate_phantom, phantom_record
from busgan.data.split import assign_splits
from busgan.errors import BusganError, shown
from busgan.fileio import TEMP_NAME, read_json, temp_name, write_json

SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("file", "class", "split", "source", "sha256", "orig_width", "orig_height",
                    "patient_id", "dup_group")
SKIP_HINT = "delete or re-export it, or pass --bad-images skip"
OWN_FILES = frozenset({"prepare.json", "manifest.csv", "contact_sheet.png"})
"""Files busgan writes in data/ besides the images listed in manifest.csv."""
VIEWER_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
"""Caches a file browser leaves in folders it shows: no user data, so they do not block a rebuild."""


def _check(cfg: DataConfig) -> None:
    if cfg.size < 16:
        raise BusganError(f"data.size: {cfg.size} is too small; use --size 16 or more (256 for the paper)")
    if cfg.test_per_class < 0:
        raise BusganError(f"data.test_per_class: {cfg.test_per_class} is negative; use 0 or more")
    if not 0 <= cfg.val_fraction < 1:
        raise BusganError(f"data.val_fraction: {cfg.val_fraction} is outside [0, 1); use e.g. 0.1")
    if cfg.near_duplicate_bits < 0:
        raise BusganError(f"data.near_duplicate_bits: {cfg.near_duplicate_bits}; use 0 (identical perceptual hashes only) or more")


def _process(task: tuple[int, Item, Path, DataConfig]) -> dict[str, Any]:
    """Read, hash and resize one image into the staging folder (runs in a worker)."""
    k, item, staging, cfg = task
    path = item.path
    try:
        data = path.read_bytes()
        loaded = load_dicom(path, item.frame, SKIP_HINT) if item.dicom else load_image(path, SKIP_HINT)
    except OSError as e:
        if cfg.bad_images == "skip":
            return {"k": k, "error": f"{shown(path)}: {e.strerror or e}"}
        raise BusganError(f"{shown(path)}: cannot be read ({e.strerror or e}); check its permissions") from None
    except BusganError as e:
        if cfg.bad_images == "skip":
            return {"k": k, "error": str(e)}
        raise
    img = loaded.image
    out = fit(to_color(img, cfg.color), cfg.size, cfg.resize)
    buf = io.BytesIO()
    out.save(buf, format="PNG", compress_level=1)
    (staging / f"{k}.png").write_bytes(buf.getvalue())
    return {"k": k, "sha256": hashlib.sha256(data).hexdigest(), "pixels": pixel_hash(img),
            "phash": perceptual_hash(img), "width": loaded.width, "height": loaded.height,
            "mode": loaded.mode}


def _fingerprint(cfg: DataConfig, found: Found | None, phantom: PhantomConfig | None) -> str:
    """Identity of the prepared data: the config, and the phantom's config or every source file's
    path, size and modification time."""
    # The source is represented by its resolved root and files (or the phantom's own hash).
    keep = {k: v for k, v in result_values(cfg).items() if k != "source"}
    if phantom is not None:
        return config_hash({"data": keep, "phantom": phantom_record(phantom)["hash"]})
    assert found is not None
    listing = []
    for it in found.items:
        st = it.path.stat()
        listing.append((it.rel, it.cls, st.st_size, st.st_mtime_ns))
    ident: dict[str, Any] = {"data": keep, "root": str(found.root.resolve()), "layout": found.layout,
                             "files": listing}
    if found.inputs:  # label CSVs decide classes, patients and splits
        ident["inputs"] = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in found.inputs]
    if found.identity:  # the pseudonyms' salt
        ident["identity"] = found.identity
    return config_hash(ident)


def check_apart(source: Path, work: Path) -> None:
    """Refuse a source folder and a work directory inside one another, before any work.

    Outputs inside the source would be imported again as source images (with the labels of
    the folders they sit in), and a source inside the work directory sits where busgan
    writes and replaces folders (``busgan run`` prepares with force).
    """
    src, out = Path(source).expanduser().resolve(), Path(work).expanduser().resolve()
    if out.is_relative_to(src):
        raise BusganError(f"{work}: the work directory is inside the source folder {source} (its outputs "
                          f"would be imported as source images); choose a --work outside {source}")
    if src.is_relative_to(out):
        raise BusganError(f"{source}: the source folder is inside the work directory {work}, where busgan "
                          f"replaces what it wrote; move the images outside {work} or choose another --work")


def _foreign_file(data: Path, owned: bool) -> Path | None:
    """The first file in ``data`` that busgan prepare did not write (None: all are its own).

    Replacing ``data`` deletes it, and busgan may delete only what it wrote itself: the files
    its prepare.json + manifest.csv account for (images, records, contact sheet, temporaries).
    A folder without busgan's records (not ``owned``) is foreign as a whole.
    """
    listed: set[str] = set()
    if owned:
        try:
            with open(data / "manifest.csv", newline="", encoding="utf-8") as f:
                listed = {row.get("file") or "" for row in csv.DictReader(f)}
        except (OSError, UnicodeDecodeError, csv.Error):
            listed = set()
    for folder, dirs, files in os.walk(data):
        names = sorted(files) + sorted(d for d in dirs if Path(folder, d).is_symlink())
        for name in names:
            path = Path(folder, name)
            rel = path.relative_to(data).as_posix()
            if not owned or path.is_symlink() or not (
                    rel in listed or rel in OWN_FILES or name in VIEWER_FILES or TEMP_NAME.match(name)):
                return path
    return None


def _check_output(data: Path, fingerprint: str, force: bool) -> dict[str, Any] | None:
    """The existing summary when ``data`` already holds these prepared data (and not ``force``);
    None when ``data`` may be (re)built; a BusganError when it holds anything else.

    Even with ``force``, a ``data`` holding any file busgan did not write is refused.
    """
    if not data.exists() or (data.is_dir() and not any(data.iterdir())):
        return None
    old = _existing(data) if data.is_dir() else None
    if old and old.get("fingerprint") == fingerprint and not force:
        return old
    foreign = _foreign_file(data, bool(old))
    if not old:
        shown = f" (e.g. {foreign.relative_to(data)})" if foreign else ""
        raise BusganError(f"{data}: holds files that are not prepared data{shown} and busgan replaces only "
                          "folders it wrote; move them elsewhere or choose another --work")
    if foreign is not None:
        raise BusganError(f"{foreign}: was not written by busgan prepare, and replacing {data} would delete "
                          f"it; move it out of {data} or choose another --work")
    if not force:
        raise BusganError(f"{data}: already holds prepared data from another source or config; "
                          "pass --force to replace it, or choose another --work")
    return None


def _out_name(item: Item, used: set[str]) -> str:
    """A readable, unique PNG name from the source path inside its class folder."""
    parts = item.rel.split("/")
    inner = parts[2:] if item.split else parts[1:]
    raw = item.name or "_".join([*inner[:-1], Path(inner[-1]).stem])
    stem = re.sub(r"[^A-Za-z0-9]+", "_", raw).strip("_") or "image"
    name, n = f"{stem}.png", 1
    while name.lower() in used:
        n += 1
        name = f"{stem}_{n}.png"
    used.add(name.lower())
    return name


def _existing(data: Path) -> dict[str, Any] | None:
    try:
        rec = read_json(data / "prepare.json")
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and (data / "manifest.csv").is_file() else None


def prepare(cfg: DataConfig, work: Path, force: bool = False,
            phantom: PhantomConfig | None = None) -> dict[str, Any]:
    """Build ``work/data`` from ``cfg.source`` and return the summary written to ``prepare.json``.

    With source 'phantom' the phantom (``phantom`` config, defaults if None) is generated
    under ``work/phantom`` first. Existing prepared data is kept when it is the same (same
    config and source files) and refused otherwise, unless ``force``; a ``data`` folder holding
    anything busgan did not write is refused even with ``force``, as is a source folder and
    ``work`` inside one another.
    """
    _check(cfg)
    work = Path(work)
    if work.exists() and not work.is_dir():
        raise BusganError(f"{work}: exists and is not a folder; choose another --work")
    if (work / "data").exists() and not (work / "data").is_dir():
        raise BusganError(f"{work / 'data'}: is a file; move it away or choose another --work")
    is_phantom = cfg.source.strip().lower() == "phantom"
    data = work / "data"
    if is_phantom:  # deterministic from its config: checked before anything is generated
        phantom = phantom or PhantomConfig()
        fingerprint = _fingerprint(cfg, None, phantom)
        old = _check_output(data, fingerprint, force)
        if old:
            return old
        generate_phantom(work / "phantom", phantom)
        found = find_images(work / "phantom", "folders", {})
    else:
        if Path(cfg.source).expanduser().exists():  # a missing one gets find_images' message
            check_apart(Path(cfg.source), work)
        options = ImportOptions(cfg.folds_csv, cfg.fold_column, cfg.test_fold, cfg.dicom_frames,
                                cfg.patient_salt, work / SALT_FILE)
        found = find_images(cfg.source, cfg.layout, cfg.class_map, options)
        fingerprint = _fingerprint(cfg, found, None)
        old = _check_output(data, fingerprint, force)
        if old:
            return old

    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_name("data.new-"), dir=work))
    try:
        summary = _build(cfg, found, tmp, fingerprint, "phantom" if is_phantom else str(found.root))
        if data.exists():
            trash = Path(tempfile.mkdtemp(prefix=temp_name("data.old-"), dir=work))
            os.replace(data, trash / "data")
            os.replace(tmp, data)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, data)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _build(cfg: DataConfig, found: Found, tmp: Path, fingerprint: str, source: str) -> dict[str, Any]:
    staging = tmp / ".staging"
    staging.mkdir()
    tasks = [(k, it, staging, cfg) for k, it in enumerate(found.items)]
    results = {r["k"]: r for r in imap(_process, tasks, worker_count(cfg.workers), "prepare")}
    bad = [results[k]["error"] for k in sorted(results) if "error" in results[k]]
    keep = [k for k in range(len(found.items)) if "error" not in results[k]]
    items = [found.items[k] for k in keep]
    recs = [results[k] for k in keep]
    if not items:
        raise BusganError(f"{found.root}: no readable images; check the folder and --layout")

    # duplicates, then units = duplicates joined with patients
    pairs = find_pairs([r["pixels"] for r in recs], [r["phash"] for r in recs], cfg.near_duplicate_bits)
    dups = UnionFind(len(items))
    for p in pairs:
        dups.union(p.i, p.j)
    dup_groups = dups.groups()
    dup_of = {i: f"d{g + 1:04d}" for g, members in enumerate(dup_groups) for i in members}
    units = UnionFind(len(items))
    for p in pairs:
        units.union(p.i, p.j)
    first_of: dict[str, int] = {}  # a patient's images, and a clip's frames, share a split
    for i, it in enumerate(items):
        for key in (f"patient:{it.patient}" if it.patient else "", f"group:{it.group}" if it.group else ""):
            if key:
                units.union(i, first_of.setdefault(key, i))
    classes = [it.cls for it in items]
    conflicted = [False] * len(items)
    for members in dup_groups:
        if len({classes[i] for i in members}) > 1:
            for i in members:
                conflicted[i] = True
    split, notes = assign_splits([units.find(i) for i in range(len(items))], classes,
                                 [it.split for it in items], cfg.test_per_class, cfg.val_fraction,
                                 cfg.seed, str(found.root), conflicted)

    used: set[str] = set()
    rows = []
    for i, (it, rec) in enumerate(zip(items, recs)):
        name = _out_name(it, used)
        target = tmp / split[i] / it.cls / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / f"{rec['k']}.png", target)
        rows.append({"file": f"{split[i]}/{it.cls}/{name}", "class": it.cls, "split": split[i],
                     "source": it.rel, "sha256": rec["sha256"], "orig_width": rec["width"],
                     "orig_height": rec["height"], "patient_id": it.patient, "dup_group": dup_of.get(i, "")})
    shutil.rmtree(staging)
    order = {s: n for n, s in enumerate(SPLITS)}
    rows.sort(key=lambda r: (order[r["split"]], r["class"], r["file"]))
    with open(tmp / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    counts = {s: {c: sum(1 for r in rows if r["split"] == s and r["class"] == c) for c in CLASSES}
              for s in SPLITS}
    groups = []
    for g, members in enumerate(dup_groups):
        kinds = {p.kind for p in pairs if p.i in members}
        groups.append({"group": f"d{g + 1:04d}", "kind": "exact" if kinds == {"exact"} else "near",
                       "classes": sorted({classes[i] for i in members}), "split": split[members[0]],
                       "files": [items[i].rel for i in members]})
    modes = Counter(r["mode"] for r in recs)
    config = dataclasses.asdict(cfg)
    if config.get("patient_salt"):  # a secret: with it, pseudonyms could be matched to patient ids
        config["patient_salt"] = "(set; not recorded)"
    summary: dict[str, Any] = {
        "source": source, "root": str(found.root), "layout": found.layout, "fingerprint": fingerprint,
        "config": config, "images": len(rows), "counts": counts,
        "duplicates": {
            "exact_pairs": sum(p.kind == "exact" for p in pairs),
            "near_pairs": sum(p.kind == "near" for p in pairs),
            "groups": len(groups), "images_in_groups": sum(len(g["files"]) for g in groups),
            "cross_class_groups": sum(len(g["classes"]) > 1 for g in groups),
            "moved_to_test": notes["moved_to_test"], "list": groups},
        "patients": len({it.patient for it in items if it.patient}),
        "skipped": {"bad_images": bad, "non_images": found.skipped, "masks": found.masks,
                    "excluded_folders": found.excluded, "links": found.links},
        "original": {"modes": dict(sorted(modes.items())),
                     "sizes": len({(r["orig_width"], r["orig_height"]) for r in rows})},
        **found.notes,  # 'busbra': cases, BI-RADS, folds; 'dicom': files, frames, burned-in text
    }
    write_json(tmp / "prepare.json", summary)
    return summary
