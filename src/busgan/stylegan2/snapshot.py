"""GAN snapshots: named arrays in one ``.npz`` plus JSON metadata, never pickle.

Why this format: ``np.load(..., allow_pickle=False)`` cannot run code, unlike pickle-based
snapshots, and every array is addressable by name. Since format 2, each network's weights are
stored under their layer and variable names, not their positions: ``g_ema/b64_conv0/affine/w``
(the EMA generator), ``g/...`` and ``g_nt/...`` (the generator's trainable and non-trainable
variables), ``d/...``, ``d_nt/...``, the Adam moments ``g_opt/m/...``, ``g_opt/v/...``,
``d_opt/...`` under the same names, and the scalars ``g_opt/t``, ``d_opt/t``, ``pl_mean``,
``aug_p``. A name is the layer path inside the network (``map0/w``, ``b8_torgb/b``; the
network's own ``const`` and ``w_avg`` bare), so a file stays readable when the code's variable
order changes and by any NumPy user. In memory the state keeps the networks' variable order
(``steps.init_state``): ``read_snapshot`` maps names back to positions, and format-1 files
(positional keys ``g/0``, ``g/1`` ...) still load as they are.

The JSON metadata (the [gan] config, images shown and step, ADA p and its sign accumulator,
RNG seed and step, backend, devices, training data, time) is stored inside the same archive as
a uint8 array called ``__meta__``, so one atomic rename publishes a complete snapshot. The FID
history is not in snapshots: it is ``fid.csv`` beside them (and ``best.json``, the lowest FID).

Files are ``snapshots/snapshot-<images shown, 9 digits>.npz``; the newest readable one is
the resume point. A snapshot refuses to load into a different architecture.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from busgan import CLASSES
from busgan.config import GanConfig, keys_with_effect, with_current_keys
from busgan.errors import BusganError
from busgan.fileio import atomic_path, dumps_json

FORMAT = "busgan-stylegan2-snapshot/2"
READABLE_FORMATS = ("busgan-stylegan2-snapshot/1", FORMAT)  # 1: positional keys only
META_KEY = "__meta__"
# Fields that change the networks' shapes: a snapshot cannot load across them.
ARCH_KEYS = ("preset", "resolution", "channels", "channel_base", "channel_max", "z_dim",
             "mapping_layers", "conditional")
_NAME = re.compile(r"^snapshot-(\d{9})\.npz$")


def snapshot_name(nimg: int) -> str:
    """File name for a snapshot taken after ``nimg`` real images were shown."""
    return f"snapshot-{nimg:09d}.npz"


def flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts/lists/tuples of arrays -> {"a/0/b": array} (dict keys sorted)."""
    out: dict[str, np.ndarray] = {}
    if isinstance(tree, dict):
        for k in sorted(tree):
            out.update(flatten(tree[k], f"{prefix}{k}/"))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}{i}/"))
    else:
        out[prefix[:-1]] = np.asarray(tree)
    return out


def unflatten_like(template: Any, arrays: dict[str, np.ndarray], source: str = "snapshot",
                   prefix: str = "") -> Any:
    """Rebuild ``template``'s structure from named arrays, checking names and shapes."""
    if isinstance(template, dict):
        return {k: unflatten_like(v, arrays, source, f"{prefix}{k}/") for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        items = [unflatten_like(v, arrays, source, f"{prefix}{i}/") for i, v in enumerate(template)]
        return type(template)(items)
    name = prefix[:-1]
    if name not in arrays:
        raise BusganError(f"{source}: array '{name}' missing; the snapshot is from another "
                          "network layout; train with the snapshot's config or start a new --out")
    a = arrays[name]
    want = tuple(np.shape(template))
    if tuple(a.shape) != want:
        raise BusganError(f"{source}: array '{name}' has shape {tuple(a.shape)}, the network "
                          f"needs {want}; use the snapshot's config or start a new --out")
    return a


def _meta_array(meta: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(dumps_json(meta, indent=None).encode(), dtype=np.uint8)


# --- names -----------------------------------------------------------------------------------

def variable_names(model: Any) -> tuple[list[str], list[str]]:
    """Names of ``model``'s trainable and non-trainable variables, in their order.

    A name is the path of layer names from the model down to the variable (``b8_conv0/affine/w``;
    the model's own variables bare: ``const``, ``w_avg``). Keras' own ``variable.path`` is not
    used: layers built inside a model's ``__init__`` do not nest their paths, so two ``affine/w``
    would clash.
    """
    named: dict[int, str] = {}

    def walk(layer: Any, prefix: str) -> None:
        for v in list(layer._trainable_variables) + list(layer._non_trainable_variables):
            named[id(v)] = prefix + v.name
        for sub in layer._flatten_layers(include_self=False, recursive=False):
            walk(sub, f"{prefix}{sub.name}/")

    walk(model, "")
    trainable = [named[id(v)] for v in model.trainable_variables]
    frozen = [named[id(v)] for v in model.non_trainable_variables]
    if len(set(trainable + frozen)) != len(trainable) + len(frozen):
        raise ValueError(f"{model.name}: two variables share a name; name its layers uniquely")
    return trainable, frozen


# Which network's names each list of the training state takes (steps.init_state).
_GROUPS = {"g": ("G", 0), "g_ema": ("G", 0), "g_opt/m": ("G", 0), "g_opt/v": ("G", 0),
           "g_nt": ("G", 1), "g_ema_nt": ("G", 1),
           "d": ("D", 0), "d_opt/m": ("D", 0), "d_opt/v": ("D", 0), "d_nt": ("D", 1)}


@functools.lru_cache(maxsize=4)
def _names_for(gan_json: str) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """(name, shape) of every variable of each state list, for the [gan] config given as JSON.

    The networks are built without initial values (no memory, a fraction of a second), then
    dropped.
    """
    import keras

    from busgan.stylegan2 import networks

    cfg = config_from_meta({"gan": json.loads(gan_json)})
    with keras.StatelessScope(initialize_variables=False):
        models = {"G": networks.build_generator(cfg), "D": networks.build_discriminator(cfg)}
    _forget_deferred(models.values())
    lists = {}
    for key, model in models.items():
        trainable, frozen = variable_names(model)
        shapes = ([tuple(v.shape) for v in model.trainable_variables],
                  [tuple(v.shape) for v in model.non_trainable_variables])
        lists[key] = (list(zip(trainable, shapes[0])), list(zip(frozen, shapes[1])))
    return {group: lists[net][which] for group, (net, which) in _GROUPS.items()}


def _forget_deferred(models: Any) -> None:
    """Keras would give the never-used variables values at its next stateless scope (inside a
    compiled step, even); drop them from its list of pending variables instead."""
    try:
        from keras.src.backend.common import global_state
        pending = global_state.get_global_attribute("uninitialized_variables")
        if pending:
            ours = {id(v) for m in models for v in m.variables}
            global_state.set_global_attribute("uninitialized_variables",
                                              [v for v in pending if id(v) not in ours])
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another Keras:
        return  # the variables are then merely given values once, later


def _network_names(meta: dict[str, Any]) -> dict[str, list[tuple[str, tuple[int, ...]]]] | None:
    """The names of the networks ``meta["gan"]`` describes (None without a usable config)."""
    gan = meta.get("gan")
    if not isinstance(gan, dict):
        return None
    try:
        return _names_for(json.dumps(gan_meta(meta), sort_keys=True))
    except (BusganError, TypeError, ValueError, KeyError):
        return None


def _positional(arrays: dict[str, np.ndarray], group: str) -> list[str] | None:
    """The keys ``group/0 .. group/n-1`` when ``arrays`` holds exactly those for the group."""
    keys = [k for k in arrays if k.startswith(group + "/")]
    rest = sorted(k[len(group) + 1:] for k in keys)
    if not keys or not all(r.isdigit() for r in rest):
        return None
    n = len(keys)
    return [f"{group}/{i}" for i in range(n)] if set(rest) == {str(i) for i in range(n)} else None


def to_named(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Positional keys (``g/3``) -> named keys (``g/b8_conv0/w``) for every state list that
    matches the networks of ``meta["gan"]`` in length and shapes; anything else as it is."""
    names = _network_names(meta)
    if names is None:
        return dict(arrays)
    out = dict(arrays)
    for group, variables in names.items():
        keys = _positional(arrays, group)
        if keys is None or len(keys) != len(variables):
            continue
        if any(tuple(arrays[k].shape) != shape for k, (_, shape) in zip(keys, variables)):
            continue
        for k, (name, _) in zip(keys, variables):
            out[f"{group}/{name}"] = out.pop(k)
    return out


def _group_of(key: str) -> str | None:
    """The state list a key belongs to (the longest matching prefix: ``g_opt/m`` before ``g``)."""
    return max((g for g in _GROUPS if key.startswith(g + "/")), key=len, default=None)


def to_positional(arrays: dict[str, np.ndarray], meta: dict[str, Any],
                  source: str = "snapshot") -> dict[str, np.ndarray]:
    """Named keys -> the positions of today's networks (the inverse of ``to_named``); lists
    already positional (format 1) are kept. A name today's networks lack, or one of their
    variables the file lacks, is refused with one line."""
    named: dict[str, list[str]] = {}
    for key in arrays:
        group = _group_of(key)
        if group is not None and not key[len(group) + 1:].isdigit():
            named.setdefault(group, []).append(key)
    if not named:
        return dict(arrays)
    names = _network_names(meta)
    if names is None:
        raise BusganError(f"{source}: named arrays but no usable [gan] config in the metadata; "
                          "give a snapshot written by busgan train-gan")
    out = dict(arrays)
    fix = "use the busgan version that wrote it, or start a new --out"
    for group, keys in named.items():
        index = {name: i for i, (name, _) in enumerate(names[group])}
        stored = {k[len(group) + 1:] for k in keys}
        unknown = sorted(stored - index.keys())
        if unknown:
            raise BusganError(f"{source}: array '{group}/{unknown[0]}' is not a variable of the "
                              f"network its config describes; {fix}")
        missing = [n for n in index if n not in stored]
        if missing:
            raise BusganError(f"{source}: array '{group}/{missing[0]}' missing; the snapshot is from "
                              f"another network layout; {fix}")
        for k in keys:
            out[f"{group}/{index[k[len(group) + 1:]]}"] = out.pop(k)
    return out


def save_snapshot(path: Path, state: Any, meta: dict[str, Any]) -> Path:
    """Write ``state`` (a pytree of arrays) and ``meta`` atomically; the old file survives errors.

    A full disk or any OSError becomes a one-line BusganError; the partly written temporary
    file is removed and earlier snapshots are untouched.
    """
    arrays = flatten(state)
    if META_KEY in arrays:
        raise ValueError(f"state may not contain a key named {META_KEY}")
    meta = {**meta, "format": FORMAT}
    arrays = to_named(arrays, meta)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays, **{META_KEY: _meta_array(meta)})
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        why = "disk full" if e.errno == errno.ENOSPC else (e.strerror or type(e).__name__)
        raise BusganError(f"{path}: cannot write snapshot ({why}); free space or choose another "
                          "--out, then rerun with --resume auto (earlier snapshots are intact)") from None
    return path


def read_snapshot(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All arrays and the metadata of a snapshot file (no code runs: allow_pickle=False).

    Arrays come under positional keys (``g_ema/0``, as ``flatten`` of the training state
    gives), whichever format the file has; ``read_named`` gives the names stored.
    """
    arrays, meta = read_named(path)
    return to_positional(arrays, meta, str(path)), meta


def read_named(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays of a snapshot under the keys stored in the file, and its metadata."""
    path = Path(path)
    if not path.is_file():
        raise BusganError(f"{path}: snapshot not found; give a snapshot-*.npz file or a "
                          "train-gan output folder")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(bytes(arrays.pop(META_KEY)).decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise BusganError(f"{path}: not a readable busgan snapshot ({type(e).__name__}); "
                          "delete it to resume from the previous snapshot") from None
    if meta.get("format") not in READABLE_FORMATS:
        raise BusganError(f"{path}: unknown snapshot format {meta.get('format')!r}; "
                          f"expected {' or '.join(READABLE_FORMATS)} (written by busgan train-gan); "
                          "a newer busgan may read it")
    return arrays, meta


def read_meta(path: Path) -> dict[str, Any]:
    """Only the metadata of a snapshot (its arrays are not read)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(bytes(z[META_KEY]).decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise BusganError(f"{path}: not a readable busgan snapshot ({type(e).__name__}); "
                          "give a snapshot-*.npz written by busgan train-gan") from None


def snapshot_classes(meta: dict[str, Any]) -> list[str] | None:
    """A conditional snapshot's class names in label order (label i = one-hot index i), or
    None for an unconditional one (one class's generator)."""
    if not gan_meta(meta).get("conditional"):
        return None
    return list(meta.get("classes") or CLASSES)


def gan_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The [gan] values a snapshot stores, under today's key names (older snapshots stored
    ``gan.preset`` as ``config``)."""
    return with_current_keys("gan", meta["gan"])


def config_from_meta(meta: dict[str, Any], source: str = "snapshot") -> GanConfig:
    """The GanConfig stored in a snapshot (unknown keys from other versions ignored)."""
    known = {f.name for f in dataclasses.fields(GanConfig)}
    try:
        return GanConfig(**{k: v for k, v in gan_meta(meta).items() if k in known})
    except (KeyError, TypeError, ValueError):
        raise BusganError(f"{source}: no [gan] config in the snapshot metadata; "
                          "give a snapshot written by busgan train-gan") from None


def check_architecture(meta: dict[str, Any], cfg: GanConfig, source: str) -> None:
    """Refuse a snapshot whose networks have another architecture than ``cfg``'s."""
    old = gan_meta(meta) if isinstance(meta.get("gan"), dict) else {}
    new = dataclasses.asdict(cfg)
    if old:  # snapshots from before a key existed were made with its default (conditional: False)
        old = {**dataclasses.asdict(GanConfig()), **old}
    arch = [k for k in ARCH_KEYS if old.get(k) != new[k]]
    if arch:
        diffs = ", ".join(f"{k}={old.get(k)!r} (now {new[k]!r})" for k in arch)
        raise BusganError(f"{source}: snapshot is from another network: {diffs}; "
                          "use the same settings, or a new --out folder")


def check_config(meta: dict[str, Any], cfg: GanConfig, source: str) -> list[str]:
    """Refuse a snapshot of another architecture; return the other settings that changed."""
    check_architecture(meta, cfg, source)
    old = gan_meta(meta) if isinstance(meta.get("gan"), dict) else {}
    new = dataclasses.asdict(cfg)
    # Keys declared effect="result" shape training from its first step: continuing under new
    # values would give a network trained with settings it never (fully) saw.
    restart = [k for k in keys_with_effect(cfg, "result") if k in old and old[k] != new[k]]
    if restart:
        diffs = ", ".join(f"gan.{k}={old[k]!r} (now {new[k]!r})" for k in restart)
        raise BusganError(f"{source}: snapshot was trained with {diffs}, which cannot change "
                          "mid-training; set them back, or train afresh in a new --out folder "
                          "(busgan run: a new --work, or delete WORK/stylegan2)")
    return [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in new if k in old and old[k] != new[k]]


def list_snapshots(folder: Path) -> list[Path]:
    """Snapshot files in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def latest_snapshot(folder: Path) -> Path | None:
    """The newest snapshot in ``folder`` (None when there is none)."""
    snaps = list_snapshots(folder)
    return snaps[-1] if snaps else None


def load_state(path: Path, template: Any, cfg: GanConfig) -> tuple[Any, dict[str, Any], list[str]]:
    """Load a snapshot into ``template``'s structure after the architecture check."""
    arrays, meta = read_snapshot(path)
    changed = check_config(meta, cfg, str(path))
    return unflatten_like(template, arrays, str(path)), meta, changed
