"""StyleGAN2's low-level operations in ``keras.ops`` only (NHWC), so they run on every backend.

- ``upfirdn2d``: upsample (zero insertion), pad, FIR filter, downsample. The 4-tap filter is
  applied as a sum of shifted slices: separable, cheap, and twice differentiable everywhere.
- ``modulated_conv2d``: the style scales the input channels and demodulation scales the output
  channels, which equals convolving each sample with its own modulated, demodulated weight but
  needs no grouped convolution.
- ``bias_act``: bias, leaky ReLU with gain sqrt(2) (keeps the signal's magnitude), optional clamp.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from keras import ops

LRELU_ALPHA = 0.2
LRELU_GAIN = math.sqrt(2.0)
FIR = (1.0, 3.0, 3.0, 1.0)


def fir_1d(taps: Sequence[float] = FIR) -> np.ndarray:
    """The 1-D filter normalised to sum 1 (the 2-D filter is its outer product)."""
    f = np.asarray(taps, dtype=np.float64)
    return f / f.sum()


def _take(x, start: int, stop: int, axis: int, step: int = 1):
    idx = [slice(None)] * len(x.shape)
    idx[axis] = slice(start, stop, step)
    return x[tuple(idx)]


def _upfirdn_axis(x, f: np.ndarray, up: int, down: int, pad0: int, pad1: int, axis: int):
    """Upsample, pad, convolve with ``f`` and downsample along one spatial axis."""
    if up > 1:
        zeros = ops.zeros_like(x)
        x = ops.stack([x] + [zeros] * (up - 1), axis=axis + 1)
        shape = list(x.shape)
        shape[axis:axis + 2] = [shape[axis] * up]
        x = ops.reshape(x, [-1 if s is None else s for s in shape])
    if pad0 or pad1:
        widths = [(0, 0)] * len(x.shape)
        widths[axis] = (pad0, pad1)
        x = ops.pad(x, widths)
    n = x.shape[axis]
    k = len(f)
    out = n - k + 1
    taps = f[::-1]  # true convolution
    y = None
    for i, t in enumerate(taps):
        term = _take(x, i, i + out, axis) * float(t)
        y = term if y is None else y + term
    if down > 1:
        y = _take(y, 0, None, axis, down)
    return y


def upfirdn2d(x, f: np.ndarray | None = None, up: int = 1, down: int = 1,
              padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0):
    """NVlabs' upfirdn2d on NHWC with a separable filter ``f`` (1-D, applied along H and W).

    ``padding`` is (x0, x1, y0, y1). ``gain`` multiplies the result (use up**2 when
    upsampling so zero insertion does not darken the image).
    """
    f = fir_1d() if f is None else np.asarray(f, np.float64)
    px0, px1, py0, py1 = padding
    y = _upfirdn_axis(x, f, up, down, py0, py1, axis=1)
    y = _upfirdn_axis(y, f, up, down, px0, px1, axis=2)
    return y * gain if gain != 1.0 else y


def upsample2d(x, f: np.ndarray | None = None, up: int = 2):
    """Upsample by ``up`` with the FIR filter; output side = input side * up."""
    f = fir_1d() if f is None else f
    p = len(f) - up
    pad0, pad1 = (p + 1) // 2 + up - 1, p // 2
    return upfirdn2d(x, f, up=up, padding=(pad0, pad1, pad0, pad1), gain=up * up)


def downsample2d(x, f: np.ndarray | None = None, down: int = 2):
    """Low-pass with the FIR filter, then keep every ``down``-th pixel."""
    f = fir_1d() if f is None else f
    p = len(f) - down
    pad0, pad1 = (p + 1) // 2, p // 2
    return upfirdn2d(x, f, down=down, padding=(pad0, pad1, pad0, pad1))


def conv2d_resample(x, w, up: int = 1, down: int = 1, f: np.ndarray | None = None):
    """Convolution (weight ``[kh, kw, in, out]``, 'same' size) with optional 2x up/down.

    Up: transposed convolution with stride 2, then the FIR filter (NVlabs' order).
    Down: FIR filter, then strided convolution, so no aliasing is introduced.
    """
    f = fir_1d() if f is None else f
    k = w.shape[0]
    if up == 2:
        # Keras' transposed-convolution kernel is [kh, kw, out, in].
        y = ops.conv_transpose(x, ops.transpose(w, (0, 1, 3, 2)), strides=2, padding="valid")
        p = (len(f) - up) - (k - 1)
        pad0, pad1 = (p + 1) // 2 + up - 1, p // 2 + 1
        return upfirdn2d(y, f, padding=(pad0, pad1, pad0, pad1), gain=up * up)
    if down == 2:
        if k == 1:
            return ops.conv(downsample2d(x, f), w, strides=1, padding="valid")
        p = (len(f) - down) + (k - 1)
        pad0, pad1 = (p + 1) // 2, p // 2
        y = upfirdn2d(x, f, padding=(pad0, pad1, pad0, pad1))
        return ops.conv(y, w, strides=2, padding="valid")
    if k == 1:
        return ops.conv(x, w, strides=1, padding="valid")
    return ops.conv(x, w, strides=1, padding="same")


def bias_act(x, b=None, act: str = "linear", gain: float | None = None,
             clamp: float | None = None, alpha: float = LRELU_ALPHA):
    """``act(x + b) * gain``, clamped to [-clamp, clamp]; lrelu's default gain is sqrt(2)."""
    if b is not None:
        x = x + ops.cast(b, x.dtype)
    if act == "lrelu":
        x = ops.leaky_relu(x, negative_slope=alpha)
        gain = LRELU_GAIN if gain is None else gain
    elif act != "linear":
        raise ValueError(f"unknown activation {act!r}")
    if gain is not None and gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = ops.clip(x, -clamp, clamp)
    return x


def modulated_conv2d(x, w, styles, demodulate: bool = True, up: int = 1,
                     f: np.ndarray | None = None, eps: float = 1e-8):
    """Convolve sample n with ``w * styles[n]`` (scaled per input channel), demodulated.

    ``x``: ``[N, H, W, I]``; ``w``: ``[kh, kw, I, O]`` (already equalised); ``styles``: ``[N, I]``.
    Demodulation divides output channel o of sample n by sqrt(sum_{kh,kw,i} (w s_n)^2 + eps),
    which restores unit variance without the instance normalisation of StyleGAN1.
    """
    styles = ops.cast(styles, x.dtype)
    w = ops.cast(w, x.dtype)
    x = x * styles[:, None, None, :]
    y = conv2d_resample(x, w, up=up, f=f)
    if demodulate:
        wsq = ops.sum(ops.square(ops.cast(w, "float32")), axis=(0, 1))  # [I, O]
        d = ops.rsqrt(ops.matmul(ops.square(ops.cast(styles, "float32")), wsq) + eps)  # [N, O]
        y = y * ops.cast(d, y.dtype)[:, None, None, :]
    return y


def normalize_2nd_moment(x, axis: int = 1, eps: float = 1e-8):
    """Scale each vector to unit root-mean-square (StyleGAN's 'pixel norm' of z)."""
    return x * ops.rsqrt(ops.mean(ops.square(x), axis=axis, keepdims=True) + eps)


def minibatch_stddev(x, group_size: int = 4, num_channels: int = 1):
    """Append the group standard deviation as ``num_channels`` extra feature maps.

    Samples n, n + M, n + 2M, ... (M = N / group) form a group, as in NVlabs' code; the batch
    must be divisible by the group size (``min(group_size, N)``).
    """
    n, h, w, c = x.shape
    g = min(group_size, n) if n is not None else group_size
    if n is not None and n % g:
        raise ValueError(f"minibatch stddev: batch {n} is not divisible by group size {g}")
    f = num_channels
    y = ops.reshape(ops.cast(x, "float32"), (g, -1, h, w, f, c // f))
    y = y - ops.mean(y, axis=0, keepdims=True)
    y = ops.sqrt(ops.mean(ops.square(y), axis=0) + 1e-8)  # [M, H, W, F, c]
    y = ops.mean(y, axis=(1, 2, 4))  # [M, F]
    y = ops.tile(y[None, :, None, None, :], (g, 1, h, w, 1))  # [G, M, H, W, F]
    y = ops.reshape(y, (-1, h, w, f))
    return ops.concatenate([x, ops.cast(y, x.dtype)], axis=-1)
