"""Stage 3: images from a trained generator, one file per seed.

Why per-seed files: a seed names an image forever (``seed000042.png``), so a run can stop and
restart (existing files are skipped), be split across machines, and be audited. The latent of a
seed comes from NumPy's ``RandomState(seed)`` alone and the generator runs with constant noise,
so an image does not depend on which other seeds share its batch (batches are padded to a fixed
size to keep one compiled program). Memory is bounded by one batch.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from busgan.errors import BusganError
from busgan.fileio import atomic_path, read_json, sha256_file, write_json
from busgan.imaging import image_grid
from busgan.progress import progress

Render = Callable[[np.ndarray], np.ndarray]  # seeds (B,) -> uint8 images (B, H, W, C)
FORMATS = ("png", "bmp")


MAX_SEED = 2**32 - 1
"""The largest seed: NumPy's RandomState takes seeds in 0..2**32 - 1."""


class Seeds(Sequence[int]):
    """Seeds as disjoint ranges in the order given (duplicates dropped), never one list.

    ``--seeds 0-4294967295`` is four billion seeds: a list of them would not fit in memory,
    so seeds are kept as ranges and streamed.
    """

    def __init__(self, ranges: Iterable[range]) -> None:
        self.ranges = [r for r in ranges if len(r)]
        self._starts: list[int] = []
        n = 0
        for r in self.ranges:
            self._starts.append(n)
            n += len(r)
        self._len = n

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        return itertools.chain.from_iterable(self.ranges)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return list(itertools.islice(self, *i.indices(self._len)))
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("seed index out of range")
        k = bisect.bisect_right(self._starts, i) - 1
        return self.ranges[k][i - self._starts[k]]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Seeds):
            return self.ranges == other.ranges
        if isinstance(other, (list, tuple, range)):
            return len(other) == self._len and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        parts = [str(r.start) if len(r) == 1 else f"{r.start}-{r.stop - 1}" for r in self.ranges]
        return f"Seeds({','.join(parts)!r})"


def parse_seeds(text: str) -> Seeds:
    """'1-25000' or '1,5,10-12' -> the seeds (order kept, duplicates dropped), checked first.

    Every bound is checked before any seed is made, and the result holds ranges, not a list.
    """
    usage = "expected numbers and ranges like 1-25000 or 1,5,7-9"
    parts: list[tuple[int, int]] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        a, dash, b = part.partition("-")
        if not (a.isdigit() and (b.isdigit() if dash else True)):  # digits only: no signs, no '1e9'
            raise BusganError(f"--seeds {text!r}: {part!r} is not a seed or a range; {usage}")
        lo, hi = int(a), int(b) if dash else int(a)
        if hi < lo:
            raise BusganError(f"--seeds {text!r}: the range {part} ends below its start; a range "
                              f"goes from the smaller seed to the larger, e.g. {hi}-{lo}")
        if hi > MAX_SEED:
            raise BusganError(f"--seeds {text!r}: seed {hi} is too large; seeds go from 0 to "
                              f"{MAX_SEED} (NumPy's RandomState), e.g. 0-{MAX_SEED}")
        parts.append((lo, hi + 1))
    if not parts:
        raise BusganError(f"--seeds {text!r}: give at least one seed in 0..{MAX_SEED}; {usage}")
    ranges: list[range] = []
    covered: list[tuple[int, int]] = []  # sorted, disjoint [start, stop) already taken
    for lo, hi in parts:
        i = bisect.bisect_left(covered, (lo,))
        if i > 0 and covered[i - 1][1] >= lo:
            i -= 1
        j, start, new_lo, new_hi = i, lo, lo, hi
        while j < len(covered) and covered[j][0] <= hi:  # overlapping or touching [lo, hi)
            c0, c1 = covered[j]
            if c0 > start:  # the part of [lo, hi) before this interval is new
                ranges.append(range(start, c0))
            start, new_lo, new_hi = max(start, c1), min(new_lo, c0), max(new_hi, c1)
            j += 1
        if start < hi:
            ranges.append(range(start, hi))
        covered[i:j] = [(new_lo, new_hi)]
    return Seeds(ranges)


SEED_FILE = re.compile(r"^seed\d{6,}\.(png|bmp)$")  # what seed_filename writes


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
    if not isinstance(seeds, (Seeds, range)):  # those are unique already, and streamed
        seeds = list(dict.fromkeys(int(s) for s in seeds))
    bar = progress(total=len(seeds), desc=f"generate {out_dir.name}", unit="img")

    def flush(chunk: list[int]) -> None:
        padded = chunk + [chunk[-1]] * (batch_size - len(chunk))
        images = render(np.asarray(padded, np.int64))
        for s, im in zip(chunk, images):
            save_image(out_dir / seed_filename(s, fmt), im)
        bar.update(len(chunk))

    try:  # seeds are streamed: memory is bounded by one batch, whatever the number of seeds
        chunk: list[int] = []
        for s in seeds:
            if (out_dir / seed_filename(s, fmt)).exists():
                bar.update(1)
                continue
            chunk.append(int(s))
            if len(chunk) == batch_size:
                flush(chunk)
                chunk = []
        if chunk:
            flush(chunk)
    finally:
        bar.close()
    if grid_path is not None and len(seeds):
        shown = [np.asarray(Image.open(out_dir / seed_filename(s, fmt)))
                 for s in itertools.islice(seeds, grid_n)]
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
        return best_snapshot(network)
    return network


def best_snapshot(folder: Path) -> Path:
    """The snapshot ``folder/best.json`` names, which must lie inside ``folder``.

    best.json is written by train-gan as ``snapshots/snapshot-....npz``; one naming an
    absolute path, ``..`` or a link leading out of the folder (an edited or planted file) is
    refused with one line, so a GAN folder never makes busgan read a file elsewhere.
    """
    folder = Path(folder)
    best = folder / "best.json"
    fix = "delete it and rerun busgan train-gan with --resume auto, or give a snapshot-*.npz file"
    try:
        record = read_json(best)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BusganError(f"{best}: cannot be read ({type(e).__name__}); {fix}") from None
    name = record.get("snapshot") if isinstance(record, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise BusganError(f"{best}: names no snapshot; {fix}")
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or "\\" in name or name.startswith("~"):
        raise BusganError(f"{best}: names the snapshot {name!r}, outside its folder {folder} "
                          f"(only paths inside it are read); {fix}")
    path = folder / rel
    if not path.resolve().is_relative_to(folder.resolve()):
        raise BusganError(f"{best}: the snapshot {name!r} leads outside its folder {folder} "
                          f"(a link?); {fix}")
    return path


def snapshot_renderer(snapshot: Path, truncation: float) -> Render:
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
        return steps.synthesize(G, ema_vars, z, psi=truncation, noise_mode=NOISE_MODE)

    fn = autodiff.compile(run)

    def render(seeds: np.ndarray) -> np.ndarray:
        import keras
        z = keras.ops.convert_to_tensor(latents(seeds, cfg.z_dim))
        return to_uint8(keras.ops.convert_to_numpy(fn(z)))

    return render


NOISE_MODE = "const"
RECORD = "generate.json"


def _claim_output(out_dir: Path, made_by: dict[str, object]) -> None:
    """Make sure every image already in ``out_dir`` was made by this snapshot with this psi,
    noise mode and format (recorded in ``generate.json``), so skipping existing files can
    never keep stale images: images of another generator or psi are deleted (only the
    per-seed files busgan wrote), a folder of other images without a record is refused."""
    record = out_dir / RECORD
    ours = [p for p in out_dir.glob("seed*") if SEED_FILE.match(p.name)] if out_dir.is_dir() else []
    if record.is_file():
        if read_json(record) == made_by:
            return
        for p in ours:  # made by another snapshot or psi: regenerated below
            p.unlink()
    elif ours:
        raise BusganError(f"{out_dir}: holds {len(ours)} per-seed images without {RECORD} (from an "
                          "older busgan or another tool), so their generator is unknown; delete "
                          "them or choose another --out")
    write_json(record, made_by)


def generate_images(network: Path, out_dir: Path, seeds: Sequence[int], truncation: float,
                    batch_size: int, fmt: str = "png") -> int:
    """Write one image per seed to ``out_dir`` (existing files kept); return images present.

    ``network``: a snapshot, or a train-gan output folder (its best snapshot). A grid of the
    first 64 seeds goes beside the folder (``<out_dir>-grid.png``), so the folder holds only
    per-seed images for the selection stage.
    """
    if not math.isfinite(truncation):  # NaN or inf psi would write black images
        raise BusganError(f"truncation psi {truncation!r} is not a finite number; give e.g. "
                          "--truncation 1.0 (1 = no truncation)")
    snapshot = resolve_network(network)
    out_dir = Path(out_dir)
    _claim_output(out_dir, {"snapshot_sha256": sha256_file(snapshot), "truncation": float(truncation),
                            "noise_mode": NOISE_MODE, "format": fmt})
    if not isinstance(seeds, (Seeds, range)):
        seeds = list(seeds)
    missing = any(not (out_dir / seed_filename(int(s), fmt)).exists() for s in seeds)
    render: Render = snapshot_renderer(snapshot, truncation) if missing else (lambda s: s)
    grid = out_dir.with_name(out_dir.name + "-grid.png")
    return write_images(render, seeds, out_dir, batch_size, fmt, grid_path=grid)
