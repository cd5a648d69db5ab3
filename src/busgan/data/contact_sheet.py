"""A contact sheet: the first images of each class side by side, to look at a dataset at a glance."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from busgan import CLASSES
from busgan.errors import BusganError
from busgan.fileio import atomic_path

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


def contact_sheet(folder: Path, out: Path, per_class: int = 8, tile: int = 192) -> Path:
    """Save one row per class folder of ``folder`` (``per_class`` images each, labelled) to ``out``."""
    label_h = 22
    rows: list[tuple[str, list[Path]]] = []
    for name in CLASSES:
        files = sorted(p for p in (folder / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BusganError(f"{folder / name}: no images for the contact sheet; generate or prepare them first")
        rows.append((name, files[:per_class]))
    sheet = Image.new("L", (per_class * tile, len(rows) * (tile + label_h)), 0)
    draw = ImageDraw.Draw(sheet)
    for r, (name, files) in enumerate(rows):
        y = r * (tile + label_h)
        draw.text((4, y + 4), f"{name} ({len(files)} of {folder / name})", fill=255)
        for c, path in enumerate(files):
            with Image.open(path) as img:
                thumb = ImageOps.pad(img.convert("L"), (tile, tile), color=0)
            sheet.paste(thumb, (c * tile, y + label_h))
    with atomic_path(out, suffix=".png") as tmp:
        sheet.save(tmp)
    return out
