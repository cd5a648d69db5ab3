"""The EMA generator of a snapshot for use outside busgan: a ``.keras`` model or a plain ``.npz``.

``busgan export SNAPSHOT --out G.keras`` writes a Keras model that maps latents ``z``
(``[N, z_dim]`` float32; busgan's image of seed s uses ``np.random.RandomState(s).randn(z_dim)``)
to images ``[N, R, R, C]`` float32 in about [-1, 1] (``x * 127.5 + 128``, rounded and clipped,
gives busgan's 8-bit pixels), with the truncation psi and noise mode fixed at export. A
conditional generator takes a second input, one-hot labels ``[N, 2]`` (benign, malignant).
The one custom layer, ``busgan>StyleGAN2Generator``, is registered when this module is
imported, so ``import busgan.stylegan2.export`` then ``keras.saving.load_model(path)`` loads it
with ``safe_mode`` on (no Lambda layer, no code in the file).

``--out G.npz`` writes the weights alone, for other frameworks: one array per variable, under
the names ``snapshot.variable_names`` gives (``map0/w``, ``b8_conv0/affine/w``, ``const``,
``w_avg``, ``b8_conv0/noise_const`` ...), and ``__meta__``, a uint8 array holding JSON: the
format, the [gan] config that fixes every shape, and where the weights came from.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from busgan.config import GanConfig
from busgan.errors import BusganError
from busgan.fileio import atomic_path, dumps_json
from busgan.stylegan2 import networks
from busgan.stylegan2 import snapshot as snap

NPZ_FORMAT = "busgan-stylegan2-generator/1"
NOISE_MODES = ("const", "none")  # "random" needs per-image seeds: busgan generate has them
SUFFIXES = (".keras", ".npz")


def _assign_ema(G: networks.Generator, arrays: dict[str, np.ndarray], source: str) -> None:
    """Put a snapshot's EMA weights (positional arrays, ``read_snapshot``) into ``G``."""
    values = snap.unflatten_like({"g_ema": [v.value for v in G.trainable_variables],
                                  "g_ema_nt": [v.value for v in G.non_trainable_variables]},
                                 arrays, source)
    for variable, value in zip(G.trainable_variables + G.non_trainable_variables,
                               values["g_ema"] + values["g_ema_nt"]):
        variable.assign(value)


def load_ema_generator(snapshot: Path) -> tuple[networks.Generator, GanConfig, dict[str, Any]]:
    """A generator holding the snapshot's EMA weights, its config and the snapshot's metadata."""
    arrays, meta = snap.read_snapshot(snapshot)
    cfg = snap.config_from_meta(meta, str(snapshot))
    G = networks.build_generator(cfg)
    _assign_ema(G, arrays, str(snapshot))
    return G, cfg, meta


@keras.saving.register_keras_serializable(package="busgan", name="StyleGAN2Generator")
class StyleGAN2Generator(keras.layers.Layer):
    """z ``[N, z_dim]`` (and one-hot c ``[N, c_dim]`` when conditional) -> images ``[N, R, R, C]``.

    The generator is rebuilt from ``gan`` (the [gan] config) and its weights saved with the
    layer, so the ``.keras`` file needs busgan but no pickled code.
    """

    def __init__(self, gan: dict[str, Any], truncation: float = 1.0, noise_mode: str = "const",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if noise_mode not in NOISE_MODES:
            raise BusganError(f"noise mode {noise_mode!r}: an exported generator uses "
                              f"{' or '.join(NOISE_MODES)}")
        self.gan, self.truncation, self.noise_mode = dict(gan), float(truncation), noise_mode
        self.G = networks.build_generator(snap.config_from_meta({"gan": self.gan}, "exported generator"))
        self.c_dim = int(getattr(self.G, "c_dim", 0))

    def call(self, z, c=None):
        inputs = {"z": z, **({"c": c} if self.c_dim else {})}
        return self.G(inputs, psi=self.truncation, noise_mode=self.noise_mode)

    def compute_output_shape(self, z_shape, c_shape=None):
        return (z_shape[0], self.G.resolution, self.G.resolution, self.G.img_channels)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gan": self.gan, "truncation": self.truncation,
                "noise_mode": self.noise_mode}


def keras_model(snapshot: Path, truncation: float, noise_mode: str) -> keras.Model:
    """A functional model around ``StyleGAN2Generator`` holding the snapshot's EMA weights."""
    arrays, meta = snap.read_snapshot(snapshot)
    cfg = snap.config_from_meta(meta, str(snapshot))
    layer = StyleGAN2Generator(dataclasses.asdict(cfg), truncation, noise_mode, name="generator")
    _assign_ema(layer.G, arrays, str(snapshot))
    z = keras.Input((cfg.z_dim,), name="z")
    if layer.c_dim:
        c = keras.Input((layer.c_dim,), name="c")
        return keras.Model([z, c], layer(z, c), name="busgan_stylegan2")
    return keras.Model(z, layer(z), name="busgan_stylegan2")


def named_weights(G: networks.Generator) -> dict[str, np.ndarray]:
    """Every variable of ``G`` as a NumPy array under its name (``snapshot.variable_names``)."""
    trainable, frozen = snap.variable_names(G)
    variables = G.trainable_variables + G.non_trainable_variables
    return {name: np.asarray(keras.ops.convert_to_numpy(v.value))
            for name, v in zip(trainable + frozen, variables)}


def export_generator(snapshot: Path, out: Path, truncation: float = 1.0,
                     noise_mode: str = "const") -> Path:
    """Write the snapshot's EMA generator to ``out`` (``.keras`` or ``.npz``, by suffix), atomically.

    ``snapshot``: a snapshot file, or a train-gan output folder (its best snapshot).
    ``truncation`` and ``noise_mode`` are fixed in a ``.keras`` model (an ``.npz`` holds weights).
    """
    from busgan.stylegan2.generate import resolve_network

    out = Path(out)
    if out.suffix not in SUFFIXES:
        raise BusganError(f"{out}: give a file name ending in .keras (a Keras model) or .npz "
                          "(named arrays)")
    if not np.isfinite(truncation):
        raise BusganError(f"truncation psi {truncation!r} is not a finite number; give e.g. "
                          "--truncation 1.0 (1 = no truncation)")
    source = resolve_network(Path(snapshot))
    if out.suffix == ".npz":
        G, cfg, meta = load_ema_generator(source)
        arrays = named_weights(G)
        info = {"format": NPZ_FORMAT, "gan": dataclasses.asdict(cfg), "snapshot": source.name,
                "kimg": meta.get("kimg"), "network": "G_ema", "noise_mode_at_generation": "const"}
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays, **{snap.META_KEY: np.frombuffer(dumps_json(info).encode(), np.uint8)})
        return out
    model = keras_model(source, truncation, noise_mode)
    with atomic_path(out, suffix=".keras") as tmp:  # Keras chooses the format by the suffix
        model.save(tmp)
    return out


def read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The named weights and the metadata of an exported ``.npz`` (no code runs)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    info = json.loads(bytes(arrays.pop(snap.META_KEY)).decode())
    if info.get("format") != NPZ_FORMAT:
        raise BusganError(f"{path}: not a generator exported by busgan export ({info.get('format')!r})")
    return arrays, info
