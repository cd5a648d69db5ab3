"""ADA: each transform at p = 1 against a direct NumPy/SciPy reference; p = 0 is the identity."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

pytestmark = pytest.mark.keras

N, S = 6, 16


@pytest.fixture(scope="module")
def aug():
    from busgan.stylegan2 import augment
    return augment


def _images():
    return np.random.default_rng(0).uniform(-1, 1, (N, S, S, 2)).astype(np.float32)


def _run(aug, name, seed=3):
    import keras
    spec = aug.AugmentSpec.only(name)
    x = _images()
    params = aug.sample_params(N, S, 1.0, seed, spec)
    out = keras.ops.convert_to_numpy(aug.apply(keras.ops.convert_to_tensor(x), params, spec))
    return x, {k: keras.ops.convert_to_numpy(v) for k, v in params.items()}, out


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


def _forward(s, pre, a, post):
    rot = lambda t: np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])  # noqa: E731
    return rot(post) @ np.diag([a, 1 / a]) @ rot(pre) @ np.diag([s, s])


@pytest.mark.parametrize("name", ["scale", "rotate", "aniso"])
def test_geometric(aug, name):
    x, p, out = _run(aug, name, seed=11)
    c = (S - 1) / 2
    gy, gx = np.mgrid[0:S, 0:S].astype(np.float64) - c
    for i, im in enumerate(x):
        minv = np.linalg.inv(_forward(p["scale"][i], p["theta_pre"][i], p["aniso"][i], p["theta_post"][i]))
        sx = minv[0, 0] * gx + minv[0, 1] * gy + c
        sy = minv[1, 0] * gx + minv[1, 1] * gy + c
        for ch in range(im.shape[-1]):
            ref = scipy.ndimage.map_coordinates(im[..., ch].astype(np.float64), [sy, sx],
                                                order=1, mode="mirror")
            np.testing.assert_allclose(out[i, ..., ch], ref, atol=2e-4)
    changed = {"scale": p["scale"], "aniso": p["aniso"], "rotate": p["theta_pre"]}[name]
    assert np.any(np.abs(changed - (0 if name == "rotate" else 1)) > 1e-3)


@pytest.mark.parametrize("name", ["brightness", "contrast"])
def test_color(aug, name):
    x, p, out = _run(aug, name)
    ref = x * p["contrast"][:, None, None, None] + p["brightness"][:, None, None, None]
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    assert np.any(p[name] != (0 if name == "brightness" else 1))


def test_p_zero_is_identity(aug):
    import keras
    x = _images()
    out = aug.augment(keras.ops.convert_to_tensor(x), 0.0, 7)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), x, atol=1e-6)


def test_full_pipeline_runs_and_changes_images(aug):
    import keras
    x = _images()
    out = keras.ops.convert_to_numpy(aug.augment(keras.ops.convert_to_tensor(x), 1.0, 7))
    assert out.shape == x.shape and np.isfinite(out).all()
    assert np.abs(out - x).mean() > 0.1


def test_adjust_p_rises_when_d_overfits(aug):
    p = 0.0
    for _ in range(100):
        p = aug.adjust_p(p, rt=0.9, n_images=4 * 32)
    assert p == pytest.approx(100 * 128 / 500_000)
    assert aug.adjust_p(0.0, rt=0.1, n_images=128) == 0.0
    assert aug.adjust_p(1.0, rt=0.9, n_images=10**9) == 1.0


def test_compiles_and_passes_gradients(aug):
    import keras
    from busgan.stylegan2 import autodiff
    x = keras.ops.convert_to_tensor(_images())
    seed = autodiff.seed_tensor(9)
    p = keras.ops.convert_to_tensor(0.8)

    def f(x, p, seed):
        return autodiff.input_grad(lambda v: keras.ops.sum(aug.augment(v, p, seed) ** 2), x)

    y, g = autodiff.compile(f)(x, p, seed)
    g = keras.ops.convert_to_numpy(g)
    assert np.isfinite(g).all() and np.abs(g).sum() > 0
