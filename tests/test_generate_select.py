"""Generation on a worker pool, and generate-and-select in one pass (issue 14, points 1 and 2).

References: pixels computed here with NumPy and Pillow seed by seed, ``busgan select`` on the
files (the file path), and hand-worked decisions of a classifier whose output is a known
function of the mean brightness. The tests that score with a Keras model run on both backends.
"""

from __future__ import annotations

import csv
import dataclasses
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from busgan import CLASSES, generate_select as gs, layout, pipeline
from busgan.classifier import model as cmodel, select as cselect
from busgan.classifier.dataset import load_image
from busgan.cli import main
from busgan.config import SelectConfig, load_config
from busgan.errors import BusganError
from busgan.fileio import read_json, write_json
from busgan.stylegan2 import generate as gen, snapshot as snap
from busgan.stylegan2.networks import build_generator

TINY = Path(__file__).parent / "configs" / "tiny.toml"
SIZE = 32  # classifier input of the tiny config; its GAN renders 16x16, so inputs are resized


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUSGAN_NO_PROGRESS", "1")


def brightness_model(path: Path, threshold: float, slope: float = 400.0) -> Path:
    """P(malignant) = sigmoid(slope * (mean pixel / 255 - threshold)): decisions known by hand."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255, name=cmodel.PREPROCESS_LAYER)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax", name=cmodel.output_layer_name())(x)
    model = keras.Model(inputs, out, name=cmodel.MODEL_NAME)
    w = slope / 3
    model.layers[-1].set_weights([np.array([[0.0, w]] * 3, np.float32),
                                  np.array([0.0, -slope * threshold], np.float32)])
    model.save(path)
    return path


def flat_render(calls: list[int] | None = None, size: int = 16):
    """Float 'generator output' whose image of seed s has the flat value v(s) = (s * 37 % 256)."""
    def render(seeds: np.ndarray) -> np.ndarray:
        if calls is not None:
            calls.extend(int(s) for s in seeds)
        v = (np.asarray(seeds) * 37 % 256).astype(np.float32)
        return np.broadcast_to(((v - 128) / 127.5)[:, None, None, None], (len(seeds), size, size, 1)).copy()
    return render


def value(seed: int) -> int:
    return seed * 37 % 256


# --- point 1: the worker pool ----------------------------------------------------------------

def test_pool_writes_the_pixels_of_the_sequential_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    table = {s: rng.uniform(-1.2, 1.2, (12, 12, 1)).astype(np.float32) for s in range(1, 30)}
    render = lambda seeds: np.stack([table[int(s)] for s in seeds])  # noqa: E731
    assert gen.write_images(render, range(1, 30), tmp_path / "a", batch_size=4, workers=3) == 29
    for s, x in table.items():  # the one-thread path's pixels: float32 x * 127.5 + 128, rint, clip
        want = np.clip(np.rint(x * np.float32(127.5) + np.float32(128)), 0, 255).astype(np.uint8)[..., 0]
        got = np.asarray(Image.open(tmp_path / "a" / gen.seed_filename(s)))
        np.testing.assert_array_equal(got, want)
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]


def test_pool_is_bounded_and_reports_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outstanding, peak = [0], [0]
    lock = threading.Lock()
    real_save = gen.save_batch

    def render(seeds):
        with lock:
            outstanding[0] += 1
            peak[0] = max(peak[0], outstanding[0])
        return flat_render()(seeds)

    def slow_save(*args):
        time.sleep(0.01)
        real_save(*args)
        with lock:
            outstanding[0] -= 1

    monkeypatch.setattr(gen, "save_batch", slow_save)
    gen.write_images(render, range(40), tmp_path / "b", batch_size=2, workers=2)
    assert len(list((tmp_path / "b").glob("seed*.png"))) == 40
    assert peak[0] <= 2 + 2 + 1  # workers + 2 in the pool, one rendered before its slot frees

    def failing(path, image):
        if path.name == gen.seed_filename(7):
            raise OSError(28, "No space left on device", str(path))
        gen.Image.fromarray(image[..., 0]).save(path)

    monkeypatch.setattr(gen, "save_batch", real_save)
    monkeypatch.setattr(gen, "save_image", failing)
    with pytest.raises(OSError, match="No space left"):
        gen.write_images(flat_render(), range(40), tmp_path / "c", batch_size=2, workers=2)


# --- point 2: one pass, same decisions as generate-then-select ---------------------------------

def _tiny_snapshot(path: Path, seed: int) -> Path:
    cfg = load_config(TINY).gan
    keras.utils.set_random_seed(seed)
    G = build_generator(cfg)
    state = {"g_ema": [np.asarray(v.value) for v in G.trainable_variables],
             "g_ema_nt": [np.asarray(v.value) for v in G.non_trainable_variables]}
    return snap.save_snapshot(path, state, {"gan": dataclasses.asdict(cfg), "nimg": 0})


@pytest.mark.keras  # a Keras classifier scores: both backends
def test_fused_path_decides_as_generate_then_select(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = load_config(TINY).generate
    one = _tiny_snapshot(tmp_path / "g.npz", seed=0)  # one generator for both: one compilation
    snaps = {c: one for c in CLASSES}  # (the classes keep opposite images, so decisions differ)
    seeds = range(1, g.n_per_class + 1)
    files = tmp_path / "files"
    for c in CLASSES:  # the file path: every image written, then read back and scored
        gen.generate_images(snaps[c], files / c, seeds, g.truncation, g.batch_size, g.format)
    inputs = {c: {s: load_image(files / c / gen.seed_filename(s), SIZE) for s in seeds} for c in CLASSES}
    brightness = np.array([x.mean() / 255 for c in CLASSES for x in inputs[c].values()])
    model = brightness_model(tmp_path / "m.keras", threshold=float(np.median(brightness)))
    reference = cselect.select_images(model, files, tmp_path / "sel-files", SelectConfig())

    monkeypatch.setattr(gs, "SHOWN", 3)  # so that some images are not written
    fused = gs.generate_and_select(model, snaps, {c: tmp_path / "gen" / c for c in CLASSES},
                                   tmp_path / "sel", {c: seeds for c in CLASSES}, g.truncation,
                                   g.batch_size, g.format, SelectConfig(), workers=2)
    assert fused == reference
    want, got = (cselect.read_scores(tmp_path / d / "scores.csv") for d in ("sel-files", "sel"))
    assert set(got) == set(want) and len(got) == 2 * len(seeds)
    assert max(float(np.abs(got[k] - want[k]).max()) for k in want) < 1e-3
    for c in CLASSES:
        kept = sorted(p.name for p in (tmp_path / "sel" / c).iterdir())
        assert kept == sorted(p.name for p in (tmp_path / "sel-files" / c).iterdir())
        # the hand rule: benign kept when darker than the threshold, malignant when brighter
        t = float(np.median(brightness))
        by_hand = sorted(gen.seed_filename(s) for s, x in inputs[c].items()
                         if (x.mean() / 255 < t) == (c == "benign"))
        assert kept == by_hand and 0 < len(kept) < len(seeds)
        written = sorted(p.name for p in (tmp_path / "gen" / c).glob("seed*.png"))
        assert written == sorted(set(kept) | {gen.seed_filename(s) for s in seeds[:3]})
        for name in written:  # the written images are the file path's, pixel for pixel
            np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "gen" / c / name)),
                                          np.asarray(Image.open(files / c / name)))


def test_classifier_input_equals_the_file_loader(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for shape, size in (((16, 16, 1), 32), ((20, 20, 3), 32), ((32, 32, 1), 32), ((40, 40, 1), 24)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        gen.save_image(tmp_path / "x.png", image)
        np.testing.assert_array_equal(cselect.classifier_input(image, size), load_image(tmp_path / "x.png", size))


# --- resume, records, CLI, the pipeline's quota loop -------------------------------------------

def _network(folder: Path) -> Path:
    """A train-gan-like folder (best.json -> a snapshot file); the renderer is faked."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "snapshot-000000001.npz").write_bytes(folder.name.encode())
    write_json(folder / "best.json", {"snapshot": "snapshot-000000001.npz"})
    return folder


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {r["file"]: r for r in csv.DictReader(f)}


@pytest.mark.keras  # a Keras classifier scores: both backends
def test_resume_scores_only_new_seeds_and_rewrites_missing_ones(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(gen, "snapshot_device_renderer", lambda snapshot, psi, image_class=None: flat_render(calls))
    monkeypatch.setattr(gs, "SHOWN", 2)
    model = brightness_model(tmp_path / "m.keras", threshold=0.5, slope=10.0)  # unsaturated: top-N
    net = {"benign": _network(tmp_path / "gan" / "benign")}
    out = {"benign": tmp_path / "gen" / "benign"}

    def run(seeds, **kw):
        return gs.generate_and_select(model, net, out, tmp_path / "sel", {"benign": seeds}, 1.0, 4,
                                      "png", SelectConfig(**kw), workers=2)

    summary = run(range(1, 11))
    dark = [s for s in range(1, 11) if value(s) < 128]  # benign: P(malignant) < 0.5
    assert summary == {"benign": {"generated": 10, "accepted": len(dark), "kept": len(dark),
                                  "acceptance_rate": len(dark) / 10}}
    assert sorted(calls) == list(range(1, 11)) + [10, 10]  # last batch padded
    files = sorted(p.name for p in out["benign"].glob("seed*"))
    assert files == sorted(gen.seed_filename(s) for s in set(dark) | {1, 2})
    rows = _rows(tmp_path / "sel" / "scores.csv")
    assert len(rows) == 10 and {r["kept"] for r in rows.values()} == {"0", "1"}
    assert [f"benign/{gen.seed_filename(s)}" for s in dark] == [k for k, r in rows.items() if r["kept"] == "1"]

    calls.clear()
    (out["benign"] / gen.seed_filename(dark[0])).unlink()
    summary = run(range(1, 15), max_per_class=2, keep="top")
    assert sorted(set(calls)) == sorted({dark[0], 11, 12, 13, 14})  # new seeds and the missing one
    darker = sorted((s for s in range(1, 15) if value(s) < 128), key=lambda s: value(s))[:2]
    assert sorted(p.name for p in (tmp_path / "sel" / "benign").iterdir()) == \
        sorted(gen.seed_filename(s) for s in darker)
    assert summary["benign"]["kept"] == 2 and len(_rows(tmp_path / "sel" / "scores.csv")) == 14
    assert read_json(tmp_path / "sel" / "select.json")["classes"] == summary

    calls.clear()  # another psi: the class's scores and images are stale and made again
    gs.generate_and_select(model, net, out, tmp_path / "sel", {"benign": range(1, 5)}, 0.5, 4, "png",
                           SelectConfig(), workers=2)
    assert sorted(calls) == [1, 2, 3, 4] and len(_rows(tmp_path / "sel" / "scores.csv")) == 4
    assert all(int(p.name[4:10]) <= 4 for p in (tmp_path / "sel" / "benign").iterdir())


@pytest.mark.keras  # a Keras classifier scores: both backends
def test_cli_generate_select_one_class_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(gen, "snapshot_device_renderer", lambda snapshot, psi, image_class=None: flat_render())
    model = brightness_model(tmp_path / "m.keras", threshold=0.5)
    for c in CLASSES:
        args = ["generate", "--network", str(_network(tmp_path / "gan" / c)), "--out", str(tmp_path / "gen" / c),
                "--seeds", "1-12", "--batch-size", "5", "--select", str(model), "--class", c,
                "--selected", str(tmp_path / "sel")]
        assert main(args) == 0
    n_dark = sum(value(s) < 128 for s in range(1, 13))
    assert f"malignant: 12 generated, {12 - n_dark} accepted" in capsys.readouterr().out
    rows = _rows(tmp_path / "sel" / "scores.csv")  # the benign run's scores were kept
    assert len(rows) == 24 and sum(r["kept"] == "1" for r in rows.values()) == 12
    assert main(["generate", "--network", str(tmp_path / "gan" / "benign"), "--out", str(tmp_path / "x"),
                 "--select", str(model)]) == 2
    err = capsys.readouterr().err
    assert "--class CLASS and --selected DIR go together" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(BusganError, match="not written by busgan select"):
        gs.generate_and_select(model, {"benign": tmp_path / "gan" / "benign"}, {"benign": tmp_path / "y"},
                               tmp_path / "mine", {"benign": range(3)}, 1.0, 2, "png", SelectConfig())
    assert not (tmp_path / "y").exists()  # refused before anything was written


@pytest.mark.keras  # a Keras classifier scores: both backends
def test_pipeline_quota_loop_runs_on_the_fused_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, list[int]] = {c: [] for c in CLASSES}
    monkeypatch.setattr(gen, "snapshot_device_renderer",
                        lambda snapshot, psi, image_class=None: flat_render(calls[snapshot.parent.name]))
    cfg = load_config(TINY)
    cfg.generate.n_per_class, cfg.generate.max_per_class, cfg.generate.batch_size = 6, 40, 8
    cfg.synthetic.per_class = 9
    work = tmp_path / "work"
    (work / layout.REAL).mkdir(parents=True)
    brightness_model(layout.real_model(work), threshold=0.5)
    for c in CLASSES:
        _network(work / layout.GANS / c)
        (layout.data_split(work, "train") / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((16, 16), 40 * i + 20 * (c == "malignant"), np.uint8)).save(
                layout.data_split(work, "train") / c / f"{i}.png")
    ctx = pipeline.Context(cfg, work)
    summary = pipeline._generate(ctx)
    # by hand: seeds 1-6 have 3 dark values (37, 74, 111) and 3 bright ones, a rate of 0.5, so
    # the loop asks for 1.1 * 9 / 0.5 + 1 = 20 seeds; 1-20 hold 11 dark and 9 bright: enough
    assert summary["generated"] == {"benign": 20, "malignant": 20}
    assert summary["accepted"] == {"benign": 11, "malignant": 9} and summary["quota_reached"]
    assert summary["independence"]["pairs"] == 20
    selected = pipeline._select(ctx)
    assert {c: v["accepted"] for c, v in selected.items()} == summary["accepted"]
    for c in CLASSES:
        own = [s for s in range(1, 21) if (value(s) < 128) == (c == "benign")]
        assert sorted(p.name for p in (work / layout.SELECTED / c).iterdir()) == \
            sorted(gen.seed_filename(s) for s in own)
        # every seed rendered once: repeats are only the padding at the end of a batch
        runs = [s for i, s in enumerate(calls[c]) if i == 0 or calls[c][i - 1] != s]
        assert runs == list(range(1, 21))
