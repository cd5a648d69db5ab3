"""Robust image reading, resizing and duplicate hashing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busgan.data.duplicates import UnionFind, find_pairs, perceptual_hash, pixel_hash
from busgan.data.images import is_mask_name, load_image, to_color
from busgan.imaging import fit
from busgan.errors import BusganError


def pattern(seed: int, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    """A smooth random 8-bit picture (distinct seeds give distinct perceptual hashes)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (6, 6), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC))


def test_rgba_is_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :6, 3] = 255  # left half opaque, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    gray = np.asarray(to_color(loaded.image, "gray"))
    assert loaded.mode == "RGBA" and (loaded.width, loaded.height) == (12, 10)
    assert gray[:, :6].min() == 200 and gray[:, 6:].max() == 0


@pytest.mark.parametrize(("top", "expect"), [(65535, 255), (4095, 255), (200, 200)])
def test_16bit_is_scaled(tmp_path: Path, top: int, expect: int) -> None:
    arr = np.full((8, 8), top, np.uint16)
    arr[0, 0] = 0
    Image.fromarray(arr).save(tmp_path / "x.png")
    img = load_image(tmp_path / "x.png").image
    assert img.mode == "L" and np.asarray(img).max() == expect and np.asarray(img).min() == 0


def test_palette_and_bilevel(tmp_path: Path) -> None:
    Image.fromarray(pattern(1)).convert("P").save(tmp_path / "p.gif")
    Image.fromarray(pattern(2) > 128).save(tmp_path / "b.png")
    for name in ("p.gif", "b.png"):
        img = load_image(tmp_path / name).image
        assert img.mode in ("L", "RGB")
        assert to_color(img, "rgb").mode == "RGB" and to_color(img, "gray").mode == "L"


def test_truncated_and_non_images_name_the_file(tmp_path: Path) -> None:
    Image.fromarray(pattern(3, (200, 200))).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(BusganError, match=r"cut\.png: corrupt or truncated"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(BusganError, match=r"text\.png: not an image") as err:
        load_image(tmp_path / "text.png", "pass --bad-images skip")
    assert "--bad-images skip" in str(err.value) and "\n" not in str(err.value)


def test_resize_policies() -> None:
    img = Image.fromarray(np.full((20, 40), 255, np.uint8))  # wide, white
    pad = np.asarray(fit(img, 32, "pad"))
    assert pad.shape == (32, 32) and pad[0].max() == 0 and pad[16].min() > 200  # black bars top/bottom
    assert np.asarray(fit(img, 32, "crop")).min() > 200
    assert np.asarray(fit(img, 32, "stretch")).min() > 200
    with pytest.raises(BusganError):
        fit(img, 32, "squash")


def test_mask_names() -> None:
    assert is_mask_name(Path("benign (1)_mask.png")) and is_mask_name(Path("benign (1)_mask_1.png"))
    assert not is_mask_name(Path("benign (1).png")) and not is_mask_name(Path("mask.png"))


def test_exact_and_near_duplicates_are_grouped() -> None:
    a = Image.fromarray(pattern(10, (64, 64)))
    imgs = [a, a.copy(), a.resize((50, 50)).resize((64, 64)), Image.fromarray(pattern(11, (64, 64))),
            Image.fromarray(pattern(12, (64, 64)))]
    pairs = find_pairs([pixel_hash(i) for i in imgs], [perceptual_hash(i) for i in imgs], 4)
    kinds = {(p.i, p.j): p.kind for p in pairs}
    assert kinds[(0, 1)] == "exact" and kinds[(0, 2)] == "near"
    assert not any(3 in k or 4 in k for k in kinds)
    uf = UnionFind(len(imgs))
    for p in pairs:
        uf.union(p.i, p.j)
    assert uf.groups() == [[0, 1, 2]]
    exact_only = find_pairs([pixel_hash(i) for i in imgs], [perceptual_hash(i) for i in imgs], -1)
    assert [(p.i, p.j) for p in exact_only] == [(0, 1)]
