"""Typed configuration: one dataclass per stage, loaded from TOML and overridable on the CLI.

A config file has one table per section (``[data]``, ``[classifier]`` ...). Unknown keys,
wrong types and unknown sections are refused with one line naming the key.
Each stage owns its section; add fields there (with a default and a ``help`` in metadata).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from busgan.errors import BusganError


# How a change of a key affects what its stage produced (declared once, with the key):
#   "result": the stage's result changes; a stage that resumes inside itself must start afresh
#             (or refuse and say how), and every later stage reruns;
#   "resume": the result changes, but a stage may continue from its last saved state (e.g. more
#             kimg: GAN training goes on from its last snapshot); every later stage reruns;
#   "none":   only how the stage runs or reports (workers, progress): nothing reruns.
Effect = Literal["result", "resume", "none"]
EFFECTS: tuple[str, ...] = typing.get_args(Effect)


def opt(default: Any, help: str, *, effect: Effect = "result", **kw: Any) -> Any:
    """A config field with a default, a help text (shown by ``--help``) and its ``effect``."""
    if effect not in EFFECTS:
        raise ValueError(f"effect {effect!r} is not one of {EFFECTS}")
    meta = {"help": help, "effect": effect, **kw}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def field_effect(section: type | Any, name: str) -> str:
    """The declared effect of one key of a config section (a dataclass or its instance)."""
    cls = section if isinstance(section, type) else type(section)
    return {f.name: f.metadata.get("effect", "result") for f in dataclasses.fields(cls)}[name]


def keys_with_effect(section: type | Any, *effects: str) -> tuple[str, ...]:
    """The keys of a config section whose declared effect is one of ``effects``."""
    cls = section if isinstance(section, type) else type(section)
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("effect", "result") in effects)


def result_values(section: Any) -> dict[str, Any]:
    """The section's values that decide a result ("result" and "resume" keys): what records hash."""
    keep = keys_with_effect(section, "result", "resume")
    return {k: v for k, v in dataclasses.asdict(section).items() if k in keep}


def restart_values(section: Any) -> dict[str, Any]:
    """The section's "result" keys only: what a stage resuming inside itself must find unchanged."""
    keep = keys_with_effect(section, "result")
    return {k: v for k, v in dataclasses.asdict(section).items() if k in keep}


@dataclass
class PhantomConfig:
    """Simulated B-mode breast-ultrasound images (the embedded default dataset)."""
    n_per_class: int = opt(1150, "images per class (150 test + 1,000 train in the paper's proportions)")
    size: int = opt(256, "image side in pixels (>= 32)")
    seed: int = opt(0, "random seed; the same seed gives the same images")
    workers: int = opt(0, "worker processes (0 = one per CPU core)", effect="none")


@dataclass
class DataConfig:
    """Stage 0: image preparation (import, resize, split, duplicates)."""
    source: str = opt("phantom", "image folder to import, or 'phantom' to simulate one")
    layout: Literal["auto", "folders", "busi", "seed", "busbra"] = opt(
        "auto", "source layout: folder per class, BUSI, the seed's Train/Test tree, BUS-BRA "
        "(Images/ + bus_data.csv), or auto-detect")
    class_map: dict[str, str] = opt(
        {}, "extra folder-name -> class mapping ('benign', 'malignant' or 'ignore'), e.g. {lesion_b = 'benign'}")
    size: int = opt(256, "output image side in pixels")
    color: Literal["gray", "rgb"] = opt("gray", "colour of the written PNGs")
    resize: Literal["pad", "crop", "stretch"] = opt(
        "pad", "resize policy: pad to square then resize (keeps aspect), centre-crop, or stretch")
    test_per_class: int = opt(150, "test images per class (the paper: 150)")
    val_fraction: float = opt(0.1, "fraction of the remaining images held out for validation", range=(0.0, 1.0))
    seed: int = opt(0, "split seed")
    near_duplicate_bits: int = opt(4, "perceptual-hash Hamming distance at or under which two images are near-duplicates")
    bad_images: Literal["error", "skip"] = opt(
        "error", "unreadable (corrupt, truncated) image files: stop with an error, or skip and report them")
    folds_csv: str = opt("", "BUS-BRA: a k-fold partition CSV (e.g. 5-fold-cv.csv; relative to the source "
                         "folder or absolute) whose test_fold rows are the test set ('' = split by Case)")
    fold_column: str = opt("kFold", "BUS-BRA: the fold column of folds_csv")
    test_fold: int = opt(1, "BUS-BRA: the fold of folds_csv used as the test set")
    dicom_frames: Literal["refuse", "split", "skip"] = opt(
        "refuse", "multi-frame DICOM files (cine clips): stop with an error, import every frame as an "
        "image (one split per file), or skip and report them")
    patient_salt: str = opt("", "salt of the pseudonymised DICOM patient ids ('' = a random one made once "
                            "and kept in WORK/patient_salt); never written to any output")
    workers: int = opt(0, "worker processes for reading and resizing (0 = one per CPU core)", effect="none")


@dataclass
class ClassifierConfig:
    """Stages 1 and 5: the InceptionResNetV2 classifier."""
    backbone: str = opt("InceptionResNetV2", "any keras.applications model name, 'small' (a 7-conv CNN for CPU studies) or 'tiny' (4 convs, tests)")
    weights: str = opt("none", "'none' (random initialisation), a path to a local weights file of the "
                       "backbone without its top, or 'imagenet' (the paper's choice: read from the Keras "
                       "cache ~/.keras/models, never downloaded at run time)")
    input_size: int = opt(256, "input side in pixels (RGB)")
    freeze_layers: int = opt(775, "first N layers frozen (except BatchNormalization) when pretrained")
    head_units: int = opt(1024, "units of the Dense ReLU layer of the head")
    learning_rate: float = opt(1e-3, "Adam learning rate", range=(0.0, None))
    batch_size: int = opt(32, "batch size")
    epochs: int = opt(50, "maximum epochs")
    monitor: Literal["val_loss", "val_auc"] = opt(
        "val_loss", "what early stopping, best-epoch restore and the learning-rate plateau watch on the "
        "validation images: val_loss (the seed) or val_auc (steadier over seeds on small data: benchmarks/RESULTS.md)")
    patience: int = opt(10, "early-stopping patience, in epochs without a better monitored value (best weights restored)")
    lr_patience: int = opt(3, "plateau patience before the learning rate is reduced")
    lr_factor: float = opt(0.1, "learning-rate reduction factor", range=(0.0, 1.0))
    shift: float = opt(0.1, "augmentation: width/height shift fraction", range=(0.0, 1.0))
    flip: bool = opt(True, "augmentation: random horizontal flip")
    workers: int = opt(2, "data-loading workers (0 = one per CPU core, as everywhere; 1 = load in the training process)", effect="none")
    loader: Literal["auto", "threads", "processes"] = opt(
        "auto", "data-loading workers: threads, processes, or auto (processes on TensorFlow, threads on JAX, which must not be forked)",
        effect="none")
    val_fraction: float = opt(0.1, "stratified fraction of the training folder held out when no validation folder is given",
                              range=(0.0, 1.0))
    mixed_precision: bool = opt(False, "train in mixed bfloat16")
    jit: bool = opt(True, "XLA-compile the training step")
    seed: int = opt(0, "random seed")
    preprocess: Literal["auto", "unit"] = opt(
        "auto", "input scaling inside the model: auto = the backbone's own keras.applications "
        "preprocess_input (InceptionResNetV2: [-1, 1]; 'tiny': / 255), unit = pixels / 255 (the seed)")


@dataclass
class GanConfig:
    """Stage 2: one StyleGAN2 per class."""
    preset: Literal["e", "f", "custom"] = opt("e", "network widths: NVlabs config-e, config-f, or custom widths below "
                                              "(formerly gan.config)")
    resolution: int = opt(256, "image side (power of two, 8..1024)")
    channels: int = opt(1, "image channels (1 = grayscale, 3 = RGB)")
    channel_base: int = opt(16384, "custom widths: channels at resolution r = min(channel_base // r, channel_max)")
    channel_max: int = opt(512, "custom widths: maximum channels")
    z_dim: int = opt(512, "latent size (z and w)")
    mapping_layers: int = opt(8, "mapping-network depth")
    import_networks: dict[str, str] = opt({}, "StyleGAN2 pickles trained with NVlabs' code, one per class "
                                          "(TOML: import = { benign = \"b.pkl\", malignant = \"m.pkl\" }): "
                                          "stage train-gan imports them instead of training")
    conditional: bool = opt(False, "one generator and one discriminator for both classes, conditioned on the "
                            "class label as in StyleGAN2-ADA (false: one unconditional GAN per class)")
    init_from: dict[str, str] = opt({}, "start a class's GAN from other weights instead of random ones, e.g. "
                                    "{ malignant = \"benign\" } (the other class's GAN trained first in "
                                    "this run: transfer to the smaller class) or { malignant = \"gan.npz\" } "
                                    "(a snapshot file or train-gan folder)")
    kimg: float = opt(10000.0, "training length in thousands of real images shown", effect="resume", range=(0.0, None))
    batch_size: int = opt(32, "global minibatch")
    gamma: float = opt(100.0, "R1 weight (the seed's runs: 100)", range=(0.0, None))
    mirror: bool = opt(True, "x-flip augmentation of the training set")
    augment: Literal["none", "ada"] = opt("none", "discriminator augmentation")
    precision: Literal["float32", "mixed_bfloat16"] = opt("float32", "compute precision")
    lr: float = opt(0.002, "Adam learning rate (G and D)", range=(0.0, None))
    ema_kimg: float = opt(0.0, "half-life of the generator's moving average, in kimg "
                          "(0 = batch_size * 10 / 32, NVlabs' default; the StyleGAN2 paper: 10)")
    ema_rampup: float = opt(0.05, "EMA ramp-up: the half-life is at most this fraction of the "
                            "images shown so far (0 = no ramp-up, the StyleGAN2 paper)")
    snapshot_kimg: float = opt(200.0, "kimg between snapshots (FID measured at each)", effect="resume",
                               range=(0.0, None))
    fid_images: int = opt(5000, "generated images per FID measurement", effect="resume")
    seed: int = opt(0, "random seed")
    tick_kimg: float = opt(4.0, "kimg between progress lines (and TensorBoard scalars)", effect="none",
                           range=(0.0, None))
    keep_snapshots: int = opt(3, "newest snapshots kept on disk besides the best (0 = keep all)",
                              effect="none")
    ada_target: float = opt(0.6, "ADA: target of E[sign(D(real))]", range=(0.0, 1.0))
    ada_kimg: float = opt(0.0, "ADA: kimg for p to go from 0 to 1 at the fastest "
                          "(0 = min(500, kimg / 10): NVlabs' 500 for long runs, faster for short ones)",
                          range=(0.0, None))
    ada_preset: Literal["bgc", "bg", "bgcf", "bgcfn", "bgcfnc", "blit", "geom", "color", "filter", "noise",
                        "cutout", "ultrasound"] = opt(
        "bgc", "ADA: augmentation pipeline; NVlabs' presets (b = blits, g = geometric, c = colour, "
        "f = image filter, n = noise, final c = cutout), or 'ultrasound': bgc keeping the skin at the top "
        "(no 90-degree rotations, rotations within +-10 degrees, no luma flip, no hue)")


@dataclass
class GenerateConfig:
    """Stage 3: images from each class's best generator."""
    n_per_class: int = opt(25000, "images per class (seeds 1..N)", range=(1, 2**32 - 1))
    truncation: float = opt(1.6, "truncation psi (the paper: 1.6)")
    batch_size: int = opt(64, "generation batch")
    format: Literal["png", "bmp"] = opt("png", "image format")
    max_per_class: int = opt(0, "generate beyond n_per_class, in chunks, until the selection accepts "
                                "synthetic.per_class x synthetic.rounds images of each class, up to this "
                                "many per class (0 = exactly n_per_class)", range=(0, 2**32 - 1))


@dataclass
class SelectConfig:
    """Stage 4: keep synthetic images the real-trained classifier assigns to their own class."""
    min_probability: float = opt(0.0, "also require this probability of the own class (0 = the paper's argmax rule)",
                                 range=(0.0, 1.0))
    max_per_class: int = opt(0, "keep at most N per class (0 = all)")
    keep: Literal["top", "random"] = opt("top", "which N to keep: highest probability or random")
    link: bool = opt(False, "write hard links instead of copies where possible", effect="none")
    batch_size: int = opt(64, "scoring batch")
    seed: int = opt(0, "seed for random keeping")


@dataclass
class AuditConfig:
    """The memorization audit (after stage 4): how close generated images come to training images."""
    enabled: bool = opt(True, "run the audit, a stage of busgan run after select")
    policy: Literal["report", "exclude"] = opt(
        "report", "near-copies of training images: report them, or also exclude them from the "
        "selected images the synthetic arms train on")
    threshold_quantile: float = opt(
        0.0, "a near-copy is closer to its nearest training image, in pixels or in the classifier's "
        "features, than this quantile of the real-vs-real nearest distances (0 = the smallest: "
        "closer than any validation image came to a training image)", range=(0.0, 1.0))
    threshold_scale: float = opt(1.0, "multiply that real-vs-real distance by this (below 1: only images "
                                      "well inside what real pairs reach are near-copies)", range=(0.0, None))
    phash_bits: int = opt(-1, "also a near-copy: within this perceptual-hash Hamming distance of a "
                              "training image (-1 = data.near_duplicate_bits, as prepare)", range=(-1, 64))
    include_all_generated: bool = opt(False, "also audit every generated image, not only the selected "
                                             "ones (reported; exclusion concerns the selected set)")
    batch_size: int = opt(256, "images per feature batch and per block of the nearest-neighbour search",
                          effect="none", range=(1, None))


@dataclass
class SyntheticConfig:
    """Stage 5: the classifier trained on selected synthetic images (cascade rounds)."""
    per_class: int = opt(14000, "selected images per class per round (the paper: 14,000)")
    rounds: int = opt(1, "cascade rounds; each round fine-tunes the previous model with a fresh optimizer")


@dataclass
class CompareConfig:
    """Stage 7: McNemar and DeLong tests of the two classifiers."""
    alpha: float = opt(0.05, "significance level; the intervals have confidence 1 - alpha", range=(0.0, 1.0))
    bootstrap: int = opt(2000, "stratified bootstrap resamples for the AUC difference (0 = off)")
    seed: int = opt(0, "bootstrap seed (the same seed gives the same interval)")
    margin: float = opt(0.05, "non-inferiority margin in AUC, fixed before the run: non-inferior "
                        "when the lower 1 - alpha bound of AUC(arm) - AUC(real) is above -margin")
    replicates: int = opt(1, "classifier trainings per arm (K, different seeds and draws); the "
                          "primary figure is the mean over replicates of AUC(arm) - AUC(real)")


@dataclass
class ArmsConfig:
    """Control and combination arms, each trained compare.replicates times beside real and synthetic."""
    real_plus_synthetic: bool = opt(True, "also train on the real training images plus the selected synthetic ones")
    oracle: bool = opt(True, "phantom data only: also train on freshly simulated phantom images passed "
                             "through the generated images' path (resolution, selection): a perfect generator")
    efficiency: list[float] = opt([], "the data-efficiency curve: fractions of the real training images (below 1) "
                                      "to train on, alone and with the selected synthetic images; [] = off",
                                  range=(0.01, 0.99))


@dataclass
class Config:
    """The whole pipeline's configuration."""
    phantom: PhantomConfig = field(default_factory=PhantomConfig)
    data: DataConfig = field(default_factory=DataConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    arms: ArmsConfig = field(default_factory=ArmsConfig)


SECTIONS: dict[str, type] = {f.name: f.type if isinstance(f.type, type) else globals()[f.type]
                             for f in dataclasses.fields(Config)}


def _field_of(key: str) -> Any:
    """The dataclass field of ``section.key`` (None when ``key`` names none)."""
    section, _, name = key.strip().partition(".")
    cls = SECTIONS.get(section)
    if cls is None:
        return None
    return next((f for f in dataclasses.fields(cls) if f.name == name), None)


def _declared_range(key: str) -> tuple[Any, Any] | None:
    """The ``range=(low, high)`` a field declares in its metadata (None: no range, or not a field)."""
    f = _field_of(key)
    return None if f is None else f.metadata.get("range")


def _check_range(key: str, number: Any) -> Any:
    """``number`` if it lies in the key's declared range (bounds inclusive, None = open)."""
    bounds = _declared_range(key)
    if bounds is None:
        return number
    low, high = bounds
    if (low is not None and number < low) or (high is not None and number > high):
        if low is not None and high is not None:
            want = f"between {low} and {high}"
        elif low is not None:
            want = f"{low} or more"
        else:
            want = f"{high} or less"
        raise BusganError(f"config key '{key}': {number!r} is out of range; give a value {want}")
    return number


def _check_value(key: str, tp: Any, value: Any) -> Any:
    """Coerce ``value`` to the annotated type ``tp`` or raise a BusganError naming ``key``.

    Numbers must be finite, and within the ``range=(low, high)`` their field declares with
    ``opt(..., range=...)`` (inclusive; None leaves a side open).
    """
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(a) for a in typing.get_args(tp))
            raise BusganError(f"config key '{key}': {value!r} is not one of {choices}")
        return value
    if origin is list:  # e.g. arms.efficiency = [0.25, 0.5], or --set arms.efficiency=0.25,0.5
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise BusganError(f"config key '{key}': expected a list, e.g. [0.25, 0.5], got {value!r}")
        return [_check_value(key, item, v) for v in value]
    if origin in (dict,):
        if not isinstance(value, dict):
            raise BusganError(f"config key '{key}': expected a table (dict), got {type(value).__name__}")
        return {str(k): str(v) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _check_value(key, args[0], value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise BusganError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise BusganError(f"config key '{key}': expected an integer, got {value!r}")
        if isinstance(value, int):
            return _check_range(key, value)
        if isinstance(value, str):
            try:
                return _check_range(key, int(value.replace("_", "")))
            except ValueError:
                pass
        raise BusganError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        # The one place where every float key and option is checked, whether it comes from a
        # TOML file, --set or a per-key option: finite always, and within its declared range.
        import math
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer beyond the float range
                number = math.inf if value > 0 else -math.inf
        elif isinstance(value, str):
            try:
                number = float(value.replace("_", ""))
            except ValueError:
                pass
        if number is None:
            raise BusganError(f"config key '{key}': expected a number, got {value!r}")
        if not math.isfinite(number):
            f = _field_of(key)
            example = f.default if f is not None and isinstance(f.default, float) else 0.5
            raise BusganError(f"config key '{key}': {value!r} is not a finite number; give an "
                              f"ordinary number, e.g. the default {example!r}")
        return _check_range(key, number)
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise BusganError(f"config key '{key}': expected a string, got {value!r}")
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, globalns=globals())


# Renamed keys, old dotted name -> new: still accepted in TOML files and --set, with a warning.
RENAMED_KEYS: dict[str, str] = {"gan.config": "gan.preset"}


# TOML spellings that cannot be Python field names (``import`` is a keyword).
SPELLED_KEYS: dict[str, str] = {"gan.import": "import_networks"}


def _current_key(section: str, key: str) -> str:
    """The current name of ``section.key``; an old name is accepted with a one-line warning."""
    if f"{section}.{key}" in SPELLED_KEYS:
        return SPELLED_KEYS[f"{section}.{key}"]
    new = RENAMED_KEYS.get(f"{section}.{key}")
    if new is None:
        return key
    logging.getLogger(__name__).warning("warning: config key '%s.%s' is deprecated; use '%s' "
                                        "(the same values)", section, key, new)
    return new.split(".", 1)[1]


def with_current_keys(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """A section's values (e.g. from an old snapshot) with renamed keys under their new names."""
    out = dict(values)
    for old, new in RENAMED_KEYS.items():
        (sec, old_key), new_key = old.split(".", 1), new.split(".", 1)[1]
        if sec == section and old_key in out:
            value = out.pop(old_key)
            out.setdefault(new_key, value)
    return out


def section_from_dict(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """Build the dataclass ``cls`` from ``values``, refusing unknown keys and wrong types."""
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        key = _current_key(prefix.rstrip("."), key)
        if key in kwargs:
            raise BusganError(f"config key '{prefix}{key}' is given twice (also by its old name); keep one")
        if key not in known:
            raise BusganError(f"unknown config key '{prefix}{key}' (known: {', '.join(sorted(known))})")
        kwargs[key] = _check_value(prefix + key, hints[key], value)
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build a whole Config from nested dicts (as read from TOML)."""
    sections: dict[str, Any] = {}
    for name, table in values.items():
        if name not in SECTIONS:
            raise BusganError(f"unknown config section '[{name}]' (known: {', '.join(SECTIONS)})")
        if not isinstance(table, dict):
            raise BusganError(f"config key '{name}' must be a table [{name}]")
        sections[name] = section_from_dict(SECTIONS[name], table, f"{name}.")
    return Config(**sections)


def load_config(path: str | Path | None) -> Config:
    """Read a TOML config file (``None`` gives the defaults)."""
    if path is None:
        return Config()
    p = Path(path)
    if not p.is_file():
        raise BusganError(f"config file {p} not found; give a path such as configs/demo.toml")
    try:
        with open(p, "rb") as f:
            values = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BusganError(f"config file {p} is not valid TOML: {e}") from None
    try:
        return config_from_dict(values)
    except BusganError as e:
        raise BusganError(f"{p}: {e}") from None


def apply_override(cfg: Config, assignment: str) -> None:
    """Apply ``section.key=value`` (the value parsed as TOML when it can be, else as a string)."""
    if "=" not in assignment or "." not in assignment.split("=", 1)[0]:
        raise BusganError(f"--set {assignment!r}: expected section.key=value, e.g. gan.kimg=20")
    dotted, raw = assignment.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    if section not in SECTIONS:
        raise BusganError(f"--set: unknown config section '{section}' (known: {', '.join(SECTIONS)})")
    try:
        value: Any = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    obj = getattr(cfg, section)
    hints = _hints(type(obj))
    key = _current_key(section, key)
    dotted = f"{section}.{key}"
    if key not in hints:
        raise BusganError(f"unknown config key '{dotted}' (known: {', '.join(sorted(hints))})")
    setattr(obj, key, _check_value(dotted, hints[key], value))


def config_hash(obj: Any) -> str:
    """A stable short hash of a config section (or any dataclass / JSON value)."""
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- command-line options generated from the dataclasses -----------------------------------

def add_config_args(parser: argparse.ArgumentParser, *sections: str) -> None:
    """Add ``--config``, ``--set`` and one option per field of the given sections.

    Fields of the first section get plain names (``--n-per-class``); fields of later sections
    are prefixed with their section (``--classifier-epochs``). Options default to None so that
    only what the user types overrides the config file.
    """
    parser.add_argument("--config", metavar="TOML", help="config file (defaults apply to missing keys)")
    parser.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                        help="override any config key, e.g. --set gan.kimg=20 (repeatable)")
    for i, section in enumerate(sections):
        cls = SECTIONS[section]
        group = parser.add_argument_group(f"[{section}] options", cls.__doc__)
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            name = f.name.replace("_", "-") if i == 0 else f"{section}-{f.name.replace('_', '-')}"
            tp = hints[f.name]
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            help_text = f"{f.metadata.get('help', '')} (default: {default!r})"
            dest = f"cfg__{section}__{f.name}"
            if tp is bool:
                group.add_argument(f"--{name}", dest=dest, action=argparse.BooleanOptionalAction,
                                   default=None, help=help_text)
            elif typing.get_origin(tp) is dict:
                continue  # tables are set in the TOML file or with --set
            elif typing.get_origin(tp) is Literal:
                group.add_argument(f"--{name}", dest=dest, choices=typing.get_args(tp), default=None,
                                   help=help_text)
            else:
                group.add_argument(f"--{name}", dest=dest, type=tp if tp in (int, float) else str,
                                   default=None, metavar=f.name.upper(), help=help_text)


def config_from_args(args: argparse.Namespace) -> Config:
    """The config file given by ``--config`` with ``--set`` and per-field options applied."""
    cfg = load_config(getattr(args, "config", None))
    for assignment in getattr(args, "set", []) or []:
        apply_override(cfg, assignment)
    for dest, value in vars(args).items():
        if dest.startswith("cfg__") and value is not None:
            _, section, key = dest.split("__", 2)
            apply_override_value(cfg, section, key, value)
    return cfg


def apply_override_value(cfg: Config, section: str, key: str, value: Any) -> None:
    """Set one already-parsed value, with the same type checks as the TOML loader."""
    obj = getattr(cfg, section)
    setattr(obj, key, _check_value(f"{section}.{key}", _hints(type(obj))[key], value))

