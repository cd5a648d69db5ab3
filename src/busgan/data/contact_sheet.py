"""A contact sheet: the first images of each class side by side, to look at a dataset at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from busgan import CLASSES
from busgan.errors import BusganError
from busgan.fileio import atomic_path
from busgan.imaging import image_grid, is_image_file



def contact_sheet(folder: Path, out: Path, per_class: int = 8, tile: int = 192) -> Path:
    """Save one row per class folder of ``folder`` (``per_class`` images each, labelled) to ``out``."""
    label_h = 22
    rows: list[tuple[str, list[Path]]] = []
    for name in CLASSES:
        files = sorted(p for p in (folder / name).glob("*") if is_image_file(p))
        if not files:
            raise BusganError(f"{folder / name}: no images for the contact sheet; generate or prepare them first")
        rows.append((name, files[:per_class]))
    sheet = Image.new("L", (per_class * tile, len(rows) * (tile + label_h)), 0)
    draw = ImageDraw.Draw(sheet)
    for r, (name, files) in enumerate(rows):
        y = r * (tile + label_h)
        draw.text((4, y + 4), f"{name} ({len(files)} of {folder / name})", fill=255)
        thumbs = []
        for path in files:
            with Image.open(path) as img:
                thumbs.append(np.asarray(ImageOps.pad(img.convert("L"), (tile, tile), color=0))[..., None])
        sheet.paste(Image.fromarray(image_grid(np.stack(thumbs), cols=per_class)[..., 0]), (0, y + label_h))
    with atomic_path(out, suffix=".png") as tmp:
        sheet.save(tmp)
    return out
