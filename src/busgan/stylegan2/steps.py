"""The four compiled training phases (G main, G reg, D main, D reg) and the G_ema update.

Each phase is one XLA program: a pure function ``(state, real_batch, seed) -> (state, logs)``
over a plain dict of tensors (``TrainState``), so it can be jitted, sharded and saved as named
arrays. Adam is written here in ``keras.ops`` so its state lives in that dict too. With lazy
regularisation every ``k`` steps, the optimizer's learning rate is multiplied by k/(k+1) and its
betas raised to the power k/(k+1) (the paper's correction), and main and reg phases share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np
from keras import ops

from busgan.config import GanConfig
from busgan.errors import BusganError
from busgan.stylegan2 import autodiff
from busgan.stylegan2.loss import AugmentFn, LossSetup, no_augment

TrainState = dict[str, Any]
G_REG_INTERVAL = 4
D_REG_INTERVAL = 16
ADAM_BETAS = (0.0, 0.99)
ADAM_EPS = 1e-8


# --- state ---------------------------------------------------------------------------------

def _values(variables) -> list:
    """Plain tensors (copies), not variables: phases take and return tensors only."""
    return [ops.convert_to_tensor(np.array(ops.convert_to_numpy(v.value))) for v in variables]


def _adam_init(params: list) -> dict[str, Any]:
    return {"m": [ops.zeros_like(p) for p in params], "v": [ops.zeros_like(p) for p in params],
            "t": ops.convert_to_tensor(0.0, "float32")}


def init_state(G: keras.Model, D: keras.Model, G_ema: keras.Model | None = None) -> TrainState:
    """A fresh training state from the models' current weights (G_ema starts as a copy of G)."""
    g = _values(G.trainable_variables)
    ema_src = G if G_ema is None else G_ema
    return {
        "g": g, "g_nt": _values(G.non_trainable_variables),
        "d": _values(D.trainable_variables), "d_nt": _values(D.non_trainable_variables),
        "g_ema": [ops.copy(x) for x in _values(ema_src.trainable_variables)],
        "g_ema_nt": [ops.copy(x) for x in _values(ema_src.non_trainable_variables)],
        "g_opt": _adam_init(g), "d_opt": _adam_init(_values(D.trainable_variables)),
        "pl_mean": ops.convert_to_tensor(0.0, "float32"),
        "aug_p": ops.convert_to_tensor(0.0, "float32"),
    }


def load_state_into(state: TrainState, G: keras.Model, D: keras.Model | None = None,
                    G_ema: keras.Model | None = None) -> None:
    """Write the state's weights into Keras models (for saving, sampling or inspection)."""
    pairs = [(G.trainable_variables, state["g"]), (G.non_trainable_variables, state["g_nt"])]
    if D is not None:
        pairs += [(D.trainable_variables, state["d"]), (D.non_trainable_variables, state["d_nt"])]
    if G_ema is not None:
        pairs += [(G_ema.trainable_variables, state["g_ema"]), (G_ema.non_trainable_variables, state["g_ema_nt"])]
    for variables, values in pairs:
        for var, val in zip(variables, values):
            var.assign(val)


def adam_hparams(lr: float, reg_interval: int | None) -> tuple[float, float, float]:
    """(lr, beta1, beta2) after the lazy-regularisation correction c = k / (k + 1)."""
    c = 1.0 if not reg_interval else reg_interval / (reg_interval + 1)
    return lr * c, ADAM_BETAS[0] ** c, ADAM_BETAS[1] ** c


def adam_update(params: list, grads: list, opt: dict[str, Any], lr: float, b1: float, b2: float,
                eps: float = ADAM_EPS) -> tuple[list, dict[str, Any]]:
    """One Adam step (PyTorch's form of the bias correction); non-finite gradients become 0."""
    t = opt["t"] + 1.0
    c1 = 1.0 - ops.power(b1, t) if b1 > 0 else 1.0
    c2 = 1.0 - ops.power(b2, t)
    step = lr / c1
    new_p, new_m, new_v = [], [], []
    for p, g, m, v in zip(params, grads, opt["m"], opt["v"]):
        g = ops.nan_to_num(ops.cast(g, p.dtype), nan=0.0, posinf=1e5, neginf=-1e5)
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * ops.square(g)
        new_p.append(p - step * m / (ops.sqrt(v / c2) + eps))
        new_m.append(m)
        new_v.append(v)
    return new_p, {"m": new_m, "v": new_v, "t": t}


def ema_kimg(cfg: GanConfig, batch_size: int | None = None) -> float:
    """The EMA half-life in kimg before ramp-up: ``cfg.ema_kimg``, or NVlabs' ``batch * 10 / 32``
    when it is 0 (``batch``: ``batch_size``, default ``cfg.batch_size``)."""
    if cfg.ema_kimg < 0:
        raise BusganError(f"gan.ema_kimg: {cfg.ema_kimg} is negative; use a half-life in kimg, "
                          "or 0 for NVlabs' batch_size * 10 / 32")
    if cfg.ema_rampup < 0:
        raise BusganError(f"gan.ema_rampup: {cfg.ema_rampup} is negative; use e.g. 0.05, or 0 for none")
    batch = cfg.batch_size if batch_size is None else batch_size
    return cfg.ema_kimg if cfg.ema_kimg > 0 else batch * 10.0 / 32.0


def ema_beta(cfg: GanConfig, batch_size: int | None = None, cur_nimg: Any = None) -> Any:
    """Per-step EMA decay ``0.5 ** (batch / ema_nimg)`` (NVlabs' formula).

    ``ema_nimg`` is ``ema_kimg(cfg, batch) * 1000``, with ramp-up (``cfg.ema_rampup > 0``) at
    most ``cur_nimg * cfg.ema_rampup``, where ``cur_nimg`` is the number of images shown before
    this step: the first update (``cur_nimg = 0``, beta 0) copies G into G_ema. ``cur_nimg``
    None gives the horizon without ramp-up (its value once ``cur_nimg`` is large). A Python or
    NumPy number gives a float; a tensor gives a float32 tensor (traceable).
    """
    batch = cfg.batch_size if batch_size is None else batch_size
    nimg = ema_kimg(cfg, batch) * 1000.0
    if cur_nimg is None or cfg.ema_rampup == 0:
        return 0.5 ** (batch / max(nimg, 1e-8))
    if isinstance(cur_nimg, (int, float, np.number)):
        return 0.5 ** (batch / max(min(nimg, float(cur_nimg) * cfg.ema_rampup), 1e-8))
    ramped = ops.minimum(nimg, ops.cast(cur_nimg, "float32") * cfg.ema_rampup)
    return ops.power(0.5, batch / ops.maximum(ramped, 1e-8))


# --- phases --------------------------------------------------------------------------------

def unpack_batch(batch: Any) -> tuple[Any, Any, Any]:
    """(images, their one-hot labels, labels for the fakes) of a training batch.

    An unconditional batch is the image tensor alone (labels None); a conditional one is a dict
    ``{"img", "c", "gen_c"}``: the real images' labels, and the fakes' labels drawn from the
    training set's label distribution (as StyleGAN2-ADA does).
    """
    if isinstance(batch, dict):
        return batch["img"], batch["c"], batch["gen_c"]
    return batch, None, None


@dataclass
class Phases:
    """Compiled phases: ``g_main``, ``g_reg``, ``d_main``, ``d_reg`` each take
    ``(state, real_batch, seed)`` and return ``(state, logs)``; ``ema(state, cur_nimg)`` returns
    the state with G_ema updated, ``cur_nimg`` being the images shown before this step (a float32
    scalar, passed as a tensor so that the program is not recompiled at every step)."""
    g_main: Callable
    g_reg: Callable
    d_main: Callable
    d_reg: Callable
    ema: Callable  # (state, cur_nimg) -> state
    setup: LossSetup
    g_reg_interval: int = G_REG_INTERVAL
    d_reg_interval: int = D_REG_INTERVAL


def phase_functions(G: keras.Model, D: keras.Model, cfg: GanConfig,
                    augment_fn: AugmentFn | None = None, mixing_prob: float = 0.9,
                    ema_batch: int | None = None) -> dict[str, Callable]:
    """The uncompiled phase functions (``make_phases`` compiles them)."""
    setup = LossSetup(G, D, augment_fn or no_augment, r1_gamma=cfg.gamma, mixing_prob=mixing_prob)
    g_lr = adam_hparams(cfg.lr, G_REG_INTERVAL)
    d_lr = adam_hparams(cfg.lr, D_REG_INTERVAL)

    def g_main(state, reals, seed):
        reals, _, gen_c = unpack_batch(reals)
        n = reals.shape[0]
        f = autodiff.value_and_grad(
            lambda g: setup.g_main(g, state["g_nt"], state["d"], state["d_nt"], n, state["aug_p"], seed, gen_c),
            has_aux=True)
        (_, logs), grads = f(state["g"])
        g, opt = adam_update(state["g"], grads, state["g_opt"], *g_lr)
        return {**state, "g": g, "g_opt": opt}, logs

    def g_reg(state, reals, seed):
        reals, _, gen_c = unpack_batch(reals)
        n = reals.shape[0]

        def loss(g):
            pen, new_mean = setup.path_length(g, state["g_nt"], n, state["pl_mean"], seed, gen_c)
            return pen * (setup.pl_weight * G_REG_INTERVAL), (pen, new_mean)
        (_, (pen, new_mean)), grads = autodiff.value_and_grad(loss, has_aux=True)(state["g"])
        g, opt = adam_update(state["g"], grads, state["g_opt"], *g_lr)
        return {**state, "g": g, "g_opt": opt, "pl_mean": new_mean}, {"pl_penalty": pen, "pl_mean": new_mean}

    def d_main(state, reals, seed):
        reals, real_c, gen_c = unpack_batch(reals)
        n = reals.shape[0]
        fake, g_nt = setup.gen(state["g"], state["g_nt"], n, autodiff.fold_in(seed, 10), update_w_avg=True,
                               c=gen_c)
        fake = ops.stop_gradient(fake)
        f = autodiff.value_and_grad(
            lambda d: setup.d_main(d, state["d_nt"], fake, reals, state["aug_p"], autodiff.fold_in(seed, 11),
                                   gen_c, real_c),
            has_aux=True)
        (_, logs), grads = f(state["d"])
        d, opt = adam_update(state["d"], grads, state["d_opt"], *d_lr)
        return {**state, "d": d, "d_opt": opt, "g_nt": g_nt}, logs

    def d_reg(state, reals, seed):
        reals, real_c, _ = unpack_batch(reals)

        def loss(d):
            pen = setup.r1(d, state["d_nt"], reals, state["aug_p"], seed, real_c)
            return pen * (setup.r1_gamma / 2.0 * D_REG_INTERVAL), pen
        (_, pen), grads = autodiff.value_and_grad(loss, has_aux=True)(state["d"])
        d, opt = adam_update(state["d"], grads, state["d_opt"], *d_lr)
        return {**state, "d": d, "d_opt": opt}, {"r1_penalty": pen}

    ema_kimg(cfg, ema_batch)  # refuse bad settings now, not inside the trace

    def ema(state, cur_nimg):
        beta = ema_beta(cfg, ema_batch, ops.cast(cur_nimg, "float32"))
        g_ema = [p + (e - p) * ops.cast(beta, p.dtype) for p, e in zip(state["g"], state["g_ema"])]
        return {**state, "g_ema": g_ema, "g_ema_nt": [ops.copy(x) for x in state["g_nt"]]}

    return {"g_main": g_main, "g_reg": g_reg, "d_main": d_main, "d_reg": d_reg, "ema": ema, "setup": setup}


def make_phases(G: keras.Model, D: keras.Model, cfg: GanConfig, augment_fn: AugmentFn | None = None,
                mixing_prob: float = 0.9, ema_batch: int | None = None, jit: bool = True) -> Phases:
    """Compile the four phases and the EMA update for these models and hyper-parameters.

    ``cfg.gamma`` is the R1 weight, ``cfg.lr`` the learning rate, ``cfg.ema_kimg`` and
    ``cfg.ema_rampup`` the EMA half-life and its ramp-up (per step of ``ema_batch`` images,
    default ``cfg.batch_size``; see ``ema_beta``). ``ema`` converts ``cur_nimg`` to a float32
    tensor before the compiled program, so a Python number does not retrace it either.
    """
    fns = phase_functions(G, D, cfg, augment_fn, mixing_prob, ema_batch)
    wrap = autodiff.compile if jit else (lambda f: f)
    ema_fn = wrap(fns["ema"])

    def ema(state, cur_nimg):
        return ema_fn(state, ops.convert_to_tensor(cur_nimg, "float32"))
    return Phases(g_main=wrap(fns["g_main"]), g_reg=wrap(fns["g_reg"]), d_main=wrap(fns["d_main"]),
                  d_reg=wrap(fns["d_reg"]), ema=ema, setup=fns["setup"])


# --- generation ----------------------------------------------------------------------------

def synthesize(G: keras.Model, ema_vars: tuple[list, list], z, psi: float = 1.0,
               cutoff: int | None = None, noise_mode: str = "const", seeds=None, c=None):
    """Images ``[N, R, R, C]`` in about [-1, 1] from G_ema weights ``(trainable, non_trainable)``.

    Each image depends only on its own z (and its own seed for ``noise_mode='random'``, where
    ``seeds`` is ``[N, 2]``, and its own label in ``c`` ``[N, c_dim]`` for a conditional
    generator), never on the rest of the batch. Compile it with
    ``autodiff.compile`` (psi, cutoff and noise_mode are static) for speed.
    """
    if noise_mode == "random" and (seeds is None or len(seeds.shape) != 2):
        raise ValueError("synthesize: noise_mode='random' needs per-sample seeds of shape [N, 2]")
    inputs = {"z": ops.convert_to_tensor(z, "float32")}
    if seeds is not None:
        inputs["seed"] = seeds
    if c is not None:
        inputs["c"] = ops.convert_to_tensor(c, "float32")
    img, _ = G.stateless_call(list(ema_vars[0]), list(ema_vars[1]), inputs, psi=psi, cutoff=cutoff,
                              noise_mode=noise_mode)
    return img
