"""Stage 2: the StyleGAN2 training loop (``busgan train-gan``).

One step = G main (+ path length every 4 steps), D main (+ R1 every 16 steps), G_ema update;
each phase is one compiled program from ``steps.make_phases``. Random numbers come from seeds
derived from (config seed, step, phase), and the real batch is sampled on the device from the
class's images held once as uint8, so a run resumed from a snapshot continues exactly as an
uninterrupted one would. Every ``snapshot_kimg`` (and at the end) the full state is saved
(``snapshot.py``), FID and KID of the EMA generator are measured against the training images,
and the lowest-FID snapshot becomes ``best.json`` (the paper's choice of generator).

Output folder: ``snapshots/``, ``fid.csv`` (per snapshot), ``stats.csv`` (per tick),
``grids/`` (fixed-seed PNG grids), ``logs/`` (TensorBoard events), ``best.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops
from PIL import Image

from busgan.config import GanConfig
from busgan.errors import BusganError
from busgan.fileio import atomic_write_text, read_json, write_json
from busgan.stylegan2 import augment as ada
from busgan.stylegan2 import autodiff, metrics, networks, steps
from busgan.stylegan2 import snapshot as snap
from busgan.stylegan2.distributed import Devices, init_distributed, memory_gb
from busgan.stylegan2.generate import image_grid, latents, save_image, to_uint8
from busgan.stylegan2.tblog import EventWriter

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg")
ADA_INTERVAL = 4  # steps between ADA p updates (NVlabs: 4)
GRID_SEEDS = 32  # fixed seeds shown in every snapshot grid
MAX_REAL_FOR_FID = 50_000


# --- data ----------------------------------------------------------------------------------

def _fit(im: Image.Image, size: int) -> Image.Image:
    """Resize policy: centre-crop to a square (the shorter side), then Lanczos to size x size."""
    w, h = im.size
    if w != h:
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return im.resize((size, size), Image.LANCZOS) if im.size != (size, size) else im


def load_class_images(data_dir: Path, resolution: int, channels: int) -> tuple[np.ndarray, int]:
    """All images of one class as uint8 (N, R, R, C), and how many had to be resized.

    Images of another size (mixed sizes, non-square, non-power-of-two) are centre-cropped to a
    square and resized to ``resolution``; colour is converted to ``channels``.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise BusganError(f"{data_dir}: image folder not found; give --data a folder of one class's images")
    files = sorted(p for p in data_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BusganError(f"{data_dir}: no PNG/BMP/JPEG images; give --data a folder of one class's images")
    out = np.empty((len(files), resolution, resolution, channels), np.uint8)
    resized = 0
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                if im.size != (resolution, resolution):
                    resized += 1
                    im = _fit(im, resolution)
                a = np.asarray(im, np.uint8)
        except OSError as e:
            raise BusganError(f"{f}: cannot read image ({e}); remove or replace the file") from None
        out[i] = a[..., None] if channels == 1 else a
    return out, resized


def _sampler(batch: int, mirror: bool) -> Callable:
    """Compiled: (uint8 data, seed) -> float32 batch in [-1, 1], x-flipped at random if mirror."""
    def sample(data, seed):
        n_data = data.shape[0]
        u = autodiff.uniform((batch,), autodiff.fold_in(seed, 0))
        idx = ops.minimum(ops.cast(ops.floor(u * n_data), "int32"), n_data - 1)
        x = ops.cast(ops.take(data, idx, axis=0), "float32") / 127.5 - 1.0
        if mirror:
            flip = autodiff.uniform((batch,), autodiff.fold_in(seed, 1)) < 0.5
            x = ops.where(ops.reshape(flip, (-1, 1, 1, 1)), ops.flip(x, axis=2), x)
        return x
    return autodiff.compile(sample)


def step_seed(cfg_seed: int, step: int, phase: int) -> Any:
    """The seed tensor of one phase of one step (the whole RNG state is the step number)."""
    return autodiff.seed_tensor(((cfg_seed & 0xFFFFF) << 40) | (step << 3) | phase)


# --- logging -------------------------------------------------------------------------------

def _append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append a row (header written with the first row); small files, rewritten atomically."""
    old = path.read_text() if path.is_file() else ""
    lines = old.splitlines()
    if not lines:
        lines = [",".join(row)]
    lines.append(",".join(f"{v:.10g}" if isinstance(v, float) else str(v) for v in row.values()))
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_fid_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# --- evaluation ----------------------------------------------------------------------------

class Evaluator:
    """FID/KID of the EMA generator against the training images, with a fixed set of z."""

    def __init__(self, synth: Callable, cfg: GanConfig, images: np.ndarray,
                 extractor: metrics.FeatureExtractor, cache: Path | None) -> None:
        self._synth, self.cfg, self.extractor = synth, cfg, extractor
        self.batch = cfg.batch_size
        self.real = self._real_features(images, cache)

    def _real_features(self, images: np.ndarray, cache: Path | None) -> np.ndarray:
        images = images[:MAX_REAL_FOR_FID]
        key = hashlib.sha256(images.tobytes() + self.extractor.name.encode()).hexdigest()[:16]
        if cache is not None:
            f = cache / f"real-features-{key}.npy"
            if f.is_file():
                return np.load(f, allow_pickle=False)
        feats = np.concatenate([self.extractor(images[i:i + 256]) for i in range(0, len(images), 256)])
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            from busgan.fileio import atomic_path
            with atomic_path(cache / f"real-features-{key}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, feats)  # a file object: np.save would append ".npy" to a path
        return feats

    def images(self, ema: tuple[list, list], seeds: list[int]) -> np.ndarray:
        """uint8 images of the EMA generator for seeds (fixed-size batches)."""
        out = []
        for i in range(0, len(seeds), self.batch):
            chunk = seeds[i:i + self.batch]
            z = latents(chunk + [chunk[-1]] * (self.batch - len(chunk)), self.cfg.z_dim)
            img = ops.convert_to_numpy(self._synth(ema, ops.convert_to_tensor(z)))
            out.append(to_uint8(img[:len(chunk)]))
        return np.concatenate(out)

    def __call__(self, ema: tuple[list, list]) -> tuple[float, float]:
        n = max(self.cfg.fid_images, 2)
        feats = []
        for i in range(0, n, 1024):  # bounded memory: features only are kept
            feats.append(self.extractor(self.images(ema, list(range(i, min(n, i + 1024))))))
        fake = np.concatenate(feats)
        fid = metrics.fid_from_features(self.real, fake)
        kid = metrics.kid_from_features(self.real, fake, num_subsets=50,
                                        max_subset_size=min(1000, len(self.real), len(fake)))
        return fid, kid


# --- compiled programs, reused across calls ------------------------------------------------

# Fields that only change how long a run is or what it records: runs differing only in these
# share compiled phases (compiling takes far longer than a short run on a CPU).
_RUN_ONLY = ("kimg", "snapshot_kimg", "tick_kimg", "fid_images", "keep_snapshots")
_CACHE: dict[tuple, tuple] = {}


def _compiled(cfg: GanConfig, dev: Devices) -> tuple:
    """(G, D, phases, sampler, synthesizer) for this config, built once per process.

    The models are never written to (every phase is stateless), so reusing them is safe.
    """
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _RUN_ONLY}
    key = (tuple(sorted(fields.items())), dev.count, keras.backend.backend())
    if key not in _CACHE:
        _CACHE.clear()  # one config at a time bounds memory
        G = networks.build_generator(cfg, seed=cfg.seed)
        D = networks.build_discriminator(cfg, seed=cfg.seed)
        augment_fn = (lambda x, p, s: ada.augment(x, p, s)) if cfg.augment == "ada" else None
        phases = steps.make_phases(G, D, cfg, augment_fn=augment_fn)
        sample = _sampler(cfg.batch_size, cfg.mirror)
        synth = autodiff.compile(lambda ema, z: steps.synthesize(G, ema, z, psi=1.0, noise_mode="const"))
        _CACHE[key] = (G, D, phases, sample, synth)
    return _CACHE[key]


# --- the loop ------------------------------------------------------------------------------

@dataclasses.dataclass
class _Counters:
    step: int = 0
    ada_p: float = 0.0
    ada_sum: float = 0.0
    ada_count: int = 0


def _state_numpy(state: Any) -> dict[str, np.ndarray]:
    """The state as named host arrays (what a snapshot stores)."""
    return {k: np.asarray(ops.convert_to_numpy(v)) for k, v in _leaves(state).items()}


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k2: v2 for k in sorted(tree) for k2, v2 in _leaves(tree[k], f"{prefix}{k}/").items()}
    if isinstance(tree, (list, tuple)):
        return {k2: v2 for i, v in enumerate(tree) for k2, v2 in _leaves(v, f"{prefix}{i}/").items()}
    return {prefix[:-1]: tree}


def _nonfinite(arrays: dict[str, np.ndarray]) -> list[str]:
    return [k for k, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]


def train_gan(data_dir: Path, out_dir: Path, cfg: GanConfig, resume: bool = True,
              feature_model: Path | None = None, *, devices: int | None = None,
              log: Callable[[str], None] = print) -> Path:
    """Train one class's StyleGAN2; return the best (lowest-FID) snapshot's path.

    ``data_dir``: that class's images. ``out_dir``: snapshots/, fid.csv, stats.csv, grids/,
    logs/, best.json. ``resume``: continue from the newest snapshot in ``out_dir`` (refused
    when it was made with other network settings); without it, ``out_dir`` must hold no
    snapshot. ``feature_model``: a classifier ``model.keras`` or InceptionV3 notop ``.h5`` for
    FID/KID (None: the offline pixel fallback, see ``metrics``). ``devices``: how many local
    devices to use (JAX; default all).
    """
    t_start = time.time()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    networks.channels_for(cfg)  # refuses a bad resolution or channel count
    if cfg.batch_size < 1 or cfg.kimg <= 0 or cfg.snapshot_kimg <= 0 or cfg.tick_kimg <= 0:
        raise BusganError("gan.batch_size, gan.kimg, gan.snapshot_kimg and gan.tick_kimg must be positive")
    init_distributed()
    dev = Devices(devices)
    dev.check_batch(cfg.batch_size)
    images, resized = load_class_images(data_dir, cfg.resolution, cfg.channels)
    if len(images) < cfg.batch_size:
        raise BusganError(f"{data_dir}: {len(images)} images, fewer than gan.batch_size={cfg.batch_size}; "
                          "add images or lower --batch-size")
    if resized:
        log(f"[train-gan] {resized} of {len(images)} images in {data_dir} were not "
            f"{cfg.resolution}x{cfg.resolution}: centre-cropped to square and resized")
    snaps_dir = out_dir / "snapshots"
    latest = snap.latest_snapshot(snaps_dir)
    if latest is not None and not resume:
        raise BusganError(f"{out_dir}: already holds snapshots; continue with --resume auto, "
                          "or give an empty --out folder")

    saved: dict[str, np.ndarray] | None = None
    if latest is not None:  # check the config before spending minutes compiling
        saved, meta = snap.read_snapshot(latest)
        changed = snap.check_config(meta, cfg, str(latest))
        if meta["gan"].get("batch_size") != cfg.batch_size:  # the step counter counts batches
            raise BusganError(f"{latest}: written with gan.batch_size={meta['gan'].get('batch_size')}, "
                              f"now {cfg.batch_size}; resume with the same batch size or use a new --out")
    G, D, phases, sample, synth = _compiled(cfg, dev)
    template = steps.init_state(G, D)
    tree: Any = template
    c = _Counters()
    if latest is not None and saved is not None:
        tree = snap.unflatten_like(template, saved, str(latest))
        c = _Counters(int(meta["step"]), float(meta["ada_p"]), float(meta["ada_acc"][0]),
                      int(meta["ada_acc"][1]))
        log(f"[train-gan] resuming from {latest} (kimg {meta['nimg'] / 1000:.1f})"
            + (f"; changed settings: {'; '.join(changed)}" if changed else ""))
    state = dev.replicate(tree)

    batch = cfg.batch_size
    data = dev.replicate(images)
    total_nimg = int(round(cfg.kimg * 1000))
    snap_nimg = max(batch, int(round(cfg.snapshot_kimg * 1000)))
    tick_nimg = max(batch, int(round(cfg.tick_kimg * 1000)))

    main = dev.is_main
    writer = EventWriter(out_dir / "logs") if main else None
    extractor = metrics.make_extractor(feature_model)
    evaluator = Evaluator(synth, cfg, images, extractor, out_dir / "cache") if main else None
    data_hash = hashlib.sha256(images.tobytes()).hexdigest()[:16]
    if main:
        save_image(out_dir / "grids" / "reals.png", image_grid(images[:GRID_SEEDS]))
    log(f"[train-gan] {data_dir}: {len(images)} images {cfg.resolution}x{cfg.resolution}x{cfg.channels}; "
        f"G {networks.count_params(G):,} D {networks.count_params(D):,} params; {dev.describe()}; "
        f"{keras.backend.backend()}; FID features: {extractor.name}")

    def ema_vars(st: Any) -> tuple[list, list]:
        return st["g_ema"], st["g_ema_nt"]

    def take_snapshot(st: Any, step: int) -> None:
        nimg = step * batch
        arrays = _state_numpy(st)
        bad = _nonfinite(arrays)
        if bad:
            raise _nan_error(out_dir, nimg, f"weights {', '.join(bad[:3])}")
        if not main:
            return
        meta = {"gan": dataclasses.asdict(cfg), "nimg": nimg, "step": step, "kimg": nimg / 1000,
                "ada_p": c.ada_p, "ada_acc": [c.ada_sum, c.ada_count],
                "rng": {"seed": cfg.seed, "step": step}, "backend": keras.backend.backend(),
                "devices": dev.describe(), "data": {"dir": str(data_dir), "images": len(images),
                                                    "sha256_16": data_hash},
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        path = snap.save_snapshot(snaps_dir / snap.snapshot_name(nimg), arrays, meta)
        evaluate(path, st, nimg)

    def evaluate(path: Path, st: Any, nimg: int) -> None:
        assert evaluator is not None and writer is not None
        t0 = time.time()
        fid, kid = evaluator(ema_vars(st))
        grid = image_grid(evaluator.images(ema_vars(st), list(range(GRID_SEEDS))))
        save_image(out_dir / "grids" / f"fakes-{nimg:09d}.png", grid)
        writer.image(nimg, "fakes", grid)
        writer.scalars(nimg, {"Metrics/FID": fid, "Metrics/KID": kid})
        _append_csv(out_dir / "fid.csv", {"snapshot": path.name, "kimg": nimg / 1000, "fid": fid,
                                          "kid": kid, "features": extractor.name})
        best = read_json(out_dir / "best.json") if (out_dir / "best.json").is_file() else None
        if best is None or best.get("features") != extractor.name or fid < float(best["fid"]):
            write_json(out_dir / "best.json", {"snapshot": f"snapshots/{path.name}", "fid": fid,
                                               "kid": kid, "kimg": nimg / 1000, "features": extractor.name})
        log(f"[train-gan] snapshot {path.name}  FID {fid:.3f}  KID {kid:.5f}  ({time.time() - t0:.1f} s)")
        _prune(snaps_dir, out_dir, cfg.keep_snapshots)

    # A snapshot written before a crash but never evaluated gets its FID now.
    if main and latest is not None and latest.name not in {r["snapshot"] for r in read_fid_csv(out_dir / "fid.csv")}:
        evaluate(latest, state, c.step * batch)

    step = c.step
    pending: list[dict[str, Any]] = []
    t_tick, nimg_tick = time.time(), step * batch
    next_tick = (step * batch // tick_nimg + 1) * tick_nimg
    next_snap = (step * batch // snap_nimg + 1) * snap_nimg
    tick = step * batch // tick_nimg
    kfmt = ".1f" if total_nimg >= 10_000 else ".3f"
    first_tick = True
    while step * batch < total_nimg:
        reals = dev.shard_batch(sample(data, step_seed(cfg.seed, step, 0)))
        state, lg = phases.g_main(state, reals, step_seed(cfg.seed, step, 1))
        logs = dict(lg)
        if step % phases.g_reg_interval == 0:
            state, lr = phases.g_reg(state, reals, step_seed(cfg.seed, step, 2))
            logs.update(lr)
        state, ld = phases.d_main(state, reals, step_seed(cfg.seed, step, 3))
        logs.update({k if k != "fake_score" else "d_fake_score": v for k, v in ld.items()})
        if step % phases.d_reg_interval == 0:
            state, lr = phases.d_reg(state, reals, step_seed(cfg.seed, step, 4))
            logs.update(lr)
        state = phases.ema(state)
        step += 1
        pending.append(logs)
        if cfg.augment == "ada":
            c.ada_sum += float(ops.convert_to_numpy(ld["real_sign"]))
            c.ada_count += 1
            if c.ada_count == ADA_INTERVAL:
                c.ada_p = ada.adjust_p(c.ada_p, c.ada_sum / c.ada_count, ADA_INTERVAL * batch,
                                       cfg.ada_target, cfg.ada_kimg)
                c.ada_sum, c.ada_count = 0.0, 0
                state = {**state, "aug_p": dev.replicate(np.float32(c.ada_p))}
        nimg = step * batch
        done = nimg >= total_nimg
        if nimg >= next_tick or done:
            tick += 1
            means = _tick_means(pending)
            pending = []
            bad = [k for k, v in means.items() if not math.isfinite(v)]
            if bad:
                raise _nan_error(out_dir, nimg, f"losses {', '.join(bad)}")
            dt = time.time() - t_tick
            s_per_kimg = dt / max((nimg - nimg_tick) / 1000, 1e-9)
            t_tick, nimg_tick = time.time(), nimg
            mem = memory_gb()
            log(f"[train-gan] tick {tick}  kimg {nimg / 1000:{kfmt}}/{total_nimg / 1000:{kfmt}}  "
                f"s/kimg {s_per_kimg:.2f}{' (compiling)' if first_tick else ''}  G {_v(means, 'loss_g')}  "
                f"D {_v(means, 'loss_d')}  R1 {_v(means, 'r1_penalty')}  PL {_v(means, 'pl_penalty')}  "
                f"p {c.ada_p:.3f}  mem {mem:.2f} GB  elapsed {_fmt_time(time.time() - t_start)}")
            first_tick = False
            if main:
                row = {"tick": tick, "kimg": nimg / 1000, "s_per_kimg": s_per_kimg, **means,
                       "ada_p": c.ada_p, "mem_gb": mem}
                _append_stats(out_dir / "stats.csv", row)
                writer.scalars(nimg, {
                    **{f"Loss/{k}": v for k, v in means.items()}, "Progress/s_per_kimg": s_per_kimg,
                    "ADA/p": c.ada_p, "Resources/mem_gb": mem})
            next_tick = (nimg // tick_nimg + 1) * tick_nimg
        if nimg >= next_snap or done:
            take_snapshot(state, step)
            next_snap = (nimg // snap_nimg + 1) * snap_nimg
    if writer is not None:
        writer.close()
    best_file = out_dir / "best.json"
    if not best_file.is_file():
        raise BusganError(f"{out_dir}: training finished without best.json; rerun with --resume auto")
    return out_dir / read_json(best_file)["snapshot"]


def _v(means: dict[str, float], key: str) -> str:
    return f"{means[key]:.4g}" if key in means else "-"


def _tick_means(pending: list[dict[str, Any]]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for logs in pending:
        for k, v in logs.items():
            sums.setdefault(k, []).append(float(ops.convert_to_numpy(v)))
    return {k: float(np.mean(v)) for k, v in sorted(sums.items())}


_STATS_KEYS = ("tick", "kimg", "s_per_kimg", "loss_g", "loss_d", "r1_penalty", "pl_penalty",
               "pl_mean", "fake_score", "d_fake_score", "real_score", "real_sign", "ada_p", "mem_gb")


def _append_stats(path: Path, row: dict[str, Any]) -> None:
    _append_csv(path, {k: row.get(k, "") for k in _STATS_KEYS})


def _nan_error(out_dir: Path, nimg: int, what: str) -> BusganError:
    best = snap.latest_snapshot(out_dir / "snapshots")
    kept = f"the last good snapshot {best} is kept" if best else "no snapshot was written"
    return BusganError(f"{out_dir}: {what} became NaN or infinite at kimg {nimg / 1000:.1f}; {kept}; "
                       "lower --lr or raise --gamma, then rerun with --resume auto")


def _prune(snaps_dir: Path, out_dir: Path, keep: int) -> None:
    """Delete old snapshots, keeping the newest ``keep`` and the best (keep=0: keep all)."""
    if keep <= 0:
        return
    best_file = out_dir / "best.json"
    best = Path(read_json(best_file)["snapshot"]).name if best_file.is_file() else None
    for p in snap.list_snapshots(snaps_dir)[:-keep]:
        if p.name != best:
            p.unlink()
