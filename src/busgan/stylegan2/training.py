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
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops
from PIL import Image

from busgan import CLASSES
from busgan.config import GanConfig, restart_values
from busgan.errors import BusganError
from busgan.imaging import fit, image_grid, list_images
from busgan.fileio import atomic_write_text, read_json, write_json
from busgan.stylegan2 import augment as ada
from busgan.stylegan2 import autodiff, metrics, networks, steps
from busgan.stylegan2 import snapshot as snap
from busgan.stylegan2.distributed import Devices, init_distributed, memory_gb
from busgan.stylegan2.generate import best_snapshot, latents, one_hot_rows, save_image, to_uint8
from busgan.stylegan2.tblog import EventWriter

ADA_INTERVAL = 4  # steps between ADA p updates (NVlabs: 4)
GRID_SEEDS = 32  # fixed seeds shown in every snapshot grid
MAX_REAL_FOR_FID = 50_000


# --- data ----------------------------------------------------------------------------------

def load_class_images(data_dir: Path, resolution: int, channels: int) -> tuple[np.ndarray, int]:
    """All images of one class as uint8 (N, R, R, C), and how many had to be resized.

    Images of another size (mixed sizes, non-square, non-power-of-two) are centre-cropped to a
    square and resized to ``resolution``; colour is converted to ``channels``.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise BusganError(f"{data_dir}: image folder not found; give --data a folder of one class's images")
    files = list_images(data_dir)
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
                    im = fit(im, resolution, "crop")
                a = np.asarray(im, np.uint8)
        except OSError as e:
            raise BusganError(f"{f}: cannot read image ({e}); remove or replace the file") from None
        out[i] = a[..., None] if channels == 1 else a
    return out, resized


def load_labelled_images(data_dir: Path, resolution: int, channels: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A conditional GAN's training set: the images of every class folder of ``data_dir``
    (``benign/``, ``malignant/``) as uint8, their label indices in ``CLASSES`` order, and how
    many had to be resized."""
    data_dir = Path(data_dir)
    missing = [c for c in CLASSES if not (data_dir / c).is_dir()]
    if missing:
        raise BusganError(f"{data_dir}: no {missing[0]}/ folder; a conditional GAN (gan.conditional = true) "
                          f"trains on a folder holding {' and '.join(f'{c}/' for c in CLASSES)}")
    parts = [load_class_images(data_dir / c, resolution, channels) for c in CLASSES]
    labels = np.concatenate([np.full(len(im), i, np.int32) for i, (im, _) in enumerate(parts)])
    return np.concatenate([im for im, _ in parts]), labels, sum(r for _, r in parts)


def _index(n_data: int, batch: int, seed: Any) -> Any:
    u = autodiff.uniform((batch,), seed)
    return ops.minimum(ops.cast(ops.floor(u * n_data), "int32"), n_data - 1)


def _sampler(batch: int, mirror: bool, conditional: bool = False) -> Callable:
    """Compiled: (uint8 data, seed) -> float32 batch in [-1, 1], x-flipped at random if mirror.

    Conditional: (uint8 data, int labels, seed) -> ``{"img", "c", "gen_c"}`` (see
    ``steps.unpack_batch``); the fakes' labels are those of other random training images.
    """
    def images(data, idx, seed):
        x = ops.cast(ops.take(data, idx, axis=0), "float32") / 127.5 - 1.0
        if mirror:
            flip = autodiff.uniform((batch,), autodiff.fold_in(seed, 1)) < 0.5
            x = ops.where(ops.reshape(flip, (-1, 1, 1, 1)), ops.flip(x, axis=2), x)
        return x

    def sample(data, seed):
        return images(data, _index(data.shape[0], batch, autodiff.fold_in(seed, 0)), seed)

    def sample_labelled(data, labels, seed):
        idx = _index(data.shape[0], batch, autodiff.fold_in(seed, 0))
        gen_idx = _index(data.shape[0], batch, autodiff.fold_in(seed, 2))
        def onehot(i):
            return ops.one_hot(ops.take(labels, i, axis=0), len(CLASSES), dtype="float32")
        return {"img": images(data, idx, seed), "c": onehot(idx), "gen_c": onehot(gen_idx)}
    return autodiff.compile(sample_labelled if conditional else sample)


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
    """FID/KID of the EMA generator against the training images, with a fixed set of z
    (and, for a conditional generator, the class index ``label``)."""

    def __init__(self, synth: Callable, cfg: GanConfig, images: np.ndarray,
                 extractor: metrics.FeatureExtractor, cache: Path | None, label: int | None = None) -> None:
        self._synth, self.cfg, self.extractor = synth, cfg, extractor
        self.batch, self.label = cfg.batch_size, label
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
            z = ops.convert_to_tensor(latents(chunk + [chunk[-1]] * (self.batch - len(chunk)), self.cfg.z_dim))
            img = ops.convert_to_numpy(self._synth(ema, z) if self.label is None else
                                       self._synth(ema, z, one_hot_rows(self.label, self.batch, len(CLASSES))))
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

# Runs differing only in keys declared effect "resume" or "none" (how long a run is, what it
# records) share compiled phases: compiling takes far longer than a short run on a CPU.
_CACHE: dict[tuple, tuple] = {}


def _compiled(cfg: GanConfig, dev: Devices) -> tuple:
    """(G, D, phases, sampler, synthesizer) for this config, built once per process.

    The models are never written to (every phase is stateless), so reusing them is safe.
    """
    fields = restart_values(cfg)
    key = (json.dumps(fields, sort_keys=True, default=str), dev.count, keras.backend.backend())  # tables too
    if key not in _CACHE:
        _CACHE.clear()  # one config at a time bounds memory
        G = networks.build_generator(cfg, seed=cfg.seed)
        D = networks.build_discriminator(cfg, seed=cfg.seed)
        spec = ada.preset(cfg.ada_preset)
        augment_fn = (lambda x, p, s: ada.augment(x, p, s, spec)) if cfg.augment == "ada" else None
        phases = steps.make_phases(G, D, cfg, augment_fn=augment_fn)
        sample = _sampler(cfg.batch_size, cfg.mirror, cfg.conditional)
        synth = autodiff.compile(lambda ema, z, c=None: steps.synthesize(G, ema, z, psi=1.0, noise_mode="const",
                                                                         c=c))
        _CACHE[key] = (G, D, phases, sample, synth)
    return _CACHE[key]


# --- the loop ------------------------------------------------------------------------------

@dataclasses.dataclass
class _Progress:
    """What a snapshot stores besides the weights: the step and the ADA controller's state."""
    step: int = 0
    ada_p: float = 0.0
    ada_sign_sum: float = 0.0  # sum of E[sign(D(real))] over the steps since the last p update
    ada_sign_count: int = 0


def _state_numpy(state: Any) -> dict[str, np.ndarray]:
    """The state as named host arrays (what a snapshot stores)."""
    return snap.flatten(keras.tree.map_structure(ops.convert_to_numpy, state))


def _nonfinite(arrays: dict[str, np.ndarray]) -> list[str]:
    return [k for k, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]


def _check_lengths(cfg: GanConfig) -> None:
    networks.channels_for(cfg)  # refuses a bad resolution or channel count
    if cfg.batch_size < 1 or cfg.kimg <= 0 or cfg.snapshot_kimg <= 0 or cfg.tick_kimg <= 0:
        raise BusganError("gan.batch_size, gan.kimg, gan.snapshot_kimg and gan.tick_kimg must be positive")


def _resume_point(out_dir: Path, cfg: GanConfig, resume: bool,
                  log: Callable[[str], None]) -> tuple[Path | None, dict[str, np.ndarray] | None, dict]:
    """(newest snapshot, its arrays, its metadata), checked against ``cfg`` before compiling."""
    latest = snap.latest_snapshot(out_dir / "snapshots")
    if latest is None:
        return None, None, {}
    if not resume:
        raise BusganError(f"{out_dir}: already holds snapshots; continue with --resume auto, "
                          "or give an empty --out folder")
    arrays, meta = snap.read_snapshot(latest)
    changed = snap.check_config(meta, cfg, str(latest))
    log(f"[train-gan] resuming from {latest} (kimg {meta['nimg'] / 1000:.1f})"
        + (f"; changed settings: {'; '.join(changed)}" if changed else ""))
    return latest, arrays, meta


@dataclasses.dataclass
class _ClassPart:
    """What one class's evaluation needs: its name, training images, floor images (or None),
    label index for a conditional generator (None: unconditional) and FID evaluator."""
    name: str
    images: np.ndarray
    floor: np.ndarray | None
    label: int | None
    evaluator: Evaluator | None = None


class GanTrainer:
    """One StyleGAN2's training (one class's, or a conditional one for every class):
    ``step()`` trains on one batch, ``tick()`` logs the losses since the last tick,
    ``snapshot()`` saves the state and evaluates it (per class when conditional)."""

    def __init__(self, data_dir: Path, out_dir: Path, cfg: GanConfig, dev: Devices,
                 feature_model: Path | None, log: Callable[[str], None],
                 floor_dir: Path | None = None) -> None:
        self.data_dir, self.out_dir, self.cfg, self.dev, self.log = data_dir, out_dir, cfg, dev, log
        self.images, self.labels = self._load_images()
        from busgan.stylegan2.fidelity import RandomConvFeatures
        self.independent_features = RandomConvFeatures()  # fixed weights, built once
        self.G, self.D, self.phases, self.sample, synth = _compiled(cfg, dev)
        self.progress = _Progress()
        self.state: Any = None
        self.init_from: str | None = None
        self.is_main = dev.is_main
        self.writer = EventWriter(out_dir / "logs") if self.is_main else None
        self.extractor = metrics.make_extractor(feature_model)
        self.parts = self._class_parts(floor_dir)
        for part in self.parts if self.is_main else []:
            part.evaluator = Evaluator(synth, cfg, part.images, self.extractor, out_dir / "cache", part.label)
        self.device_data = ((dev.replicate(self.images),) if self.labels is None
                            else (dev.replicate(self.images), dev.replicate(self.labels)))
        self.images_sha = hashlib.sha256(self.images.tobytes()
                                         + (b"" if self.labels is None else self.labels.tobytes())).hexdigest()[:16]
        self.tick_logs: list[dict[str, Any]] = []  # per-step losses since the last tick
        self.tick_count, self.tick_started, self.tick_start_nimg = 0, time.time(), 0
        self.first_tick = True
        self.started = time.time()

    def _class_parts(self, floor_dir: Path | None) -> list[_ClassPart]:
        """The classes evaluated separately: this GAN's one class, or each class of a
        conditional GAN. The floor's second real set is e.g. the class's validation images;
        without one, class_fidelity splits the training images in two."""
        cfg = self.cfg

        def floor(folder: Path | None) -> np.ndarray | None:
            return (load_class_images(folder, cfg.resolution, cfg.channels)[0]
                    if folder is not None and Path(folder).is_dir() else None)
        if self.labels is None:
            return [_ClassPart(self.out_dir.name, self.images, floor(floor_dir), None)]
        return [_ClassPart(c, self.images[self.labels == i], floor(None if floor_dir is None else floor_dir / c), i)
                for i, c in enumerate(CLASSES)]

    def _load_images(self) -> tuple[np.ndarray, np.ndarray | None]:
        cfg = self.cfg
        labels = None
        if cfg.conditional:
            images, labels, resized = load_labelled_images(self.data_dir, cfg.resolution, cfg.channels)
        else:
            images, resized = load_class_images(self.data_dir, cfg.resolution, cfg.channels)
        if len(images) < cfg.batch_size:
            raise BusganError(f"{self.data_dir}: {len(images)} images, fewer than gan.batch_size="
                              f"{cfg.batch_size}; add images or lower --batch-size")
        if resized:
            self.log(f"[train-gan] {resized} of {len(images)} images in {self.data_dir} were not "
                     f"{cfg.resolution}x{cfg.resolution}: centre-cropped to square and resized")
        return images, labels

    @property
    def nimg(self) -> int:
        """Real images shown so far."""
        return self.progress.step * self.cfg.batch_size

    def start(self, snapshot: Path | None, arrays: dict[str, np.ndarray] | None, meta: dict,
              init_from: Path | None = None) -> None:
        """Fresh weights (or those of ``init_from``), or the state of ``snapshot`` (evaluated now
        if a crash skipped that)."""
        template = steps.init_state(self.G, self.D)
        tree: Any = template
        if snapshot is None and init_from is not None:
            tree = initial_weights(template, init_from, self.cfg)
            self.init_from = str(init_from)
            self.log(f"[train-gan] starting from the weights of {init_from}")
        if snapshot is not None and arrays is not None:
            tree = snap.unflatten_like(template, arrays, str(snapshot))
            self.init_from = meta.get("init_from")
            self.progress = _Progress(int(meta["step"]), float(meta["ada_p"]),
                                      float(meta["ada_acc"][0]), int(meta["ada_acc"][1]))
        self.state = self.dev.replicate(tree)
        self.tick_count = self.nimg // self._tick_nimg
        self.tick_start_nimg = self.nimg
        if self.is_main:
            for part in self.parts:
                name = "reals.png" if part.label is None else f"reals-{part.name}.png"
                save_image(self.out_dir / "grids" / name, image_grid(part.images[:GRID_SEEDS]))
        cfg = self.cfg
        per_class = ("" if self.labels is None else
                     " (" + ", ".join(f"{len(p.images)} {p.name}" for p in self.parts) + "; conditional)")
        self.log(f"[train-gan] {self.data_dir}: {len(self.images)} images{per_class} {cfg.resolution}x"
                 f"{cfg.resolution}x{cfg.channels}; G {networks.count_params(self.G):,} "
                 f"D {networks.count_params(self.D):,} params; {self.dev.describe()}; "
                 f"{keras.backend.backend()}; FID features: {self.extractor.name}")
        evaluated = {r["snapshot"] for r in read_fid_csv(self.out_dir / "fid.csv")}
        if self.is_main and snapshot is not None and snapshot.name not in evaluated:
            self.evaluate(snapshot)
        self.tick_started = time.time()

    @property
    def _tick_nimg(self) -> int:
        return max(self.cfg.batch_size, int(round(self.cfg.tick_kimg * 1000)))

    @property
    def _snapshot_nimg(self) -> int:
        return max(self.cfg.batch_size, int(round(self.cfg.snapshot_kimg * 1000)))

    def step(self) -> None:
        """G main (+ path length), D main (+ R1), G_ema update, then the ADA controller."""
        p, step, seed = self.phases, self.progress.step, self.cfg.seed
        reals = self.dev.shard_batch(self.sample(*self.device_data, step_seed(seed, step, 0)))
        state, g_logs = p.g_main(self.state, reals, step_seed(seed, step, 1))
        logs = dict(g_logs)
        if step % p.g_reg_interval == 0:
            state, reg_logs = p.g_reg(state, reals, step_seed(seed, step, 2))
            logs.update(reg_logs)
        state, d_logs = p.d_main(state, reals, step_seed(seed, step, 3))
        logs.update({k if k != "fake_score" else "d_fake_score": v for k, v in d_logs.items()})
        if step % p.d_reg_interval == 0:
            state, reg_logs = p.d_reg(state, reals, step_seed(seed, step, 4))
            logs.update(reg_logs)
        self.state = p.ema(state, self.dev.replicate(np.float32(self.nimg)))
        self.progress.step += 1
        self.tick_logs.append(logs)
        if self.cfg.augment == "ada":
            self._adjust_ada(float(ops.convert_to_numpy(d_logs["real_sign"])))

    def _adjust_ada(self, real_sign: float) -> None:
        """Every ADA_INTERVAL steps, move p toward the target of E[sign(D(real))]."""
        pr, cfg = self.progress, self.cfg
        pr.ada_sign_sum += real_sign
        pr.ada_sign_count += 1
        if pr.ada_sign_count == ADA_INTERVAL:
            pr.ada_p = ada.adjust_p(pr.ada_p, pr.ada_sign_sum / pr.ada_sign_count,
                                    ADA_INTERVAL * cfg.batch_size, cfg.ada_target,
                                    ada.speed_kimg(cfg.ada_kimg, cfg.kimg))
            pr.ada_sign_sum, pr.ada_sign_count = 0.0, 0
            self.state = {**self.state, "aug_p": self.dev.replicate(np.float32(pr.ada_p))}

    def tick(self) -> None:
        """Log the mean losses since the last tick (terminal, stats.csv, TensorBoard)."""
        means = _tick_means(self.tick_logs)
        self.tick_logs = []
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if bad:
            raise _nan_error(self.out_dir, self.nimg, f"losses {', '.join(bad)}")
        self.tick_count += 1
        nimg, total = self.nimg, self._total_nimg
        s_per_kimg = (time.time() - self.tick_started) / max((nimg - self.tick_start_nimg) / 1000, 1e-9)
        self.tick_started, self.tick_start_nimg = time.time(), nimg
        mem, p = memory_gb(), self.progress.ada_p
        kfmt = ".1f" if total >= 10_000 else ".3f"
        self.log(f"[train-gan] tick {self.tick_count}  kimg {nimg / 1000:{kfmt}}/{total / 1000:{kfmt}}  "
                 f"s/kimg {s_per_kimg:.2f}{' (compiling)' if self.first_tick else ''}  "
                 f"G {_v(means, 'loss_g')}  D {_v(means, 'loss_d')}  R1 {_v(means, 'r1_penalty')}  "
                 f"PL {_v(means, 'pl_penalty')}  p {p:.3f}  mem {mem:.2f} GB  "
                 f"elapsed {_fmt_time(time.time() - self.started)}")
        self.first_tick = False
        if self.writer is not None:
            _append_stats(self.out_dir / "stats.csv", {"tick": self.tick_count, "kimg": nimg / 1000,
                                                       "s_per_kimg": s_per_kimg, **means,
                                                       "ada_p": p, "mem_gb": mem})
            self.writer.scalars(nimg, {**{f"Loss/{k}": v for k, v in means.items()},
                                       "Progress/s_per_kimg": s_per_kimg, "ADA/p": p,
                                       "Resources/mem_gb": mem})

    def snapshot(self) -> None:
        """Save the full state (refused when any weight is not finite), then evaluate it."""
        arrays = _state_numpy(self.state)
        bad = _nonfinite(arrays)
        if bad:
            raise _nan_error(self.out_dir, self.nimg, f"weights {', '.join(bad[:3])}")
        if not self.is_main:
            return
        pr, cfg = self.progress, self.cfg
        meta = {"gan": dataclasses.asdict(cfg), "nimg": self.nimg, "step": pr.step,
                "kimg": self.nimg / 1000, "ada_p": pr.ada_p, "ada_acc": [pr.ada_sign_sum, pr.ada_sign_count],
                "rng": {"seed": cfg.seed, "step": pr.step}, "backend": keras.backend.backend(),
                "devices": self.dev.describe(),
                "data": {"dir": str(self.data_dir), "images": len(self.images), "sha256_16": self.images_sha},
                **({"classes": list(CLASSES)} if self.labels is not None else {}),
                **({"init_from": self.init_from} if self.init_from else {}),
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        path = snap.save_snapshot(self.out_dir / "snapshots" / snap.snapshot_name(self.nimg), arrays, meta)
        self.evaluate(path)

    def evaluate(self, path: Path) -> None:
        """FID/KID and a fixed-seed grid of the EMA generator (per class when conditional: the
        FID that picks best.json is then the mean over classes); best.json follows the lowest."""
        assert self.writer is not None
        t0, nimg, features = time.time(), self.nimg, self.extractor.name
        ema = (self.state["g_ema"], self.state["g_ema_nt"])
        row: dict[str, Any] = {"snapshot": path.name, "kimg": nimg / 1000}
        per_class: dict[str, tuple[float, float]] = {}
        for part in self.parts:
            assert part.evaluator is not None
            per_class[part.name] = part.evaluator(ema)
            grid = image_grid(part.evaluator.images(ema, list(range(GRID_SEEDS))))
            suffix = "" if part.label is None else f"-{part.name}"
            save_image(self.out_dir / "grids" / f"fakes-{nimg:09d}{suffix}.png", grid)
            self.writer.image(nimg, f"fakes{suffix}", grid)
        fid = float(np.mean([f for f, _ in per_class.values()]))
        kid = float(np.mean([k for _, k in per_class.values()]))
        row.update({"fid": fid, "kid": kid, "features": features})
        scalars = {"Metrics/FID": fid, "Metrics/KID": kid}
        if self.labels is not None:
            for name, (f, k) in per_class.items():
                row.update({f"fid_{name}": f, f"kid_{name}": k})
                scalars.update({f"Metrics/FID_{name}": f, f"Metrics/KID_{name}": k})
        self.writer.scalars(nimg, scalars)
        _append_csv(self.out_dir / "fid.csv", row)
        best_file = self.out_dir / "best.json"
        best = read_json(best_file) if best_file.is_file() else None
        if (best is None or best.get("features") != features or best.get("fid") is None  # null: was NaN
                or fid < float(best["fid"])):
            write_json(best_file, {"snapshot": f"snapshots/{path.name}", "fid": fid, "kid": kid,
                                   "kimg": nimg / 1000, "features": features,
                                   **({"per_class": {c: {"fid": f, "kid": k} for c, (f, k) in per_class.items()}}
                                      if self.labels is not None else {})})
        for part in self.parts:
            self._fidelity(part, path, ema, nimg)
        shown = "  ".join(f"{n} FID {f:.3f}" for n, (f, _) in per_class.items()) if self.labels is not None else ""
        self.log(f"[train-gan] snapshot {path.name}  FID {fid:.3f}  KID {kid:.5f}"
                 + (f"  ({shown})" if shown else "") + f"  ({time.time() - t0:.1f} s)")
        _prune(self.out_dir / "snapshots", self.out_dir, self.cfg.keep_snapshots)

    def _fidelity(self, part: _ClassPart, path: Path, ema: tuple[list, list], nimg: int) -> None:
        """KID, FID, precision and recall of one class in the classifier's features and in
        features independent of it (a fixed random convolutional network), each beside its
        floor (the same metric between two real sets of the same size): metrics.csv and
        TensorBoard."""
        from busgan.stylegan2 import fidelity
        assert part.evaluator is not None and self.writer is not None
        n = max(self.cfg.fid_images, 2 * fidelity.K_NEIGHBOURS + 2)
        fakes = part.evaluator.images(ema, list(range(n)))
        try:
            rows = fidelity.class_fidelity(part.images, fakes, (self.extractor, self.independent_features),
                                           part.floor, cls=part.name, source=path.name,
                                           kimg=nimg / 1000, n=self.cfg.fid_images)
        except BusganError as e:  # too few images for a floor: FID/KID above still stand
            self.log(f"[train-gan] fidelity against the floor skipped ({part.name}): {e}")
            return
        fidelity.write_metrics_csv(self.out_dir / "metrics.csv", rows)
        prefix = "Fidelity" if part.label is None else f"Fidelity_{part.name}"
        scalars = {}
        for r in rows:
            scalars[f"{prefix}/{r['space']}/{r['metric']}"] = r["value"]
            scalars[f"{prefix}/{r['space']}/{r['metric']}_floor"] = r["floor"]
        self.writer.scalars(nimg, scalars)

    @property
    def _total_nimg(self) -> int:
        return int(round(self.cfg.kimg * 1000))

    def run(self) -> Path:
        """Train to ``cfg.kimg``, ticking and snapshotting on schedule; the best snapshot's path."""
        total = self._total_nimg
        while self.nimg < total:
            before = self.nimg
            self.step()
            done = self.nimg >= total
            if done or self.nimg // self._tick_nimg > before // self._tick_nimg:
                self.tick()
            if done or self.nimg // self._snapshot_nimg > before // self._snapshot_nimg:
                self.snapshot()
        if self.writer is not None:
            self.writer.close()
        self.dev.barrier("train-gan: done")  # several processes: process 0 has written best.json
        best_file = self.out_dir / "best.json"
        if not best_file.is_file():
            raise BusganError(f"{self.out_dir}: training finished without best.json; rerun with --resume auto")
        return best_snapshot(self.out_dir)


def initial_weights(template: steps.TrainState, init_from: Path, cfg: GanConfig) -> steps.TrainState:
    """``template`` (a fresh state) with the G, D and G_ema weights of another snapshot of the same
    architecture; the optimizer, path-length mean and ADA p start afresh, as NVlabs' --resume."""
    from busgan.stylegan2.generate import resolve_network
    path = resolve_network(init_from)
    arrays, meta = snap.read_snapshot(path)
    snap.check_architecture(meta, cfg, str(path))
    loaded = snap.unflatten_like(template, arrays, str(path))
    return {**template, **{k: loaded[k] for k in ("g", "g_nt", "d", "d_nt", "g_ema", "g_ema_nt")}}


def train_gan(data_dir: Path, out_dir: Path, cfg: GanConfig, resume: bool = True,
              feature_model: Path | None = None, *, devices: int | None = None,
              log: Callable[[str], None] = print, floor_dir: Path | None = None,
              init_from: Path | None = None) -> Path:
    """Train one class's StyleGAN2 (or, with ``cfg.conditional``, one for every class); return
    the best (lowest-FID) snapshot's path.

    ``data_dir``: that class's images (conditional: a folder of the class folders).
    ``out_dir``: snapshots/, fid.csv, stats.csv, grids/, logs/, best.json. ``resume``: continue from the newest snapshot in ``out_dir`` (refused
    when it was made with other result-affecting settings); without it, ``out_dir`` must hold
    no snapshot. ``feature_model``: a classifier ``model.keras`` or InceptionV3 notop ``.h5``
    for FID/KID (None: the offline pixel fallback, see ``metrics``). ``devices``: how many
    local devices to use (JAX; default all). ``floor_dir``: other real images of the class
    (e.g. its validation images; conditional: a folder of class folders) for the fidelity
    floor in metrics.csv. ``init_from``: a snapshot or train-gan folder whose weights a fresh run
    starts from (ignored when resuming).
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    _check_lengths(cfg)
    init_distributed()
    dev = Devices(devices)
    dev.check_batch(cfg.batch_size)
    snapshot, arrays, meta = _resume_point(out_dir, cfg, resume, log)  # before minutes of compiling
    trainer = GanTrainer(data_dir, out_dir, cfg, dev, feature_model, log, floor_dir)
    trainer.start(snapshot, arrays, meta, init_from)
    return trainer.run()


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
