"""Stage 3: images from a trained generator, one file per seed.

Why per-seed files: a seed names an image forever (``seed000042.png``), so a run can stop and
restart (existing files are skipped), be split across machines, and be audited. The latent of a
seed comes from NumPy's ``RandomState(seed)`` alone and the generator runs with constant noise,
so an image does not depend on which other seeds share its batch (batches are padded to a fixed
size to keep one compiled program).

Why a worker pool: rendering on the device, conversion to uint8 and PNG encoding used to run
one after another on one CPU thread, so the device waited for the encoder (161 images/s on an
H200 whose generator alone makes 1,321). Now the main thread only dispatches batches (JAX runs
them asynchronously) and CPU threads convert and encode them; Pillow releases the GIL while it
compresses (measured: a pure-Python thread runs at full speed beside an encoding one), so
threads scale across cores without pickling images to processes. At most ``workers + 2``
batches are in flight, so memory stays flat whatever the number of seeds.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from busgan.errors import BusganError
from busgan.fileio import atomic_path, read_json, sha256_file, write_json
from busgan.imaging import image_grid
from busgan.progress import progress

Render = Callable[[np.ndarray], Any]
"""seeds (B,) -> images (B, H, W, C): uint8, or the generator's float output in [-1, 1] (any
backend's array, still on the device) that the workers convert with ``to_uint8``."""
FORMATS = ("png", "bmp")
PNG_COMPRESS_LEVEL = 1
"""zlib level of every PNG busgan writes here. PNG is lossless at any level (the pixels are the
same); level 1 encodes 256x256 speckle about 2.8x faster than Pillow's default 6 (320 against
116 images/s per core on the build machine) for files about 15% larger (38 against 33 KiB).
Level 0 (stored) is faster again but makes files 1.7x larger than level 1."""


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


def as_uint8(images: Any) -> np.ndarray:
    """uint8 images as they are; float generator output (a device array too) via ``to_uint8``."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return images
    return to_uint8(images)


def save_image(path: Path, image: np.ndarray) -> None:
    """Write one uint8 HWC image (1 or 3 channels) atomically; the format follows the suffix."""
    img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    fmt = path.suffix[1:].upper()
    options = {"compress_level": PNG_COMPRESS_LEVEL} if fmt == "PNG" else {}
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **options)


def default_workers() -> int:
    """The CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


class WorkerPool:
    """Threads running jobs, with at most ``limit`` jobs queued or running (``submit`` waits
    beyond that, so memory stays flat). The first job error is raised by the next ``submit``
    or on leaving the block; leaving the block waits for the running jobs (each write is
    atomic, so an interruption leaves whole files only) and drops the queued ones on error."""

    def __init__(self, workers: int, limit: int) -> None:
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="busgan-worker")
        self._slots = threading.BoundedSemaphore(max(1, limit))
        self._error: BaseException | None = None

    def _done(self, future: Future) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None and self._error is None:
            self._error = future.exception()

    def check(self) -> None:
        """Raise the first error a job raised, if any."""
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        self.check()
        self._slots.acquire()
        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._done)
        return future

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self._pool.shutdown(wait=True, cancel_futures=kind is not None or self._error is not None)
        if kind is None:
            self.check()


def save_batch(images: Any, seeds: Sequence[int], out_dir: Path, fmt: str,
               on_done: Callable[[int], Any] | None = None) -> None:
    """Convert one rendered batch and write the images of ``seeds`` (its first rows)."""
    pixels = as_uint8(images)
    for s, im in zip(seeds, pixels):
        save_image(out_dir / seed_filename(int(s), fmt), im)
    if on_done is not None:
        on_done(len(seeds))


def padded(chunk: list[int], batch_size: int) -> np.ndarray:
    """The chunk's seeds, the last repeated up to the fixed batch size (one compiled program)."""
    return np.asarray(chunk + [chunk[-1]] * (batch_size - len(chunk)), np.int64)


def write_images(render: Render, seeds: Iterable[int], out_dir: Path, batch_size: int,
                 fmt: str = "png", grid_path: Path | None = None, grid_n: int = 64,
                 workers: int | None = None) -> int:
    """Render the seeds whose files are missing, in fixed-size batches; return images present.

    Batches are converted and written by ``workers`` threads (default: every core) while the
    next ones render. The grid shows the first ``grid_n`` seeds (read back from disk).
    """
    if fmt not in FORMATS:
        raise BusganError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if batch_size < 1:
        raise BusganError(f"batch size {batch_size}: must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(seeds, (Seeds, range)):  # those are unique already, and streamed
        seeds = list(dict.fromkeys(int(s) for s in seeds))
    present = {p.name for p in out_dir.iterdir()}  # one listing, not a stat per seed
    bar = progress(total=len(seeds), desc=f"generate {out_dir.name}", unit="img")
    lock = threading.Lock()

    def done(n: int) -> None:  # workers finish batches: one update at a time
        with lock:
            bar.update(n)

    workers = workers or default_workers()
    try:  # seeds are streamed: memory is bounded by the batches in flight, whatever the seeds
        with WorkerPool(workers, limit=workers + 2) as pool:
            chunk: list[int] = []
            for s in itertools.chain(seeds, [None]):
                if s is not None and seed_filename(s, fmt) in present:
                    bar.update(1)
                    continue
                if s is not None:
                    chunk.append(int(s))
                if chunk and (len(chunk) == batch_size or s is None):
                    images = render(padded(chunk, batch_size))  # dispatched; the worker waits for it
                    pool.submit(save_batch, images, chunk, out_dir, fmt, done)
                    chunk = []
    finally:
        bar.close()
    if grid_path is not None and len(seeds):
        save_grid(out_dir, itertools.islice(seeds, grid_n), fmt, Path(grid_path))
    return len(seeds)


def save_grid(folder: Path, seeds: Iterable[int], fmt: str, path: Path) -> None:
    """A grid of the seeds' images, read back from ``folder`` (the ones present)."""
    files = [folder / seed_filename(s, fmt) for s in seeds]
    shown = [np.asarray(Image.open(f)) for f in files if f.is_file()]
    if shown:
        shown = [im[..., None] if im.ndim == 2 else im for im in shown]
        save_image(path, image_grid(np.stack(shown)))


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


def load_generator(snapshot: Path) -> tuple[Any, tuple[list, list], Any]:
    """The generator of a snapshot with its EMA weights: ``(G, ema_vars, gan_config)``."""
    from busgan.stylegan2 import networks, snapshot as snap

    arrays, meta = snap.read_snapshot(snapshot)
    cfg = snap.config_from_meta(meta, str(snapshot))
    G = networks.build_generator(cfg)
    ema = snap.unflatten_like({"g_ema": [v.value for v in G.trainable_variables],
                               "g_ema_nt": [v.value for v in G.non_trainable_variables]},
                              arrays, str(snapshot))
    return G, (ema["g_ema"], ema["g_ema_nt"]), cfg


def class_label(snapshot: Path, image_class: str | None) -> int | None:
    """The label index that makes a conditional snapshot's generator draw ``image_class``, or
    None for an unconditional snapshot (a generator of one class, whatever ``image_class``)."""
    from busgan.stylegan2 import snapshot as snap
    classes = snap.snapshot_classes(snap.read_meta(snapshot))
    if classes is None:
        return None
    if image_class is None:
        raise BusganError(f"{snapshot}: a conditional generator of {', '.join(classes)}; "
                          "give --class CLASS to choose which class it draws")
    if image_class not in classes:
        raise BusganError(f"{snapshot}: a conditional generator of {', '.join(classes)}, not "
                          f"{image_class}; give --class {' or '.join(classes)}")
    return classes.index(image_class)


def one_hot_rows(label: int, n: int, c_dim: int) -> np.ndarray:
    """``n`` one-hot rows of class index ``label``: a conditional generator's labels c."""
    return np.repeat(np.eye(c_dim, dtype=np.float32)[label][None], n, axis=0)


def device_renderer(G: Any, ema_vars: tuple[list, list], z_dim: int, truncation: float,
                    label: int | None = None) -> Render:
    """seeds -> float images on the device (not waited for: JAX dispatches asynchronously);
    ``label``: the class index for a conditional generator.

    The weights are constants of the compiled program, as in earlier busgan: passed as
    arguments instead, XLA rounds a few pixels differently (8 of 307,200 at the demo's widths),
    and images must stay those of earlier versions for the same seeds.
    """
    from busgan.stylegan2 import autodiff, steps

    def run(z):  # one compiled program for the fixed batch size
        c = None if label is None else one_hot_rows(label, z.shape[0], G.c_dim)
        return steps.synthesize(G, ema_vars, z, psi=truncation, noise_mode=NOISE_MODE, c=c)

    fn = autodiff.compile(run)

    def render(seeds: np.ndarray) -> Any:
        import keras
        return fn(keras.ops.convert_to_tensor(latents(seeds, z_dim)))

    return render


_RENDERERS: dict[tuple[str, int, int, float, int | None], Render] = {}


def snapshot_device_renderer(snapshot: Path, truncation: float, image_class: str | None = None) -> Render:
    """The EMA generator of a snapshot as seeds -> float device images (see ``as_uint8``);
    ``image_class`` chooses the class of a conditional generator (see ``class_label``).

    Kept per snapshot file, psi and class (the last two), so the rounds of the generate stage's
    quota loop compile each class's generator once."""
    path = Path(snapshot).resolve()
    st = path.stat()
    label = class_label(path, image_class)
    key = (str(path), st.st_mtime_ns, st.st_size, float(truncation), label)
    if key not in _RENDERERS:
        G, ema_vars, cfg = load_generator(path)
        while len(_RENDERERS) >= 2:
            _RENDERERS.pop(next(iter(_RENDERERS)))
        _RENDERERS[key] = device_renderer(G, ema_vars, cfg.z_dim, truncation, label)
    return _RENDERERS[key]


def snapshot_renderer(snapshot: Path, truncation: float, image_class: str | None = None) -> Render:
    """Load the EMA generator of a snapshot and return a seeds -> uint8 images function."""
    render = snapshot_device_renderer(snapshot, truncation, image_class)
    return lambda seeds: to_uint8(render(seeds))


NOISE_MODE = "const"
RECORD = "generate.json"


def claim_output(out_dir: Path, made_by: dict[str, object]) -> None:
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


def made_by(snapshot: Path, truncation: float, fmt: str, image_class: str | None = None) -> dict[str, object]:
    """What decides a folder's images besides the seeds (recorded in ``generate.json``), with
    the class asked for (what a conditional generator draws)."""
    return {"snapshot_sha256": sha256_file(snapshot), "truncation": float(truncation),
            "noise_mode": NOISE_MODE, "format": fmt, **({"class": image_class} if image_class else {})}


def check_truncation(truncation: float) -> None:
    if not math.isfinite(truncation):  # NaN or inf psi would write black images
        raise BusganError(f"truncation psi {truncation!r} is not a finite number; give e.g. "
                          "--truncation 1.0 (1 = no truncation)")


def generate_images(network: Path, out_dir: Path, seeds: Sequence[int], truncation: float,
                    batch_size: int, fmt: str = "png", workers: int | None = None,
                    image_class: str | None = None) -> int:
    """Write one image per seed to ``out_dir`` (existing files kept); return images present.

    ``network``: a snapshot, or a train-gan output folder (its best snapshot). A grid of the
    first 64 seeds goes beside the folder (``<out_dir>-grid.png``), so the folder holds only
    per-seed images for the selection stage. ``workers``: encoding threads (default: all cores).
    ``image_class``: the class a conditional generator draws (required for one).
    """
    check_truncation(truncation)
    snapshot = resolve_network(network)
    out_dir = Path(out_dir)
    claim_output(out_dir, made_by(snapshot, truncation, fmt, image_class))
    if not isinstance(seeds, (Seeds, range)):
        seeds = list(seeds)
    missing = any(not (out_dir / seed_filename(int(s), fmt)).exists() for s in seeds)
    render: Render = (snapshot_device_renderer(snapshot, truncation, image_class) if missing
                      else (lambda s: s))
    grid = out_dir.with_name(out_dir.name + "-grid.png")
    return write_images(render, seeds, out_dir, batch_size, fmt, grid_path=grid, workers=workers)
