"""Config loading: TOML sections, type checks, unknown keys, CLI overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from busgan.config import (Config, add_config_args, apply_override, config_from_args,
                           config_hash, load_config)
from busgan.errors import BusganError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.toml")))
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(ROOT / "configs" / name)
    assert isinstance(cfg, Config)


def test_paper_config_has_the_seeds_settings() -> None:
    cfg = load_config(ROOT / "configs" / "paper.toml")
    c = cfg.classifier
    assert (c.backbone, c.weights, c.input_size, c.freeze_layers, c.head_units) == (
        "InceptionResNetV2", "imagenet", 256, 775, 1024)
    assert (c.learning_rate, c.batch_size, c.epochs, c.patience, c.lr_patience, c.lr_factor) == (
        1e-3, 32, 50, 10, 3, 0.1)
    assert (c.shift, c.flip) == (0.1, True)
    g = cfg.gan
    assert (g.preset, g.resolution, g.gamma, g.mirror, g.batch_size) == ("e", 256, 100.0, True, 32)
    assert (cfg.generate.n_per_class, cfg.generate.truncation) == (25000, 1.6)
    assert cfg.synthetic.per_class == 14000
    assert cfg.data.test_per_class == 150
    assert c.preprocess == "unit"  # the seed's pixels / 255 (busgan's default: "auto")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(BusganError, match=r"unknown config key 'gan\.kimgg'"):
        load_config(_write(tmp_path, "[gan]\nkimgg = 3\n"))


def test_unknown_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(BusganError, match=r"unknown config section '\[gann\]'"):
        load_config(_write(tmp_path, "[gann]\nkimg = 3\n"))


@pytest.mark.parametrize("text, key", [
    ("[gan]\nkimg = 'many'\n", "gan.kimg"),
    ("[classifier]\nepochs = 2.5\n", "classifier.epochs"),
    ("[classifier]\nflip = 'sometimes'\n", "classifier.flip"),
    ("[gan]\naugment = 'diffaug'\n", "gan.augment"),
])
def test_wrong_type_is_named(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(BusganError, match=rf"'{key}'"):
        load_config(_write(tmp_path, text))


def test_int_accepted_for_float(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "[gan]\nkimg = 3\n"))
    assert cfg.gan.kimg == 3.0 and isinstance(cfg.gan.kimg, float)


def test_missing_file() -> None:
    with pytest.raises(BusganError, match="not found"):
        load_config("/nonexistent/x.toml")


def test_set_override() -> None:
    cfg = Config()
    apply_override(cfg, "gan.kimg=20")
    apply_override(cfg, "data.source=/tmp/images")
    apply_override(cfg, "classifier.flip=false")
    assert (cfg.gan.kimg, cfg.data.source, cfg.classifier.flip) == (20.0, "/tmp/images", False)
    with pytest.raises(BusganError, match="gan.nope"):
        apply_override(cfg, "gan.nope=1")


def test_cli_options_override_file(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_config_args(parser, "phantom", "data")
    path = _write(tmp_path, "[phantom]\nsize = 64\nseed = 3\n")
    args = parser.parse_args(["--config", str(path), "--size", "48", "--data-test-per-class", "5",
                              "--set", "gan.kimg=2"])
    cfg = config_from_args(args)
    assert (cfg.phantom.size, cfg.phantom.seed, cfg.data.test_per_class, cfg.gan.kimg) == (48, 3, 5, 2.0)


def test_config_hash_changes_with_values() -> None:
    a, b = Config(), Config()
    assert config_hash(a.gan) == config_hash(b.gan)
    b.gan.kimg = 1.0
    assert config_hash(a.gan) != config_hash(b.gan)


def test_old_key_gan_config_is_a_deprecated_alias_of_gan_preset(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="busgan.config"):
        cfg = load_config(_write(tmp_path, "[gan]\nconfig = 'f'\n"))
    assert cfg.gan.preset == "f"
    assert [r.getMessage() for r in caplog.records] == [
        "warning: config key 'gan.config' is deprecated; use 'gan.preset' (the same values)"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="busgan.config"):
        apply_override(cfg, "gan.config=custom")
    assert cfg.gan.preset == "custom" and len(caplog.records) == 1
    with pytest.raises(BusganError, match=r"'gan\.preset': 'g' is not one of"):
        apply_override(cfg, "gan.config=g")
    with pytest.raises(BusganError, match=r"'gan\.preset' is given twice"):
        load_config(_write(tmp_path, "[gan]\npreset = 'e'\nconfig = 'f'\n"))
    assert not hasattr(Config().gan, "config")


def test_gan_preset_is_a_plain_option_of_train_gan() -> None:
    from busgan.cli import build_parser
    args = build_parser().parse_args(["train-gan", "--data", "d", "--out", "o", "--preset", "f",
                                      "--config", "c.toml"])
    assert (args.cfg__gan__preset, args.config) == ("f", "c.toml")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train-gan", "--data", "d", "--out", "o", "--cfg", "f"])
