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

from busgan.errors import BusganError

IMAGE_SUFFIXES = frozenset({".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp"})
"""File extensions read as images; anything else in a class folder is skipped and reported."""


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
    width: int
    height: int


def _to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit integer and float images to 8 bits: 12-bit data (max < 4096) by /16, else by /257."""
    arr = np.asarray(img, dtype=np.float64)
    top = float(np.nanmax(arr)) if arr.size else 0.0
    if img.mode == "F":
        lo = float(np.nanmin(arr))
        arr = (arr - lo) / max(top - lo, 1e-12) * 255
    elif top > 4095:
        arr = arr / 257
    elif top > 255:
        arr = arr / (4095 / 255)
    return Image.fromarray(np.clip(np.nan_to_num(arr) + 0.5, 0, 255).astype(np.uint8), mode="L")


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

    ``fix`` is appended to the error message (e.g. how to skip bad files).
    """
    hint = fix or "re-export or delete the file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                mode, (w, h) = img.mode, img.size
                out = normalise(img)
                out.load()
    except UnidentifiedImageError:
        raise BusganError(f"{path}: not an image file PIL can read; {hint}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BusganError(f"{path}: corrupt or truncated image ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                          f"{hint}") from None
    if w < 1 or h < 1:
        raise BusganError(f"{path}: empty image ({w}x{h}); {hint}")
    return Loaded(out, mode, w, h)


def to_color(img: Image.Image, color: str) -> Image.Image:
    """'gray' -> 8-bit L (ITU-R 601 luma), 'rgb' -> RGB (gray replicated)."""
    want = "L" if color == "gray" else "RGB"
    return img if img.mode == want else img.convert(want)


def fit(img: Image.Image, size: int, policy: str) -> Image.Image:
    """Resize to ``size`` x ``size``: 'pad' (letterbox in black, keeps aspect), 'crop' (centre), 'stretch'."""
    method = Image.Resampling.LANCZOS
    if policy == "pad":
        return ImageOps.pad(img, (size, size), method=method, color=0)
    if policy == "crop":
        return ImageOps.fit(img, (size, size), method=method)
    if policy == "stretch":
        return img.resize((size, size), method)
    raise BusganError(f"data.resize: unknown policy {policy!r}; use pad, crop or stretch")
