"""The two class GANs of `busgan run` are independent: own seeds, own initial weights, and
different images for the same latents (issue: both used to start from one seed)."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from busgan import CLASSES
from busgan.config import GanConfig
from busgan.pipeline import class_gan_config
from busgan.stylegan2.generate import latents
from busgan.stylegan2.networks import build_generator
from busgan.stylegan2.steps import synthesize

pytestmark = pytest.mark.keras

CFG = GanConfig(preset="custom", resolution=8, channels=1, channel_base=64, channel_max=16, z_dim=8,
                mapping_layers=1, batch_size=4)


def test_class_seeds_differ_and_are_stable() -> None:
    seeds = [class_gan_config(CFG, cls).seed for cls in CLASSES]
    assert len(set(seeds)) == len(CLASSES)
    assert seeds == [class_gan_config(CFG, cls).seed for cls in CLASSES]  # deterministic
    other = [class_gan_config(GanConfig(seed=1), cls).seed for cls in CLASSES]
    assert set(other).isdisjoint(seeds)
    assert all(0 <= s < 2**20 for s in seeds + other)  # the step seeds keep 20 bits of it


def test_class_generators_differ_at_initialisation_and_in_images() -> None:
    gens = [build_generator(class_gan_config(CFG, cls), seed=class_gan_config(CFG, cls).seed)
            for cls in CLASSES]
    w = [np.concatenate([np.ravel(ops.convert_to_numpy(v)) for v in g.trainable_variables]) for g in gens]
    assert w[0].shape == w[1].shape and not np.allclose(w[0], w[1])
    z = ops.convert_to_tensor(latents(range(1, 9), CFG.z_dim))
    imgs = [ops.convert_to_numpy(synthesize(g, (g.trainable_variables, g.non_trainable_variables), z))
            for g in gens]
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(imgs[0], imgs[1])]
    assert float(np.median(corr)) < 0.9  # the same seed used to give a correlation of 1.0


def _write(folder, arrays) -> None:
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"seed{i + 1:06d}.png")


def test_independence_diagnostic_flags_generators_that_make_the_same_pictures(tmp_path) -> None:
    from busgan.stylegan2.independence import paired_correlations
    rng = np.random.default_rng(0)
    real = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(40)]
    _write(tmp_path / "real" / "benign", real[:20])
    _write(tmp_path / "real" / "malignant", real[20:])
    same = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(30)]
    _write(tmp_path / "same" / "benign", same)
    _write(tmp_path / "same" / "malignant", same)
    _write(tmp_path / "indep" / "benign", [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(30)])
    _write(tmp_path / "indep" / "malignant", [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(30)])
    flagged = paired_correlations(tmp_path / "same", tmp_path / "real")
    assert flagged["generated_median"] == pytest.approx(1.0) and flagged["warning"]
    ok = paired_correlations(tmp_path / "indep", tmp_path / "real")
    assert abs(ok["generated_median"]) < 0.3 and not ok["warning"]
    assert ok["real_pairs"] == 400 and abs(ok["real_median"]) < 0.3  # independent noise images
