"""Image files and resizing shared by every stage (one home for each).

``IMAGE_SUFFIXES`` is the union of what the stages used to accept separately: every format
Pillow reads that ultrasound exports come in (PNG, BMP, JPEG, TIFF, GIF, WebP).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from busgan.errors import BusganError

IMAGE_SUFFIXES = frozenset({".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp"})
"""File extensions read as images; anything else in a class folder is skipped."""

RESIZE_POLICIES = ("pad", "crop", "stretch")


def is_image_file(path: Path) -> bool:
    """A visible file with an image extension."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files skipped)."""
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p))


def fit(img: Image.Image, size: int, policy: str) -> Image.Image:
    """Resize to ``size`` x ``size`` with Lanczos: 'pad' (letterbox in black, keeps aspect),
    'crop' (centre square), 'stretch'. Always a new image."""
    method = Image.Resampling.LANCZOS
    if policy == "pad":
        return ImageOps.pad(img, (size, size), method=method, color=0)
    if policy == "crop":
        return ImageOps.fit(img, (size, size), method=method)
    if policy == "stretch":
        return img.resize((size, size), method)
    raise BusganError(f"data.resize: unknown policy {policy!r}; use {', '.join(RESIZE_POLICIES)}")


def image_grid(images: np.ndarray, cols: int | None = None) -> np.ndarray:
    """Tile uint8 images (N, H, W, C) into one image, row by row (black where missing)."""
    n, h, w, c = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = im
    return grid


def classifier_pixels(im: Image.Image, size: int) -> np.ndarray:
    """What every busgan classifier is fed: RGB, Pillow's bilinear resize to ``size`` x
    ``size``, float32 pixel values 0-255 (the model scales its input itself). The one
    definition: the file loader, the fused generate-and-select and the audit all use it, so an
    image gets the same inputs, bit for bit, on every path."""
    im = im.convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32)


def load_classifier_image(path: Path | str, size: int, via: int | None = None) -> np.ndarray:
    """An image file as :func:`classifier_pixels`; ``via``: first bring it to this side as
    the GAN's loader does (centre crop, Lanczos), i.e. down the generated images' path."""
    try:
        with Image.open(path) as im:
            if via is not None and im.size != (via, via):
                im = fit(im, via, "crop")
            return classifier_pixels(im, size)
    except (UnidentifiedImageError, OSError) as e:
        raise BusganError(f"{path}: not a readable image ({e}); delete or replace it") from None
