"""Stage 3: images from a trained generator, one file per seed.

Why per-seed files: a seed names an image forever (``seed000042.png``), so a run can stop and
restart (existing files are skipped), be split across machines, and be audited. The latent of a
seed comes from NumPy's ``RandomState(seed)`` alone and the generator runs with constant noise,
so an image does not depend on which other seeds share its batch (batches are padded to a fixed
size to keep one compiled program). Memory is bounded by one batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from busgan.errors import BusganError
from busgan.fileio import atomic_path, read_json
from busgan.progress import progress

Render = Callable[[np.ndarray], np.ndarray]  # seeds (B,) -> uint8 images (B, H, W, C)
FORMATS = ("png", "bmp")


def parse_seeds(text: str) -> list[int]:
    """'1-25000' or '1,5,10-12' -> a list of seeds (order kept, duplicates dropped)."""
    seeds: list[int] = []
    try:
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            if "-" in part:
                a, b = part.split("-", 1)
                if int(b) < int(a):
                    raise ValueError
                seeds.extend(range(int(a), int(b) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise BusganError(f"--seeds {text!r}: expected numbers and ranges like 1-25000 or 1,5,7-9") from None
    if not seeds or min(seeds) < 0 or max(seeds) >= 2**32:
        raise BusganError(f"--seeds {text!r}: give at least one seed in 0..4294967295")
    return list(dict.fromkeys(seeds))


def seed_filename(seed: int, fmt: str = "png") -> str:
    """The file name of a seed's image, e.g. ``seed000001.png``."""
    return f"seed{seed:06d}.{fmt}"


def latents(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """One z per seed from ``RandomState(seed)`` (independent of the batch)."""
    return np.stack([np.random.RandomState(int(s)).randn(z_dim) for s in seeds]).astype(np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8 (x * 127.5 + 128, clipped)."""
    return np.clip(np.rint(np.asarray(images, np.float32) * 127.5 + 128), 0, 255).astype(np.uint8)


def save_image(path: Path, image: np.ndarray) -> None:
    """Write one uint8 HWC image (1 or 3 channels) atomically; the format follows the suffix."""
    img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    with atomic_path(path) as tmp:
        img.save(tmp, format=path.suffix[1:].upper())


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


def write_images(render: Render, seeds: Iterable[int], out_dir: Path, batch_size: int,
                 fmt: str = "png", grid_path: Path | None = None, grid_n: int = 64) -> int:
    """Render the seeds whose files are missing, in fixed-size batches; return images present.

    The grid shows the first ``grid_n`` seeds (read back from disk when already there).
    """
    if fmt not in FORMATS:
        raise BusganError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if batch_size < 1:
        raise BusganError(f"batch size {batch_size}: must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    todo = [s for s in seeds if not (out_dir / seed_filename(s, fmt)).exists()]
    bar = progress(total=len(todo), desc=f"generate {out_dir.name}", unit="img")
    try:
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            padded = chunk + [chunk[-1]] * (batch_size - len(chunk))
            images = render(np.asarray(padded, np.int64))
            for s, im in zip(chunk, images):
                save_image(out_dir / seed_filename(s, fmt), im)
            bar.update(len(chunk))
    finally:
        bar.close()
    if grid_path is not None and seeds:
        shown = [np.asarray(Image.open(out_dir / seed_filename(s, fmt))) for s in seeds[:grid_n]]
        shown = [im[..., None] if im.ndim == 2 else im for im in shown]
        save_image(Path(grid_path), image_grid(np.stack(shown)))
    return len(seeds)


def resolve_network(network: Path) -> Path:
    """A snapshot file, or a train-gan output folder meaning its ``best`` snapshot."""
    network = Path(network)
    if network.is_dir():
        best = network / "best.json"
        if not best.is_file():
            raise BusganError(f"{network}: no best.json; give a snapshot-*.npz file or the --out "
                              "folder of a finished busgan train-gan")
        return network / read_json(best)["snapshot"]
    return network


def snapshot_renderer(snapshot: Path, truncation: float, batch_size: int) -> Render:
    """Load the EMA generator of a snapshot and return a seeds -> uint8 images function."""
    from busgan.stylegan2 import autodiff, networks, snapshot as snap, steps

    arrays, meta = snap.read_snapshot(snapshot)
    cfg = snap.config_from_meta(meta, str(snapshot))
    G = networks.build_generator(cfg)
    ema = snap.unflatten_like({"g_ema": [v.value for v in G.trainable_variables],
                               "g_ema_nt": [v.value for v in G.non_trainable_variables]},
                              arrays, str(snapshot))
    ema_vars = (ema["g_ema"], ema["g_ema_nt"])

    def run(z):  # one compiled program for the fixed batch size
        return steps.synthesize(G, ema_vars, z, psi=truncation, noise_mode="const")

    fn = autodiff.compile(run)

    def render(seeds: np.ndarray) -> np.ndarray:
        import keras
        z = keras.ops.convert_to_tensor(latents(seeds, cfg.z_dim))
        return to_uint8(keras.ops.convert_to_numpy(fn(z)))

    return render


def generate_images(network: Path, out_dir: Path, seeds: Sequence[int], truncation: float,
                    batch_size: int, fmt: str = "png") -> int:
    """Write one image per seed to ``out_dir`` (existing files kept); return images present.

    ``network``: a snapshot, or a train-gan output folder (its best snapshot). A grid of the
    first 64 seeds goes beside the folder (``<out_dir>-grid.png``), so the folder holds only
    per-seed images for the selection stage.
    """
    snapshot = resolve_network(network)
    out_dir = Path(out_dir)
    seeds = list(seeds)
    missing = [s for s in seeds if not (out_dir / seed_filename(int(s), fmt)).exists()]
    render: Render = snapshot_renderer(snapshot, truncation, batch_size) if missing else (lambda s: s)
    grid = out_dir.with_name(out_dir.name + "-grid.png")
    return write_images(render, seeds, out_dir, batch_size, fmt, grid_path=grid)
