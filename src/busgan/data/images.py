"""Robust image reading for stage 0: any PIL-readable file becomes an 8-bit L or RGB image.

Real datasets mix formats: RGBA screenshots, palette GIF/PNG, 16-bit PNG/TIFF exports, JPEGs
with EXIF rotation, and the odd truncated download. Each is converted the same documented way,
and a file that cannot be decoded is named in a one-line BusganError.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from busgan.errors import BusganError, shown
from busgan.imaging import IMAGE_SUFFIXES



def is_image_name(path: Path) -> bool:
    """Whether ``path`` has an image extension (and is not a hidden file)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def is_mask_name(path: Path) -> bool:
    """BUSI-style segmentation masks: ``benign (1)_mask.png``, ``benign (1)_mask_1.png``."""
    stem = path.stem.lower()
    return stem.endswith("_mask") or "_mask_" in stem or stem.startswith("mask_")


@dataclass(frozen=True)
class Loaded:
    """A decoded image, normalised to 8-bit 'L' or 'RGB', with what it was before."""
    image: Image.Image
    mode: str          # the file's PIL mode (e.g. 'RGBA', 'I;16', 'P')
    width: int         # the size after EXIF rotation (what the manifest records)
    height: int


BAND_PIXELS = 1 << 20
"""Pixels per band in the 16/32-bit conversion: it works on about 8 MB of float64 at a time,
so converting a large 16-bit image needs the image plus its 8-bit result, never a float64
copy of it (a 9,000x9,000 16-bit scan would otherwise take 650 MB per worker)."""


def _bands(img: Image.Image):  # noqa: ANN202 - a generator of (top row, float64 band)
    w, h = img.size
    rows = max(1, BAND_PIXELS // max(w, 1))
    for y in range(0, h, rows):
        yield y, np.asarray(img.crop((0, y, w, min(h, y + rows))), dtype=np.float64)


def _to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit integer and float images to 8 bits: 12-bit data (max < 4096) by /16, else by /257.

    Two passes over row bands (the range, then the conversion), so memory stays bounded
    whatever the image size; the result is the same as converting the whole image at once.
    """
    w, h = img.size
    tops, lows = [], []
    for _, band in _bands(img):
        if band.size and not np.isnan(band).all():
            tops.append(float(np.nanmax(band)))
            if img.mode == "F":
                lows.append(float(np.nanmin(band)))
    top = max(tops) if tops else (float("nan") if w * h else 0.0)
    lo = min(lows) if lows else float("nan")
    out = np.empty((h, w), np.uint8)
    for y, arr in _bands(img):
        if img.mode == "F":
            arr = (arr - lo) / max(top - lo, 1e-12) * 255
        elif top > 4095:
            arr = arr / 257
        elif top > 255:
            arr = arr / (4095 / 255)
        out[y:y + len(arr)] = np.clip(np.nan_to_num(arr) + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(out, mode="L")


def normalise(img: Image.Image) -> Image.Image:
    """Any PIL image to 8-bit 'L' or 'RGB': alpha composited on black, palettes expanded."""
    img = ImageOps.exif_transpose(img) or img
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode.startswith("I") or mode == "F":
        return _to_8bit(img)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        out = Image.alpha_composite(black, rgba).convert("RGB")
        return out.convert("L") if mode in ("LA", "La") else out
    if mode == "1":
        return img.convert("L")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def load_image(path: Path, fix: str = "") -> Loaded:
    """Decode ``path`` fully (so truncation is caught now) and normalise it.

    ``fix`` is appended to the error message (e.g. how to skip bad files). Pillow's
    decompression-bomb protection stays on: an image over ``Image.MAX_IMAGE_PIXELS`` pixels
    (89,478,485 by default, e.g. 9,459 x 9,459) is refused with a one-line BusganError naming
    the file, before it is decoded. ``width`` and ``height`` are the size after EXIF rotation.
    """
    hint = fix or "re-export or delete the file"
    name = shown(path)
    try:
        with warnings.catch_warnings():
            # over MAX_IMAGE_PIXELS Pillow only warns (an error over twice that): refuse both
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                mode = img.mode
                out = normalise(img)
                out.load()
    except UnidentifiedImageError:
        raise BusganError(f"{name}: not an image file PIL can read; {hint}") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise BusganError(
            f"{name}: too large to read safely ({_first_line(e)}); busgan reads images of at most "
            f"{Image.MAX_IMAGE_PIXELS:,} pixels (Pillow's decompression-bomb limit): downscale it "
            f"(e.g. to 8000x8000 or less) or {hint}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BusganError(f"{name}: corrupt or truncated image ({_first_line(e)}); {hint}") from None
    w, h = out.size  # after EXIF rotation (normalise turns the image, never resizes it)
    if w < 1 or h < 1:
        raise BusganError(f"{name}: empty image ({w}x{h}); {hint}")
    return Loaded(out, mode, w, h)


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e).strip() else type(e).__name__


def to_color(img: Image.Image, color: str) -> Image.Image:
    """'gray' -> 8-bit L (ITU-R 601 luma), 'rgb' -> RGB (gray replicated)."""
    want = "L" if color == "gray" else "RGB"
    return img if img.mode == want else img.convert(want)


