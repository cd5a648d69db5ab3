"""train-gan / generate end to end at 8x8: resume equals straight, 1 vs 2 devices, bad inputs.

All runs share one tiny config so the phases compile once per process (``training._CACHE``).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busgan.config import GanConfig
from busgan.errors import BusganError

pytestmark = [pytest.mark.keras, pytest.mark.slow]  # real (tiny) GAN trainings, compiled per module

STEPS, BATCH = 8, 4
CFG = GanConfig(preset="custom", resolution=8, channels=1, channel_base=64, channel_max=16, z_dim=16,
                mapping_layers=1, batch_size=BATCH, kimg=STEPS * BATCH / 1000,
                snapshot_kimg=STEPS * BATCH / 2000, tick_kimg=2 * BATCH / 1000, fid_images=16,
                keep_snapshots=0, augment="ada", ada_kimg=0.16, gamma=0.05, seed=3)
TRAIN_ARGS = ["--preset", "custom", "--resolution", "8", "--channel-base", "64", "--channel-max", "16",
              "--z-dim", "16", "--mapping-layers", "1", "--batch-size", str(BATCH),
              "--snapshot-kimg", str(CFG.snapshot_kimg), "--tick-kimg", str(CFG.tick_kimg),
              "--fid-images", "16", "--keep-snapshots", "0", "--augment", "ada", "--ada-kimg", "0.16",
              "--gamma", "0.05", "--seed", "3"]


def make_images(folder: Path, n: int = 16, size: int = 8) -> Path:
    """Bright squares at random places on dark noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        im = (rng.random((size, size)) * 60).astype(np.uint8)
        y, x = rng.integers(1, size - 3, 2)
        im[y:y + 3, x:x + 3] = 230
        Image.fromarray(im).save(folder / f"img{i:03d}.png")
    return folder


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != "__meta__"}


def meta(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(bytes(z["__meta__"]).decode())


def assert_same(a: Path, b: Path, rtol: float = 0.0, atol: float = 0.0) -> None:
    x, y = arrays(a), arrays(b)
    assert x.keys() == y.keys()
    for k in x:
        np.testing.assert_allclose(x[k], y[k], rtol=rtol, atol=atol, err_msg=k)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("gan") / "benign")


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> Path:
    from busgan.stylegan2.training import train_gan
    out = tmp_path_factory.mktemp("straight")
    lines: list[str] = []
    best = train_gan(data, out, CFG, log=lines.append)
    assert best.is_file() and best.parent == out / "snapshots"
    assert any(" tick 1 " in line and "s/kimg" in line and " p " in line for line in lines)
    return out


def final(out: Path) -> Path:
    return out / "snapshots" / f"snapshot-{STEPS * BATCH:09d}.npz"


def test_outputs_and_best(straight):
    rows = (straight / "fid.csv").read_text().splitlines()
    assert rows[0].startswith("snapshot,kimg,fid,kid,features") and len(rows) == 3
    best = json.loads((straight / "best.json").read_text())
    fids = [float(r.split(",")[2]) for r in rows[1:]]
    assert best["fid"] == pytest.approx(min(fids))
    assert (straight / "grids" / f"fakes-{STEPS * BATCH:09d}.png").is_file()
    assert (straight / "grids" / "reals.png").is_file()
    assert len((straight / "stats.csv").read_text().splitlines()) == 1 + STEPS // 2
    assert list((straight / "logs").glob("events.out.tfevents.*"))


def test_every_snapshot_has_fidelity_beside_its_floor(straight):
    import csv
    rows = list(csv.DictReader(open(straight / "metrics.csv", newline="")))
    spaces = {r["space"] for r in rows}
    assert len(spaces) == 2 and "randomconv-s0" in spaces  # the classifier's (here pixels) and an independent one
    assert {r["metric"] for r in rows} == {"kid", "fid", "precision", "recall"}
    assert {r["source"] for r in rows} == {p.name for p in (straight / "snapshots").glob("*.npz")}
    assert {r["n"] for r in rows} == {"8"}  # two disjoint halves of the 16 training images, 8 fakes
    for space in spaces:
        for metric in ("kid", "fid", "precision", "recall"):
            floors = {r["floor"] for r in rows if r["space"] == space and r["metric"] == metric}
            assert len(floors) == 1, (space, metric)  # real vs real: the same at every snapshot
    for r in rows:
        if r["metric"] in ("precision", "recall"):
            assert 0.0 <= float(r["value"]) <= 1.0 and 0.0 <= float(r["floor"]) <= 1.0


def test_ada_p_rises_when_d_overfits(straight, tmp_path):
    # 4 images and a weak R1: D soon tells them from the fakes (E[sign D(real)] > 0.6), so p
    # rises from 0 and then holds r_t near the target.
    from busgan.stylegan2.training import train_gan
    m = meta(final(straight))
    assert float(arrays(final(straight))["aug_p"]) == pytest.approx(m["ada_p"])
    tiny = make_images(tmp_path / "tiny", n=4)
    out = tmp_path / "long"
    train_gan(tiny, out, dataclasses.replace(CFG, kimg=2.4, snapshot_kimg=2.4, tick_kimg=0.16),
              log=lambda s: None)
    stats = (out / "stats.csv").read_text().splitlines()
    col = stats[0].split(",").index("ada_p")
    p = [float(r.split(",")[col]) for r in stats[1:]]
    assert max(p) >= 0.2 and np.mean(p) > 0.05, stats


def test_interrupted_then_resumed_equals_straight(straight, data, tmp_path):
    from busgan.cli import main
    out = tmp_path / "resumed"
    half = str(CFG.kimg / 2)
    assert main(["train-gan", "--data", str(data), "--out", str(out), "--kimg", half, *TRAIN_ARGS]) == 0
    assert_same(out / "snapshots" / f"snapshot-{STEPS * BATCH // 2:09d}.npz",
                straight / "snapshots" / f"snapshot-{STEPS * BATCH // 2:09d}.npz")
    assert main(["train-gan", "--data", str(data), "--out", str(out), "--kimg", str(CFG.kimg),
                 "--resume", "auto", *TRAIN_ARGS]) == 0
    assert_same(final(out), final(straight), rtol=1e-6, atol=1e-7)
    assert meta(final(out))["ada_p"] == meta(final(straight))["ada_p"]


def test_generate_same_image_whatever_the_batch(straight, tmp_path):
    from busgan.cli import main
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["generate", "--network", str(straight / "best"), "--out", str(a), "--seeds", "1-7",
                 "--trunc", "0.7", "--batch-size", "4"]) == 0
    assert main(["generate", "--network", str(straight), "--out", str(b), "--seeds", "3,6,7",
                 "--trunc", "0.7", "--batch-size", "2"]) == 0
    assert len(list(a.glob("seed*.png"))) == 7 and (tmp_path / "a-grid.png").is_file()
    for s in (3, 6, 7):
        x = np.asarray(Image.open(a / f"seed{s:06d}.png"))
        assert x.shape == (8, 8)
        np.testing.assert_array_equal(x, np.asarray(Image.open(b / f"seed{s:06d}.png")))
    assert not np.array_equal(np.asarray(Image.open(a / "seed000001.png")),
                              np.asarray(Image.open(a / "seed000002.png")))


def test_generation_never_keeps_images_of_another_psi(straight, tmp_path):
    from busgan.cli import main
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    args = ["--network", str(straight / "best"), "--seeds", "1-3", "--batch-size", "4"]
    assert main(["generate", *args, "--out", str(out), "--trunc", "0.7"]) == 0
    before = np.asarray(Image.open(out / "seed000001.png"))
    assert main(["generate", *args, "--out", str(out), "--trunc", "0.2"]) == 0  # same folder, new psi
    assert main(["generate", *args, "--out", str(fresh), "--trunc", "0.2"]) == 0
    after = np.asarray(Image.open(out / "seed000001.png"))
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, np.asarray(Image.open(fresh / "seed000001.png")))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(foreign / "seed000001.png")
    assert main(["generate", *args, "--out", str(foreign), "--trunc", "0.2"]) == 2  # unknown maker
    assert np.asarray(Image.open(foreign / "seed000001.png")).max() == 0  # the user's file kept


def test_nan_losses_stop_and_keep_last_good_snapshot(straight, data, tmp_path, monkeypatch):
    from busgan.stylegan2 import training
    compiled = training._compiled
    calls = {"n": 0}

    def poisoned(cfg, dev):
        G, D, phases, sample, synth = compiled(cfg, dev)

        def d_main(state, reals, seed):
            state, logs = phases.d_main(state, reals, seed)
            calls["n"] += 1
            if calls["n"] > STEPS // 2 + 1:
                logs = {**logs, "loss_d": logs["loss_d"] * float("nan")}
            return state, logs
        return G, D, dataclasses.replace(phases, d_main=d_main), sample, synth

    monkeypatch.setattr(training, "_compiled", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(BusganError, match="loss_d became NaN") as e:
        training.train_gan(data, out, CFG, log=lambda s: None)
    good = out / "snapshots" / f"snapshot-{STEPS * BATCH // 2:09d}.npz"
    assert str(good) in str(e.value) and "\n" not in str(e.value)
    assert_same(good, straight / "snapshots" / good.name)
    assert [p.name for p in (out / "snapshots").iterdir()] == [good.name]


def test_full_disk_keeps_last_snapshot(straight, data, tmp_path, monkeypatch):
    from busgan.stylegan2 import snapshot, training
    real_savez = np.savez
    calls = {"n": 0}

    def savez(*a, **k):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(*a, **k)

    monkeypatch.setattr(snapshot.np, "savez", savez)
    out = tmp_path / "full"
    with pytest.raises(BusganError, match="disk full"):
        training.train_gan(data, out, CFG, log=lambda s: None)
    first = out / "snapshots" / f"snapshot-{STEPS * BATCH // 2:09d}.npz"
    assert [p.name for p in (out / "snapshots").iterdir()] == [first.name]
    assert_same(first, straight / "snapshots" / first.name)


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "jax") != "jax",
                    reason="data parallelism uses JAX sharding; TensorFlow trains on one device")
def test_two_devices_equal_one_device(straight, data, tmp_path):
    out = tmp_path / "two"
    code = (
        "import jax, sys\n"
        "assert jax.device_count() == 2, jax.devices()\n"
        "from pathlib import Path\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_stylegan2_tools_training import CFG\n"
        "import numpy as np\n"
        "from busgan.stylegan2.distributed import Devices\n"
        "assert len(Devices(2).shard_batch(np.zeros((4, 2))).sharding.device_set) == 2\n"
        "from busgan.stylegan2.training import train_gan\n"
        f"train_gan(Path({str(data)!r}), Path({str(out)!r}), CFG, devices=2, log=print)\n")
    # Optimisation level 0 compiles faster; the comparison then also spans XLA optimisations.
    flags = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": flags, "BUSGAN_NO_PROGRESS": "1"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 x cpu" in r.stdout
    assert_same(final(out), final(straight), rtol=1e-4, atol=1e-5)


def test_bad_inputs_are_one_line_errors(data, tmp_path):
    from busgan.stylegan2 import snapshot
    from busgan.stylegan2.training import load_class_images, train_gan

    few = make_images(tmp_path / "few", n=3)
    with pytest.raises(BusganError, match="3 images, fewer than gan.batch_size=4") as e:
        train_gan(few, tmp_path / "o1", CFG)
    assert str(few) in str(e.value)
    with pytest.raises(BusganError, match="power of two"):
        train_gan(data, tmp_path / "o2", dataclasses.replace(CFG, resolution=12))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BusganError, match="no PNG"):
        train_gan(tmp_path / "empty", tmp_path / "o3", CFG)

    other = tmp_path / "other"
    snapshot.save_snapshot(other / "snapshots" / snapshot.snapshot_name(4), {"g": [np.zeros(1)]},
                           {"gan": dataclasses.asdict(dataclasses.replace(CFG, resolution=16))})
    with pytest.raises(BusganError, match="resolution=16 .now 8."):
        train_gan(data, other, CFG)
    with pytest.raises(BusganError, match="--resume auto"):
        train_gan(data, other, CFG, resume=False)
    snapshot.save_snapshot(other / "snapshots" / snapshot.snapshot_name(8), {"g": [np.zeros(1)]},
                           {"gan": dataclasses.asdict(dataclasses.replace(CFG, batch_size=8))})
    with pytest.raises(BusganError, match=r"gan.batch_size=8 \(now 4\)"):
        train_gan(data, other, CFG)

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(mixed / "b.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mixed / "c.bmp")
    imgs, resized = load_class_images(mixed, 8, 1)
    assert imgs.shape == (3, 8, 8, 1) and resized == 2
    (mixed / "d.png").write_bytes(b"broken")
    with pytest.raises(BusganError, match="d.png: cannot read image"):
        load_class_images(mixed, 8, 1)
