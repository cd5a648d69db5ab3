"""Crash-safe file writing: everything is written to a temporary name, then renamed."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash or Ctrl-C inside the block leaves ``path`` as it was (old content or absent).
    ``suffix`` keeps the extension, for writers that choose a format by it (e.g. ``.png``).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=temp_name(f"{target.name}."),
            suffix=suffix if suffix is not None else target.suffix + ".tmp", dir=target.parent,
        )
    except OSError as e:
        raise _naming(e, target)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes files 0600; give the result the usual permissions
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except OSError as e:
        raise _naming(e, target, tmp)
    finally:
        if tmp.exists():
            tmp.unlink()


TEMP_PREFIX = ".busgan-tmp-"
"""Every temporary file or folder busgan makes starts with this, and clean-up touches nothing
else: a looser pattern (".NAME.XXXXXXXX.EXT") also matched users' ``.env.template``."""
TEMP_NAME = re.compile(r"^" + re.escape(TEMP_PREFIX) + r".+$")
RESUMABLE_SUFFIX = ".partial"
"""A temporary folder ending so holds finished work a rerun continues from (the phantom's)."""


def temp_name(name: str) -> str:
    """The busgan-specific name of a temporary for ``name`` (see TEMP_PREFIX)."""
    return TEMP_PREFIX + name


def remove_stale_temporaries(root: str | os.PathLike[str]) -> int:
    """Delete temporaries a killed process (SIGKILL skips ``finally``) left below ``root``.

    Only names made with ``temp_name`` are touched: their files, and their folders except
    resumable ones (RESUMABLE_SUFFIX). Symbolic links are never followed nor removed.
    """
    removed = 0
    for folder, dirs, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if TEMP_NAME.match(name) and not path.is_symlink():
                path.unlink()
                removed += 1
        for name in list(dirs):
            path = Path(folder, name)
            if TEMP_NAME.match(name) and not name.endswith(RESUMABLE_SUFFIX) and not path.is_symlink():
                shutil.rmtree(path)
                dirs.remove(name)
                removed += 1
    return removed


def _naming(e: OSError, target: Path, tmp: Path | None = None) -> OSError:
    """``e`` naming the file the user asked for, not its temporary (a full disk names none).

    The CLI turns it into one line such as ``stats/stats.json: no space left on the device``.
    """
    if tmp is None or e.filename is None or os.fspath(e.filename) == os.fspath(tmp):
        e.filename = os.fspath(target)
    return e


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsync'd before the rename)."""
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            e.needed_bytes = len(data)  # type: ignore[attr-defined]  # shown by the CLI
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


NONFINITE_NOTE = "_nonfinite"
"""The key under which ``strict_json`` notes the values it replaced by null (top-level dicts)."""


def _key(k: Any) -> str:
    """A dict key as ``json.dumps`` would write it (so sorting never compares int with str)."""
    if isinstance(k, str):
        return k
    if k is None or isinstance(k, (bool, int, float)):
        return json.dumps(k)
    return str(k)


def _strict(obj: Any, pointer: str, notes: dict[str, str]) -> Any:
    """``obj`` with NaN/inf as None (their JSON pointers noted), NumPy values as Python ones."""
    if isinstance(obj, dict):
        return {_key(k): _strict(v, f"{pointer}/{_key(k)}", notes) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v, f"{pointer}/{i}", notes) for i, v in enumerate(obj)]
    if type(obj).__module__ == "numpy":  # scalars and arrays, without importing NumPy here
        obj = obj.tolist() if hasattr(obj, "tolist") else obj
        if isinstance(obj, list):
            return _strict(obj, pointer, notes)
    if isinstance(obj, float) and not math.isfinite(obj):
        notes[pointer or "/"] = "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
        return None
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    return str(obj)  # paths, dates, enums ...: their text, as before


def strict_json(obj: Any) -> Any:
    """``obj`` made writable as strict JSON (RFC 8259), which every parser reads.

    NaN and infinities (which ``json.dumps`` writes as the non-standard ``NaN``/``Infinity``)
    become null; in a top-level dict, ``_nonfinite`` then maps each such value's JSON pointer
    to what it was (e.g. ``{"/auc": "NaN"}``), so a reader can tell "not a number" from
    "absent". NumPy scalars and arrays become numbers and lists, other objects their text.
    """
    notes: dict[str, str] = {}
    clean = _strict(obj, "", notes)
    if notes and isinstance(clean, dict):
        clean[NONFINITE_NOTE] = dict(sorted(notes.items()))
    return clean


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as strict JSON text (see ``strict_json``), keys sorted: what busgan writes."""
    return json.dumps(strict_json(obj), indent=indent, sort_keys=True, allow_nan=False)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (NaN/inf as null, see ``strict_json``), atomically."""
    atomic_write_text(path, dumps_json(obj) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's content, read in 1 MiB blocks (bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
