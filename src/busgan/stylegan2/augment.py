"""Adaptive discriminator augmentation (ADA, Karras et al. 2020) in ``keras.ops``.

Every image the discriminator sees (real and generated) goes through the same random,
differentiable pipeline, each transform applied with probability ``p``; ``p`` follows the
overfitting heuristic r_t = E[sign(D(real))] toward 0.6. Because the transforms are
differentiable in the pixels, the generator still receives gradients through them, and since
each is applied with p < 1 the generator cannot learn the augmentations ("non-leaking").

Transforms, in order, per image (images NHWC, square, values around [-1, 1]):
x-flip, 90-degree rotation, integer translation (up to 1/8 of the side, reflect padding),
then one bilinear resampling (reflect padding) for isotropic scaling (log2-normal, std 0.2),
rotation (uniform, probability 1 - sqrt(1 - p) twice, before and after the anisotropic part),
anisotropic scaling (log2-normal, std 0.2); then brightness (+N(0, 0.2)) and contrast
(x2^N(0, 0.5)). Simplification against NVlabs: plain bilinear sampling, no anti-aliasing
wavelet filter, no colour transforms beyond brightness and contrast (grayscale data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from keras import ops

from busgan.stylegan2 import autodiff

Tensor = Any
PIPELINE = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "brightness", "contrast")


@dataclass(frozen=True)
class AugmentSpec:
    """Which transforms are on (1.0) or off (0.0), and their strengths."""

    xflip: float = 1.0
    rotate90: float = 1.0
    xint: float = 1.0
    scale: float = 1.0
    rotate: float = 1.0
    aniso: float = 1.0
    brightness: float = 1.0
    contrast: float = 1.0
    xint_max: float = 0.125
    scale_std: float = 0.2
    aniso_std: float = 0.2
    brightness_std: float = 0.2
    contrast_std: float = 0.5

    @classmethod
    def only(cls, name: str) -> "AugmentSpec":
        """A spec with one transform on (for tests and ablations)."""
        return cls(**{k: float(k == name) for k in PIPELINE})


class _Draws:
    """Independent draws from one seed tensor: draw k uses ``fold_in(seed, k)``."""

    def __init__(self, seed: Any) -> None:
        self.seed = autodiff.seed_tensor(seed) if isinstance(seed, int) else seed
        self.k = 0

    def _next(self) -> Any:
        self.k += 1
        return autodiff.fold_in(self.seed, self.k)

    def uniform(self, shape: tuple[int, ...]) -> Tensor:
        return autodiff.uniform(shape, self._next())

    def normal(self, shape: tuple[int, ...]) -> Tensor:
        return autodiff.normal(shape, self._next())


def sample_params(n: int, size: int, p: Tensor, seed: Any, spec: AugmentSpec = AugmentSpec()
                  ) -> dict[str, Tensor]:
    """Draw per-image parameters; a transform not chosen (probability 1 - p) is the identity.

    ``seed``: an int, or an int32 seed tensor of shape [2] (``autodiff.seed_tensor``).
    """
    gen = _Draws(seed)
    p = ops.cast(p, "float32")

    def chosen(weight: float, prob: Tensor | None = None) -> Tensor:
        u = gen.uniform((n,))
        return ops.cast(u < (p if prob is None else prob) * weight, "float32")

    out: dict[str, Tensor] = {}
    out["flip"] = chosen(spec.xflip) * ops.cast(gen.uniform((n,)) < 0.5, "float32")
    out["rot90"] = ops.cast(chosen(spec.rotate90) * ops.floor(gen.uniform((n,)) * 4), "int32")
    m = chosen(spec.xint)
    tmax = spec.xint_max * size
    shift = ops.round((gen.uniform((n, 2)) * 2 - 1) * tmax)
    out["tx"] = ops.cast(shift[:, 0] * m, "int32")
    out["ty"] = ops.cast(shift[:, 1] * m, "int32")
    out["scale"] = ops.exp2(gen.normal((n,)) * spec.scale_std * chosen(spec.scale))
    p_rot = 1 - ops.sqrt(ops.maximum(1 - p, 0.0))
    out["theta_pre"] = (gen.uniform((n,)) * 2 - 1) * math.pi * chosen(spec.rotate, p_rot)
    out["aniso"] = ops.exp2(gen.normal((n,)) * spec.aniso_std * chosen(spec.aniso))
    out["theta_post"] = (gen.uniform((n,)) * 2 - 1) * math.pi * chosen(spec.rotate, p_rot)
    out["brightness"] = gen.normal((n,)) * spec.brightness_std * chosen(spec.brightness)
    out["contrast"] = ops.exp2(gen.normal((n,)) * spec.contrast_std * chosen(spec.contrast))
    return out


def _reflect(i: Tensor, n: int) -> Tensor:
    """Reflect integer indices into [0, n) without repeating the edge (numpy 'reflect')."""
    if n == 1:
        return ops.zeros_like(i)
    period = 2 * n - 2
    i = ops.mod(i, period)
    return ops.where(i >= n, period - i, i)


def _gather(x: Tensor, iy: Tensor, ix: Tensor) -> Tensor:
    """out[b, y, x] = x[b, iy[b, y, x], ix[b, y, x]] (indices already in range)."""
    b, h, w, c = ops.shape(x)
    flat = ops.reshape(x, (-1, c))
    base = ops.reshape(ops.arange(b, dtype="int32") * (h * w), (-1, 1, 1))
    idx = base + iy * w + ix
    return ops.reshape(ops.take(flat, ops.reshape(idx, (-1,)), axis=0), (b, h, w, c))


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


def inverse_matrix(params: dict[str, Tensor]) -> Tensor:
    """Per-image 2x2 matrix mapping output pixel offsets (x, y) from the centre to source ones.

    The forward transform is R(post) A(aniso) R(pre) S(scale); its inverse is composed from the
    inverse factors in reverse order.
    """
    def rot(t: Tensor) -> Tensor:
        c, s = ops.cos(t), ops.sin(t)
        return ops.stack([ops.stack([c, -s], -1), ops.stack([s, c], -1)], -2)

    def diag(a: Tensor, b: Tensor) -> Tensor:
        z = ops.zeros_like(a)
        return ops.stack([ops.stack([a, z], -1), ops.stack([z, b], -1)], -2)

    s, a = params["scale"], params["aniso"]
    m = diag(1 / s, 1 / s)
    m = ops.matmul(m, rot(-params["theta_pre"]))
    m = ops.matmul(m, diag(1 / a, a))
    return ops.matmul(m, rot(-params["theta_post"]))


def resample(x: Tensor, minv: Tensor) -> Tensor:
    """Bilinear resampling: out(u) = x(minv @ (u - c) + c), reflect padding outside."""
    _, h, w, _ = x.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    gy, gx = ops.meshgrid(ops.arange(h, dtype="float32") - cy, ops.arange(w, dtype="float32") - cx,
                          indexing="ij")
    minv = ops.cast(minv, "float32")
    m = lambda i, j: ops.reshape(minv[:, i, j], (-1, 1, 1))  # noqa: E731
    sx = m(0, 0) * gx + m(0, 1) * gy + cx
    sy = m(1, 0) * gx + m(1, 1) * gy + cy
    x0, y0 = ops.floor(sx), ops.floor(sy)
    wx, wy = ops.expand_dims(sx - x0, -1), ops.expand_dims(sy - y0, -1)
    x0i, y0i = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    xa, xb = _reflect(x0i, w), _reflect(x0i + 1, w)
    ya, yb = _reflect(y0i, h), _reflect(y0i + 1, h)
    wx, wy = ops.cast(wx, x.dtype), ops.cast(wy, x.dtype)
    top = _gather(x, ya, xa) * (1 - wx) + _gather(x, ya, xb) * wx
    bot = _gather(x, yb, xa) * (1 - wx) + _gather(x, yb, xb) * wx
    return top * (1 - wy) + bot * wy


def color(x: Tensor, brightness: Tensor, contrast: Tensor) -> Tensor:
    """x * contrast + brightness, per image (contrast about 0, the mid-grey of [-1, 1])."""
    c = ops.cast(ops.reshape(contrast, (-1, 1, 1, 1)), x.dtype)
    b = ops.cast(ops.reshape(brightness, (-1, 1, 1, 1)), x.dtype)
    return x * c + b


def apply(x: Tensor, params: dict[str, Tensor], spec: AugmentSpec = AugmentSpec()) -> Tensor:
    """Apply drawn parameters (identity where a transform was not chosen)."""
    if spec.xflip:
        x = xflip(x, params["flip"])
    if spec.rotate90:
        x = rotate90(x, params["rot90"])
    if spec.xint:
        x = translate_int(x, params["tx"], params["ty"])
    if spec.scale or spec.rotate or spec.aniso:
        x = resample(x, inverse_matrix(params))
    if spec.brightness or spec.contrast:
        x = color(x, params["brightness"], params["contrast"])
    return x


def augment(x: Tensor, p: Tensor, seed: Any, spec: AugmentSpec = AugmentSpec()) -> Tensor:
    """Augment a batch with probability ``p`` per transform (differentiable in ``x``)."""
    n, size = x.shape[0], x.shape[1]
    if n is None:
        n = ops.shape(x)[0]
    return apply(x, sample_params(n, size, p, seed, spec), spec)


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
