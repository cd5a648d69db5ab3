"""``busgan import-nvlabs``: an NVlabs StyleGAN2 pickle -> a busgan snapshot.

Reads PyTorch StyleGAN2-ADA / stylegan3 ``--cfg=stylegan2`` pickles (``G_ema``, also ``G`` and
``D`` when present) and TensorFlow 1 StyleGAN2 ``network-snapshot-*.pkl`` files (the ``Gs``
network) with the restricted reader of ``nvlabs_pickle``: no code from the file runs.

Weights are mapped by name onto busgan's layers. Both codes store the equalised-learning-rate
parameterisation (weights N(0, 1) / lr_mul, scaled at run time), so values are copied as
stored, only transposed to busgan's layouts (dense ``[in, out]``, conv ``[kh, kw, in, out]``,
NHWC) and rescaled where the two run-time gains differ (they agree for NVlabs' defaults).
Every tensor must be accounted for: a name without a busgan counterpart, a missing name or a
wrong shape is an error naming it. The configuration (resolution, channels, widths, mapping
depth, latent size, conditioning) is inferred from the shapes and checked against the
network's stored arguments.

Differences kept on purpose: NVlabs' ``conv_clamp`` (256 with fp16 layers) is not applied
(busgan computes the imported network in float32), and busgan's synthesis layers put the
demodulation epsilon after a fan-in gain (relative difference ~1e-9).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from busgan import CLASSES
from busgan.config import GanConfig
from busgan.errors import BusganError, shown
from busgan.fileio import read_json, sha256_file, write_json
from busgan.stylegan2.nvlabs_pickle import NvModule, TfNetwork, load_pickle

Convert = Callable[[np.ndarray], np.ndarray]
Plan = dict[str, tuple[Any, Convert]]  # NVlabs name -> (busgan variable, stored -> busgan value)

FIR_2D = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64.0  # busgan's fixed filter
MAPPING_LR = 0.01  # NVlabs' default mapping lr_multiplier (TF: mapping_lrmul)


@dataclasses.dataclass
class Imported:
    """Networks read from a pickle, as busgan variable values in variable order."""
    cfg: GanConfig
    source: str  # "pytorch" or "tensorflow1"
    g_ema: tuple[list[np.ndarray], list[np.ndarray]]
    g: tuple[list[np.ndarray], list[np.ndarray]] | None = None
    d: tuple[list[np.ndarray], list[np.ndarray]] | None = None
    mbstd_group: int | None = None
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)


class _Err:
    """One-line errors naming the pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, msg: str) -> BusganError:
        return BusganError(f"{shown(self.path)}: {msg}")


# --- conversions -----------------------------------------------------------------------------

def _ratio(a: float, b: float) -> float:
    """a / b, exactly 1.0 when the two gains agree to rounding (the usual case)."""
    r = float(a) / float(b)
    return 1.0 if abs(r - 1.0) < 1e-12 else r


def _scaled(x: np.ndarray, r: float) -> np.ndarray:
    return x if r == 1.0 else x * np.float32(r)


def _oihw(x: np.ndarray) -> np.ndarray:  # torch conv weight -> [kh, kw, in, out]
    return np.transpose(x, (2, 3, 1, 0))


def _fc_flat_nchw(x: np.ndarray) -> np.ndarray:
    """D's b4.fc weight [out, C*4*4] over an NCHW flatten -> [4*4*C, out] over NHWC."""
    out, n = x.shape
    c = n // 16
    return np.transpose(x.reshape(out, c, 4, 4), (2, 3, 1, 0)).reshape(16 * c, out)


def _check_fir(err: _Err, name: str) -> Convert:
    def check(x: np.ndarray) -> np.ndarray:
        if x.shape != FIR_2D.shape or not np.allclose(x, FIR_2D, rtol=0, atol=1e-7):
            raise err(f"'{name}' is not the [1,3,3,1] resampling filter busgan uses; "
                      "only networks with NVlabs' default resample_filter can be imported")
        return x
    return check


def _check_zero(err: _Err, name: str) -> Convert:
    def check(x: np.ndarray) -> np.ndarray:
        if np.asarray(x).size != 1 or float(np.asarray(x).reshape(())) != 0.0:
            raise err(f"'{name}' = {np.asarray(x).ravel()[:1]} (progressive growing?); only "
                      "StyleGAN2 networks with lod 0 can be imported")
        return x
    return check


def _apply(err: _Err, what: str, tensors: dict[str, np.ndarray], plan: Plan,
           checks: dict[str, Convert], models: list[Any]) -> dict[int, np.ndarray]:
    """Convert every tensor by the plan; every name and every busgan variable exactly once."""
    unmapped = sorted(set(tensors) - set(plan) - set(checks))
    if unmapped:
        more = f" (and {len(unmapped) - 3} more)" if len(unmapped) > 3 else ""
        raise err(f"{what}: tensor(s) {', '.join(unmapped[:3])}{more} have no counterpart in busgan's "
                  "StyleGAN2 (another architecture than NVlabs' StyleGAN2 'skip' G / 'resnet' D?)")
    missing = sorted((set(plan) | set(checks)) - set(tensors))
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise err(f"{what}: tensor(s) {', '.join(missing[:3])}{more} are missing; the pickle holds "
                  "an incomplete or different network")
    for name, check in checks.items():
        check(np.asarray(tensors[name]))
    values: dict[int, np.ndarray] = {}
    for name, (var, convert) in plan.items():
        arr = np.asarray(tensors[name])
        if arr.dtype.kind != "f":
            raise err(f"{what}: tensor '{name}' has dtype {arr.dtype}, not floating point")
        value = np.array(convert(arr.astype(np.float32)), dtype=np.float32, order="C")  # 0-d stays 0-d
        want = tuple(var.shape)
        if value.shape != want:
            raise err(f"{what}: tensor '{name}' has shape {tuple(arr.shape)}, which does not fit "
                      f"busgan's layer of shape {want}; the network's sizes are inconsistent")
        if not np.isfinite(value).all():
            raise err(f"{what}: tensor '{name}' holds NaN or infinite values")
        values[id(var)] = value
    every = [v for m in models for v in m.variables]
    left = [v.path for v in every if id(v) not in values]
    if left or len(values) != len(every):  # a defect of the plan, not of the file
        raise BusganError(f"busgan import-nvlabs: internal error, no value for {left[:3]}")
    return values


def _lists(model: Any, values: dict[int, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return ([values[id(v)] for v in model.trainable_variables],
            [values[id(v)] for v in model.non_trainable_variables])


# --- shapes -> configuration -----------------------------------------------------------------

def infer_channel_base(widths: dict[int, int]) -> tuple[int, int]:
    """(channel_base, channel_max) with min(base // r, max) == widths[r] for every r, or ValueError."""
    cmax = max(widths.values())
    below = [r * w for r, w in widths.items() if w < cmax]
    base = max(below) if below else cmax * max(widths)
    if any(max(1, min(base // r, cmax)) != w for r, w in widths.items()):
        raise ValueError(", ".join(f"{r}: {w}" for r, w in sorted(widths.items())))
    return base, cmax


def _make_cfg(err: _Err, res: int, channels: int, widths: dict[int, int], z_dim: int, w_dim: int,
              mapping_layers: int, c_dim: int, prefer_base: Any = None) -> GanConfig:
    from busgan.stylegan2.networks import NUM_CLASSES, channels_for

    if sorted(widths) != [4 << i for i in range(len(widths))] or max(widths) != res:
        raise err(f"synthesis blocks at {sorted(widths)} are not 4, 8, ..., {res}")
    if z_dim != w_dim:
        raise err(f"z_dim {z_dim} differs from w_dim {w_dim}; busgan's networks use one latent size")
    if c_dim not in (0, NUM_CLASSES):
        raise err(f"the network is conditioned on {c_dim} classes; busgan's conditional network has "
                  f"{NUM_CLASSES} ({', '.join(CLASSES)})")
    try:
        base, cmax = infer_channel_base(widths)
    except ValueError as e:
        raise err(f"channel widths per resolution ({e}) do not follow min(channel_base // r, "
                  "channel_max); busgan cannot build these widths") from None
    if isinstance(prefer_base, int) and prefer_base != base:  # keep the stored value when it fits
        if all(max(1, min(prefer_base // r, cmax)) == w for r, w in widths.items()):
            base = prefer_base
    cfg = GanConfig(preset="custom", resolution=res, channels=channels, channel_base=base, channel_max=cmax,
                    z_dim=z_dim, mapping_layers=mapping_layers, conditional=bool(c_dim))
    try:
        channels_for(cfg)
    except BusganError as e:
        raise err(f"the network cannot be built by busgan: {e}") from None
    return cfg


def _need(err: _Err, tensors: dict[str, np.ndarray], name: str, what: str) -> np.ndarray:
    if name not in tensors:
        raise err(f"{what}: tensor '{name}' is missing; not a StyleGAN2 network")
    return np.asarray(tensors[name])


def _count(tensors: dict[str, np.ndarray], pattern: str) -> int:
    n = 0
    while pattern.format(n) in tensors:
        n += 1
    return n


# --- PyTorch (StyleGAN2-ADA, stylegan3 --cfg=stylegan2) ------------------------------------------

def _torch_cfg(err: _Err, G: NvModule, t: dict[str, np.ndarray]) -> GanConfig:
    blocks = sorted({int(m.group(1)) for k in t if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    if not blocks:
        raise err("G_ema has no synthesis blocks (synthesis.b4 ...); not a StyleGAN2 generator")
    res = blocks[-1]
    widths = {r: int(_need(err, t, f"synthesis.b{r}.conv1.weight", "G_ema").shape[0]) for r in blocks}
    channels = int(_need(err, t, f"synthesis.b{res}.torgb.weight", "G_ema").shape[0])
    n_map = _count(t, "mapping.fc{}.weight")
    if n_map == 0:
        raise err("G_ema has no mapping layers (mapping.fc0 ...); not a StyleGAN2 generator")
    c_dim = int(t["mapping.embed.weight"].shape[1]) if "mapping.embed.weight" in t else 0
    embed = int(t["mapping.embed.weight"].shape[0]) if c_dim else 0
    w_dim = int(t[f"mapping.fc{n_map - 1}.weight"].shape[0])
    z_dim = int(t["mapping.fc0.weight"].shape[1]) - embed
    if c_dim and embed != w_dim:
        raise err(f"the label embedding has {embed} features, not w_dim {w_dim}; busgan's conditional "
                  "mapping embeds labels to w_dim")
    kw = G.attr("_init_kwargs") or {}
    stored = {"z_dim": G.attr("z_dim"), "w_dim": G.attr("w_dim"), "c_dim": G.attr("c_dim"),
              "img_resolution": G.attr("img_resolution"), "img_channels": G.attr("img_channels")}
    found = {"z_dim": z_dim, "w_dim": w_dim, "c_dim": c_dim, "img_resolution": res, "img_channels": channels}
    bad = [f"{k} {stored[k]} (shapes say {v})" for k, v in found.items() if stored[k] is not None and stored[k] != v]
    if bad:
        raise err(f"G_ema's stored settings disagree with its tensors: {', '.join(bad)}")
    synth = kw.get("synthesis_kwargs") if isinstance(kw.get("synthesis_kwargs"), dict) else kw
    if synth.get("architecture", "skip") != "skip":
        raise err(f"G_ema's synthesis architecture is {synth.get('architecture')!r}; busgan imports 'skip' (NVlabs' default)")
    return _make_cfg(err, res, channels, widths, z_dim, w_dim, n_map, c_dim, synth.get("channel_base"))


def _layer_module(err: _Err, root: NvModule, path: str, layer: Any) -> NvModule:
    """NVlabs' layer at ``path``, refused when missing or when its activation is not busgan's."""
    mod = root.find(path)
    if mod is None:
        raise err(f"layer '{path}' is missing")
    act = mod.attr("activation", layer.act)
    if act != layer.act:
        raise err(f"layer '{path}' uses activation {act!r}; busgan's uses {layer.act!r}")
    return mod


def _fc(err: _Err, root: NvModule, path: str, layer: Any, plan: Plan) -> None:
    """Plan an NVlabs FullyConnectedLayer at ``path`` onto busgan's Dense ``layer``."""
    mod = _layer_module(err, root, path, layer)
    fan_in = layer.w.shape[0]
    wg = mod.attr("weight_gain", layer.lr_mul / math.sqrt(fan_in))
    bg = mod.attr("bias_gain", layer.lr_mul)
    rw, rb = _ratio(wg, layer.weight_gain), _ratio(bg, layer.lr_mul)
    plan[f"{path}.weight"] = (layer.w, lambda x, r=rw: _scaled(x.T, r))
    plan[f"{path}.bias"] = (layer.b, lambda x, r=rb: _scaled(x, r))


def _conv(err: _Err, root: NvModule, path: str, layer: Any, plan: Plan, convert: Convert = _oihw) -> None:
    """Plan an NVlabs Conv2dLayer (D) onto busgan's Conv ``layer``."""
    mod = _layer_module(err, root, path, layer)
    wg = mod.attr("weight_gain", layer.weight_gain)
    r = _ratio(wg, layer.weight_gain)
    plan[f"{path}.weight"] = (layer.w, lambda x, r=r: _scaled(convert(x), r))
    if layer.b is not None:
        plan[f"{path}.bias"] = (layer.b, lambda x: x)


def _torch_generator_plan(err: _Err, root: NvModule, G: Any) -> tuple[Plan, dict[str, Convert]]:
    plan: Plan = {}
    if G.embed is not None:
        _fc(err, root, "mapping.embed", G.embed, plan)
    for i, layer in enumerate(G.mapping):
        _fc(err, root, f"mapping.fc{i}", layer, plan)
    plan["mapping.w_avg"] = (G.w_avg, lambda x: x)
    plan["synthesis.b4.const"] = (G.const, lambda x: np.transpose(x, (1, 2, 0)))
    for layer in G.convs:  # busgan names b{r}_conv0 / b{r}_conv1
        r, which = layer.name.split("_")
        p = f"synthesis.{r}.{which}"
        mod = root.find(p)
        if mod is not None and mod.attr("activation", "lrelu") != "lrelu":
            raise err(f"layer '{p}' uses activation {mod.attr('activation')!r}; busgan's uses 'lrelu'")
        _fc(err, root, f"{p}.affine", layer.affine, plan)
        # No fixed weight gain in NVlabs' SynthesisLayer: demodulation makes it irrelevant, and
        # the torch up-convolution (conv_transpose2d, not flipped) equals keras' conv_transpose.
        plan[f"{p}.weight"] = (layer.w, _oihw)
        plan[f"{p}.bias"] = (layer.b, lambda x: x)
        plan[f"{p}.noise_strength"] = (layer.noise_strength, lambda x: x.reshape(()))
        plan[f"{p}.noise_const"] = (layer.noise_const, lambda x: x[:, :, None])
    for layer in G.torgbs:
        p = f"synthesis.{layer.name.split('_')[0]}.torgb"
        _fc(err, root, f"{p}.affine", layer.affine, plan)
        plan[f"{p}.weight"] = (layer.w, _oihw)
        plan[f"{p}.bias"] = (layer.b, lambda x: x)
    checks = {}
    for r in (4 << i for i in range(int(math.log2(G.resolution)) - 1)):
        checks[f"synthesis.b{r}.resample_filter"] = _check_fir(err, f"synthesis.b{r}.resample_filter")
    for layer in G.convs:
        r, which = layer.name.split("_")
        name = f"synthesis.{r}.{which}.resample_filter"
        checks[name] = _check_fir(err, name)
    return plan, checks


def _torch_discriminator_plan(err: _Err, root: NvModule, D: Any) -> tuple[Plan, dict[str, Convert]]:
    plan: Plan = {}
    top = D.resolution
    _conv(err, root, f"b{top}.fromrgb", D.fromrgb, plan)
    for block in D.blocks:
        for sub in ("conv0", "conv1", "skip"):
            _conv(err, root, f"{block.name}.{sub}", getattr(block, sub), plan)
    if D.embed is not None:
        _fc(err, root, "mapping.embed", D.embed, plan)
    for i, layer in enumerate(D.cmapping):
        _fc(err, root, f"mapping.fc{i}", layer, plan)
    _conv(err, root, "b4.conv", D.conv, plan)
    _fc(err, root, "b4.fc", D.fc, plan)
    w_fc, _ = plan["b4.fc.weight"]
    ratio = _ratio(root.find("b4.fc").attr("weight_gain", D.fc.weight_gain), D.fc.weight_gain)
    plan["b4.fc.weight"] = (w_fc, lambda x, r=ratio: _scaled(_fc_flat_nchw(x), r))
    _fc(err, root, "b4.out", D.out, plan)
    names = [f"b{top}.fromrgb"] + [f"{b.name}.{s}" for b in D.blocks for s in ("conv0", "conv1", "skip")]
    names += [b.name for b in D.blocks] + ["b4.conv"]
    checks = {f"{n}.resample_filter": _check_fir(err, f"{n}.resample_filter") for n in names}
    return plan, checks


def _read_torch(err: _Err, obj: dict[str, Any], with_d: bool) -> Imported:
    from busgan.stylegan2.networks import D_MAPPING_LAYERS, Discriminator, build_generator

    G_ema = obj.get("G_ema")
    if not isinstance(G_ema, NvModule) or G_ema.class_name != "Generator":
        raise err("holds no G_ema generator (a PyTorch StyleGAN2-ADA / stylegan3 snapshot has "
                  "'G_ema'); give the network-snapshot-*.pkl that training wrote")
    t = G_ema.tensors()
    cfg = _torch_cfg(err, G_ema, t)
    model = build_generator(cfg)
    plan, checks = _torch_generator_plan(err, G_ema, model)
    out = Imported(cfg=cfg, source="pytorch",
                   g_ema=_lists(model, _apply(err, "G_ema", t, plan, checks, [model])))
    G = obj.get("G")
    if isinstance(G, NvModule) and G.class_name == "Generator":
        plan, checks = _torch_generator_plan(err, G, model)
        out.g = _lists(model, _apply(err, "G", G.tensors(), plan, checks, [model]))
    D = obj.get("D")
    if with_d and isinstance(D, NvModule) and D.class_name == "Discriminator":
        mbstd = D.find("b4.mbstd")
        group = mbstd.attr("group_size") if mbstd is not None else None
        if mbstd is None or not isinstance(group, int) or group < 1 or mbstd.attr("num_channels", 1) != 1:
            raise err("D's minibatch-stddev layer (b4.mbstd) is absent or not (group_size N, 1 "
                      "channel); busgan's discriminator needs one; import G only (--no-d)")
        td = D.tensors()
        depth = _count(td, "mapping.fc{}.weight")
        if cfg.conditional and depth != D_MAPPING_LAYERS:
            raise err(f"D's conditioning mapping has {depth} layers; busgan's has {D_MAPPING_LAYERS} "
                      "(NVlabs' default); import G only (--no-d)")
        disc = Discriminator(cfg, mbstd_group=group, name="D")
        try:
            plan, checks = _torch_discriminator_plan(err, D, disc)
            out.d = _lists(disc, _apply(err, "D", td, plan, checks, [disc]))
        except BusganError as e:
            raise BusganError(f"{e}; to import the generators only, use --no-d") from None
        out.mbstd_group = group
    out.notes = {"conv_clamp": (G_ema.attr("_init_kwargs") or {}).get("conv_clamp"),
                 "w_avg_beta": (G_ema.find("mapping").attr("w_avg_beta") if G_ema.find("mapping") else None)}
    return out


# --- TensorFlow 1 (NVlabs/stylegan2) -----------------------------------------------------------

def _tf_gs(err: _Err, obj: Any) -> TfNetwork:
    nets = list(obj) if isinstance(obj, (tuple, list)) else [obj]
    gs = [n for n in nets if isinstance(n, TfNetwork) and n.name == "Gs"]
    if not gs:
        raise err("holds no 'Gs' network (a TensorFlow StyleGAN2 snapshot is the tuple (G, D, Gs))")
    return gs[0]


def _tf_tensors(err: _Err, gs: TfNetwork) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Gs's variables under their full names (``G_synthesis/4x4/Conv/weight``), and its kwargs."""
    version = gs.state.get("version")
    if version not in (2, 3, 4):
        raise err(f"the Gs network has format version {version!r}; NVlabs' loader reads 2-4")
    tensors = dict(gs.variables())
    kwargs: dict[str, Any] = {}
    comps = gs.state.get("components") or {}
    for key in ("mapping", "synthesis"):
        comp = comps.get(key)
        if not isinstance(comp, TfNetwork):
            raise err(f"the Gs network has no '{key}' component; not a StyleGAN2 generator")
        for name, value in comp.variables().items():
            tensors[f"{comp.name}/{name}"] = value
        kwargs[key] = dict(comp.state.get("static_kwargs") or {})
    kwargs["main"] = dict(gs.state.get("static_kwargs") or {})
    for name in list(tensors):
        tensors[name] = np.asarray(tensors[name])
    return tensors, kwargs


def _tf_cfg(err: _Err, t: dict[str, np.ndarray], kw: dict[str, Any]) -> tuple[GanConfig, float]:
    allk = {**kw["main"], **kw["mapping"], **kw["synthesis"]}
    if int(allk.get("label_size", 0) or 0) > 0 or "G_mapping/LabelConcat/weight" in t:
        raise err("is a conditional TensorFlow StyleGAN2 network (label_size > 0): its labels are "
                  "concatenated before one normalisation, which busgan's conditional network (StyleGAN2-ADA's "
                  "design) does not reproduce; import unconditional (per-class) TensorFlow networks")
    for key, want in (("architecture", "skip"), ("nonlinearity", "lrelu"), ("mapping_nonlinearity", "lrelu"),
                      ("normalize_latents", True), ("use_noise", True), ("resample_kernel", [1, 3, 3, 1])):
        value = allk.get(key, want)
        if (list(value) if isinstance(value, (list, tuple)) else value) != want:
            raise err(f"Gs was built with {key}={allk[key]!r}; busgan imports {key}={want!r} (NVlabs' default)")
    blocks = sorted({int(m.group(1)) for k in t if (m := re.match(r"G_synthesis/(\d+)x\1/", k))})
    if not blocks:
        raise err("Gs has no synthesis blocks (G_synthesis/4x4 ...); not a StyleGAN2 generator")
    res = blocks[-1]
    widths = {r: int(_need(err, t, f"G_synthesis/{r}x{r}/{'Conv' if r == 4 else 'Conv1'}/weight", "Gs").shape[3])
              for r in blocks}
    channels = int(_need(err, t, f"G_synthesis/{res}x{res}/ToRGB/weight", "Gs").shape[3])
    n_map = _count(t, "G_mapping/Dense{}/weight")
    if n_map == 0:
        raise err("Gs has no mapping layers (G_mapping/Dense0 ...); not a StyleGAN2 generator")
    z_dim = int(t["G_mapping/Dense0/weight"].shape[0])
    w_dim = int(t[f"G_mapping/Dense{n_map - 1}/weight"].shape[1])
    for key, found in (("resolution", res), ("num_channels", channels), ("latent_size", z_dim),
                       ("dlatent_size", w_dim), ("mapping_layers", n_map)):
        if key in allk and allk[key] != found:
            raise err(f"Gs's stored {key}={allk[key]!r} disagrees with its tensors ({found})")
    lrmul = float(allk.get("mapping_lrmul", MAPPING_LR))
    return _make_cfg(err, res, channels, widths, z_dim, w_dim, n_map, 0), lrmul


def _tf_plan(err: _Err, G: Any, lrmul: float) -> tuple[Plan, dict[str, Convert]]:
    plan: Plan = {}
    for i, layer in enumerate(G.mapping):
        r = _ratio(lrmul, layer.lr_mul)  # same fan-in: the run-time gains differ by lr_mul only
        plan[f"G_mapping/Dense{i}/weight"] = (layer.w, lambda x, r=r: _scaled(x, r))
        plan[f"G_mapping/Dense{i}/bias"] = (layer.b, lambda x, r=r: _scaled(x, r))
    plan["dlatent_avg"] = (G.w_avg, lambda x: x)
    plan["G_synthesis/4x4/Const/const"] = (G.const, lambda x: np.transpose(x[0], (1, 2, 0)))

    def modulated(scope: str, layer: Any, flip: bool = False) -> None:
        # TF's upsampling convolution flips its kernel before conv2d_transpose; busgan's does not.
        plan[f"{scope}/weight"] = (layer.w, (lambda x: x[::-1, ::-1]) if flip else (lambda x: x))
        plan[f"{scope}/mod_weight"] = (layer.affine.w, lambda x: x)  # [w_dim, in], gain 1/sqrt(w_dim)
        plan[f"{scope}/mod_bias"] = (layer.affine.b, lambda x: x + np.float32(1.0))  # TF adds the 1 at run time
        plan[f"{scope}/bias"] = (layer.b, lambda x: x)

    for i, layer in enumerate(G.convs):
        r, which = layer.name.split("_")
        side = r[1:]
        scope = f"G_synthesis/{side}x{side}/" + ("Conv" if side == "4" else "Conv0_up" if which == "conv0" else "Conv1")
        modulated(scope, layer, flip=layer.up == 2)
        plan[f"{scope}/noise_strength"] = (layer.noise_strength, lambda x: x.reshape(()))
        plan[f"G_synthesis/noise{i}"] = (layer.noise_const, lambda x: np.transpose(x[0], (1, 2, 0)))
    for layer in G.torgbs:
        side = layer.name.split("_")[0][1:]
        modulated(f"G_synthesis/{side}x{side}/ToRGB", layer)
    checks = {"lod": _check_zero(err, "lod"), "G_synthesis/lod": _check_zero(err, "G_synthesis/lod")}
    return plan, checks


def _read_tf(err: _Err, obj: Any) -> Imported:
    from busgan.stylegan2.networks import build_generator

    gs = _tf_gs(err, obj)
    t, kw = _tf_tensors(err, gs)
    cfg, lrmul = _tf_cfg(err, t, kw)
    model = build_generator(cfg)
    plan, checks = _tf_plan(err, model, lrmul)
    checks = {k: v for k, v in checks.items() if k in t}  # lod is optional
    values = _apply(err, "Gs", t, plan, checks, [model])
    return Imported(cfg=cfg, source="tensorflow1", g_ema=_lists(model, values),
                    notes={"mapping_lrmul": lrmul})


# --- public API -------------------------------------------------------------------------------------

def read_networks(pkl_path: Path, with_d: bool = True) -> Imported:
    """The networks in an NVlabs pickle as busgan variable values (nothing from the file runs)."""
    pkl_path = Path(pkl_path)
    err = _Err(pkl_path)
    obj = load_pickle(pkl_path)
    try:
        if isinstance(obj, dict) and "G_ema" in obj:
            return _read_torch(err, obj, with_d)
        if isinstance(obj, TfNetwork) or (isinstance(obj, (tuple, list)) and any(isinstance(n, TfNetwork) for n in obj)):
            return _read_tf(err, obj)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as e:  # a malformed structure
        raise err(f"the networks' structure is not NVlabs' ({type(e).__name__}: {str(e)[:100]}); "
                  "give a network-snapshot-*.pkl written by NVlabs' StyleGAN2 training code") from e
    raise err("holds neither a PyTorch snapshot dict with 'G_ema' nor TensorFlow (G, D, Gs) networks; "
              "give a network-snapshot-*.pkl written by NVlabs' StyleGAN2 training code")


def _imported_record(path: Path) -> dict[str, Any] | None:
    """The ``imported`` record of a snapshot this importer wrote (None for any other)."""
    from busgan.stylegan2 import snapshot as snap
    try:
        record = snap.read_snapshot(path)[1].get("imported")
    except BusganError:
        return None
    return record if isinstance(record, dict) else None


def _kimg_from_name(path: Path) -> int:
    m = re.search(r"network-snapshot-(\d+)\.pkl$", path.name)
    return int(m.group(1)) if m else 0


def import_snapshot(pkl_path: Path, out_dir: Path, classes: tuple[str, ...] = CLASSES,
                    with_d: bool = True) -> Path:
    """Import an NVlabs pickle into ``out_dir`` (``snapshots/snapshot-*.npz`` + ``best.json``).

    Returns the snapshot's path. ``generate`` accepts it or ``out_dir``. ``classes`` names the
    labels of a conditional network in index order (c = one-hot of the index). Rerunning with
    the same pickle returns the existing snapshot; a folder holding another GAN is refused.
    """
    from busgan.stylegan2 import snapshot as snap

    pkl_path, out_dir = Path(pkl_path), Path(out_dir)
    digest = sha256_file(pkl_path) if pkl_path.is_file() else None
    best_file = out_dir / "best.json"
    if best_file.is_file():
        try:
            best = read_json(best_file)
        except (OSError, ValueError):
            best = None
        if isinstance(best, dict) and (best.get("imported") or {}).get("sha256") == digest and digest:
            from busgan.stylegan2.generate import best_snapshot
            path = best_snapshot(out_dir)  # checks that best.json names a file inside out_dir
            if path.is_file():
                return path
        raise BusganError(f"{shown(out_dir)}: already holds a GAN (best.json); choose a new --out folder "
                          "or delete this one")
    existing = snap.list_snapshots(out_dir / "snapshots")
    done = _imported_record(existing[0]) if len(existing) == 1 else None
    if done and digest and done.get("sha256") == digest:  # an earlier import stopped before best.json
        write_json(best_file, {"snapshot": f"snapshots/{existing[0].name}", "imported": done})
        return existing[0]
    if existing:
        raise BusganError(f"{shown(out_dir)}: already holds snapshots; choose a new --out folder or delete them")
    if sorted(classes) != sorted(CLASSES):
        raise BusganError(f"--classes {','.join(classes)}: name {' and '.join(CLASSES)} in the network's "
                          f"label order, e.g. {','.join(CLASSES)} (label 0 first)")
    net = read_networks(pkl_path, with_d=with_d)
    state: dict[str, Any] = {"g_ema": net.g_ema[0], "g_ema_nt": net.g_ema[1]}
    if net.g is not None:
        state.update(g=net.g[0], g_nt=net.g[1])
    if net.d is not None:
        state.update(d=net.d[0], d_nt=net.d[1])
    kimg = _kimg_from_name(pkl_path)
    imported = {"from": f"nvlabs-{net.source}", "file": pkl_path.name, "sha256": digest,
                "networks": [k for k, v in (("G_ema", net.g_ema), ("G", net.g), ("D", net.d)) if v is not None],
                **{k: v for k, v in net.notes.items() if v is not None}}
    meta: dict[str, Any] = {"gan": dataclasses.asdict(net.cfg), "nimg": kimg * 1000, "kimg": kimg, "step": 0,
                            "imported": imported, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if net.cfg.conditional:
        meta["classes"] = list(classes)
    if net.mbstd_group is not None:
        meta["mbstd_group"] = net.mbstd_group
    path = snap.save_snapshot(out_dir / "snapshots" / snap.snapshot_name(kimg * 1000), state, meta)
    write_json(best_file, {"snapshot": f"snapshots/{path.name}", "imported": imported})  # no FID measured
    return path
