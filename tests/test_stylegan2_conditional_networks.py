"""Conditional StyleGAN2 (gan.conditional): NVlabs' parameter counts, the label path, clear errors.

The counts are those of NVlabs' stylegan3-repo networks_stylegan2.py with c_dim = 2 (buffers
excluded; the discriminator's conditioning mapping at its default depth of 8).
"""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from busgan.config import GanConfig
from busgan.stylegan2.networks import build_discriminator, build_generator, count_params

pytestmark = pytest.mark.keras


@pytest.mark.parametrize("channels,g_params,d_params", [(1, 353_627, 716_272), (3, 354_115, 716_304)])
def test_parameter_counts_equal_nvlabs_at_32(channels, g_params, d_params):
    cfg = GanConfig(preset="custom", resolution=32, channels=channels, channel_base=512, channel_max=128,
                    z_dim=64, mapping_layers=2, conditional=True)
    assert count_params(build_generator(cfg)) == g_params
    assert count_params(build_discriminator(cfg)) == d_params


@pytest.mark.parametrize("channels,g_params,d_params", [(1, 25_026_132, 26_365_888), (3, 25_031_138, 26_366_016)])
def test_parameter_counts_equal_nvlabs_at_256_config_e(channels, g_params, d_params):
    cfg = GanConfig(preset="e", resolution=256, channels=channels, conditional=True)
    G = build_generator(cfg)
    assert count_params(G) == g_params
    del G
    assert count_params(build_discriminator(cfg)) == d_params


def _lrelu(x):
    return np.where(x >= 0, x, 0.2 * x) * np.sqrt(2.0)


def _norm(x):
    return x / np.sqrt(np.mean(x ** 2, axis=1, keepdims=True) + 1e-8)


def _dense(layer, x, act):
    """A busgan Dense layer in NumPy: w * lr_mul / sqrt(fan_in), b * lr_mul."""
    w, b = ops.convert_to_numpy(layer.w).astype(np.float64), ops.convert_to_numpy(layer.b).astype(np.float64)
    y = x @ (w * layer.lr_mul / np.sqrt(w.shape[0])) + b * layer.lr_mul
    return _lrelu(y) if act else y


TINY = dict(preset="custom", resolution=8, channels=1, channel_base=64, channel_max=16, z_dim=8,
            mapping_layers=2, conditional=True)


def test_conditional_mapping_follows_stylegan2_ada():
    # z and embed(c) are each normalised to unit second moment, then concatenated
    G = build_generator(GanConfig(**TINY), seed=1)
    G.embed.b.assign(np.linspace(-1, 1, 8).astype("float32"))  # a non-zero bias must be used
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 8)).astype("float32")
    c = np.eye(2, dtype="float32")[[0, 1, 1, 0]]
    x = np.concatenate([_norm(z.astype(np.float64)), _norm(_dense(G.embed, c, act=False))], axis=1)
    for layer in G.mapping:
        x = _dense(layer, x, act=True)
    ws = ops.convert_to_numpy(G.map(z, c=c))
    assert ws.shape == (4, G.num_ws, 8)
    np.testing.assert_allclose(ws, np.repeat(x[:, None], G.num_ws, axis=1), rtol=1e-4, atol=1e-5)
    assert not np.allclose(ops.convert_to_numpy(G.map(z, c=c[:, ::-1])), ws, atol=1e-3)  # c matters


def test_discriminator_conditioning_mapping():
    D = build_discriminator(GanConfig(**TINY), seed=2)
    assert (D.c_dim, D.cmap_dim, len(D.cmapping), D.out.w.shape[1]) == (2, 16, 8, 16)
    c = np.eye(2, dtype="float32")
    x = _norm(_dense(D.embed, c.astype(np.float64), act=False))
    for layer in D.cmapping:
        x = _dense(layer, x, act=True)
    np.testing.assert_allclose(ops.convert_to_numpy(D.cmap(c)), x, rtol=1e-4, atol=1e-5)


def test_labels_required_exactly_when_conditional():
    cond = GanConfig(**TINY)
    plain = GanConfig(**{**TINY, "conditional": False})
    z = np.zeros((2, 8), "float32")
    c = np.eye(2, dtype="float32")
    with pytest.raises(ValueError, match="needs one-hot labels"):
        build_generator(cond).map(z)
    with pytest.raises(ValueError, match="needs 2"):
        build_generator(cond).map(z, c=np.ones((2, 3), "float32"))
    with pytest.raises(ValueError, match="takes no labels"):
        build_generator(plain).map(z, c=c)
    with pytest.raises(ValueError, match="takes no labels"):
        build_discriminator(plain)(np.zeros((2, 8, 8, 1), "float32"), c)
    # the unconditional networks gain no variables
    G = build_generator(plain)
    assert G.embed is None and not any("embed" in v.path for v in G.variables)
    assert build_discriminator(plain).out.w.shape[1] == 1
