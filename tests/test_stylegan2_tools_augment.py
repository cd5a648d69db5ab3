"""ADA: each transform at p = 1 against a direct NumPy/SciPy reference; p = 0 is the identity."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
from scipy.spatial.transform import Rotation

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

pytestmark = pytest.mark.keras

N, S = 6, 16
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def aug():
    from busgan.stylegan2 import augment
    return augment


def _images(c=1, n=N, s=S, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, s, s, c)).astype(np.float32)


def _np(params):
    import keras
    return {k: keras.ops.convert_to_numpy(v) for k, v in params.items()}


def _run(aug, name, seed=3, c=1, x=None, **strengths):
    import keras
    spec = aug.AugmentSpec.only(name, **strengths)
    x = _images(c) if x is None else x
    params = aug.sample_params(x.shape, 1.0, seed, spec)
    out = keras.ops.convert_to_numpy(aug.apply(keras.ops.convert_to_tensor(x), params, spec))
    return x, _np(params), out


# --- pixel blitting ------------------------------------------------------------------------------

def test_xflip(aug):
    x, p, out = _run(aug, "xflip")
    ref = np.stack([im[:, ::-1] if f else im for im, f in zip(x, p["flip"])])
    assert 0 < p["flip"].sum() < N
    np.testing.assert_array_equal(out, ref)


def test_rotate90(aug):
    x, p, out = _run(aug, "rotate90", seed=5)
    ref = np.stack([np.rot90(im, k, axes=(0, 1)) for im, k in zip(x, p["rot90"])])
    assert len(set(p["rot90"].tolist())) > 1
    np.testing.assert_array_equal(out, ref)


def test_integer_translation(aug):
    x, p, out = _run(aug, "xint")
    pad = S
    ref = []
    for im, tx, ty in zip(x, p["tx"], p["ty"]):
        big = np.pad(im, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        ref.append(big[pad - ty:pad - ty + S, pad - tx:pad - tx + S])
    assert np.abs(p["tx"]).max() > 0 and np.abs(p["tx"]).max() <= S // 8
    np.testing.assert_array_equal(out, np.stack(ref))


# --- geometric transforms with the anti-aliasing filter ---------------------------------------

def _sym6():
    pywt = pytest.importorskip("pywt")  # PyWavelets (a dependency of ImageHash)
    return np.asarray(pywt.Wavelet("sym6").dec_lo)


def test_wavelet_coefficients(aug):
    """The filters are PyWavelets' sym2 / sym6, orthogonal: sum h[k] h[k + 2n] = delta(n)."""
    pywt = pytest.importorskip("pywt")
    for name, taps in (("sym2", aug.SYM2), ("sym6", aug.SYM6)):
        h = np.asarray(taps)
        np.testing.assert_allclose(h, pywt.Wavelet(name).dec_lo, atol=1e-15)
        np.testing.assert_allclose(h.sum(), np.sqrt(2), atol=1e-12)
        auto = [np.dot(h[:h.size - 2 * k], h[2 * k:]) for k in range(h.size // 2)]
        np.testing.assert_allclose(auto, np.eye(1, h.size // 2)[0], atol=1e-10)


def _ginv(p, i, s=S):
    """NVlabs' inverse matrix: S(1/s) R(pre) A(1/a, a) R(post) T(-t), R(t) = [[c, -s], [s, c]]."""
    rot = lambda t: np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])  # noqa: E731
    sc, a = p["scale"][i], p["aniso"][i]
    t = np.array([[1, 0, -p["frac_x"][i] * s], [0, 1, -p["frac_y"][i] * s], [0, 0, 1]])
    aniso = np.diag([1 / a, a, 1])
    return np.diag([1 / sc, 1 / sc, 1]) @ rot(p["theta_pre"][i]) @ aniso @ rot(p["theta_post"][i]) @ t


def _ref_resample(im, ginv):
    """The anti-aliased resampling in NumPy/SciPy (one channel, float64): reflect padding by
    side - 1, 2x upsampling (scipy.signal.upfirdn with 2 * sym6 / sum), bilinear sampling with
    zeros outside (map_coordinates 'grid-constant') at 2 G((u + 0.5) / 2) - 0.5, and 2x
    downsampling (correlation with the filter, crop 1, every second sample)."""
    h, w = im.shape
    f = _sym6() / _sym6().sum()
    x = np.pad(im.astype(np.float64), ((h - 1, h - 1), (w - 1, w - 1)), mode="reflect")
    for axis in (1, 0):
        n = x.shape[axis]
        x = np.apply_along_axis(lambda r: scipy.signal.upfirdn(2 * f, r, up=2)[5:5 + 2 * n], axis, x)
    uh, uw = x.shape
    oh, ow = 2 * (h + 6), 2 * (w + 6)
    gy, gx = np.mgrid[0:oh, 0:ow].astype(np.float64)
    qx, qy = (gx - (ow - 1) / 2 + 0.5) / 2, (gy - (oh - 1) / 2 + 0.5) / 2
    sx = 2 * (ginv[0, 0] * qx + ginv[0, 1] * qy + ginv[0, 2]) - 0.5 + (uw - 1) / 2
    sy = 2 * (ginv[1, 0] * qx + ginv[1, 1] * qy + ginv[1, 2]) - 0.5 + (uh - 1) / 2
    z = scipy.ndimage.map_coordinates(x, [sy, sx], order=1, mode="grid-constant", cval=0.0)
    for axis, n in ((1, w), (0, h)):
        z = np.apply_along_axis(lambda r: np.correlate(r, f, "valid")[1::2][:n], axis, z)
    return z


@pytest.mark.parametrize("name", ["scale", "rotate", "aniso", "xfrac"])
def test_geometric_antialiased(aug, name):
    x, p, out = _run(aug, name, seed=11)
    for i, im in enumerate(x):
        g = _ginv(p, i)
        for ch in range(im.shape[-1]):
            np.testing.assert_allclose(out[i, ..., ch], _ref_resample(im[..., ch], g), atol=2e-5)
    changed = {"scale": p["scale"] - 1, "aniso": p["aniso"] - 1, "rotate": p["theta_post"],
               "xfrac": p["frac_x"]}[name]
    assert np.all(np.abs(changed) > 1e-4)


def test_antialias_filter_pair(aug):
    """Up- then downsampling is the identity (the orthogonal filter pair); a zoom-out by 1.5 of
    a Nyquist-frequency pattern aliases into a strong pattern with plain bilinear sampling,
    only weakly through the filtered resampling."""
    import keras
    ops = keras.ops
    n = N
    one, zero = np.ones(n, np.float32), np.zeros(n, np.float32)
    base = {"scale": one, "aniso": one, "theta_pre": zero, "theta_post": zero, "frac_x": zero, "frac_y": zero}
    t = lambda d: {k: ops.convert_to_tensor(v) for k, v in d.items()}  # noqa: E731
    x = _images()
    ginv = aug.geometric_matrix(t(base), (S, S))
    ident = ops.convert_to_numpy(aug.resample(ops.convert_to_tensor(x), ginv))
    np.testing.assert_allclose(ident, x, atol=1e-5)

    stripes = np.tile((-1.0) ** np.arange(S), (n, S, 1))[..., None].astype(np.float32)
    g = aug.geometric_matrix(t({**base, "scale": one / 1.5}), (S, S))
    out = ops.convert_to_numpy(aug.resample(ops.convert_to_tensor(stripes), g))[0, ..., 0]
    c = (S - 1) / 2
    gy, gx = np.mgrid[0:S, 0:S] - c
    plain = scipy.ndimage.map_coordinates(stripes[0, ..., 0].astype(np.float64), [1.5 * gy + c, 1.5 * gx + c],
                                          order=1, mode="mirror")
    inner = (slice(4, 12), slice(4, 12))
    assert plain[inner].std() > 0.4
    assert out[inner].std() < 0.25 * plain[inner].std()


def test_identity_geometry_skips_resampling(aug):
    """Images whose drawn scale/rotation/... is the identity come out exactly unchanged."""
    import keras
    spec = aug.AugmentSpec.only("scale")
    x = _images()
    params = aug.sample_params(x.shape, 0.5, 4, spec)
    out = keras.ops.convert_to_numpy(aug.apply(keras.ops.convert_to_tensor(x), params, spec))
    same = _np(params)["scale"] == 1
    assert 0 < same.sum() < N
    np.testing.assert_array_equal(out[same], x[same])
    assert np.all(np.abs(out[~same] - x[~same]).max(axis=(1, 2, 3)) > 1e-3)


# --- colour -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["brightness", "contrast", "lumaflip"])
def test_color_grayscale(aug, name):
    x, p, out = _run(aug, name, seed=4)
    col = lambda k: p[k][:, None, None, None]  # noqa: E731
    ref = (1 - 2 * col("lumaflip")) * col("contrast") * (x + col("brightness"))
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    ident = {"brightness": 0, "contrast": 1, "lumaflip": 0}[name]
    assert np.any(p[name] != ident)


def test_color_rgb(aug):
    """All five colour transforms on RGB: saturation(hue(lumaflip(contrast * (x + brightness))))."""
    import keras
    x = _images(c=3)
    spec = aug.PRESETS["color"]
    params = aug.sample_params(x.shape, 1.0, 6, spec)
    out = keras.ops.convert_to_numpy(aug.apply(keras.ops.convert_to_tensor(x), params, spec))
    p = _np(params)
    v = np.ones(3) / np.sqrt(3)
    for i in range(N):
        y = p["contrast"][i] * (x[i].astype(np.float64) + p["brightness"][i])
        y = y - 2 * p["lumaflip"][i] * (y @ v)[..., None] * v
        y = y @ Rotation.from_rotvec(p["hue"][i] * v).as_matrix().T
        luma = (y @ v)[..., None] * v
        y = luma + p["saturation"][i] * (y - luma)
        np.testing.assert_allclose(out[i], y, atol=2e-5)
    assert np.all(p["hue"] != 0) and 0 < p["lumaflip"].sum() < N


def test_hue_saturation_leave_grayscale_alone(aug):
    for name in ("hue", "saturation"):
        x, _, out = _run(aug, name, c=1)
        np.testing.assert_array_equal(out, x)


# --- image-space filtering ---------------------------------------------------------------------

def _ref_bank():
    """The four band filters as chains of (dilated) half-band filters from pywt's sym2."""
    pywt = pytest.importorskip("pywt")
    h = np.asarray(pywt.Wavelet("sym2").dec_lo)
    lo = np.convolve(h, h[::-1]) / 2
    g = h * (-1.0) ** np.arange(4)
    hi = np.convolve(g, g[::-1]) / 2
    up = lambda f, k: np.insert(f, np.repeat(np.arange(1, f.size), k - 1), 0)  # noqa: E731

    def chain(*fs):
        out = fs[0]
        for f in fs[1:]:
            out = scipy.signal.convolve(out, f)
        return out

    bands = [chain(up(lo, 4), up(lo, 2), lo), chain(up(hi, 4), up(lo, 2), lo), chain(up(hi, 2), lo), hi]
    return np.stack([np.pad(b, ((43 - b.size) // 2,) * 2) for b in bands])


def test_filter_bank(aug):
    bank = aug.filter_bank()
    np.testing.assert_allclose(bank, _ref_bank(), atol=1e-12)
    np.testing.assert_allclose(bank.sum(axis=0), np.eye(1, 43, 21)[0], atol=1e-12)  # perfect reconstruction
    # each band passes its own octave of [0, pi] most: response at the octave centres
    w = np.pi * np.array([1 / 16, 3 / 16, 3 / 8, 3 / 4])
    resp = np.abs(np.exp(-1j * np.outer(w, np.arange(43))) @ bank.T)  # [frequency, band]
    assert np.all(resp.argmax(axis=1) == np.arange(4))


def test_image_filter_band_gains(aug):
    x, p, out = _run(aug, "imgfilter", seed=8)
    bank = _ref_bank()
    power = np.array([10, 1, 1, 1]) / 13
    assert np.all(p["band_gain"] != 1)
    for i in range(N):
        g = np.ones(4)
        for b in range(4):
            t = np.ones(4)
            t[b] = p["band_gain"][i, b]
            g *= t / np.sqrt(np.sum(power * t ** 2))
        f = g @ bank
        ref = scipy.ndimage.correlate1d(x[i].astype(np.float64), f, axis=1, mode="mirror")
        ref = scipy.ndimage.correlate1d(ref, f, axis=0, mode="mirror")
        np.testing.assert_allclose(out[i], ref, atol=2e-5)


# --- corruptions -------------------------------------------------------------------------------

def test_additive_noise(aug):
    x, p, out = _run(aug, "noise", seed=2)
    np.testing.assert_allclose(out, x + p["noise"] * p["noise_sigma"][:, None, None, None], atol=1e-6)
    resid = (out - x).reshape(N, -1)
    np.testing.assert_allclose(resid.std(axis=1), p["noise_sigma"], rtol=0.2)
    assert abs(resid.mean()) < 0.01
    # sigma ~ |N(0, 0.1)|: mean 0.1 * sqrt(2 / pi), rms 0.1 (144 draws: 20% is 3.6 standard errors)
    import keras
    spec = aug.PRESETS["noise"]
    sig = np.concatenate([keras.ops.convert_to_numpy(aug.sample_params(x.shape, 1.0, k, spec)["noise_sigma"])
                          for k in range(24)])
    assert sig.min() >= 0
    assert sig.mean() == pytest.approx(0.1 * np.sqrt(2 / np.pi), rel=0.2)
    assert np.sqrt(np.mean(sig ** 2)) == pytest.approx(0.1, rel=0.2)


def test_cutout(aug):
    x = _images() + 2.0  # no pixel is 0 before the cutout
    c = (np.arange(S) + 0.5) / S
    full = 0
    for seed in range(4):
        x, p, out = _run(aug, "cutout", seed=seed, x=x)
        assert np.all(p["cutout_size"] == 0.5)
        for i in range(N):
            inside = ((np.abs(c[None, :] - p["cutout_x"][i]) < 0.25)
                      & (np.abs(c[:, None] - p["cutout_y"][i]) < 0.25))
            np.testing.assert_array_equal(out[i], np.where(inside[..., None], 0.0, x[i]))
            assert (out[i] == 0).sum() <= (S // 2) ** 2
            if 0.25 <= p["cutout_x"][i] <= 0.75 and 0.25 <= p["cutout_y"][i] <= 0.75:
                assert (out[i] == 0).sum() == (S // 2) ** 2  # a quarter of the image
                full += 1
    assert full > 0


# --- the pipeline ------------------------------------------------------------------------------

def test_presets(aug):
    on = lambda name: {k for k in aug.PIPELINE if getattr(aug.PRESETS[name], k)}  # noqa: E731
    blit, geom = {"xflip", "rotate90", "xint"}, {"scale", "rotate", "aniso", "xfrac"}
    color = {"brightness", "contrast", "lumaflip", "hue", "saturation"}
    assert on("bg") == blit | geom and on("bgc") == blit | geom | color
    assert on("bgcfnc") == blit | geom | color | {"imgfilter", "noise", "cutout"}
    assert on("ultrasound") == (blit | geom | color) - {"rotate90", "lumaflip", "hue"}
    assert aug.PRESETS["ultrasound"].rotate_max == pytest.approx(1 / 18)
    assert aug.PRESETS["bgc"].rotate_max == 1 and aug.DEFAULT_PRESET == "bgc"


@pytest.mark.parametrize("c", [1, 3])
def test_p_zero_is_identity(aug, c):
    import keras
    x = _images(c=c)
    for name in aug.PRESETS:
        out = aug.augment(keras.ops.convert_to_tensor(x), 0.0, 7, name)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), x, err_msg=name)


def test_full_pipeline_runs_and_changes_images(aug):
    import keras
    for c in (1, 3):
        x = _images(c=c)
        out = keras.ops.convert_to_numpy(aug.augment(keras.ops.convert_to_tensor(x), 1.0, 7, "bgcfnc"))
        assert out.shape == x.shape and np.isfinite(out).all()
        assert np.abs(out - x).mean() > 0.1
    xb = keras.ops.cast(keras.ops.convert_to_tensor(_images()), "bfloat16")  # computed in float32
    assert aug.augment(xb, 1.0, 7, "bgc").dtype == xb.dtype
    same = aug.augment(xb, 0.0, 7, "bgc")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.ops.cast(same, "float32")),
                                  keras.ops.convert_to_numpy(keras.ops.cast(xb, "float32")))


def test_ultrasound_keeps_up_down(aug):
    """A vertical ramp (bright skin at the top) stays bright at the top under 'ultrasound' at
    p = 1 (translations off here: a large shift shows the reflect padding's mirrored band, as
    in NVlabs' pipeline); NVlabs' 'bgc' turns some images upside down or inverts them. With
    translations on, no image's geometry flips it vertically or turns it by more than 20 degrees."""
    import dataclasses
    import keras
    ramp = np.linspace(1, -1, S, dtype=np.float32)[:, None] * np.ones((1, S), np.float32)
    x = np.broadcast_to(ramp[None, ..., None], (N, S, S, 1)).copy()

    def corr(spec, seed):
        out = keras.ops.convert_to_numpy(aug.augment(keras.ops.convert_to_tensor(x), 1.0, seed, spec))
        rows = out[..., 0].mean(axis=2)
        return np.array([np.corrcoef(r, ramp[:, 0])[0, 1] for r in rows])

    us = dataclasses.replace(aug.PRESETS["ultrasound"], xint=0.0, xfrac=0.0)
    assert min(corr(us, seed).min() for seed in range(4)) > 0.7
    assert min(corr("bgc", seed).min() for seed in range(4)) < -0.5

    for seed in range(20):
        p = _np(aug.sample_params(x.shape, 1.0, seed, "ultrasound"))
        assert np.all(p["rot90"] == 0) and np.all(p["lumaflip"] == 0) and np.all(p["contrast"] > 0)
        assert max(np.abs(p["theta_pre"]).max(), np.abs(p["theta_post"]).max()) <= np.pi / 18 + 1e-6
        ginv = np.stack([_ginv(p, i) for i in range(N)])
        assert np.all(ginv[:, 1, 1] > 0)  # source y increases with output y: never upside down


def test_adjust_p_rises_when_d_overfits(aug):
    p = 0.0
    for _ in range(100):
        p = aug.adjust_p(p, rt=0.9, n_images=4 * 32)
    assert p == pytest.approx(100 * 128 / 500_000)
    assert aug.adjust_p(0.0, rt=0.1, n_images=128) == 0.0
    assert aug.adjust_p(1.0, rt=0.9, n_images=10**9) == 1.0


def test_ada_speed_scales_with_run_length(aug):
    assert aug.speed_kimg(0.0, 6) == pytest.approx(0.6)      # the demo
    assert aug.speed_kimg(0.0, 50) == pytest.approx(5.0)     # gpu-phantom
    assert aug.speed_kimg(0.0, 10000) == 500.0               # long runs: NVlabs' 500
    assert aug.speed_kimg(100.0, 6) == 100.0                 # an explicit value wins
    # the demo (6 kimg, batch 16, an update every 4 steps): p can reach 1 within a tenth of the run
    p, shown = 0.0, 0
    while p < 1.0:
        p = aug.adjust_p(p, 0.9, 64, 0.6, aug.speed_kimg(0.0, 6))
        shown += 64
    assert shown <= 600 + 64
    # the old fixed 500 kimg left p near 0.012 after the whole run
    assert 6000 / 500_000 == pytest.approx(0.012)


def test_config_defaults_and_shipped_configs():
    from busgan.config import GanConfig, load_config
    cfg = GanConfig()
    assert cfg.ada_preset == "bgc" and cfg.ada_kimg == 0.0
    demo = load_config(ROOT / "configs" / "demo.toml").gan
    assert demo.ada_preset == "ultrasound" and demo.ada_kimg == 0.0
    for name in ("demo", "gpu-phantom"):
        gan = tomllib.loads((ROOT / "configs" / f"{name}.toml").read_text())["gan"]
        assert gan["augment"] == "ada" and gan["ada_preset"] == "ultrasound", name
    assert tomllib.loads((ROOT / "configs" / "paper.toml").read_text())["gan"]["augment"] == "none"


def test_compiles_and_passes_gradients(aug):
    """Inside one compiled program (p a tensor): finite, non-zero input gradients through every
    transform ('bgcfnc') at p = 0.8, and at p = 0 the exact identity (gradient exactly 2 x)."""
    import keras
    from busgan.stylegan2 import autodiff
    x = _images()
    seed = autodiff.seed_tensor(9)
    run = autodiff.compile(lambda x, p, seed: autodiff.input_grad(
        lambda v: keras.ops.sum(aug.augment(v, p, seed, "bgcfnc") ** 2), x))
    xt = keras.ops.convert_to_tensor(x)
    _, g = run(xt, keras.ops.convert_to_tensor(0.8), seed)
    g = keras.ops.convert_to_numpy(g)
    assert np.isfinite(g).all() and np.abs(g).sum() > 0 and np.abs(g - 2 * x).max() > 0.1
    y, g = run(xt, keras.ops.convert_to_tensor(0.0), seed)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(g), 2 * x)
    total = float(np.sum(x.astype(np.float64) ** 2))
    assert float(keras.ops.convert_to_numpy(y)) == pytest.approx(total, rel=1e-5)
