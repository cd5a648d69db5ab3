"""G_ema: NVlabs' ramp-up of the EMA horizon, the batch-scaled default, the shipped configs.

The compiled ``ema(state, cur_nimg)`` phase is fed a known sequence of G weights; the resulting
G_ema must equal the closed-form weighted average of that sequence, written here in NumPy:
with beta_k the decay of step k, E_N = prod(beta) E_0 + sum_k (1 - beta_k) prod_{j>k} beta_j W_k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from keras import ops

from busgan.config import GanConfig, load_config
from busgan.errors import BusganError
from busgan.stylegan2 import steps
from busgan.stylegan2.networks import build_discriminator, build_generator

pytestmark = pytest.mark.keras

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(preset="custom", resolution=8, channels=1, channel_base=64, channel_max=8, z_dim=8,
            mapping_layers=1)


def closed_form_weights(n_steps: int, batch: int, horizon_nimg: float,
                        rampup: float) -> tuple[np.ndarray, float]:
    """Weights of W_0..W_{N-1} and of the initial G_ema in G_ema after N updates (float64)."""
    k = np.arange(n_steps, dtype=np.float64)
    horizon = np.full(n_steps, horizon_nimg) if rampup == 0 else np.minimum(horizon_nimg, k * batch * rampup)
    beta = 0.5 ** (batch / np.maximum(horizon, 1e-8))
    later = np.append(np.cumprod(beta[::-1])[::-1][1:], 1.0)  # prod_{j>k} beta_j
    return (1.0 - beta) * later, float(np.prod(beta))


def _run_ema(cfg: GanConfig, n_steps: int, monkeypatch) -> tuple[list, list, list, list[int]]:
    """Feed n_steps random G weight sets through the compiled ema phase; count its traces."""
    traces: list[int] = []
    real_compile = steps.autodiff.compile

    def counting_compile(fn, *a, **kw):
        def counted(*args):
            traces.append(1)
            return fn(*args)
        return real_compile(counted, *a, **kw)
    monkeypatch.setattr(steps.autodiff, "compile", counting_compile)
    G, D = build_generator(cfg, seed=0), build_discriminator(cfg, seed=0)
    phases = steps.make_phases(G, D, cfg)
    state = steps.init_state(G, D)
    rng = np.random.default_rng(7)
    e0 = [rng.standard_normal(tuple(p.shape)).astype("float32") for p in state["g"]]
    state["g_ema"] = [ops.convert_to_tensor(x) for x in e0]
    ws = []
    for i in range(n_steps):
        w = [rng.standard_normal(tuple(p.shape)).astype("float32") for p in state["g"]]
        ws.append(w)
        state = phases.ema({**state, "g": [ops.convert_to_tensor(x) for x in w]}, float(i * cfg.batch_size))
    got = [ops.convert_to_numpy(x) for x in state["g_ema"]]
    return got, e0, ws, traces


@pytest.mark.parametrize("kw, n_steps, horizon_nimg", [
    (dict(batch_size=16, ema_kimg=0.2, ema_rampup=0.5), 40, 200.0),  # ramped for 25 steps, then fixed
    (dict(batch_size=16), 20, 16 * 10 / 32 * 1000.0),  # the defaults: NVlabs' 5 kimg at batch 16
])
def test_ramped_ema_is_the_closed_form_average(kw, n_steps, horizon_nimg, monkeypatch):
    cfg = GanConfig(**TINY, **kw)
    got, e0, ws, traces = _run_ema(cfg, n_steps, monkeypatch)
    weights, w_init = closed_form_weights(n_steps, cfg.batch_size, horizon_nimg, cfg.ema_rampup)
    assert w_init == 0.0 and weights.sum() == pytest.approx(1.0)  # the first update copies G
    assert weights[-1] > weights[0]
    for i, g in enumerate(got):
        want = sum(wk * ws[k][i].astype(np.float64) for k, wk in enumerate(weights))
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5, err_msg=f"g_ema/{i}")
    assert len(traces) == 1  # cur_nimg is traced: one program for every step


def test_ema_without_rampup_has_the_fixed_half_life(monkeypatch):
    cfg = GanConfig(**TINY, batch_size=16, ema_kimg=0.2, ema_rampup=0.0)
    n_steps = 25  # 400 images = two half-lives of 200
    got, e0, ws, _ = _run_ema(cfg, n_steps, monkeypatch)
    beta = 0.5 ** (16 / 200.0)
    weights = (1 - beta) * beta ** np.arange(n_steps - 1, -1, -1, dtype=np.float64)
    assert beta ** n_steps == pytest.approx(0.25)
    for i, g in enumerate(got):
        want = 0.25 * e0[i].astype(np.float64) + sum(wk * ws[k][i] for k, wk in enumerate(weights))
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5, err_msg=f"g_ema/{i}")


def test_ema_beta_and_the_batch_scaled_default():
    paper = GanConfig(ema_kimg=10.0, ema_rampup=0.0, batch_size=32)
    assert steps.ema_beta(paper, cur_nimg=0) ** (10_000 / 32) == pytest.approx(0.5)  # no ramp-up
    auto = GanConfig(batch_size=64)
    assert (auto.ema_kimg, auto.ema_rampup) == (0.0, 0.05)
    assert steps.ema_kimg(auto) == pytest.approx(20.0) and steps.ema_kimg(GanConfig()) == pytest.approx(10.0)
    assert steps.ema_kimg(auto, batch_size=16) == pytest.approx(5.0)
    # the per-step decay of the default does not depend on the batch: half-life 312.5 steps
    for b in (16, 32, 64):
        assert steps.ema_beta(GanConfig(batch_size=b)) == pytest.approx(0.5 ** (32 / 10_000))
    assert steps.ema_beta(auto, cur_nimg=0) == 0.0
    assert steps.ema_beta(auto, cur_nimg=64_000) == pytest.approx(0.5 ** (64 / 3200.0))
    assert steps.ema_beta(auto, cur_nimg=10 ** 9) == pytest.approx(steps.ema_beta(auto))
    traced = steps.ema_beta(auto, cur_nimg=ops.convert_to_tensor(64_000.0))
    assert float(ops.convert_to_numpy(traced)) == pytest.approx(0.5 ** (64 / 3200.0), rel=1e-6)
    for bad in (dict(ema_kimg=-1.0), dict(ema_rampup=-0.1)):
        with pytest.raises(BusganError, match="gan.ema_"):
            steps.ema_kimg(GanConfig(**bad))


def test_shipped_configs_ema_settings():
    paper = load_config(ROOT / "configs" / "paper.toml").gan
    assert (paper.ema_kimg, paper.ema_rampup) == (10.0, 0.0)  # the StyleGAN2 paper's setting
    for name in ("demo.toml", "gpu-phantom.toml"):
        gan = load_config(ROOT / "configs" / name).gan
        assert (gan.ema_kimg, gan.ema_rampup) == (0.0, 0.05), name  # NVlabs' defaults
