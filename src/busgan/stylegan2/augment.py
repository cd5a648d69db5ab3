"""Adaptive discriminator augmentation (ADA, Karras et al. 2020) in ``keras.ops``.

Every image the discriminator sees (real and generated) goes through the same random,
differentiable pipeline, each transform applied with probability ``p`` times its multiplier in
the spec (0 = off, 1 = on); ``p`` follows the overfitting heuristic r_t = E[sign(D(real))]
toward 0.6 (``adjust_p``). Because the transforms are differentiable in the pixels, the
generator still receives gradients through them, and since each is applied with p < 1 the
generator cannot learn the augmentations ("non-leaking").

The transforms, their strengths and their order follow StyleGAN2-ADA (NVlabs'
``training/augment.py``, read for the design; this is busgan's own code). Images NHWC, values
around [-1, 1]; per image, in this order:

1. Pixel blitting (exact pixel copies): x-flip (probability p, then flipped or not with 1/2),
   rotation by k * 90 degrees (k uniform in 0..3), integer translation (uniform, up to 1/8 of
   the side, rounded; reflect padding).
2. General geometric transforms, composed into one affine map and executed with one
   anti-aliased resampling: isotropic scaling (log2-normal, std 0.2), rotation (uniform over
   the full circle times ``rotate_max``, with probability 1 - sqrt(1 - p) before and again after
   the anisotropic part, so that P(any) = p), anisotropic scaling (log2-normal, std 0.2),
   fractional translation (normal, std 0.125 of the side). Anti-aliasing as NVlabs: reflect
   padding, 2x upsampling with the sym6 wavelet low-pass (12 taps), bilinear sampling (zeros
   outside) on the 2x grid, 2x downsampling with the same filter. An image whose drawn
   transform is the identity skips the resampling (exactly unchanged).
3. Colour, NVlabs' per-image 4x4 matrix on (R, G, B, 1), applied step by step: brightness
   (+N(0, 0.2)), contrast (x 2^N(0, 0.5), about 0, after brightness: c (x + b)), luma flip
   (probability p, then 1/2; Householder reflection along the luma axis: x -> -x for
   grayscale), hue rotation about the luma axis (uniform, full circle) and saturation
   (x 2^N(0, 1) off the luma axis); hue and saturation act on RGB only (for one channel the
   matrix is reduced to its mean row, as NVlabs do, where they are the identity).
4. Image-space filtering: four frequency bands (sym2 wavelet filter bank, 43 taps), each band
   amplified with probability p by 2^N(0, 1), the gains renormalised to the expected power of
   a 1/f spectrum (10:1:1:1); one separable per-image filter, reflect padding.
5. Additive Gaussian noise, per image sigma = |N(0, 0.1)|.
6. Cutout: a square of half the side, centred uniformly over the image, set to 0.

Presets (``PRESETS``): NVlabs' 'blit', 'geom', 'color', 'filter', 'noise', 'cutout', 'bg',
'bgc' (NVlabs' default), 'bgcf', 'bgcfn', 'bgcfnc', and 'ultrasound' (see ``PRESETS``), which
keeps the up-down orientation of an ultrasound image (skin at the top).

Deliberate differences to NVlabs: the blits are exact pixel copies done before the resampling
(NVlabs fold them into the one resampling matrix, where integer translations stay exact but
flips and 90-degree rotations pick up a slight blur from the asymmetric sym6 filter pair; here
the border padding of the resampling reflects the blitted image, not the original); the
reflect padding is static (side - 1 on every side: NVlabs' largest, it pads per batch only as
far as the transformed corners need, which gives the same values); transforms drawn as the
identity skip the resampling and the filter, so p = 0 is the exact identity; p is kept in
[0, 1] (NVlabs clamp it only at 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from keras import ops

from busgan.stylegan2 import autodiff

Tensor = Any
PIPELINE = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
            "brightness", "contrast", "lumaflip", "hue", "saturation", "imgfilter", "noise", "cutout")

# Decomposition low-pass filters of two symlets (orthogonal wavelets, taps summing to sqrt(2));
# the values are PyWavelets' ``dec_lo`` (tests check them and their orthogonality).
SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)
FILTER_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)  # expected power per band (a 1/f spectrum)


@dataclass(frozen=True)
class AugmentSpec:
    """Probability multipliers of the transforms (0 = off, 1 = on) and their strengths.

    The defaults (every transform off) match NVlabs' ``AugmentPipe``; use ``preset(name)``.
    """

    xflip: float = 0.0
    rotate90: float = 0.0
    xint: float = 0.0
    scale: float = 0.0
    rotate: float = 0.0
    aniso: float = 0.0
    xfrac: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    lumaflip: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    imgfilter: float = 0.0
    noise: float = 0.0
    cutout: float = 0.0
    xint_max: float = 0.125       # integer translation range, fraction of the side
    scale_std: float = 0.2        # log2 std of isotropic scaling
    rotate_max: float = 1.0       # rotation range, 1 = full circle
    aniso_std: float = 0.2        # log2 std of anisotropic scaling
    xfrac_std: float = 0.125      # std of fractional translation, fraction of the side
    brightness_std: float = 0.2
    contrast_std: float = 0.5     # log2 std
    hue_max: float = 1.0          # 1 = full circle
    saturation_std: float = 1.0   # log2 std
    imgfilter_bands: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    imgfilter_std: float = 1.0    # log2 std of a band's gain
    noise_std: float = 0.1
    cutout_size: float = 0.5      # side of the cutout square, fraction of the image side

    @classmethod
    def only(cls, name: str, **strengths: Any) -> "AugmentSpec":
        """A spec with one transform on (for tests and ablations)."""
        if name not in PIPELINE:
            raise ValueError(f"unknown ADA transform {name!r}; one of {PIPELINE}")
        return cls(**{name: 1.0}, **strengths)

    @property
    def geometric(self) -> bool:
        return bool(self.scale or self.rotate or self.aniso or self.xfrac)

    @property
    def color(self) -> bool:
        return bool(self.brightness or self.contrast or self.lumaflip or self.hue or self.saturation)


_BLIT = {"xflip": 1.0, "rotate90": 1.0, "xint": 1.0}
_GEOM = {"scale": 1.0, "rotate": 1.0, "aniso": 1.0, "xfrac": 1.0}
_COLOR = {"brightness": 1.0, "contrast": 1.0, "lumaflip": 1.0, "hue": 1.0, "saturation": 1.0}
PRESETS: dict[str, AugmentSpec] = {
    # NVlabs' StyleGAN2-ADA presets (its train.py ``--augpipe``; default 'bgc').
    "blit": AugmentSpec(**_BLIT),
    "geom": AugmentSpec(**_GEOM),
    "color": AugmentSpec(**_COLOR),
    "filter": AugmentSpec(imgfilter=1.0),
    "noise": AugmentSpec(noise=1.0),
    "cutout": AugmentSpec(cutout=1.0),
    "bg": AugmentSpec(**_BLIT, **_GEOM),
    "bgc": AugmentSpec(**_BLIT, **_GEOM, **_COLOR),
    "bgcf": AugmentSpec(**_BLIT, **_GEOM, **_COLOR, imgfilter=1.0),
    "bgcfn": AugmentSpec(**_BLIT, **_GEOM, **_COLOR, imgfilter=1.0, noise=1.0),
    "bgcfnc": AugmentSpec(**_BLIT, **_GEOM, **_COLOR, imgfilter=1.0, noise=1.0, cutout=1.0),
    # busgan: 'bgc' that keeps an ultrasound image's up-down orientation (skin at the top):
    # no 90-degree rotations, rotations within +-10 degrees (not the full circle), no luma flip
    # (it would turn echogenic tissue dark), no hue rotation (it would recolour a colour
    # Doppler overlay). x-flips (left-right), translations, scalings, brightness, contrast and
    # saturation stay.
    "ultrasound": AugmentSpec(xflip=1.0, xint=1.0, scale=1.0, rotate=1.0, rotate_max=10 / 180,
                              aniso=1.0, xfrac=1.0, brightness=1.0, contrast=1.0, saturation=1.0),
}
DEFAULT_PRESET = "bgc"


def preset(name: str | AugmentSpec) -> AugmentSpec:
    """The named preset (an ``AugmentSpec`` is returned as it is)."""
    if isinstance(name, AugmentSpec):
        return name
    if name not in PRESETS:
        raise ValueError(f"unknown ADA preset {name!r}; one of {sorted(PRESETS)}")
    return PRESETS[name]


def speed_kimg(ada_kimg: float, kimg: float) -> float:
    """The ADA adjustment speed: ``ada_kimg`` when > 0, else ``min(500, kimg / 10)``.

    NVlabs use 500 kimg (p may go from 0 to 1 in 500k real images) for runs of thousands of
    kimg, and 100 when fine-tuning; at 500 a run of 6 kimg could only raise p to 0.012. With
    0 ("auto"), p can span 0..1 within a tenth of the run, and runs of 5,000 kimg or more get
    NVlabs' 500.
    """
    if ada_kimg > 0:
        return float(ada_kimg)
    return min(500.0, kimg / 10) if kimg > 0 else 500.0


# The choices drawn per image: a transform (or a filter band) is applied where u < probability;
# "rotate" has two slots (before and after the anisotropic scaling).
_SLOTS = ("xflip", "rotate90", "xint", "scale", "rotate_pre", "aniso", "rotate_post", "xfrac",
          "brightness", "contrast", "lumaflip", "hue", "saturation",
          "band0", "band1", "band2", "band3", "noise", "cutout")
# Normal draws: (name, slot that enables it, std attribute, log2-normal?)
_NORMALS = (("scale", "scale", "scale_std", True), ("aniso", "aniso", "aniso_std", True),
            ("frac_x", "xfrac", "xfrac_std", False), ("frac_y", "xfrac", "xfrac_std", False),
            ("brightness", "brightness", "brightness_std", False),
            ("contrast", "contrast", "contrast_std", True),
            ("saturation", "saturation", "saturation_std", True),
            ("band0", "band0", "imgfilter_std", True), ("band1", "band1", "imgfilter_std", True),
            ("band2", "band2", "imgfilter_std", True), ("band3", "band3", "imgfilter_std", True),
            ("noise_sigma", "noise", "noise_std", False))
# Uniform values in [0, 1): x-flip and luma flip (apply with 1/2), rot90 k, xint (x, y),
# rotations, hue, cutout centre.
_UNIFORMS = ("flip", "rot90", "tx", "ty", "theta_pre", "theta_post", "lumaflip", "hue",
             "cutout_x", "cutout_y")


def _slot_multipliers(spec: AugmentSpec) -> np.ndarray:
    mult = {name: getattr(spec, name) for name in _SLOTS if hasattr(spec, name)}
    mult.update({f"band{i}": spec.imgfilter * b for i, b in enumerate(spec.imgfilter_bands)})
    return np.asarray([mult.get(name, 0.0) for name in _SLOTS], np.float32)


def sample_params(shape: tuple[int, int, int, int], p: Tensor, seed: Any,
                  spec: AugmentSpec | str = DEFAULT_PRESET) -> dict[str, Tensor]:
    """Draw per-image parameters for images of ``shape`` (N, H, W, C).

    A transform not chosen (probability 1 - p * multiplier) gets its identity value.
    ``seed``: an int, or an int32 seed tensor of shape [2] (``autodiff.seed_tensor``). All
    per-image numbers come from one uniform and one normal draw (vectorised: one random-number
    call and a few operations compile far faster than one per parameter).
    """
    spec = preset(spec)
    n, h, w, c = shape
    seed = autodiff.seed_tensor(seed) if isinstance(seed, int) else seed
    p = ops.cast(p, "float32")
    k_slot, k_uni = len(_SLOTS), len(_UNIFORMS)
    u = autodiff.uniform((n, k_slot + k_uni), autodiff.fold_in(seed, 1))
    z = autodiff.normal((n, len(_NORMALS)), autodiff.fold_in(seed, 2))

    rot = np.asarray([name.startswith("rotate_") for name in _SLOTS])
    p_rot = 1 - ops.sqrt(ops.clip(1 - spec.rotate * p, 0.0, 1.0))  # P(pre or post) = rotate * p
    prob = ops.where(ops.convert_to_tensor(rot), p_rot, ops.convert_to_tensor(_slot_multipliers(spec)) * p)
    on = ops.cast(u[:, :k_slot] < prob, "float32")  # [n, slots]
    col = lambda name: on[:, _SLOTS.index(name)]  # noqa: E731
    uv = {name: u[:, k_slot + i] for i, name in enumerate(_UNIFORMS)}

    std = np.asarray([getattr(spec, attr) for _, _, attr, _ in _NORMALS], np.float32)
    enable = ops.take(on, ops.convert_to_tensor(np.asarray([_SLOTS.index(sl) for _, sl, _, _ in _NORMALS],
                                                           np.int32)), axis=1)
    zs = z * ops.convert_to_tensor(std) * enable
    zs = ops.where(ops.convert_to_tensor(np.asarray([lg for *_, lg in _NORMALS])), ops.exp2(zs), zs)
    zv = {name: zs[:, i] for i, (name, *_) in enumerate(_NORMALS)}

    half = lambda name: ops.cast(uv[name] < 0.5, "float32")  # noqa: E731
    theta = math.pi * spec.rotate_max
    out: dict[str, Tensor] = {
        "flip": col("xflip") * half("flip"),
        "rot90": ops.cast(col("rotate90") * ops.floor(uv["rot90"] * 4), "int32"),
        "tx": ops.cast(ops.round((uv["tx"] * 2 - 1) * spec.xint_max * w) * col("xint"), "int32"),
        "ty": ops.cast(ops.round((uv["ty"] * 2 - 1) * spec.xint_max * h) * col("xint"), "int32"),
        "scale": zv["scale"],
        "theta_pre": (uv["theta_pre"] * 2 - 1) * theta * col("rotate_pre"),
        "aniso": zv["aniso"],
        "theta_post": (uv["theta_post"] * 2 - 1) * theta * col("rotate_post"),
        "frac_x": zv["frac_x"], "frac_y": zv["frac_y"],
        "brightness": zv["brightness"], "contrast": zv["contrast"],
        "lumaflip": col("lumaflip") * half("lumaflip"),
        "hue": (uv["hue"] * 2 - 1) * math.pi * spec.hue_max * col("hue"),
        "saturation": zv["saturation"],
        "band_gain": zs[:, 7:11],  # [n, 4] per-band gains, before the power normalisation
        "noise_sigma": ops.abs(zv["noise_sigma"]),
        "cutout_size": col("cutout") * spec.cutout_size,
        "cutout_x": uv["cutout_x"], "cutout_y": uv["cutout_y"],
    }
    if spec.noise:
        out["noise"] = autodiff.normal((n, h, w, c), autodiff.fold_in(seed, 3))
    return out


# ---------------------------------------------------------------------------------------------
# Pixel blitting.

def _reflect(i: Tensor, n: int) -> Tensor:
    """Reflect integer indices into [0, n) without repeating the edge (numpy 'reflect')."""
    if n == 1:
        return ops.zeros_like(i)
    period = 2 * n - 2
    i = ops.mod(i, period)
    return ops.where(i >= n, period - i, i)


def _reflect_np(i: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(i)
    i = np.mod(i, 2 * n - 2)
    return np.where(i >= n, 2 * n - 2 - i, i)


def _gather(x: Tensor, iy: Tensor, ix: Tensor) -> Tensor:
    """out[b, y, x] = x[b, iy[b, y, x], ix[b, y, x]] (indices already in range)."""
    b, h, w, c = ops.shape(x)
    flat = ops.reshape(x, (-1, c))
    base = ops.reshape(ops.arange(b, dtype="int32") * (h * w), (-1, 1, 1))
    idx = base + iy * w + ix
    oh, ow = iy.shape[1], iy.shape[2]
    return ops.reshape(ops.take(flat, ops.reshape(idx, (-1,)), axis=0), (b, oh, ow, c))


def xflip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror left-right the images where ``flip`` is 1."""
    m = ops.reshape(flip, (-1, 1, 1, 1)) > 0.5
    return ops.where(m, ops.flip(x, axis=2), x)


def rotate90(x: Tensor, k: Tensor) -> Tensor:
    """Rotate each image by k * 90 degrees counter-clockwise (as ``np.rot90`` on H, W)."""
    out = x
    r = x
    kk = ops.reshape(k, (-1, 1, 1, 1))
    for j in range(1, 4):
        r = ops.flip(ops.transpose(r, (0, 2, 1, 3)), axis=1)
        out = ops.where(kk == j, r, out)
    return out


def translate_int(x: Tensor, tx: Tensor, ty: Tensor) -> Tensor:
    """Shift each image by whole pixels (content moves right by tx, down by ty), reflecting."""
    _, h, w, _ = x.shape
    ys = ops.reshape(ops.arange(h, dtype="int32"), (1, -1, 1)) - ops.reshape(ty, (-1, 1, 1))
    xs = ops.reshape(ops.arange(w, dtype="int32"), (1, 1, -1)) - ops.reshape(tx, (-1, 1, 1))
    b = ops.shape(x)[0]
    iy = ops.broadcast_to(_reflect(ys, h), (b, h, w))
    ix = ops.broadcast_to(_reflect(xs, w), (b, h, w))
    return _gather(x, iy, ix)


# ---------------------------------------------------------------------------------------------
# General geometric transforms.

def geometric_matrix(params: dict[str, Tensor], size: tuple[int, int]) -> Tensor:
    """Per-image [n, 2, 3] affine map from output pixel positions (x, y; from the image centre)
    to source ones.

    NVlabs' convention: G_inv = S(1/s) R(theta_pre) A(1/a, a) R(theta_post) T(-t), with R(t) the
    rotation [[cos, -sin], [sin, cos]] and t the fractional translation in pixels; the forward
    transform applies scaling, rotation, anisotropy, rotation, translation in this order. The
    product is written out entry by entry (exact for identity parameters; no matrix units).
    """
    h, w = size
    s, a = params["scale"], params["aniso"]
    ca, sa = ops.cos(params["theta_pre"]), ops.sin(params["theta_pre"])
    cb, sb = ops.cos(params["theta_post"]), ops.sin(params["theta_post"])
    pa, qa = 1 / a, a
    l00 = (ca * pa * cb - sa * qa * sb) / s
    l01 = (-ca * pa * sb - sa * qa * cb) / s
    l10 = (sa * pa * cb + ca * qa * sb) / s
    l11 = (-sa * pa * sb + ca * qa * cb) / s
    tx, ty = -params["frac_x"] * w, -params["frac_y"] * h
    rows = [ops.stack([l00, l01, l00 * tx + l01 * ty], axis=-1),
            ops.stack([l10, l11, l10 * tx + l11 * ty], axis=-1)]
    return ops.stack(rows, axis=-2)


# Each 1-D step (reflect padding, FIR up/downsampling, the per-image band filter) is a linear
# map along one axis, applied as a product with a constant (or per-image) [n_in, n_out] matrix:
# a handful of operations instead of one per filter tap.

def reflect_matrix(n: int, pad: int) -> np.ndarray:
    """[n, n + 2 pad]: numpy-'reflect' padding (reflections repeat for pad >= n)."""
    src = _reflect_np(np.arange(-pad, n + pad), n)
    m = np.zeros((n, n + 2 * pad))
    m[src, np.arange(n + 2 * pad)] = 1.0
    return m


def upsample_matrix(n: int, taps: tuple[float, ...] = SYM6) -> np.ndarray:
    """[n, 2n]: 2x upsampling, as NVlabs' ``upsample2d``: zero insertion, then convolution with
    the filter (normalised to sum 1) times 2; input sample j sits at output 2j + 0.5 (12 taps).
    y[k] = 2 sum_j x[j] f[L - 1 - (L + 1) // 2 + k - 2j] (L taps)."""
    f = np.asarray(taps, np.float64) / np.sum(taps)
    off = f.size - 1 - (f.size + 1) // 2
    j, k = np.meshgrid(np.arange(n), np.arange(2 * n), indexing="ij")
    t = off + k - 2 * j
    ok = (t >= 0) & (t < f.size)
    return np.where(ok, 2 * f[np.clip(t, 0, f.size - 1)], 0.0)


def downsample_matrix(n_out: int, taps: tuple[float, ...] = SYM6) -> np.ndarray:
    """[2 (n_out + 2 (L // 4)), n_out]: NVlabs' ``downsample2d`` with the filter unflipped and a
    crop of L // 4 output samples per side: y[j] = sum_t z[2j + 1 + t] f[t] (12 taps)."""
    f = np.asarray(taps, np.float64) / np.sum(taps)
    m = np.zeros((2 * (n_out + 2 * (f.size // 4)), n_out))
    for j in range(n_out):
        m[2 * j + 1:2 * j + 1 + f.size, j] = f
    return m


def _along(x: Tensor, m: Any, axis: int) -> Tensor:
    """Apply [n_in, n_out] (or per image [b, n_in, n_out]) along H (axis 1) or W (axis 2)."""
    if isinstance(m, np.ndarray):
        m = ops.convert_to_tensor(m.astype(np.float32))
        return ops.einsum("bhwc,wv->bhvc" if axis == 2 else "bhwc,hv->bvwc", x, m)
    return ops.einsum("bhwc,bwv->bhvc" if axis == 2 else "bhwc,bhv->bvwc", x, m)


def _bilinear_zeros(x: Tensor, sx: Tensor, sy: Tensor) -> Tensor:
    """Bilinear samples of x at pixel positions (sx, sy) [n, oh, ow]; taps outside count as 0."""
    _, h, w, _ = x.shape
    x0, y0 = ops.floor(sx), ops.floor(sy)
    wx, wy = ops.expand_dims(sx - x0, -1), ops.expand_dims(sy - y0, -1)
    x0, y0 = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    out = None
    for dy, fy in ((0, 1 - wy), (1, wy)):
        for dx, fx in ((0, 1 - wx), (1, wx)):
            iy, ix = y0 + dy, x0 + dx
            ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
            v = _gather(x, ops.clip(iy, 0, h - 1), ops.clip(ix, 0, w - 1))
            term = v * (fy * fx * ops.cast(ops.expand_dims(ok, -1), x.dtype))
            out = term if out is None else out + term
    return out


def resample(x: Tensor, ginv: Tensor) -> Tensor:
    """Anti-aliased resampling: out(u) = x(ginv @ u), u from the image centre, as NVlabs do.

    Reflect-pad by side - 1, upsample 2x (sym6), sample bilinearly (zeros outside) on the 2x
    grid with the map conjugated to it (2 G((u + 0.5) / 2) - 0.5, NVlabs' half-pixel phase
    compensation of the filter), then downsample 2x (sym6) back to the image's size.
    """
    _, h, w, _ = x.shape
    hp = len(SYM6) // 4
    up = _along(x, reflect_matrix(w, w - 1) @ upsample_matrix(3 * w - 2), 2)
    up = _along(up, reflect_matrix(h, h - 1) @ upsample_matrix(3 * h - 2), 1)
    uh, uw = up.shape[1], up.shape[2]
    oh, ow = 2 * (h + 2 * hp), 2 * (w + 2 * hp)
    gy, gx = np.meshgrid(np.arange(oh) - (oh - 1) / 2, np.arange(ow) - (ow - 1) / 2, indexing="ij")
    qx = ops.convert_to_tensor(((gx + 0.5) / 2).astype(np.float32))[None]
    qy = ops.convert_to_tensor(((gy + 0.5) / 2).astype(np.float32))[None]
    ginv = ops.cast(ginv, "float32")
    g = lambda i, j: ops.reshape(ginv[:, i, j], (-1, 1, 1))  # noqa: E731
    sx = 2 * (g(0, 0) * qx + g(0, 1) * qy + g(0, 2)) - 0.5 + (uw - 1) / 2
    sy = 2 * (g(1, 0) * qx + g(1, 1) * qy + g(1, 2)) - 0.5 + (uh - 1) / 2
    z = _bilinear_zeros(up, sx, sy)
    return _along(_along(z, downsample_matrix(w), 2), downsample_matrix(h), 1)


def _is_identity_geometry(params: dict[str, Tensor]) -> Tensor:
    same = None
    for key, value in (("scale", 1.0), ("aniso", 1.0), ("theta_pre", 0.0), ("theta_post", 0.0),
                       ("frac_x", 0.0), ("frac_y", 0.0)):
        eq = ops.equal(params[key], value)
        same = eq if same is None else ops.logical_and(same, eq)
    return ops.reshape(same, (-1, 1, 1, 1))


# ---------------------------------------------------------------------------------------------
# Colour.

def color(x: Tensor, params: dict[str, Tensor]) -> Tensor:
    """NVlabs' colour matrix, saturation @ hue @ lumaflip @ contrast @ brightness on (R, G, B),
    applied step by step (each step exact for its identity parameter).

    One channel: NVlabs reduce the matrix to its mean row, where hue and saturation are the
    identity: x -> (1 - 2 lumaflip) * contrast * (x + brightness).
    """
    c = x.shape[-1]
    e = lambda k: ops.cast(ops.reshape(params[k], (-1, 1, 1, 1)), x.dtype)  # noqa: E731
    y = (x + e("brightness")) * e("contrast")
    mean = lambda t: ops.mean(t, axis=-1, keepdims=True)  # noqa: E731  (v v^T y = mean(y) (1, 1, 1))
    if c == 1:
        return y * (1 - 2 * e("lumaflip"))
    if c != 3:
        raise ValueError(f"ADA colour transforms need 1 or 3 channels, not {c}")
    y = y - 2 * e("lumaflip") * mean(y)  # Householder reflection along the luma axis
    th = e("hue")  # Rodrigues: y cos + (v x y) sin + v (v . y)(1 - cos), v = (1, 1, 1) / sqrt(3)
    r, g, b = y[..., 0:1], y[..., 1:2], y[..., 2:3]
    cross = ops.concatenate([b - g, r - b, g - r], axis=-1) / math.sqrt(3)
    y = y * ops.cos(th) + cross * ops.sin(th) + mean(y) * (1 - ops.cos(th))
    return y + (e("saturation") - 1) * (y - mean(y))  # luma + s (y - luma)


# ---------------------------------------------------------------------------------------------
# Image-space filtering.

def _dilate(f: np.ndarray) -> np.ndarray:
    out = np.zeros(2 * f.size - 1)
    out[::2] = f
    return out


def filter_bank() -> np.ndarray:
    """[4, 43] band filters, low to high: octaves [0, 1/8], [1/8, 1/4], [1/4, 1/2], [1/2, 1]
    of the band to Nyquist; they sum to the identity (a delta at the centre tap).

    From the sym2 low-pass H(z): lo = H(z) H(1/z) / 2 and hi = H(-z) H(-1/z) / 2 are complementary
    half-band filters (lo + hi = 1 for an orthogonal wavelet); each level dilates the bank by
    2 and splits its lowest band with them.
    """
    lo = np.asarray(SYM2)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2, hi2 = np.convolve(lo, lo[::-1]) / 2, np.convolve(hi, hi[::-1]) / 2
    bands = [np.ones(1)]
    for _ in range(3):
        bands = [np.convolve(_dilate(b), lo2) for b in bands]
        top = np.zeros_like(bands[0])
        c = (top.size - hi2.size) // 2
        top[c:c + hi2.size] = hi2
        bands.append(top)
    return np.stack(bands)


_FBANK = filter_bank()


def filter_gains(band_gain: Tensor) -> Tensor:
    """[n, 4] combined band gains: each band's draw t_i (others 1) normalised to unit expected
    power, sum_b power_b * t_b^2 = 1, and the four multiplied (NVlabs' scheme)."""
    power = ops.convert_to_tensor(np.asarray(FILTER_POWER, np.float32))
    g = ops.ones_like(band_gain)
    bands = band_gain.shape[-1]
    for i in range(bands):
        t = ops.where(ops.convert_to_tensor(np.arange(bands) == i), band_gain, 1.0)  # t_i, others 1
        g = g * t / ops.sqrt(ops.sum(power * t * t, axis=-1, keepdims=True))
    return g


def _band_shifts(n: int) -> np.ndarray:
    """[43, n, n]: tap t of a centred 43-tap correlation with reflect padding, as matrices."""
    k = _FBANK.shape[1]
    pad = reflect_matrix(n, k // 2)
    return np.stack([pad[:, t:t + n] for t in range(k)])


def image_filter(x: Tensor, band_gain: Tensor) -> Tensor:
    """Filter each image with sum_b g_b * band_b, separably (rows, then columns), reflect padding."""
    _, h, w, _ = x.shape
    taps = ops.einsum("bk,kt->bt", filter_gains(band_gain), ops.convert_to_tensor(_FBANK.astype(np.float32)))
    for axis, n in ((2, w), (1, h)):
        m = ops.einsum("bt,tio->bio", taps, ops.convert_to_tensor(_band_shifts(n).astype(np.float32)))
        x = _along(x, m, axis)
    return x


# ---------------------------------------------------------------------------------------------
# Corruptions.

def add_noise(x: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    return x + noise * ops.cast(ops.reshape(sigma, (-1, 1, 1, 1)), x.dtype)


def cutout(x: Tensor, size: Tensor, cx: Tensor, cy: Tensor) -> Tensor:
    """Zero a square of side ``size`` (fraction of the side) centred at (cx, cy) in [0, 1]^2."""
    _, h, w, _ = x.shape
    px = ops.convert_to_tensor(((np.arange(w) + 0.5) / w).astype(np.float32))
    py = ops.convert_to_tensor(((np.arange(h) + 0.5) / h).astype(np.float32))
    r = ops.reshape(size, (-1, 1, 1)) / 2
    out_x = ops.abs(ops.reshape(px, (1, 1, -1)) - ops.reshape(cx, (-1, 1, 1))) >= r
    out_y = ops.abs(ops.reshape(py, (1, -1, 1)) - ops.reshape(cy, (-1, 1, 1))) >= r
    keep = ops.cast(ops.logical_or(out_x, out_y), x.dtype)
    return x * ops.expand_dims(keep, -1)


# ---------------------------------------------------------------------------------------------

def apply(x: Tensor, params: dict[str, Tensor], spec: AugmentSpec | str = DEFAULT_PRESET) -> Tensor:
    """Apply drawn parameters (identity where a transform was not chosen).

    Computed in float32 (images of another dtype are cast there and back, exactly for p = 0).
    """
    spec = preset(spec)
    _, h, w, c = x.shape
    dtype = x.dtype
    x = ops.cast(x, "float32")
    if spec.xflip:
        x = xflip(x, params["flip"])
    if spec.rotate90:
        x = rotate90(x, params["rot90"])
    if spec.xint:
        x = translate_int(x, params["tx"], params["ty"])
    if spec.geometric:
        x = ops.where(_is_identity_geometry(params), x,
                      resample(x, geometric_matrix(params, (h, w))))
    if spec.color:
        x = color(x, params)
    if spec.imgfilter:
        same = ops.reshape(ops.all(ops.equal(params["band_gain"], 1.0), axis=-1), (-1, 1, 1, 1))
        x = ops.where(same, x, image_filter(x, params["band_gain"]))
    if spec.noise:
        x = add_noise(x, params["noise"], params["noise_sigma"])
    if spec.cutout:
        x = cutout(x, params["cutout_size"], params["cutout_x"], params["cutout_y"])
    return ops.cast(x, dtype)


def augment(x: Tensor, p: Tensor, seed: Any, spec: AugmentSpec | str = DEFAULT_PRESET) -> Tensor:
    """Augment a batch with probability ``p`` per transform (differentiable in ``x``)."""
    n, h, w, c = x.shape
    if n is None:
        n = ops.shape(x)[0]
    return apply(x, sample_params((n, h, w, c), p, seed, spec), spec)


def adjust_p(p: float, rt: float, n_images: int, target: float = 0.6, speed_kimg: float = 500.0) -> float:
    """One ADA update: move p by sign(r_t - target) at a rate that spans 0..1 in ``speed_kimg``.

    ``rt`` is the mean of sign(D(real)) over the ``n_images`` real images since the last update.
    """
    step = n_images / (speed_kimg * 1000.0)
    if rt > target:
        p += step
    elif rt < target:
        p -= step
    return round(min(max(p, 0.0), 1.0), 12)  # no float drift around 0
