"""A simulated B-mode breast-ultrasound phantom: the embedded default dataset.

Image formation follows the standard convolution model: random scatterers whose amplitude is
set by a tissue echogenicity map are convolved with a pulse-echo point-spread function (an
axially modulated Gaussian), the RF signal is envelope-detected (analytic signal), attenuated
with depth (lesions add or remove attenuation, giving posterior shadowing or enhancement),
partly compensated by time-gain control, and log-compressed to 8 bits.

Every image is a pure function of ``(seed, class, index)``: its lesion parameters come from
one random stream and its rendering from another, so the ground truth can be sampled without
rendering (:func:`sample_lesion`) and no image depends on how many are made or by how many
workers. The speckle (the random scatterers) can be drawn from a third stream instead
(``speckle_seed``): the same lesion and anatomy under a new speckle pattern, the closest a
different scan of the same patient comes, which the memorization audit's tests plant.
"""

from __future__ import annotations

import csv
import functools
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
from PIL import Image

from busgan import CLASSES
from busgan.config import PhantomConfig, config_hash, result_values
from busgan.data.parallel import imap, worker_count
from busgan.errors import BusganError
from busgan.fileio import (RESUMABLE_SUFFIX, atomic_path, atomic_write_text, read_json, temp_name,
                           write_json)

# --- lesion parameters ----------------------------------------------------------------------

# name: (benign mean, malignant mean, sd, low, high). Means are pulled towards each other by
# SEPARATION so that the classes overlap (tuned for a logistic-regression AUC of about 0.94).
FEATURES: dict[str, tuple[float, float, float, float, float]] = {
    "width": (0.30, 0.27, 0.07, 0.12, 0.50),          # lesion width / image width
    "aspect": (0.62, 0.92, 0.18, 0.35, 1.50),         # height / width (> 1: taller than wide)
    "irregularity": (0.15, 0.45, 0.16, 0.0, 1.0),     # lobulation / angular margin (0 = oval)
    "spiculation": (-0.05, 0.35, 0.28, 0.0, 1.0),     # radiating spicules
    "margin_blur": (0.25, 0.50, 0.18, 0.0, 1.0),      # 0 circumscribed .. 1 indistinct
    "echogenicity": (0.20, 0.22, 0.08, 0.03, 0.60),   # lesion / glandular echo level
    "heterogeneity": (0.20, 0.45, 0.16, 0.0, 1.0),    # internal echo variation
    "posterior": (0.35, -0.30, 0.40, -1.0, 1.0),      # +1 enhancement .. -1 shadowing
    "halo": (0.00, 0.35, 0.22, 0.0, 1.0),             # echogenic rim
}
CALCIFICATION_RATE = (0.2, 1.2)  # mean microcalcification count (benign, malignant)
SEPARATION = 0.46
NUISANCE = ("tilt", "depth", "center_x")
PARAMETER_NAMES: tuple[str, ...] = (*FEATURES, "calcifications", *NUISANCE)
"""Columns of lesions.csv after file, class, label and index."""


def _streams(seed: int, label: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the lesion parameters and the rendering of one image."""
    params, render = np.random.SeedSequence([seed, label, index, 0x6275]).spawn(2)
    return np.random.default_rng(params), np.random.default_rng(render)


def speckle_stream(seed: int, label: int, index: int, speckle_seed: int) -> np.random.Generator:
    """The generator of a new speckle pattern ``speckle_seed`` for image ``(seed, label, index)``."""
    if speckle_seed < 0:
        raise BusganError(f"speckle seed {speckle_seed}: use 0 or more")
    # 0x73706b ("spk") keeps these apart from the parameter and rendering streams above
    return np.random.default_rng(np.random.SeedSequence([seed, label, index, 0x73706B, speckle_seed]))


def sample_lesion(seed: int, label: int, index: int) -> dict[str, float]:
    """The ground-truth lesion parameters of image ``index`` of class ``label``, without rendering."""
    rng, _ = _streams(seed, label, index)
    return _draw_lesion(rng, label)


def _draw_lesion(rng: np.random.Generator, label: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, (mb, mm, sd, lo, hi) in FEATURES.items():
        mid, half = (mb + mm) / 2, (mm - mb) / 2 * SEPARATION
        mean = mid + (half if label else -half)
        out[name] = float(np.clip(rng.normal(mean, sd), lo, hi))
    out["calcifications"] = float(rng.poisson(CALCIFICATION_RATE[label]))
    out["tilt"] = float(np.clip(rng.normal(0.0, 0.3), -0.8, 0.8))
    out["depth"] = float(rng.uniform(0.36, 0.55))
    out["center_x"] = float(rng.uniform(0.3, 0.7))
    return out


# --- rendering ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _psf_spectrum(size: int) -> np.ndarray:
    """One-sided (analytic) pulse-echo PSF spectrum on the rfft grid of axis 0, unit power gain."""
    scale = size / 256
    f0 = min(0.15 / scale, 0.3)                      # carrier, cycles per pixel (axial)
    sz, sx = max(1.5 * scale, 0.55), max(2.6 * scale, 0.8)  # envelope sigmas in pixels
    kz = scipy.fft.rfftfreq(size)[:, None]
    kx = scipy.fft.fftfreq(size)[None, :]
    h = np.exp(-2 * np.pi**2 * (sz**2 * (kz - f0) ** 2 + sx**2 * kx**2))
    h[1:] *= 2.0  # analytic signal: double the positive axial frequencies, drop the negative
    h /= np.sqrt((np.abs(h) ** 2).sum() / size**2)
    return h.astype(np.complex64)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, cubic: bool = True) -> np.ndarray:
    """Zero-mean, roughly unit-variance smooth random field: coarse noise, upsampled."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    method = Image.Resampling.BICUBIC if cubic else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), method)) * 1.3


def _wave(rng: np.random.Generator, x: np.ndarray, amp: float) -> np.ndarray:
    """A smooth random boundary profile over the lateral axis."""
    k = rng.uniform(0.5, 3.0, 3)
    ph = rng.uniform(0, 2 * np.pi, 3)
    a = amp * rng.uniform(0.3, 1.0, 3) / np.arange(1, 4)
    return (a[:, None] * np.sin(2 * np.pi * k[:, None] * x[None, :] + ph[:, None])).sum(0)


def _bump(x: np.ndarray) -> np.ndarray:
    """Smooth compact bump, 1 at 0 and 0 beyond +-1 (cheaper than a Gaussian, no denormals)."""
    return np.square(np.maximum(1 - x * x, 0))


def _step(z: np.ndarray, boundary: np.ndarray, width: float) -> np.ndarray:
    """Soft 0 -> 1 transition below ``boundary`` (per column)."""
    return 0.5 * (1 + np.tanh((z - boundary[None, :]) / width))


def _margin_radius(lesion: dict[str, float], rng: np.random.Generator, n: int = 512) -> np.ndarray:
    """Lesion boundary radius (1 = the ellipse) on ``n`` angles: lobulation plus spicules."""
    ang = np.linspace(-np.pi, np.pi, n, endpoint=False, dtype=np.float32)
    k = np.arange(2, 8)[:, None]
    amp = lesion["irregularity"] * 0.6 / k**0.6 * rng.normal(size=(6, 1))
    r = 1 + (amp * np.cos(k * ang + rng.uniform(0, 2 * np.pi, (6, 1)))).sum(0)
    m = int(rng.integers(8, 16))
    d = np.mod(ang[None, :] - rng.uniform(-np.pi, np.pi, (m, 1)) + np.pi, 2 * np.pi) - np.pi
    spikes = rng.uniform(0.4, 1.2, (m, 1)) * np.exp(-(d / rng.uniform(0.03, 0.07, (m, 1))) ** 2)
    return (r + lesion["spiculation"] * spikes.sum(0)).astype(np.float32)


def _add_lesion(e: np.ndarray, alpha: np.ndarray, lesion: dict[str, float], rng: np.random.Generator,
                texture: np.ndarray) -> list[tuple[float, float, float]]:
    """Paint the lesion into ``e`` and ``alpha`` (in place) within its bounding box.

    Returns its microcalcifications as (depth, lateral, strength), drawn later at full resolution.
    """
    s = e.shape[0]
    a = lesion["width"] / 2
    b = a * lesion["aspect"]
    cx, cz, th = lesion["center_x"], lesion["depth"], lesion["tilt"] * 0.5
    r_tab = _margin_radius(lesion, rng)
    blur = 0.002 + 0.02 * lesion["margin_blur"]
    halo_w = 0.006 + 0.012 * lesion["halo"]
    reach = float(r_tab.max()) * max(a, b) + 3 * halo_w + 3 * blur
    r0, r1 = (int(np.clip(np.floor((c - reach) * s), 0, s)) for c in (cz, cx))
    r2, r3 = (int(np.clip(np.ceil((c + reach) * s), 0, s)) for c in (cz, cx))
    rows, cols = slice(r0, r2), slice(r1, r3)
    z = ((np.arange(r0, r2, dtype=np.float32) + 0.5) / s)[:, None] - cz
    x = ((np.arange(r1, r3, dtype=np.float32) + 0.5) / s)[None, :] - cx

    # lesion frame: rotated by the tilt, scaled by the semi-axes; boundary radius by angle
    u = (x * np.cos(th) + z * np.sin(th)) / a
    v = (-x * np.sin(th) + z * np.cos(th)) / b
    idx = ((np.arctan2(v, u) + np.pi) * (len(r_tab) / (2 * np.pi))).astype(np.int32) % len(r_tab)
    dist = (np.sqrt(u * u + v * v) - r_tab[idx]) * min(a, b)   # ~ signed distance to the margin
    inside = 0.5 * (1 - np.tanh(dist / blur))
    box = e[rows, cols]
    inner = 0.12 * lesion["echogenicity"] * np.exp(lesion["heterogeneity"] * 1.3 * texture[rows, cols])
    box += (inner - box) * inside
    box *= 1 + 4.0 * lesion["halo"] * _bump((dist - halo_w) / (1.6 * halo_w)) * (dist > 0)
    calcs = []
    for _ in range(int(lesion["calcifications"])):            # microcalcifications: bright dots
        rr, aa = rng.uniform(0, 0.7), rng.uniform(-np.pi, np.pi)
        calcs.append((cz + b * rr * np.sin(aa), cx + a * rr * np.cos(aa), 40.0 * rng.uniform(0.3, 1.0)))

    # Posterior features: the lesion's extra (or missing) attenuation shadows (or enhances)
    # everything below it; refraction at the smooth sides of circumscribed lesions casts
    # thin edge shadows straight down.
    post = lesion["posterior"]
    height = np.hypot(a * np.sin(th), b * np.cos(th)) * 2
    alpha[rows, cols] -= post * (1.0 if post > 0 else 1.6) / height * inside
    half = np.hypot(a * np.cos(th), b * np.sin(th))
    edge = 1.5 * (1 - lesion["margin_blur"]) * _bump((np.abs(x) - half) / 0.03)
    below = int(np.clip(cz * s, 0, s))
    alpha[below:, cols] += edge
    return calcs


def echo_map(lesion: dict[str, float], rng: np.random.Generator, size: int, detail: int = 0
             ) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float, float]]]:
    """Tissue echogenicity (scatterer power), attenuation per unit depth, microcalcifications.

    ``size`` is the map's side; thin layers are as thick as on a ``detail``-pixel image.
    """
    s = size
    px = 1.0 / s
    x = ((np.arange(s) + 0.5) * px).astype(np.float32)
    z = x[:, None]                                      # depth axis (rows)
    X = x[None, :]
    soft = max(1.5 / max(detail, s), 0.004)

    # Layered anatomy: skin, subcutaneous fat, fibroglandular tissue, retromammary fat, muscle.
    skin = rng.uniform(0.02, 0.04)
    fat_end = (rng.uniform(0.15, 0.26) + _wave(rng, x, 0.04)).astype(np.float32)
    gland_end = np.maximum(fat_end + 0.1, rng.uniform(0.68, 0.78) + _wave(rng, x, 0.05)).astype(np.float32)
    muscle = (gland_end + rng.uniform(0.03, 0.07) + _wave(rng, x, 0.01)).astype(np.float32)
    n_fat = _smooth_noise(rng, s, 7)
    n_gland = _smooth_noise(rng, s, 14, cubic=False)
    n_fine = _smooth_noise(rng, s, 28, cubic=False)

    fat = 0.07 * np.exp(0.3 * n_fat) + 0.3 * _bump(n_fat / 0.1)      # lobules + septa
    gland = 0.9 * np.exp(0.45 * n_gland + 0.3 * n_fine)
    gland = np.where(n_gland < -0.6, 0.14, gland)                              # fat islands
    fz, fx = rng.uniform(22, 34), rng.uniform(-6, 6)
    mus = 0.15 * (1 + 4.0 * np.exp(10 * (np.cos(2 * np.pi * (fz * z + fx * X) + 0.8 * n_gland) - 1)))
    e = fat + (gland - fat) * _step(z, fat_end, 2 * soft)
    e = e + (0.1 - e) * _step(z, gland_end, soft)                              # retromammary fat
    e = e + (mus - e) * _step(z, muscle, soft)
    e = e + 1.5 * _bump((z - muscle[None, :]) / (2 * soft))          # fascia
    skin_band = _bump((z - skin) / (2.5 * soft)) + 0.6 * _bump((z - skin - 4 * soft) / (1.7 * soft))
    e = np.where(z < skin - 2 * soft, 0.003, e) + 2.0 * skin_band

    # Cooper's ligaments: thin echogenic arches from the gland surface up towards the skin.
    top_rows = int(min(1.0, float(fat_end.max()) + 0.02) * s)
    zt = z[:top_rows]
    for _ in range(int(rng.integers(2, 5))):
        x0, w = rng.uniform(0, 1), rng.uniform(0.08, 0.2)
        t = np.clip(1 - np.abs((x - x0) / w) ** 1.5, 0, None)
        top = fat_end - (fat_end - skin) * rng.uniform(0.6, 1.0) * t
        band = _bump((zt - top[None, :]) / (1.2 * soft)) * ((t > 0)[None, :] & (zt < fat_end[None, :]))
        e[:top_rows] += 0.7 * band

    alpha = np.full((s, s), 1.2, np.float32)                    # attenuation per unit depth
    calcs = _add_lesion(e, alpha, lesion, rng, n_fine + 0.5 * n_gland)

    # Sometimes a rib below the muscle: bright anterior cortex, a complete shadow behind it.
    if rng.random() < 0.35:
        x0, z0 = rng.uniform(0.1, 0.9), float(muscle.mean()) + rng.uniform(0.07, 0.12)
        ra, rb = rng.uniform(0.09, 0.14), rng.uniform(0.035, 0.055)
        r0 = int(np.clip((z0 - 1.5 * rb) * s, 0, s))
        zz = z[r0:]
        rho = np.sqrt(((X - x0) / ra) ** 2 + ((zz - z0) / rb) ** 2)
        bone = np.clip((1 - rho) / 0.35, 0, 1)                   # soft-edged cartilage/bone
        e[r0:] = e[r0:] * (1 - 0.8 * bone) + 1.5 * _bump((rho - 0.95) / 0.25) * (zz < z0 - 0.3 * rb)
        alpha[r0:] += 12.0 * bone
    return e.astype(np.float32, copy=False), alpha, calcs


_GREY_MAP = (np.linspace(0, 1, 1024) ** 1.8 * 255 + 0.5).astype(np.uint8)  # display grey map


def _upsample(m: np.ndarray, size: int) -> np.ndarray:
    return np.array(Image.fromarray(m, mode="F").resize((size, size), Image.Resampling.BILINEAR))


MIN_RENDER = 128
"""Smaller images are rendered at this size and downsampled, as a real image would be: at a
few pixels per speckle grain the texture would otherwise swamp the anatomy."""


def render(lesion: dict[str, float], rng: np.random.Generator, size: int,
           speckle: np.random.Generator | None = None) -> np.ndarray:
    """Render one 8-bit B-mode image of the breast with the given lesion.

    ``speckle``: draw the scatterers from this generator instead of ``rng``; the anatomy, the
    lesion's shape, the gain and the display settings still come from ``rng``, unchanged.
    """
    if size < MIN_RENDER:
        big = render(lesion, rng, MIN_RENDER, speckle)
        return np.asarray(Image.fromarray(big).resize((size, size), Image.Resampling.LANCZOS))
    s = size
    # Tissue maps, attenuation and gain are smooth on the speckle scale: they are computed at
    # half resolution (4x fewer operations) and upsampled; point targets go in at full resolution.
    lo = s // 2 if s >= 64 else s
    e, alpha, calcs = echo_map(lesion, rng, lo, detail=s)
    z = ((np.arange(lo, dtype=np.float32) + 0.5) / lo)[:, None]
    # round trip: attenuation accumulated along each beam (lesions shadow or enhance what lies
    # behind them), partly compensated by time-gain control
    gain = np.exp(-np.cumsum(alpha, axis=0) / lo + 1.2 * rng.uniform(0.75, 0.95) * z)
    amp = np.sqrt(12 * e)                               # uniform scatterers: unit variance
    if lo != s:
        amp, gain = _upsample(amp, s), _upsample(gain, s)
    for cz, cx, strength in calcs:
        i, j = int(np.clip(cz * s, 0, s - 1)), int(np.clip(cx * s, 0, s - 1))
        amp[i, j] = np.sqrt(amp[i, j] ** 2 + 12 * strength)

    # Scatterers weighted by echogenicity, PSF convolution in the Fourier domain, envelope
    # detection (magnitude of the analytic signal); two looks are averaged, as spatial
    # compounding does on breast scanners.
    # ``rng`` always makes this draw, so what it draws afterwards (the display settings) is the
    # same whichever stream the speckle comes from, and the default images stay as they were.
    uniform = rng.random((2, s, s), dtype=np.float32)
    if speckle is not None:
        uniform = speckle.random((2, s, s), dtype=np.float32)
    scat = (uniform - 0.5) * amp
    spec = scipy.fft.rfft2(scat, axes=(2, 1)) * _psf_spectrum(s)
    half = scipy.fft.ifft(spec, axis=2)                 # lateral first, on the non-zero half only
    full = np.zeros((2, s, s), np.complex64)
    full[:, : spec.shape[1]] = half
    env = np.abs(scipy.fft.ifft(full, axis=1)).mean(0) * gain + 0.003  # + receiver noise floor

    # Log compression into the dynamic range, then the grey map.
    dyn = rng.uniform(48, 54)
    offset = rng.uniform(-2, 2) - 8.0 + dyn
    level = (20 * np.log10(env) + offset) * (1023 / dyn)
    return _GREY_MAP[np.clip(level, 0, 1023).astype(np.int16)]


def render_image(seed: int, label: int, index: int, size: int, speckle_seed: int | None = None
                 ) -> tuple[np.ndarray, dict[str, float]]:
    """The image and the lesion parameters of ``(seed, label, index)``.

    ``speckle_seed`` re-renders that image's lesion and anatomy with a new speckle pattern
    (None: the image's own speckle, as in the written phantom).
    """
    if size < 32:
        raise BusganError(f"phantom.size: {size} is too small; use 32 or more")
    p_rng, r_rng = _streams(seed, label, index)
    lesion = _draw_lesion(p_rng, label)
    speckle = None if speckle_seed is None else speckle_stream(seed, label, index, speckle_seed)
    return render(lesion, r_rng, size, speckle), lesion


# --- writing a dataset ----------------------------------------------------------------------

RECORD = "phantom.json"


def image_name(label: int, index: int) -> str:
    """File name of one phantom image, relative to the output folder."""
    return f"{CLASSES[label]}/{CLASSES[label]}_{index:05d}.png"


def _write_one(task: tuple[Path, int, int, int, int]) -> tuple[int, int]:
    out, seed, label, index, size = task
    img, _ = render_image(seed, label, index, size)
    target = out / image_name(label, index)
    with atomic_path(target, suffix=".png") as tmp:
        # Huffman-only zlib: speckle has little LZ redundancy, so this is both faster and smaller
        Image.fromarray(img, mode="L").save(tmp, compress_level=1, compress_type=zlib.Z_HUFFMAN_ONLY)
    return label, index


def phantom_record(cfg: PhantomConfig) -> dict[str, Any]:
    keep = result_values(cfg)
    return {"config": keep, "hash": config_hash(keep), "generator": "busgan.data.phantom v1"}


def is_complete(out_dir: Path, cfg: PhantomConfig) -> bool:
    """Whether ``out_dir`` already holds this exact phantom."""
    rec = out_dir / RECORD
    if not rec.is_file():
        return False
    try:
        same = read_json(rec).get("hash") == phantom_record(cfg)["hash"]
    except (OSError, ValueError):
        return False
    return same and (out_dir / "lesions.csv").is_file() and all(
        (out_dir / image_name(lab, i)).is_file()
        for lab in (0, 1) for i in range(cfg.n_per_class))


def _refuse_unswappable(out_dir: Path) -> None:
    """Refuse an output folder that cannot be swapped for the finished phantom.

    The phantom is built beside ``out_dir`` and renamed onto it, which the operating system
    refuses (EBUSY) for the current directory (``--out .``: the temporary folder would even be
    made inside it) and for a mount point; a folder above the current directory would move
    the user's shell out from under it.
    """
    where = out_dir.resolve()
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the current directory was deleted
        cwd = None
    if cwd is not None and (where == cwd or where in cwd.parents):
        what = "the current directory" if where == cwd else "a folder above the current directory"
        raise BusganError(f"{out_dir}: is {what}, which cannot be replaced by the phantom; "
                          "give a new folder, e.g. --out phantom")
    if os.path.ismount(where):
        raise BusganError(f"{out_dir}: is a mount point, which cannot be replaced by the phantom; "
                          f"give a new folder inside it, e.g. --out {out_dir / 'phantom'}")


def generate_phantom(out_dir: Path, cfg: PhantomConfig) -> Path:
    """Write ``out_dir/{benign,malignant}/*.png`` and ``out_dir/lesions.csv``; return ``out_dir``.

    Skips the work when ``out_dir`` already holds the same phantom. Images are built in a
    sibling ``.busgan-tmp-NAME.partial`` folder (resumable: finished images are kept) and moved into place
    at the end, so an interrupted run never leaves a half-made dataset at ``out_dir``.
    """
    out_dir = Path(out_dir)
    if cfg.size < 32:
        raise BusganError(f"phantom.size: {cfg.size} is too small; use --size 32 or more")
    if cfg.n_per_class < 1:
        raise BusganError(f"phantom.n_per_class: {cfg.n_per_class}; use --n-per-class 1 or more")
    if is_complete(out_dir, cfg):
        return out_dir
    _refuse_unswappable(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BusganError(f"{out_dir}: exists and is not a folder; choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / RECORD).is_file():
        raise BusganError(f"{out_dir}: is not empty and holds no phantom; choose an empty or new --out")

    record = phantom_record(cfg)
    partial = out_dir.parent / temp_name(out_dir.name + RESUMABLE_SUFFIX)  # kept by clean-up
    if partial.is_dir():
        try:
            same = read_json(partial / RECORD).get("hash") == record["hash"]
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(partial)
    for name in CLASSES:
        (partial / name).mkdir(parents=True, exist_ok=True)
    write_json(partial / RECORD, {**record, "complete": False})

    tasks = [(partial, cfg.seed, lab, i, cfg.size) for lab in (0, 1) for i in range(cfg.n_per_class)
             if not (partial / image_name(lab, i)).is_file()]
    for _ in imap(_write_one, tasks, worker_count(cfg.workers), "phantom"):
        pass

    rows = [",".join(("file", "class", "label", "index", *PARAMETER_NAMES))]
    for lab in (0, 1):
        for i in range(cfg.n_per_class):
            p = sample_lesion(cfg.seed, lab, i)
            rows.append(",".join([image_name(lab, i), CLASSES[lab], str(lab), str(i),
                                  *(f"{p[k]:.6g}" for k in PARAMETER_NAMES)]))
    atomic_write_text(partial / "lesions.csv", "\n".join(rows) + "\n")
    write_json(partial / RECORD, {**record, "complete": True, "n_per_class": cfg.n_per_class})

    if out_dir.exists():  # an older phantom (different config): swap it out
        old = out_dir.parent / temp_name(f"{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(partial, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, out_dir)
    return out_dir


def read_lesions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(parameters, labels) from a lesions.csv, parameters in PARAMETER_NAMES order."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    x = np.array([[float(r[k]) for k in PARAMETER_NAMES] for r in rows])
    y = np.array([int(r["label"]) for r in rows])
    return x, y


def difficulty_auc(x: np.ndarray, y: np.ndarray, n_test_per_class: int = 150) -> float:
    """Test AUC of a logistic regression on lesion parameters, the phantom's difficulty figure.

    The first ``n_test_per_class`` images of each class are the test set, the rest train, as
    in lesions.csv order (indices 0..149 test, 150..649 train for the paper's 1,000 + 300).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    test = np.zeros(len(y), bool)
    for lab in (0, 1):
        test[np.flatnonzero(y == lab)[:n_test_per_class]] = True
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[~test], y[~test])
    return float(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))
