"""StyleGAN2 losses as pure functions of (weights, batch, seed).

Non-saturating logistic loss for G, logistic loss for D, R1 on reals and path-length
regularisation (both lazy: the caller multiplies by the interval). Models are run with
``stateless_call`` so every function is differentiable with respect to the weight lists it
receives, on JAX and TensorFlow alike (gradients through ``busgan.stylegan2.autodiff``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from keras import ops

from busgan.stylegan2 import autodiff

AugmentFn = Callable[[Any, Any, Any], Any]  # (images, p, seed) -> images


def no_augment(images, p, seed):
    """The default augmentation: none."""
    del p, seed
    return images


@dataclass
class LossSetup:
    """What the losses need besides weights: the models and the hyper-parameters."""
    G: Any
    D: Any
    augment_fn: AugmentFn = field(default=no_augment)
    r1_gamma: float = 10.0
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    mixing_prob: float = 0.9

    # -- model runners -----------------------------------------------------------------------
    def gen(self, g, g_nt, n: int, seed, update_w_avg: bool = False, c=None):
        """``n`` fake images from fresh z (style mixing, random noise) and, for a conditional
        generator, one-hot labels ``c``; returns (images, g_nt)."""
        z = autodiff.normal((n, self.G.z_dim), autodiff.fold_in(seed, 0))
        img, g_nt = self.G.stateless_call(g, g_nt, _inputs(z, autodiff.fold_in(seed, 1), c),
                                          mixing_prob=self.mixing_prob, update_w_avg=update_w_avg)
        return img, g_nt

    def disc(self, d, d_nt, images, p, seed, c=None):
        """D's logits for augmented ``images`` (labels ``c`` for a conditional D; they are
        not augmented, as in StyleGAN2-ADA)."""
        images = self.augment_fn(images, p, autodiff.fold_in(seed, 5))
        logits, _ = (self.D.stateless_call(d, d_nt, images) if c is None
                     else self.D.stateless_call(d, d_nt, images, c=c))
        return ops.cast(logits, "float32")

    # -- losses ------------------------------------------------------------------------------
    def g_main(self, g, g_nt, d, d_nt, n: int, p, seed, c=None):
        """Non-saturating loss softplus(-D(G(z, c), c)); returns (loss, logs)."""
        img, _ = self.gen(g, g_nt, n, seed, c=c)
        logits = self.disc(d, d_nt, img, p, autodiff.fold_in(seed, 2), c)
        loss = ops.mean(ops.softplus(-logits))
        return loss, {"loss_g": loss, "fake_score": ops.mean(logits)}

    def path_length(self, g, g_nt, n: int, pl_mean, seed, c=None):
        """Path-length penalty on ``n // pl_batch_shrink`` samples; returns (penalty, pl_mean').

        The length of J_w^T y (y: image-space noise scaled by 1/sqrt(pixels)) should be
        constant; its running mean ``pl_mean`` is updated with ``pl_decay``:
        ``pl_mean' = pl_mean + (mean(lengths) - pl_mean) * pl_decay`` and the penalty is
        ``mean((lengths - pl_mean')^2)``, differentiated through ``pl_mean'`` too (NVlabs'
        formula); the returned ``pl_mean'`` carries no gradient. A conditional generator maps
        z with the first ``n // pl_batch_shrink`` of the labels ``c``.
        """
        m = max(1, n // self.pl_batch_shrink)
        z = autodiff.normal((m, self.G.z_dim), autodiff.fold_in(seed, 0))
        ws, _ = self.G.stateless_call(g, g_nt, _inputs(z, autodiff.fold_in(seed, 1), None if c is None else c[:m]),
                                      mode="mapping", mixing_prob=self.mixing_prob)
        res, ch = self.G.resolution, self.G.img_channels
        pl_noise = autodiff.normal((m, res, res, ch), autodiff.fold_in(seed, 3)) / math.sqrt(res * res)
        noise_seed = autodiff.fold_in(seed, 4)

        def weighted(ws_):
            img, _ = self.G.stateless_call(g, g_nt, {"ws": ws_, "seed": noise_seed}, mode="synthesis")
            return ops.sum(ops.cast(img, "float32") * pl_noise, axis=(1, 2, 3))

        _, grads = autodiff.input_grad(weighted, ws)
        lengths = ops.sqrt(ops.mean(ops.sum(ops.square(grads), axis=2), axis=1) + 1e-12)
        # As NVlabs: the penalty uses the updated mean without stopping its gradient (so it also
        # flows through mean(lengths)); only the value kept for the next step is stopped.
        new_mean = pl_mean + (ops.mean(lengths) - pl_mean) * self.pl_decay
        penalty = ops.mean(ops.square(lengths - new_mean))
        return penalty, ops.stop_gradient(new_mean)

    def d_main(self, d, d_nt, fake, reals, p, seed, fake_c=None, real_c=None):
        """Logistic loss softplus(D(fake)) + softplus(-D(real)); returns (loss, logs)."""
        fake_logits = self.disc(d, d_nt, fake, p, autodiff.fold_in(seed, 0), fake_c)
        real_logits = self.disc(d, d_nt, reals, p, autodiff.fold_in(seed, 1), real_c)
        loss = ops.mean(ops.softplus(fake_logits)) + ops.mean(ops.softplus(-real_logits))
        return loss, {"loss_d": loss, "fake_score": ops.mean(fake_logits),
                      "real_score": ops.mean(real_logits), "real_sign": ops.mean(ops.sign(real_logits))}

    def r1(self, d, d_nt, reals, p, seed, c=None):
        """R1 penalty: mean over samples of ||d D(aug(x), c) / dx||^2 at real x (unweighted)."""
        def logits(x):
            return self.disc(d, d_nt, x, p, seed, c)
        _, grads = autodiff.input_grad(logits, ops.convert_to_tensor(reals, "float32"))
        return ops.mean(ops.sum(ops.square(grads), axis=(1, 2, 3)))


def _inputs(z, seed, c=None) -> dict[str, Any]:
    """The generator's input dict; labels only for a conditional generator."""
    return {"z": z, "seed": seed} if c is None else {"z": z, "seed": seed, "c": c}
