"""StyleGAN2 networks: exact NVlabs parameter counts, shapes, truncation, batch independence."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from busgan.config import GanConfig
from busgan.errors import BusganError
from busgan.stylegan2 import autodiff
from busgan.stylegan2.networks import build_discriminator, build_generator, channels_for, count_params
from busgan.stylegan2.steps import synthesize

pytestmark = pytest.mark.keras


def tiny(**kw) -> GanConfig:
    base = dict(preset="custom", resolution=16, channels=1, channel_base=256, channel_max=16,
                z_dim=16, mapping_layers=2)
    base.update(kw)
    return GanConfig(**base)


@pytest.mark.parametrize("preset,channels,g_params,d_params", [
    ("e", 3, 24_767_458, 24_001_089),
    ("f", 3, 30_034_338, 28_864_129),
    ("e", 1, 24_762_452, 24_000_961),
])
def test_parameter_counts_equal_nvlabs_at_256(preset, channels, g_params, d_params):
    cfg = GanConfig(preset=preset, channels=channels, resolution=256)
    G, D = build_generator(cfg), build_discriminator(cfg)
    assert count_params(G) == g_params
    assert count_params(D) == d_params
    assert G.num_ws == 14
    assert sum(int(np.prod(v.shape)) for v in G.mapping[0].trainable_variables) * 8 == 2_101_248


def test_channel_widths_and_bad_configs():
    assert channels_for(GanConfig(preset="e", resolution=256)) == {
        4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
    assert channels_for(GanConfig(preset="f", resolution=256))[256] == 128
    for bad in (dict(resolution=48), dict(resolution=4), dict(resolution=2048), dict(channels=2)):
        with pytest.raises(BusganError):
            channels_for(GanConfig(**bad))


@pytest.mark.parametrize("res,channels", [(8, 3), (32, 1)])
def test_shapes_any_resolution_and_channels(res, channels):
    cfg = tiny(resolution=res, channels=channels)
    G, D = build_generator(cfg), build_discriminator(cfg)
    z = np.random.default_rng(0).standard_normal((4, 16)).astype("float32")
    # compiled: one XLA program (eager JAX would compile every op separately: slow)
    img, logits = autodiff.compile(lambda z, s: (lambda x: (x, D(x)))(G({"z": z, "seed": s}, mixing_prob=0.9)))(
        z, autodiff.seed_tensor(1))
    assert tuple(img.shape) == (4, res, res, channels)
    assert G.num_ws == 2 * int(np.log2(res)) - 2
    assert tuple(logits.shape) == (4,)
    assert np.isfinite(ops.convert_to_numpy(img)).all()


def test_same_seed_same_initial_weights():
    a, b = build_generator(tiny(), seed=3), build_generator(tiny(), seed=3)
    c = build_generator(tiny(), seed=4)
    wa = [ops.convert_to_numpy(v) for v in a.trainable_variables]
    assert all(np.array_equal(x, ops.convert_to_numpy(y)) for x, y in zip(wa, b.trainable_variables))
    assert not all(np.array_equal(x, ops.convert_to_numpy(y)) for x, y in zip(wa, c.trainable_variables))


def test_truncation_pulls_toward_w_avg_and_respects_cutoff():
    G = build_generator(tiny())
    G.w_avg.assign(np.full((16,), 0.5, "float32"))
    z = np.random.default_rng(1).standard_normal((3, 16)).astype("float32")
    ws = ops.convert_to_numpy(G.map(z))
    half = ops.convert_to_numpy(G.map(z, psi=0.5))
    np.testing.assert_allclose(half, 0.5 + (ws - 0.5) * 0.5, rtol=1e-5, atol=1e-6)
    cut = ops.convert_to_numpy(G.map(z, psi=0.0, cutoff=2))
    np.testing.assert_allclose(cut[:, :2], 0.5, atol=1e-6)
    np.testing.assert_allclose(cut[:, 2:], ws[:, 2:], atol=1e-6)


def test_w_avg_tracking():
    G = build_generator(tiny())
    z = np.random.default_rng(2).standard_normal((8, 16)).astype("float32")
    g = [v.value for v in G.trainable_variables]
    nt = [v.value for v in G.non_trainable_variables]
    _, nt2 = G.stateless_call(g, nt, {"z": z, "seed": autodiff.seed_tensor(0)}, mode="mapping", update_w_avg=True)
    w_mean = ops.convert_to_numpy(G.map(z))[:, 0].mean(axis=0)
    np.testing.assert_allclose(ops.convert_to_numpy(nt2[0]), 0.005 * w_mean, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("noise_mode", ["const", "random"])
def test_image_for_a_seed_does_not_depend_on_its_batch(noise_mode):
    G = build_generator(tiny())
    G.convs[-1].noise_strength.assign(0.5)  # make noise matter
    ema = ([v.value for v in G.trainable_variables], [v.value for v in G.non_trainable_variables])
    seeds = list(range(10, 16))
    z = np.stack([np.random.RandomState(s).randn(16) for s in seeds]).astype("float32")
    st = autodiff.seed_tensor(seeds)
    run = autodiff.compile(lambda ema, z, s: synthesize(G, ema, z, psi=0.7, noise_mode=noise_mode, seeds=s))
    full = ops.convert_to_numpy(run(ema, z, st))
    part = ops.convert_to_numpy(run(ema, z[3:5], st[3:5]))
    np.testing.assert_allclose(part, full[3:5], atol=1e-4)
    assert not np.allclose(full[3], full[4])
