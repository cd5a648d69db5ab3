"""Snapshots: round trip, no pickle, atomic under a full disk, refusal of another config."""

from __future__ import annotations

import dataclasses
import errno

import numpy as np
import pytest

from busgan.config import GanConfig
from busgan.errors import BusganError
from busgan.stylegan2 import snapshot as snap


def _state(seed=0):
    rng = np.random.default_rng(seed)
    return {"g": [rng.standard_normal((3, 4)).astype(np.float32), np.zeros(2, np.float32)],
            "g_opt": {"m": [np.ones(3, np.float32)], "t": np.float32(5)},
            "aug_p": np.float32(0.25)}


def _cfg(**kw):
    return GanConfig(preset="custom", resolution=16, channel_base=64, channel_max=16, z_dim=8,
                     mapping_layers=2, **kw)


def test_round_trip(tmp_path):
    cfg = _cfg()
    state = _state()
    meta = {"gan": dataclasses.asdict(cfg), "nimg": 64, "rng": {"a": [1, 2]}}
    path = snap.save_snapshot(tmp_path / snap.snapshot_name(64), state, meta)
    loaded, m, changed = snap.load_state(path, _state(1), cfg)
    assert changed == [] and m["nimg"] == 64 and m["rng"] == {"a": [1, 2]}
    for a, b in zip(snap.flatten(state).values(), snap.flatten(loaded).values()):
        np.testing.assert_array_equal(a, b)
    assert snap.latest_snapshot(tmp_path) == path
    assert snap.config_from_meta(m) == cfg


def test_old_snapshot_with_gan_config_key_loads_as_preset(tmp_path):
    # snapshots written before gan.config was renamed gan.preset store "config" in their metadata
    cfg = _cfg()
    old_meta = dict(dataclasses.asdict(cfg))
    old_meta["config"] = old_meta.pop("preset")
    path = snap.save_snapshot(tmp_path / snap.snapshot_name(64), _state(), {"gan": old_meta, "nimg": 64})
    _, meta, changed = snap.load_state(path, _state(1), cfg)
    assert changed == [] and snap.config_from_meta(meta) == cfg
    with pytest.raises(BusganError, match=r"preset='custom' \(now 'e'\)"):
        snap.load_state(path, _state(1), dataclasses.replace(cfg, preset="e"))


def test_file_has_no_pickled_objects(tmp_path):
    path = snap.save_snapshot(tmp_path / "snapshot-000000001.npz", _state(), {"gan": {}})
    with np.load(path, allow_pickle=False) as z:  # would raise on an object array
        assert all(z[k].dtype != object for k in z.files)


def test_refuses_another_resolution(tmp_path):
    path = snap.save_snapshot(tmp_path / snap.snapshot_name(1), _state(),
                              {"gan": dataclasses.asdict(_cfg())})
    with pytest.raises(BusganError, match="resolution=16 .now 32.") as e:
        snap.load_state(path, _state(), dataclasses.replace(_cfg(), resolution=32))
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_reports_changed_training_settings(tmp_path):
    path = snap.save_snapshot(tmp_path / snap.snapshot_name(1), _state(),
                              {"gan": dataclasses.asdict(_cfg())})
    _, _, changed = snap.load_state(path, _state(), dataclasses.replace(_cfg(), kimg=5.0))
    assert changed == ["kimg: 10000.0 -> 5.0"]


def test_refuses_resuming_after_a_result_key_changed(tmp_path):
    # gan.lr shapes training from its first step (effect "result"): resuming would train a
    # network with settings it never fully saw, so the snapshot is refused.
    path = snap.save_snapshot(tmp_path / snap.snapshot_name(1), _state(),
                              {"gan": dataclasses.asdict(_cfg())})
    with pytest.raises(BusganError, match=r"gan\.lr=0\.002 \(now 0\.001\)") as e:
        snap.load_state(path, _state(), dataclasses.replace(_cfg(), lr=0.001))
    assert "\n" not in str(e.value) and "new --out" in str(e.value)


def test_refuses_shape_mismatch(tmp_path):
    path = snap.save_snapshot(tmp_path / snap.snapshot_name(1), _state(),
                              {"gan": dataclasses.asdict(_cfg())})
    other = _state()
    other["g"][0] = np.zeros((4, 4), np.float32)
    with pytest.raises(BusganError, match="shape"):
        snap.load_state(path, other, _cfg())


def test_full_disk_keeps_last_snapshot(tmp_path, monkeypatch):
    first = snap.save_snapshot(tmp_path / snap.snapshot_name(1), _state(), {"gan": {}})
    before = first.read_bytes()

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", no_space)
    with pytest.raises(BusganError, match="disk full"):
        snap.save_snapshot(tmp_path / snap.snapshot_name(2), _state(), {"gan": {}})
    with pytest.raises(BusganError, match="disk full"):
        snap.save_snapshot(first, _state(5), {"gan": {}})  # overwriting must not clobber either
    assert first.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left behind


def test_corrupt_or_foreign_files_are_refused(tmp_path):
    bad = tmp_path / "snapshot-000000001.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BusganError, match="not a readable"):
        snap.read_snapshot(bad)
    np.savez(tmp_path / "x.npz", a=np.zeros(1))
    with pytest.raises(BusganError, match="not a readable"):
        snap.read_snapshot(tmp_path / "x.npz")
    with pytest.raises(BusganError, match="not found"):
        snap.read_snapshot(tmp_path / "missing.npz")
