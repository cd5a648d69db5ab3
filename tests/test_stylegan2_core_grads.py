"""R1 and path-length gradients (double backprop) against finite differences; Adam and EMA."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from keras import ops

from busgan.config import GanConfig
from busgan.stylegan2 import autodiff
from busgan.stylegan2.loss import LossSetup
from busgan.stylegan2.networks import build_discriminator, build_generator
from busgan.stylegan2.steps import adam_hparams, adam_update, ema_beta

pytestmark = pytest.mark.keras

CFG = GanConfig(preset="custom", resolution=8, channels=1, channel_base=64, channel_max=8,
                z_dim=8, mapping_layers=1)


def _vals(vs):
    return [ops.convert_to_tensor(np.array(ops.convert_to_numpy(v.value))) for v in vs]


@pytest.fixture
def smooth_lrelu(monkeypatch):
    """Swap leaky ReLU for a smooth look-alike inside the networks.

    A piecewise-linear network's input gradient is piecewise constant in the weights, so R1 and
    the path length jump wherever a unit crosses its kink and finite differences are useless.
    With a smooth activation both are differentiable and the double backprop can be checked.
    """
    from busgan.stylegan2 import networks
    from busgan.stylegan2 import ops as sops

    def smooth_bias_act(x, b=None, act="linear", gain=None, clamp=None, alpha=0.2):
        if act == "lrelu":
            x = x + ops.cast(b, x.dtype) if b is not None else x
            y = alpha * x + (1 - alpha) * ops.softplus(4.0 * x) / 4.0
            return sops.bias_act(y, None, "linear", gain=(2 ** 0.5 if gain is None else gain), clamp=clamp)
        return sops.bias_act(x, b, act, gain, clamp, alpha)
    monkeypatch.setattr(networks, "bias_act", smooth_bias_act)


def _check_directional(loss, params, rng, eps=1e-2, rtol=0.03):
    """<grad, v> against (f(p + eps v) - f(p - eps v)) / 2 eps along a random direction v."""
    vg = autodiff.compile(autodiff.value_and_grad(loss))  # one program (compiling is the slow part)

    def f(p):
        return vg(p)[0]
    value, grads = vg(params)
    v = [rng.standard_normal(p.shape).astype("float32") for p in params]
    analytic = sum(float(np.sum(ops.convert_to_numpy(g) * d)) for g, d in zip(grads, v))
    plus = float(f([p + eps * d for p, d in zip(params, v)]))
    minus = float(f([p - eps * d for p, d in zip(params, v)]))
    numeric = (plus - minus) / (2 * eps)
    assert float(value) > 0
    assert abs(analytic - numeric) <= rtol * abs(numeric) + 1e-6, (analytic, numeric)


def test_r1_gradient_matches_finite_differences(smooth_lrelu):
    D = build_discriminator(CFG, seed=1)
    setup = LossSetup(None, D)
    rng = np.random.default_rng(0)
    reals = rng.standard_normal((4, 8, 8, 1)).astype("float32")
    d, d_nt = _vals(D.trainable_variables), _vals(D.non_trainable_variables)
    seed = autodiff.seed_tensor(0)
    # the input gradient itself (what R1 squares)
    logits = autodiff.compile(lambda x: D.stateless_call(d, d_nt, x)[0])
    _, gx = autodiff.compile(lambda x: autodiff.input_grad(lambda y: D.stateless_call(d, d_nt, y)[0], x))(reals)
    dx = rng.standard_normal(reals.shape).astype("float32")
    num = (np.sum(ops.convert_to_numpy(logits(reals + 1e-3 * dx)) - ops.convert_to_numpy(logits(reals - 1e-3 * dx)))
           / 2e-3)
    assert abs(float(np.sum(ops.convert_to_numpy(gx) * dx)) - num) <= 0.03 * abs(num) + 1e-5
    # d R1 / d weights (second-order)
    _check_directional(lambda w: setup.r1(w, d_nt, reals, 0.0, seed), d, rng)


def test_path_length_gradient_is_nvlabs_formula(smooth_lrelu):
    """NVlabs' penalty: m' = m + (mean(L) - m) * decay, penalty mean((L - m')^2), differentiated
    through m' as well (only the m' kept for the next step is stopped).

    One compiled function of (weights, pl_mean, decay). With decay 0 the target is the constant
    pl_mean c, so penalty(c) = mean(L^2) - 2 c mean(L) + c^2: two values of c give mean(L),
    mean(L^2) and their derivatives along a direction v. The NVlabs value and derivative are
    written here from those; the derivative is also checked by finite differences, and the
    stop-gradient formula (target held fixed) is shown to differ.
    """
    G = build_generator(CFG, seed=2)
    for layer in G.convs:
        layer.noise_strength.assign(0.3)
    base = LossSetup(G, None)
    g, g_nt = _vals(G.trainable_variables), _vals(G.non_trainable_variables)
    seed = autodiff.seed_tensor(3)

    def pen(w, pl_mean, decay):
        return dataclasses.replace(base, pl_decay=decay).path_length(w, g_nt, 8, pl_mean, seed)
    vg = autodiff.compile(autodiff.value_and_grad(pen, has_aux=True))
    rng = np.random.default_rng(1)
    v = [rng.standard_normal(p.shape).astype("float32") for p in g]

    def run(w, c, decay):
        """(penalty, returned pl_mean', <d penalty / d w, v>) in float64."""
        f32 = [ops.convert_to_tensor(x, "float32") for x in (c, decay)]
        (value, new_mean), grads = vg(w, *f32)
        dv = sum(float(np.sum(np.asarray(ops.convert_to_numpy(x), np.float64) * d))
                 for x, d in zip(grads, v))
        return float(value), float(new_mean), dv

    p0, m_fixed, dp0 = run(g, 0.0, 0.0)    # mean(L^2)
    p1, _, dp1 = run(g, 1.0, 0.0)          # mean(L^2) - 2 mean(L) + 1
    assert m_fixed == 0.0
    mean_l2, dmean_l2 = p0, dp0
    mean_l, dmean_l = (p0 - p1 + 1.0) / 2.0, (dp0 - dp1) / 2.0
    assert mean_l > 0 and dmean_l != 0
    eps = 3e-3
    for m0, decay in ((0.0, 0.01), (0.05, 0.01), (0.0, 0.5)):  # NVlabs' decay (pl_mean starts at 0)
        target = m0 + (mean_l - m0) * decay            # m', a function of the weights
        dtarget = decay * dmean_l
        want = mean_l2 - 2.0 * target * mean_l + target ** 2
        dwant = dmean_l2 - 2.0 * (dtarget * mean_l + target * dmean_l) + 2.0 * target * dtarget
        dstop = dmean_l2 - 2.0 * target * dmean_l      # the old formula: m' held constant
        value, new_mean, dv = run(g, m0, decay)
        assert new_mean == pytest.approx(target, rel=1e-4), (m0, decay)
        assert value == pytest.approx(want, rel=1e-4), (m0, decay)
        assert dv == pytest.approx(dwant, rel=1e-4), (m0, decay)
        plus = run([p + eps * d for p, d in zip(g, v)], m0, decay)[0]
        minus = run([p - eps * d for p, d in zip(g, v)], m0, decay)[0]
        numeric = (plus - minus) / (2 * eps)
        tol = 2e-3 * abs(numeric)  # finite differences agree to ~1e-4 here; the old formula is ~0.8% off
        assert abs(dv - numeric) <= tol, (m0, decay, dv, numeric)
        assert abs(dstop - numeric) > 2 * tol, (m0, decay, dstop, numeric)  # the check tells them apart


def test_adam_with_lazy_regularisation_correction():
    lr, b1, b2 = adam_hparams(0.002, 4)
    assert lr == pytest.approx(0.0016) and b1 == 0.0 and b2 == pytest.approx(0.99 ** 0.8)
    assert adam_hparams(0.002, 16)[0] == pytest.approx(0.002 * 16 / 17)
    rng = np.random.default_rng(2)
    p = rng.standard_normal((3, 4)).astype("float32")
    opt = {"m": [np.zeros_like(p)], "v": [np.zeros_like(p)], "t": ops.convert_to_tensor(0.0)}
    params, m, v = [p], np.zeros_like(p, np.float64), np.zeros_like(p, np.float64)
    want = p.astype(np.float64)
    for t in (1, 2, 3):
        g = rng.standard_normal(p.shape).astype("float32")
        params, opt = adam_update(params, [g], opt, lr, b1, b2)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g.astype(np.float64) ** 2
        want = want - lr * m / (np.sqrt(v / (1 - b2 ** t)) + 1e-8)
    np.testing.assert_allclose(ops.convert_to_numpy(params[0]), want, rtol=1e-4, atol=1e-6)
    assert float(opt["t"]) == 3.0


def test_ema_half_life_in_kimg():
    beta = ema_beta(GanConfig(ema_kimg=10.0, batch_size=32))
    assert beta ** (10_000 / 32) == pytest.approx(0.5)
