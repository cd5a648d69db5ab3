"""StyleGAN2 ops against plain NumPy/SciPy references written here (run under both backends)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from keras import ops
from scipy.signal import convolve2d, correlate2d

from busgan.stylegan2 import autodiff
from busgan.stylegan2 import ops as sops

pytestmark = pytest.mark.keras
F = np.array([1.0, 3.0, 3.0, 1.0]) / 8.0


def np_(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def ref_upfirdn(x, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """Zero insertion, zero padding, 2-D convolution with the outer-product filter, decimation."""
    n, h, w, c = x.shape
    px0, px1, py0, py1 = pad
    out = []
    for i in range(n):
        chans = []
        for j in range(c):
            z = np.zeros((h * up, w * up))
            z[::up, ::up] = x[i, :, :, j]
            z = np.pad(z, ((py0, py1), (px0, px1)))
            y = convolve2d(z, np.outer(F, F), mode="valid") * gain
            chans.append(y[::down, ::down])
        out.append(np.stack(chans, -1))
    return np.stack(out)


def ref_conv(x, w, up=1, down=1):
    """'same'-size convolution with optional transposed-conv upsampling or filtered downsampling."""
    n, h, wd, ci = x.shape
    k, co = w.shape[0], w.shape[3]
    if up == 2:
        xz = np.zeros((n, 2 * h - 1, 2 * wd - 1, ci))
        xz[:, ::2, ::2] = x
        y = np.zeros((n, 2 * h + 1, 2 * wd + 1, co))
        for b in range(n):
            for o in range(co):
                y[b, :, :, o] = sum(convolve2d(xz[b, :, :, i], w[:, :, i, o], "full") for i in range(ci))
        return ref_upfirdn(y, pad=(1, 1, 1, 1), gain=4.0)
    if down == 2:
        if k == 1:
            return ref_upfirdn(x, down=2, pad=(1, 1, 1, 1)) @ w[0, 0]
        x = ref_upfirdn(x, pad=(2, 2, 2, 2))
    mode = "same" if down == 1 else "valid"
    y = np.stack([np.stack([sum(correlate2d(x[b, :, :, i], w[:, :, i, o], mode) for i in range(ci))
                            for o in range(co)], -1) for b in range(n)])
    return y[:, ::down, ::down] if down > 1 else y


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (1, 1, (1, 2, 0, 3)),
                                         (2, 2, (1, 1, 1, 1))])
def test_upfirdn2d_matches_reference(up, down, pad):
    x = np.random.default_rng(0).standard_normal((2, 8, 6, 3))
    got = np_(sops.upfirdn2d(x.astype("float32"), up=up, down=down, padding=pad, gain=float(up * up)))
    want = ref_upfirdn(x, up, down, pad, gain=float(up * up))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_upsample_and_downsample_sizes_and_dc_gain():
    x = np.ones((1, 8, 8, 2), "float32")
    up = np_(sops.upsample2d(x))
    down = np_(sops.downsample2d(x))
    assert up.shape == (1, 16, 16, 2) and down.shape == (1, 4, 4, 2)
    np.testing.assert_allclose(up[:, 2:-2, 2:-2], 1.0, atol=1e-6)  # constant image kept away from borders
    np.testing.assert_allclose(down[:, 1:-1, 1:-1], 1.0, atol=1e-6)


@pytest.mark.parametrize("k,up,down", [(3, 1, 1), (3, 2, 1), (3, 1, 2), (1, 1, 2), (1, 1, 1)])
def test_conv2d_resample_matches_reference(k, up, down):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 8, 3))
    w = rng.standard_normal((k, k, 3, 4))
    got = np_(sops.conv2d_resample(x.astype("float32"), w.astype("float32"), up=up, down=down))
    want = ref_conv(x, w, up, down)
    assert got.shape == (2, 8 * up // down, 8 * up // down, 4)
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("up,demod", [(1, True), (2, True), (1, False)])
def test_modulated_conv_equals_per_sample_weights(up, demod):
    """Scaling activations then the output equals each sample's own modulated, demodulated weight."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 8, 8, 4))
    w = rng.standard_normal((3, 3, 4, 5))
    s = rng.standard_normal((3, 4)) + 1.0
    got = np_(sops.modulated_conv2d(x.astype("float32"), w.astype("float32"), s.astype("float32"),
                                    demodulate=demod, up=up))
    want = []
    for n in range(3):
        wn = w * s[n][None, None, :, None]
        if demod:
            wn = wn / np.sqrt((wn ** 2).sum(axis=(0, 1, 2), keepdims=True) + 1e-8)
        want.append(ref_conv(x[n:n + 1], wn, up=up)[0])
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-4, atol=1e-4)


def test_bias_act():
    x = np.linspace(-3, 3, 24).reshape(2, 3, 4).astype("float32")
    b = np.array([0.5, -1.0, 0.0, 2.0], "float32")
    y = x + b
    want = np.where(y > 0, y, 0.2 * y) * math.sqrt(2)
    np.testing.assert_allclose(np_(sops.bias_act(x, b, "lrelu")), want, rtol=1e-6)
    np.testing.assert_allclose(np_(sops.bias_act(x, b, "lrelu", clamp=1.0)), np.clip(want, -1, 1), rtol=1e-6)
    np.testing.assert_allclose(np_(sops.bias_act(x, b, "linear")), y, rtol=1e-6)


def test_minibatch_stddev_matches_loop():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 4, 4, 6))
    got = np_(sops.minibatch_stddev(x.astype("float32"), group_size=4))
    assert got.shape == (8, 4, 4, 7)
    np.testing.assert_allclose(got[..., :6], x, atol=1e-6)
    m = 8 // 4
    for n in range(8):
        group = x[[n % m + g * m for g in range(4)]]
        want = np.sqrt(group.var(axis=0) + 1e-8).mean()
        np.testing.assert_allclose(got[n, :, :, 6], want, rtol=1e-5)


def test_normalize_2nd_moment():
    z = np.random.default_rng(4).standard_normal((5, 16)).astype("float32") * 3
    y = np_(sops.normalize_2nd_moment(z))
    np.testing.assert_allclose((y ** 2).mean(axis=1), 1.0, rtol=1e-5)


def test_equalised_layers_scale_weights_at_run_time():
    from busgan.stylegan2.networks import Conv, Dense, _Init
    rng = np.random.default_rng(5)
    dense = Dense(16, 8, _Init(0), lr_mul=0.01, bias_init=0.5, act="lrelu")
    x = rng.standard_normal((4, 16)).astype("float32")
    w, b = np_(dense.w), np_(dense.b)
    assert abs(w.std() - 100.0) < 30.0  # stored N(0, 1) / lr_mul
    y = x @ (w * 0.01 / 4.0) + b * 0.01
    np.testing.assert_allclose(np_(dense(x)), np.where(y > 0, y, 0.2 * y) * math.sqrt(2), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b * 0.01, 0.5, rtol=1e-6)  # effective bias = bias_init
    conv = Conv(3, 4, 3, _Init(1), act="linear", down=2)
    xi = rng.standard_normal((2, 8, 8, 3))
    want = ref_conv(xi, np_(conv.w) / math.sqrt(27), down=2)
    np.testing.assert_allclose(np_(conv(xi.astype("float32"))), want, rtol=1e-4, atol=1e-4)


def test_seeded_random_is_deterministic_and_per_sample():
    s = autodiff.seed_tensor(7)
    a = np_(autodiff.normal((4, 5), s))
    np.testing.assert_array_equal(a, np_(autodiff.normal((4, 5), s)))
    assert not np.allclose(a, np_(autodiff.normal((4, 5), autodiff.fold_in(s, 1))))
    seeds = autodiff.seed_tensor([1, 2, 3])
    full = np_(autodiff.normal((3, 6), seeds))
    np.testing.assert_array_equal(full[1:], np_(autodiff.normal((2, 6), seeds[1:])))
    folded = np_(autodiff.fold_in(seeds, 4))
    np.testing.assert_array_equal(folded[2], np_(autodiff.fold_in(seeds[2], 4)))
    assert len({tuple(r) for r in folded}) == 3
