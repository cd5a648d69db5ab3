"""Training a conditional StyleGAN2 (gan.conditional): labels reach both networks in every
phase, the sampler pairs images with their own labels, per-class FID/KID and fidelity, generation
by class, and gan.init_from (start from another snapshot's weights)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image

from busgan import CLASSES
from busgan.config import Config, GanConfig
from busgan.errors import BusganError

CFG = GanConfig(preset="custom", resolution=8, channels=1, channel_base=64, channel_max=16, z_dim=16,
                mapping_layers=1, batch_size=4, kimg=0.016, snapshot_kimg=0.008, tick_kimg=0.008,
                fid_images=16, keep_snapshots=0, gamma=0.05, seed=3, conditional=True)
LEVELS = {"benign": 40, "malignant": 200}  # each class's images are noise around its own grey level


def _weights_named(state_list: list, model: keras.Model, part: str) -> list[np.ndarray]:
    return [np.asarray(ops.convert_to_numpy(x)) for x, v in zip(state_list, model.trainable_variables)
            if part in v.path]


@pytest.mark.keras
def test_the_sampler_pairs_images_with_their_labels_and_draws_fake_labels_from_the_data() -> None:
    from busgan.stylegan2.training import _sampler
    from busgan.stylegan2 import autodiff
    data = np.concatenate([np.full((30, 8, 8, 1), 10, np.uint8), np.full((10, 8, 8, 1), 250, np.uint8)])
    labels = np.array([0] * 30 + [1] * 10, np.int32)
    sample = _sampler(8, mirror=True, conditional=True)
    fake_malignant = []
    for step in range(100):
        b = sample(ops.convert_to_tensor(data), ops.convert_to_tensor(labels), autodiff.seed_tensor(step))
        img, c, gen_c = (np.asarray(ops.convert_to_numpy(b[k])) for k in ("img", "c", "gen_c"))
        np.testing.assert_array_equal(c.argmax(1), (img.mean(axis=(1, 2, 3)) > 0).astype(int))
        assert np.all(c.sum(1) == 1) and np.all(gen_c.sum(1) == 1)
        fake_malignant.append(gen_c[:, 1].mean())
    assert abs(float(np.mean(fake_malignant)) - 0.25) < 0.05  # 800 draws: sd of the share 0.015


def _class_folders(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls, n in (("benign", 12), ("malignant", 8)):
        folder = root / cls
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((8, 8)) * 30 + LEVELS[cls]).astype(np.uint8)).save(folder / f"i{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    if keras.backend.backend() != "jax":
        pytest.skip("the end-to-end run is checked under JAX (the phases above run on every backend)")
    from busgan.stylegan2.training import train_gan
    root = tmp_path_factory.mktemp("cond")
    data = _class_folders(root / "train")
    _class_folders(root / "val")
    best = train_gan(data, root / "gan", CFG, floor_dir=root / "val", log=lambda s: None)
    return root, best


@pytest.mark.slow  # uses the module's conditional training run
def test_a_conditional_run_reports_fid_and_fidelity_per_class(trained) -> None:
    root, best = trained
    with open(root / "gan" / "fid.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for r in rows:
        per_class = [float(r[f"fid_{c}"]) for c in CLASSES]
        assert float(r["fid"]) == pytest.approx(np.mean(per_class), rel=1e-8)
        assert float(r["kid"]) == pytest.approx(np.mean([float(r[f"kid_{c}"]) for c in CLASSES]), rel=1e-8)
    record = json.loads((root / "gan" / "best.json").read_text())
    assert set(record["per_class"]) == set(CLASSES)
    assert record["fid"] == pytest.approx(min(float(r["fid"]) for r in rows), rel=1e-9)  # csv: 10 digits
    with open(root / "gan" / "metrics.csv", newline="") as f:
        metric_rows = list(csv.DictReader(f))
    assert {r["class"] for r in metric_rows} == set(CLASSES)
    assert {r["metric"] for r in metric_rows} >= {"kid", "fid", "precision", "recall"}
    with np.load(best, allow_pickle=False) as z:
        meta = json.loads(bytes(z["__meta__"]).decode())
    assert meta["classes"] == list(CLASSES) and meta["gan"]["conditional"] is True
    for cls in CLASSES:
        assert (root / "gan" / "grids" / f"reals-{cls}.png").is_file()


@pytest.mark.slow  # uses the module's conditional training run
def test_generate_draws_the_class_asked_for_and_refuses_no_class(trained) -> None:
    from busgan.stylegan2.generate import generate_images
    root, _ = trained
    for cls in CLASSES:
        assert generate_images(root / "gan", root / "gen" / cls, range(1, 5), 1.0, 4, image_class=cls) == 4
    pairs = [[np.asarray(Image.open(root / "gen" / c / f"seed{s:06d}.png"), float) for c in CLASSES]
             for s in range(1, 5)]
    assert all(np.abs(a - b).mean() > 0.5 for a, b in pairs)  # same z, other label: other image
    with pytest.raises(BusganError, match="give --class"):
        generate_images(root / "gan", root / "gen" / "none", range(1, 3), 1.0, 4)


@pytest.mark.keras
def test_every_phase_routes_the_labels_to_both_networks() -> None:
    """D main's real score is D(reals, c) for the batch's own labels (no augmentation), and one
    step of each main phase moves the label embeddings (a zero gradient would leave Adam's first
    step at 0). After the run and before any other config, so that under JAX it reuses the run's
    compiled phases (training._CACHE holds one config)."""
    from busgan.stylegan2 import networks, steps
    from busgan.stylegan2.distributed import Devices
    from busgan.stylegan2.training import _compiled, step_seed
    dev = Devices()
    if keras.backend.backend() == "jax":
        G, D, phases, _, _ = _compiled(CFG, dev)  # compiled once per process (the run above's)
    else:  # TensorFlow: eagerly (compiling the four phases would take minutes on 2 cores)
        G, D = networks.build_generator(CFG, seed=1), networks.build_discriminator(CFG, seed=2)
        phases = steps.make_phases(G, D, CFG, jit=False)
    state = dev.replicate(steps.init_state(G, D))
    rng = np.random.default_rng(0)
    eye = np.eye(len(CLASSES), dtype="float32")
    batch = {"img": ops.convert_to_tensor(rng.uniform(-1, 1, (4, 8, 8, 1)).astype("float32")),
             "c": ops.convert_to_tensor(eye[[0, 1, 1, 0]]), "gen_c": ops.convert_to_tensor(eye[[1, 0, 0, 1]])}
    batch = dev.replicate(batch)  # placed as training places it, or JAX compiles the phases anew
    seed = step_seed(CFG.seed, 0, 1)
    after_d, logs = phases.d_main(state, batch, seed)
    direct, _ = D.stateless_call(state["d"], state["d_nt"], batch["img"], c=batch["c"])
    np.testing.assert_allclose(float(ops.convert_to_numpy(logs["real_score"])),
                               float(np.mean(ops.convert_to_numpy(direct))), rtol=1e-5, atol=1e-6)
    swapped, _ = D.stateless_call(state["d"], state["d_nt"], batch["img"], c=batch["gen_c"])
    assert not np.allclose(ops.convert_to_numpy(direct), ops.convert_to_numpy(swapped))
    d_embed = zip(_weights_named(state["d"], D, "cmap_embed"), _weights_named(after_d["d"], D, "cmap_embed"))
    for before, after in d_embed:
        assert np.abs(after - before).max() > 1e-6
    after_g, g_logs = phases.g_main(state, batch, seed)
    assert np.isfinite(float(ops.convert_to_numpy(g_logs["loss_g"])))
    for before, after in zip(_weights_named(state["g"], G, "embed"), _weights_named(after_g["g"], G, "embed")):
        assert np.abs(after - before).max() > 1e-6
    reg_g, pl = phases.g_reg(state, batch, seed)
    reg_d, r1 = phases.d_reg(state, batch, seed)
    assert np.isfinite(float(ops.convert_to_numpy(pl["pl_penalty"])))
    assert float(ops.convert_to_numpy(r1["r1_penalty"])) > 0


@pytest.mark.slow  # uses the module's conditional training run
def test_init_from_starts_with_the_source_weights_and_a_fresh_optimizer(trained) -> None:
    from busgan.stylegan2 import snapshot as snap
    from busgan.stylegan2.distributed import Devices
    from busgan.stylegan2.training import GanTrainer
    root, best = trained
    trainer = GanTrainer(root / "train", root / "warm", CFG, Devices(), None, lambda s: None)
    trainer.start(None, None, {}, init_from=root / "gan")
    source, _ = snap.read_snapshot(best)
    state = snap.flatten({k: [np.asarray(ops.convert_to_numpy(x)) for x in trainer.state[k]]
                          for k in ("g", "d", "g_ema")})
    for key, value in state.items():
        np.testing.assert_array_equal(value, source[key], err_msg=key)
    assert all(not np.asarray(ops.convert_to_numpy(m)).any() for m in trainer.state["g_opt"]["m"])
    assert trainer.progress.step == 0
    other = dataclasses.replace(CFG, conditional=False)
    with pytest.raises(BusganError, match="conditional"):
        GanTrainer(root / "train" / "benign", root / "cold", other, Devices(), None,
                   lambda s: None).start(None, None, {}, init_from=best)


def test_init_from_config_is_checked_before_any_work(tmp_path) -> None:
    from busgan.pipeline import init_order, validate_paths
    assert init_order({"benign": "malignant"}) == ["malignant", "benign"]
    assert init_order({}) == list(CLASSES)
    cfg = Config()
    for bad, message in (({"benign": "benign"}, "circular"), ({"benign": "malignant", "malignant": "benign"},
                                                              "circular"),
                         ({"lesion": "benign"}, "not a class"), ({"malignant": str(tmp_path / "no.npz")},
                                                                "does not exist")):
        cfg.gan.init_from = bad
        with pytest.raises(BusganError, match=message):
            validate_paths(cfg)
    cfg.gan.init_from, cfg.gan.conditional = {"malignant": "benign"}, True
    with pytest.raises(BusganError, match="only for GANs trained per class"):
        validate_paths(cfg)
