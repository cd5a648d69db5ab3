"""StyleGAN2 generator (mapping + "skip" synthesis) and "resnet" discriminator as Keras models.

Written from the paper (Karras et al., CVPR 2020) so that the trainable parameter counts equal
NVlabs' networks exactly. Weights are stored N(0, 1) / lr_mul and scaled by
lr_mul / sqrt(fan_in) at run time (equalised learning rate). Initial values come from NumPy so
the same seed gives the same network on every backend. Layout is NHWC.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from busgan import CLASSES
from busgan.config import GanConfig
from busgan.errors import BusganError
from busgan.stylegan2 import autodiff
from busgan.stylegan2.ops import (bias_act, conv2d_resample, minibatch_stddev,
                                  modulated_conv2d, normalize_2nd_moment, upsample2d)

NUM_MIXED_RES = 4  # like NVlabs' num_fp16_res: reduced precision on the 4 highest resolutions
CONV_CLAMP = 256.0  # activation clamp used with reduced precision (NVlabs: conv_clamp=256)
NUM_CLASSES = len(CLASSES)  # a conditional network's label size: one-hot c in CLASSES order
D_MAPPING_LAYERS = 8  # depth of the discriminator's conditioning mapping (NVlabs' default)


def class_dim(cfg: GanConfig) -> int:
    """The label size c_dim: NUM_CLASSES for ``gan.conditional``, else 0 (no conditioning)."""
    return NUM_CLASSES if getattr(cfg, "conditional", False) else 0


def channels_for(cfg: GanConfig) -> dict[int, int]:
    """Channels per resolution 4..cfg.resolution: min(channel_base // r, channel_max)."""
    res = cfg.resolution
    if res < 8 or res > 1024 or res & (res - 1):
        raise BusganError(f"gan.resolution: {res} is not a power of two in 8..1024; use e.g. 256")
    if cfg.channels not in (1, 3):
        raise BusganError(f"gan.channels: {cfg.channels} must be 1 (grayscale) or 3 (RGB)")
    base, cmax = {"e": (16384, 512), "f": (32768, 512)}.get(cfg.preset, (cfg.channel_base, cfg.channel_max))
    out = {}
    r = 4
    while r <= res:
        out[r] = max(1, min(base // r, cmax))
        r *= 2
    return out


class _Init:
    """NumPy initial values from one seeded stream (deterministic on every backend)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def normal(self, std: float = 1.0):
        rng = self.rng

        def init(shape, dtype=None):
            return (rng.standard_normal(shape) * std).astype("float32")
        return init

    @staticmethod
    def const(value: float):
        def init(shape, dtype=None):
            return np.full(shape, value, dtype="float32")
        return init


class Dense(keras.layers.Layer):
    """Equalised-learning-rate fully connected layer with bias and activation."""

    def __init__(self, in_features: int, units: int, init: _Init, lr_mul: float = 1.0,
                 bias_init: float = 0.0, act: str = "linear", **kw: Any) -> None:
        super().__init__(**kw)
        self.act, self.lr_mul = act, lr_mul
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.w = self.add_weight(shape=(in_features, units), initializer=init.normal(1.0 / lr_mul), name="w")
        self.b = self.add_weight(shape=(units,), initializer=_Init.const(bias_init / lr_mul), name="b")
        self.built = True

    def call(self, x):
        x = ops.matmul(x, self.w * self.weight_gain)
        return bias_act(x, self.b * self.lr_mul, self.act)


class Conv(keras.layers.Layer):
    """Equalised-learning-rate convolution with optional 2x downsampling (discriminator)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, init: _Init, bias: bool = True,
                 act: str = "linear", down: int = 1, gain: float = 1.0,
                 clamp: float | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.act, self.down, self.gain, self.clamp = act, down, gain, clamp
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.w = self.add_weight(shape=(kernel, kernel, in_ch, out_ch), initializer=init.normal(), name="w")
        self.b = self.add_weight(shape=(out_ch,), initializer="zeros", name="b") if bias else None
        self.built = True

    def call(self, x):
        x = conv2d_resample(ops.cast(x, self.compute_dtype), self.w * self.weight_gain, down=self.down)
        act_gain = (math.sqrt(2.0) if self.act == "lrelu" else 1.0) * self.gain
        clamp = None if self.clamp is None else self.clamp * self.gain
        return bias_act(x, self.b, self.act, gain=act_gain, clamp=clamp)


class SynthesisLayer(keras.layers.Layer):
    """Modulated 3x3 convolution (+ optional 2x up), per-pixel noise, bias, leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, res: int, init: _Init, up: int = 1,
                 clamp: float | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.up, self.res, self.clamp = up, res, clamp
        self.affine = Dense(w_dim, in_ch, init, bias_init=1.0, dtype="float32", name="affine")
        self.weight_gain = 1.0 / math.sqrt(in_ch * 9)
        self.w = self.add_weight(shape=(3, 3, in_ch, out_ch), initializer=init.normal(), name="w")
        self.noise_strength = self.add_weight(shape=(), initializer="zeros", name="noise_strength")
        self.b = self.add_weight(shape=(out_ch,), initializer="zeros", name="b")
        self.noise_const = self.add_weight(shape=(res, res, 1), initializer=init.normal(),
                                           trainable=False, name="noise_const")
        self.built = True

    def call(self, x, w, noise=None, noise_mode: str = "random"):
        """``noise``: ``[N, res, res, 1]`` standard normal, used when noise_mode is 'random'."""
        styles = self.affine(w)
        x = modulated_conv2d(ops.cast(x, self.compute_dtype), self.w * self.weight_gain, styles, up=self.up)
        if noise_mode == "const":
            noise = self.noise_const[None]
        elif noise_mode == "none":
            noise = None
        elif noise_mode != "random":
            raise ValueError(f"noise_mode {noise_mode!r}: use 'random', 'const' or 'none'")
        if noise is not None:
            x = x + ops.cast(noise * self.noise_strength, x.dtype)
        return bias_act(x, self.b, "lrelu", clamp=self.clamp)


class ToImage(keras.layers.Layer):
    """Modulated 1x1 convolution to the image channels, no demodulation ("toRGB")."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, init: _Init,
                 clamp: float | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.clamp = clamp
        self.affine = Dense(w_dim, in_ch, init, bias_init=1.0, dtype="float32", name="affine")
        self.weight_gain = 1.0 / math.sqrt(in_ch)
        self.w = self.add_weight(shape=(1, 1, in_ch, out_ch), initializer=init.normal(), name="w")
        self.b = self.add_weight(shape=(out_ch,), initializer="zeros", name="b")
        self.built = True

    def call(self, x, w):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(ops.cast(x, self.compute_dtype), self.w, styles, demodulate=False)
        return bias_act(x, self.b, "linear", clamp=self.clamp)


class Generator(keras.Model):
    """Mapping network (z [, c] -> w, tracked w_avg) and "skip" synthesis network (w -> image).

    Conditional (``c_dim`` > 0, StyleGAN2-ADA's design): c is embedded by a linear layer to
    w_dim features; z and the embedding are each normalised to unit second moment, then
    concatenated as the first mapping layer's input.
    """

    def __init__(self, cfg: GanConfig, seed: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        init = _Init(seed)
        ch = channels_for(cfg)
        self.resolution, self.img_channels = cfg.resolution, cfg.channels
        self.z_dim = self.w_dim = cfg.z_dim
        self.c_dim = class_dim(cfg)
        log2 = int(math.log2(cfg.resolution))
        self.num_ws = 2 * log2 - 2
        mixed = cfg.precision == "mixed_bfloat16"
        mixed_from = cfg.resolution >> (NUM_MIXED_RES - 1)

        # The embedding only exists when conditional, so unconditional networks (and their
        # snapshots' variable order) are unchanged.
        self.embed = (Dense(self.c_dim, self.w_dim, init, dtype="float32", name="embed")
                      if self.c_dim else None)
        fc0_in = self.z_dim + (self.w_dim if self.c_dim else 0)
        self.mapping = [Dense(fc0_in if i == 0 else self.w_dim, self.w_dim, init, lr_mul=0.01,
                              act="lrelu", dtype="float32", name=f"map{i}")
                        for i in range(cfg.mapping_layers)]
        self.w_avg = self.add_weight(shape=(self.w_dim,), initializer="zeros", trainable=False, name="w_avg")
        self.const = self.add_weight(shape=(4, 4, ch[4]), initializer=init.normal(), name="const")
        self.convs: list[SynthesisLayer] = []
        self.torgbs: list[ToImage] = []
        r = 4
        while r <= cfg.resolution:
            lowp = mixed and r >= mixed_from
            kw_l = dict(dtype="mixed_bfloat16" if lowp else "float32", clamp=CONV_CLAMP if lowp else None)
            if r > 4:
                self.convs.append(SynthesisLayer(ch[r // 2], ch[r], self.w_dim, r, init, up=2,
                                                 name=f"b{r}_conv0", **kw_l))
            self.convs.append(SynthesisLayer(ch[r], ch[r], self.w_dim, r, init, name=f"b{r}_conv1", **kw_l))
            self.torgbs.append(ToImage(ch[r], cfg.channels, self.w_dim, init, name=f"b{r}_torgb", **kw_l))
            r *= 2
        self.built = True

    # -- mapping ------------------------------------------------------------------------
    def map(self, z, psi: float = 1.0, cutoff: int | None = None, update_w_avg: bool = False,
            w_avg_beta: float = 0.995, c=None):
        """z ``[N, z_dim]`` (and one-hot c ``[N, c_dim]`` when conditional) -> ws
        ``[N, num_ws, w_dim]``, with truncation toward ``w_avg``."""
        x = normalize_2nd_moment(ops.cast(z, "float32"))
        if self.c_dim:
            x = ops.concatenate([x, _embed_labels(self.embed, c, self.c_dim, "generator")], axis=1)
        elif c is not None:
            raise ValueError("an unconditional generator takes no labels c; build it with gan.conditional = true")
        for layer in self.mapping:
            x = layer(x)
        if update_w_avg:
            batch_mean = ops.mean(ops.stop_gradient(x), axis=0)
            self.w_avg.assign(batch_mean + (self.w_avg - batch_mean) * w_avg_beta)
        ws = ops.repeat(x[:, None, :], self.num_ws, axis=1)
        if psi != 1.0:
            w_avg = ops.convert_to_tensor(self.w_avg)
            trunc = w_avg + (ws - w_avg) * psi
            cut = self.num_ws if cutoff is None else cutoff
            layer_mask = (np.arange(self.num_ws) < cut).astype("float32")[None, :, None]
            ws = trunc * layer_mask + ws * (1.0 - layer_mask)
        return ws

    # -- synthesis ----------------------------------------------------------------------
    def synthesize(self, ws, seed=None, noise_mode: str = "random"):
        """ws ``[N, num_ws, w_dim]`` -> images ``[N, R, R, C]`` float32."""
        n = ws.shape[0]
        x = ops.broadcast_to(ops.convert_to_tensor(self.const)[None], (n,) + tuple(self.const.shape))
        noises = self.draw_noise(n, seed) if noise_mode == "random" else [None] * len(self.convs)
        img = None
        li = 0  # conv layer index
        for bi, torgb in enumerate(self.torgbs):
            for _ in range(1 if bi == 0 else 2):
                x = self.convs[li](x, ws[:, li], noise=noises[li], noise_mode=noise_mode)
                li += 1
            y = ops.cast(torgb(x, ws[:, li]), "float32")
            img = y if img is None else upsample2d(img) + y
        return img

    def draw_noise(self, n: int, seed) -> list:
        """Noise maps for every conv layer from one random draw (one RNG program, not 2 per
        resolution); a ``[N, 2]`` seed gives each sample its own noise."""
        sizes = [layer.res * layer.res for layer in self.convs]
        flat = autodiff.normal((n, sum(sizes)), seed, "float32")
        out, start = [], 0
        for layer, size in zip(self.convs, sizes):
            out.append(ops.reshape(flat[:, start:start + size], (n, layer.res, layer.res, 1)))
            start += size
        return out

    def call(self, inputs, mode: str = "full", psi: float = 1.0, cutoff: int | None = None,
             noise_mode: str = "random", mixing_prob: float = 0.0, update_w_avg: bool = False):
        """See ``docs/stylegan2.md``; ``inputs`` is a dict with z or ws and a seed."""
        seed, c = inputs.get("seed"), inputs.get("c")
        if mode == "synthesis":
            return self.synthesize(inputs["ws"], seed, noise_mode)
        ws = self.map(inputs["z"], psi, cutoff, update_w_avg, c=c)
        if mixing_prob > 0.0:
            ws = self.style_mix(ws, seed, mixing_prob, c)
        if mode == "mapping":
            return ws
        return self.synthesize(ws, autodiff.fold_in(seed, 7) if seed is not None else None, noise_mode)

    def style_mix(self, ws, seed, prob: float, c=None):
        """With probability ``prob``, layers from a random cutoff on take a second z's w
        (mapped with the same labels c, as NVlabs does)."""
        n = ws.shape[0]
        z2 = autodiff.normal((n, self.z_dim), autodiff.fold_in(seed, 1))
        ws2 = self.map(z2, c=c)
        u = autodiff.uniform((2,), autodiff.fold_in(seed, 2))
        cutoff = ops.floor(1.0 + u[0] * (self.num_ws - 1))  # uniform in 1..num_ws-1
        cutoff = ops.where(u[1] < prob, cutoff, float(self.num_ws))
        mask = ops.cast(ops.arange(self.num_ws, dtype="float32") >= cutoff, "float32")[None, :, None]
        return ws * (1.0 - mask) + ws2 * mask


class DBlock(keras.layers.Layer):
    """Residual discriminator block: two 3x3 convs (the second downsamples) + 1x1 skip."""

    def __init__(self, tmp_ch: int, out_ch: int, init: _Init, clamp: float | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        dt = kw.get("dtype")
        self.conv0 = Conv(tmp_ch, tmp_ch, 3, init, act="lrelu", clamp=clamp, dtype=dt, name="conv0")
        self.conv1 = Conv(tmp_ch, out_ch, 3, init, act="lrelu", down=2, gain=math.sqrt(0.5),
                          clamp=clamp, dtype=dt, name="conv1")
        self.skip = Conv(tmp_ch, out_ch, 1, init, bias=False, down=2, gain=math.sqrt(0.5), dtype=dt, name="skip")
        self.built = True

    def call(self, x):
        y = self.skip(x)
        return y + self.conv1(self.conv0(x))


class Discriminator(keras.Model):
    """"resnet" discriminator: fromRGB at the top, residual blocks, minibatch stddev epilogue.

    Conditional (``c_dim`` > 0, StyleGAN2-ADA's projection discriminator): a mapping network
    (embedding, then D_MAPPING_LAYERS lrelu layers with lr_mul 0.01) turns c into ``cmap``
    of width cmap_dim = channels at 4x4; the output layer gives cmap_dim features and the
    logit is ``sum(out * cmap) / sqrt(cmap_dim)``.
    """

    def __init__(self, cfg: GanConfig, seed: int = 0, mbstd_group: int = 4, **kw: Any) -> None:
        super().__init__(**kw)
        init = _Init(seed + 1_000_003)
        ch = channels_for(cfg)
        self.resolution, self.img_channels, self.mbstd_group = cfg.resolution, cfg.channels, mbstd_group
        self.c_dim = class_dim(cfg)
        mixed = cfg.precision == "mixed_bfloat16"
        mixed_from = cfg.resolution >> (NUM_MIXED_RES - 1)
        top = cfg.resolution

        def kw_at(r: int) -> dict[str, Any]:
            lowp = mixed and r >= mixed_from
            return dict(dtype="mixed_bfloat16" if lowp else "float32", clamp=CONV_CLAMP if lowp else None)

        self.fromrgb = Conv(cfg.channels, ch[top], 1, init, act="lrelu", name="fromrgb", **kw_at(top))
        self.blocks = []
        r = top
        while r > 4:
            self.blocks.append(DBlock(ch[r], ch[r // 2], init, name=f"b{r}", **kw_at(r)))
            r //= 2
        c4 = ch[4]
        self.cmap_dim = c4 if self.c_dim else 0
        # Created only when conditional, so unconditional variable order is unchanged.
        self.embed = (Dense(self.c_dim, c4, init, dtype="float32", name="cmap_embed")
                      if self.c_dim else None)
        self.cmapping = [Dense(c4, c4, init, lr_mul=0.01, act="lrelu", dtype="float32", name=f"cmap{i}")
                         for i in range(D_MAPPING_LAYERS if self.c_dim else 0)]
        self.conv = Conv(c4 + 1, c4, 3, init, act="lrelu", name="b4_conv", dtype="float32")
        self.fc = Dense(c4 * 16, c4, init, act="lrelu", name="b4_fc", dtype="float32")
        self.out = Dense(c4, self.cmap_dim or 1, init, name="b4_out", dtype="float32")
        self.built = True

    def cmap(self, c):
        """One-hot labels ``[N, c_dim]`` -> the projection vectors ``[N, cmap_dim]``."""
        x = _embed_labels(self.embed, c, self.c_dim, "discriminator")
        for layer in self.cmapping:
            x = layer(x)
        return x

    def call(self, images, c=None):
        """Logits ``[N]`` for NHWC images (and one-hot labels c when conditional)."""
        if not self.c_dim and c is not None:
            raise ValueError("an unconditional discriminator takes no labels c; build it with "
                             "gan.conditional = true")
        cmap = self.cmap(c) if self.c_dim else None
        x = self.fromrgb(images)
        for block in self.blocks:
            x = block(x)
        x = minibatch_stddev(ops.cast(x, "float32"), self.mbstd_group)
        x = self.conv(x)
        x = ops.reshape(x, (x.shape[0], -1))
        x = self.out(self.fc(x))
        if cmap is not None:
            x = ops.sum(x * cmap, axis=1, keepdims=True) * (1.0 / math.sqrt(self.cmap_dim))
        return ops.cast(x[:, 0], "float32")


def _embed_labels(embed: Dense, c, c_dim: int, who: str):
    """normalise_2nd_moment(embed(c)) for labels ``[N, c_dim]``; refuses a missing or bad c."""
    if c is None:
        raise ValueError(f"a conditional {who} needs one-hot labels c of shape [N, {c_dim}]")
    c = ops.cast(c, "float32")
    if c.shape[-1] != c_dim:
        raise ValueError(f"labels c have {c.shape[-1]} columns; the conditional {who} needs {c_dim}")
    return normalize_2nd_moment(embed(c))


def build_generator(cfg: GanConfig, seed: int = 0) -> Generator:
    """A built generator for ``cfg`` (weights exist; nothing is run)."""
    return Generator(cfg, seed=seed, name="G")


def build_discriminator(cfg: GanConfig, seed: int = 0, mbstd_group: int = 4) -> Discriminator:
    """A built discriminator for ``cfg`` (weights exist; nothing is run)."""
    return Discriminator(cfg, seed=seed, mbstd_group=mbstd_group, name="D")


def count_params(model: keras.Model) -> int:
    """Trainable parameters (the figure NVlabs' code prints; buffers such as w_avg excluded)."""
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))
