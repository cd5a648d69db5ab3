"""GAN snapshots: named arrays in one ``.npz`` plus JSON metadata, never pickle.

Why this format: ``np.load(..., allow_pickle=False)`` cannot run code, unlike pickle-based
snapshots, and every array is addressable by name (``g/3``, ``d_opt/m/0``). The JSON metadata
(the [gan] config, images shown and step, ADA p and its sign accumulator, RNG seed and step,
backend, devices, training data, time) is stored inside the same archive as a uint8 array
called ``__meta__``, so one atomic rename publishes a complete snapshot. The FID history is
not in snapshots: it is ``fid.csv`` beside them (and ``best.json``, the lowest FID).

Files are ``snapshots/snapshot-<images shown, 9 digits>.npz``; the newest readable one is
the resume point. A snapshot refuses to load into a different architecture.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from busgan.config import GanConfig, keys_with_effect, with_current_keys
from busgan.errors import BusganError
from busgan.fileio import atomic_path

FORMAT = "busgan-stylegan2-snapshot/1"
META_KEY = "__meta__"
# Fields that change the networks' shapes: a snapshot cannot load across them.
ARCH_KEYS = ("preset", "resolution", "channels", "channel_base", "channel_max", "z_dim",
             "mapping_layers")
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
    return np.frombuffer(json.dumps(meta, sort_keys=True, default=str).encode(), dtype=np.uint8)


def save_snapshot(path: Path, state: Any, meta: dict[str, Any]) -> Path:
    """Write ``state`` (a pytree of arrays) and ``meta`` atomically; the old file survives errors.

    A full disk or any OSError becomes a one-line BusganError; the partly written temporary
    file is removed and earlier snapshots are untouched.
    """
    arrays = flatten(state)
    if META_KEY in arrays:
        raise ValueError(f"state may not contain a key named {META_KEY}")
    meta = {"format": FORMAT, **meta}
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
    """All arrays and the metadata of a snapshot file (no code runs: allow_pickle=False)."""
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
    if meta.get("format") != FORMAT:
        raise BusganError(f"{path}: unknown snapshot format {meta.get('format')!r}; "
                          f"expected {FORMAT} (written by busgan train-gan)")
    return arrays, meta


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


def check_config(meta: dict[str, Any], cfg: GanConfig, source: str) -> list[str]:
    """Refuse a snapshot of another architecture; return the other settings that changed."""
    old = gan_meta(meta) if isinstance(meta.get("gan"), dict) else {}
    new = dataclasses.asdict(cfg)
    arch = [k for k in ARCH_KEYS if old.get(k) != new[k]]
    if arch:
        diffs = ", ".join(f"{k}={old.get(k)!r} (now {new[k]!r})" for k in arch)
        raise BusganError(f"{source}: snapshot is from another network: {diffs}; "
                          "use the same settings, or a new --out folder")
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
