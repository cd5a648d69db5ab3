"""Compiled phases: determinism, and a real (tiny) learning check on discs-on-noise images."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from scipy import linalg
from scipy.signal import correlate2d

from busgan.config import GanConfig
from busgan.stylegan2 import autodiff
from busgan.stylegan2.networks import build_discriminator, build_generator
from busgan.stylegan2.snapshot import flatten, unflatten_like
from busgan.stylegan2.steps import init_state, make_phases, synthesize


def state_to_numpy(state):
    """The state as named host arrays, as a snapshot stores it."""
    return flatten(keras.tree.map_structure(ops.convert_to_numpy, state))


pytestmark = [pytest.mark.keras, pytest.mark.slow]  # compiles every training phase, then 300 steps

RES, BATCH = 16, 16
CFG = GanConfig(preset="custom", resolution=RES, channels=1, channel_base=512, channel_max=32, z_dim=32,
                mapping_layers=2, batch_size=BATCH, gamma=0.5, lr=0.0025, ema_kimg=0.5)


@pytest.fixture(scope="module")
def gan():
    """One tiny GAN and its compiled phases, shared (compiling is most of the cost)."""
    G, D = build_generator(CFG, seed=0), build_discriminator(CFG, seed=0)
    return G, D, make_phases(G, D, CFG)


def discs(n: int, rng: np.random.Generator) -> np.ndarray:
    """Dark noisy background with one bright disc (radius 3.2) at a random position."""
    yy, xx = np.mgrid[:RES, :RES]
    img = rng.normal(-0.6, 0.15, (n, RES, RES)).astype("float32")
    for i in range(n):
        cy, cx = rng.uniform(4, RES - 4, 2)
        img[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= 3.2 ** 2] = 0.9
    return img[..., None]


_yy, _xx = np.mgrid[-4:5, -4:5]
_TEMPLATE = ((_yy ** 2 + _xx ** 2) <= 3.2 ** 2).astype("float64")
_TEMPLATE -= _TEMPLATE.mean()


def features(x: np.ndarray) -> np.ndarray:
    """Per image: mean, std, bright fraction, and the best matched-filter (disc) response."""
    x = np.asarray(x, np.float64)[..., 0]
    mf = [correlate2d(im, _TEMPLATE, "valid").max() / 10.0 for im in x]
    return np.stack([x.mean((1, 2)), x.std((1, 2)), (x > 0.3).mean((1, 2)), mf], axis=1)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(ca @ cb).real
    return float(((ma - mb) ** 2).sum() + np.trace(ca + cb - 2 * covmean))


def run(phases, state, data, rng, steps, seed0=0, reg=True):
    for i in range(steps):
        reals = data[rng.integers(0, len(data), BATCH)]
        seed = autodiff.seed_tensor(seed0 + i)
        state, _ = phases.g_main(state, reals, seed)
        if reg and i % phases.g_reg_interval == 0:
            state, _ = phases.g_reg(state, reals, seed)
        state, _ = phases.d_main(state, reals, seed)
        if reg and i % phases.d_reg_interval == 0:
            state, _ = phases.d_reg(state, reals, seed)
        state = phases.ema(state, float(i * BATCH))  # images shown before this step
    return state


def test_same_seed_same_weights(gan):
    G, D, phases = gan
    data = discs(64, np.random.default_rng(5))
    a = run(phases, init_state(G, D), data, np.random.default_rng(1), 2)
    b = run(phases, init_state(G, D), data, np.random.default_rng(1), 2)
    c = run(phases, init_state(G, D), data, np.random.default_rng(1), 2, seed0=100)
    na, nb, nc = state_to_numpy(a), state_to_numpy(b), state_to_numpy(c)
    assert na.keys() == nb.keys()
    for k in na:
        np.testing.assert_array_equal(na[k], nb[k], err_msg=k)
    assert float(na["pl_mean"]) > 0 and float(na["g_opt/t"]) == 3.0 and float(na["d_opt/t"]) == 3.0
    assert any(not np.array_equal(na[k], nc[k]) for k in na if k.startswith("g/"))


def test_tiny_gan_learns_discs(gan, capsys):
    """Samples' statistics move clearly toward the data's (Frechet distance on simple features)."""
    G, D, phases = gan
    rng = np.random.default_rng(0)
    data = discs(2048, rng)
    z = np.random.default_rng(1).standard_normal((256, CFG.z_dim)).astype("float32")
    sample = autodiff.compile(lambda ema, z: synthesize(G, ema, z))
    real = features(data[:256])
    state = init_state(G, D)
    before = features(ops.convert_to_numpy(sample((state["g_ema"], state["g_ema_nt"]), z)))
    state = run(phases, state, data, rng, 300, reg=True)
    after = features(ops.convert_to_numpy(sample((state["g_ema"], state["g_ema_nt"]), z)))
    fd_before, fd_after = frechet(before, real), frechet(after, real)
    with capsys.disabled():
        names = ["mean", "std", "bright", "disc"]
        print(f"\nlearning check: FD {fd_before:.3f} -> {fd_after:.3f}; "
              + "; ".join(f"{n} {b:.3f} -> {a:.3f} (real {r:.3f})" for n, b, a, r in
                          zip(names, before.mean(0), after.mean(0), real.mean(0))))
    assert np.isfinite(after).all()
    assert fd_after < 0.5 * fd_before
    gap = np.abs(before.mean(0) - real.mean(0)), np.abs(after.mean(0) - real.mean(0))
    assert gap[1][1] < 0.5 * gap[0][1]  # pixel std


def test_state_round_trips_through_named_arrays(gan):
    from busgan.stylegan2.steps import load_state_into
    G, D, _ = gan
    state = init_state(G, D)
    arrays = state_to_numpy(state)
    assert "g/0" in arrays and "d_opt/v/0" in arrays and arrays["pl_mean"].shape == ()
    back = state_to_numpy(unflatten_like(state, {k: v + 1 for k, v in arrays.items()}))
    assert all(np.array_equal(back[k], arrays[k] + 1) for k in arrays)
    G2, D2 = build_generator(CFG, seed=9), build_discriminator(CFG, seed=9)
    load_state_into(state, G2, D2)
    np.testing.assert_array_equal(ops.convert_to_numpy(G2.trainable_variables[0]), arrays["g/0"])
