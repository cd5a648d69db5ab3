"""Atomic writes: the target appears only when the block succeeds, with normal permissions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from busgan.fileio import atomic_path, atomic_write_text, read_json, write_json


def test_atomic_write_and_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "hello")
    assert target.read_text() == "hello"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_failed_block_keeps_old_content_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_stale_temporaries_removed(tmp_path: Path) -> None:
    from busgan.fileio import remove_stale_temporaries
    (tmp_path / "d").mkdir()
    stale = tmp_path / "d" / ".busgan-tmp-model.keras.ab12_x9z.tmp"
    stale.write_text("half")
    keep = [tmp_path / "d" / "model.keras", tmp_path / ".gitignore", tmp_path / "d" / ".DIR.partial",
            tmp_path / "d" / ".model.keras.ab12_x9z.tmp"]  # the old pattern: may be a user's file
    for k in keep:
        k.write_text("x")
    assert remove_stale_temporaries(tmp_path) == 1
    assert not stale.exists() and all(k.exists() for k in keep)
