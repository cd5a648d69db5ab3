"""The arms of the comparison, as pipeline stages.

Every arm is a classifier trained ``compare.replicates`` times (replicate k uses classifier
seed + k - 1, so draws and initialisation differ), early-stopped on the same real validation
images ``data/val`` and tested on the same real test images ``data/test``:

- ``real``: the real training images (replicate 1 is stage train-real's model, the selector);
- ``synthetic``: the selected synthetic images, the same number per class (the primary arm);
- ``real+synthetic``: the real training images plus that many selected synthetic ones;
- ``oracle`` (phantom data only): freshly simulated phantom images sent down the generated
  images' path (prepared like the data, resized to the GAN's resolution, written as PNG,
  then the same selection): a perfect generator at the same resolution and selection.

A replicate folder holds ``arm.json`` with the key of the stage run that made it; a rerun of
the stage (after an interruption) reuses a replicate only when that key still matches.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from PIL import Image

from busgan import CLASSES, layout
from busgan.config import ClassifierConfig, Config, PhantomConfig, result_values
from busgan.errors import BusganError
from busgan.fileio import atomic_path, read_json, write_json

log = logging.getLogger(__name__)
ARM_RECORD = "arm.json"
# The oracle's phantom seed is the data's seed moved by this offset, so its images are new
# (the stage also checks the hashes against every prepared image).
ORACLE_SEED_OFFSET = 1_000_003


def replicate_count(cfg: Config) -> int:
    k = cfg.compare.replicates
    if k < 1:
        raise BusganError(f"compare.replicates = {k}: at least one training per arm is needed; set 1 or more")
    return k


def enabled_arms(cfg: Config) -> tuple[str, ...]:
    """The arms this config trains, in report order."""
    arms = [layout.REAL_ARM, layout.SYNTHETIC_ARM]
    if cfg.arms.real_plus_synthetic:
        arms.append(layout.COMBINED_ARM)
    if oracle_enabled(cfg):
        arms.append(layout.ORACLE_ARM)
    return tuple(arms)


def oracle_enabled(cfg: Config) -> bool:
    return cfg.arms.oracle and cfg.data.source.strip().lower() == "phantom"


def replicate_seed(cfg: Config, k: int, round_: int = 1) -> int:
    """Classifier seed of replicate k (1-based), cascade round r: distinct for every (k, r)."""
    return cfg.classifier.seed + (k - 1) * cfg.synthetic.rounds + (round_ - 1)


# --- reuse after an interruption ---------------------------------------------------------------

def _finished(out: Path, key: str) -> bool:
    rec = out / ARM_RECORD
    if not ((out / layout.MODEL_FILE).is_file() and rec.is_file()):
        return False
    try:
        return read_json(rec).get("key") == key
    except (OSError, ValueError):
        return False


def _mark_finished(out: Path, key: str, arm: str, k: int, **extra: Any) -> dict[str, Any]:
    train = read_json(out / "train.json") if (out / "train.json").is_file() else {}
    record = {"key": key, "arm": arm, "replicate": k, "counts": train.get("counts"),
              "val_dir": train.get("val_dir"), "seed": train.get("config", {}).get("seed"),
              "epochs_run": train.get("epochs_run"), "val_auc": train.get("val_auc"), **extra}
    write_json(out / ARM_RECORD, record)
    return record


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst, suffix=dst.suffix) as tmp:
        shutil.copyfile(src, tmp)


# --- training --------------------------------------------------------------------------------

def _train(train_dir: Path, work: Path, out: Path, cfg: ClassifierConfig, init: Path | None = None,
           per_class: int | None = None) -> Path:
    from busgan.classifier.train import train_classifier
    return train_classifier(train_dir, layout.data_split(work, "val"), out, cfg, init=init,
                            per_class=per_class)


def train_real_arm(cfg: Config, work: Path, key: str) -> dict[str, Any]:
    """Replicate 1 is stage train-real's model (copied); replicates 2..K are trained anew."""
    reps = []
    for k in range(1, replicate_count(cfg) + 1):
        out = layout.replicate_dir(work, layout.REAL_ARM, k)
        if not _finished(out, key):
            if k == 1:
                for name in (layout.MODEL_FILE, "train.json"):
                    _copy(work / layout.REAL / name, out / name)
            else:
                ccfg = dataclasses.replace(cfg.classifier, seed=replicate_seed(cfg, k))
                _train(layout.data_split(work, "train"), work, out, ccfg)
        reps.append(_mark_finished(out, key, layout.REAL_ARM, k))
    return {"arm": layout.REAL_ARM, "replicates": reps}


def excluded_selection(cfg: Config, work: Path) -> frozenset[str]:
    """The selected images (``class/name``) the memorization audit keeps out of the arms
    (``audit.policy = "exclude"``); none otherwise."""
    if not (cfg.audit.enabled and cfg.audit.policy == "exclude"):
        return frozenset()
    from busgan.audit import read_excluded
    return read_excluded(work)


def _kept(folder: Path, cls: str, excluded: frozenset[str]) -> list[Path]:
    from busgan.imaging import list_images
    if not (folder / cls).is_dir():
        return []
    return [p for p in list_images(folder / cls) if f"{cls}/{p.name}" not in excluded]


def balanced_per_class(folder: Path, wanted: int, excluded: frozenset[str] = frozenset()
                       ) -> tuple[int, dict[str, int]]:
    """Images per class an arm trains on with both classes equally represented: ``wanted``, or
    the smaller class's count when the folder holds fewer; and the counts found (``excluded``
    images, ``class/name``, not counted)."""
    counts = {c: len(_kept(folder, c, excluded)) for c in CLASSES}
    if min(counts.values()) == 0:
        empty = [c for c, n in counts.items() if n == 0]
        after = " once the audit's near-copies are excluded" if excluded else ""
        raise BusganError(f"{folder}: no {' or '.join(empty)} image was selected{after}; the arm cannot "
                          "train: generate more images (generate.n_per_class) or train the GANs longer")
    return min(wanted, *counts.values()), counts


def _without_excluded(selected: Path, excluded: frozenset[str], out: Path) -> Path:
    """``selected`` itself, or with exclusions ``out/{class}/``: links to the images kept."""
    if out.exists():
        shutil.rmtree(out)  # a folder of links this stage made
    if not excluded:
        return selected
    for cls in CLASSES:
        for f in _kept(selected, cls, excluded):
            _link_or_copy(f, out / cls / f.name)
    return out


def _removed(selected: Path, excluded: frozenset[str]) -> dict[str, int]:
    """How many selected images of each class the exclusion list removes."""
    return {c: sum(1 for e in excluded if e.startswith(f"{c}/") and (selected / e).is_file()) for c in CLASSES}


def _train_from_selection(cfg: Config, work: Path, key: str, arm: str, selected: Path,
                          excluded: frozenset[str] = frozenset()) -> dict[str, Any]:
    """An arm trained on a selected set (synthetic, oracle), in cascade rounds per replicate,
    without the ``excluded`` images (``class/name``)."""
    rounds = cfg.synthetic.rounds
    if rounds < 1:
        raise BusganError(f"synthetic.rounds = {rounds}: at least one round is needed; set 1 or more")
    per_class, found = balanced_per_class(selected, cfg.synthetic.per_class, excluded)
    selected = _without_excluded(selected, excluded, work / layout.ARMS / arm / "selection")
    shortfall = per_class < cfg.synthetic.per_class
    if shortfall:
        log.warning(f"[busgan run] {arm}: selection kept {', '.join(f'{n} {c}' for c, n in found.items())} "
                 f"images, fewer than synthetic.per_class = {cfg.synthetic.per_class}: this arm "
                 f"trains on {per_class} per class (balanced)")
    reps = []
    for k in range(1, replicate_count(cfg) + 1):
        out = layout.replicate_dir(work, arm, k)
        if not _finished(out, key):
            init: Path | None = None
            for r in range(1, rounds + 1):  # a fresh draw of per_class images each round
                ccfg = dataclasses.replace(cfg.classifier, seed=replicate_seed(cfg, k, r))
                init = _train(selected, work, out / f"round{r}", ccfg, init=init, per_class=per_class)
            assert init is not None
            for name in (layout.MODEL_FILE, "train.json"):
                _copy(init.parent / name, out / name)
        reps.append(_mark_finished(out, key, arm, k, rounds=rounds))
    return {"arm": arm, "replicates": reps, "selected": found, "per_class_wanted": cfg.synthetic.per_class,
            "per_class_trained": per_class, "shortfall": shortfall}


def train_synthetic_arm(cfg: Config, work: Path, key: str) -> dict[str, Any]:
    excluded = excluded_selection(cfg, work)
    summary = _train_from_selection(cfg, work, key, layout.SYNTHETIC_ARM, work / layout.SELECTED, excluded)
    if excluded:
        summary["excluded_near_copies"] = _removed(work / layout.SELECTED, excluded)
    return summary


def train_oracle_arm(cfg: Config, work: Path, key: str) -> dict[str, Any]:
    return _train_from_selection(cfg, work, key, layout.ORACLE_ARM, work / layout.ORACLE / "selected")


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(src, dst)


def combined_training_set(work: Path, out: Path, per_class: int, seed: int,
                          excluded: frozenset[str] = frozenset()) -> dict[str, dict[str, int]]:
    """``out/{class}/``: every real training image plus ``per_class`` selected synthetic images
    per class (a seeded draw among those not ``excluded``), as links; returns how many of each
    were placed."""
    import numpy as np
    from busgan.classifier.dataset import sample_per_class, scan_classes
    if out.exists():
        shutil.rmtree(out)  # a folder of links this stage made for this replicate
    placed: dict[str, dict[str, int]] = {"real": {}, "synthetic": {}}
    real_files, real_labels = scan_classes(layout.data_split(work, "train"))
    syn_files, syn_labels = scan_classes(work / layout.SELECTED, require_all=False)
    if excluded:
        keep_ok = [i for i, f in enumerate(syn_files) if f"{f.parent.name}/{f.name}" not in excluded]
        syn_files, syn_labels = [syn_files[i] for i in keep_ok], syn_labels[np.asarray(keep_ok, np.int64)]
    keep = sample_per_class(syn_labels, per_class, seed)
    for kind, files, labels in (("real", real_files, real_labels),
                                ("synthetic", [syn_files[i] for i in keep], syn_labels[keep])):
        for f, lab in zip(files, labels):
            _link_or_copy(f, out / CLASSES[int(lab)] / f"{kind}_{f.name}")
        placed[kind] = {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}
    return placed


def train_combined_arm(cfg: Config, work: Path, key: str) -> dict[str, Any]:
    excluded = excluded_selection(cfg, work)
    per_class, found = balanced_per_class(work / layout.SELECTED, cfg.synthetic.per_class, excluded)
    reps = []
    for k in range(1, replicate_count(cfg) + 1):
        out = layout.replicate_dir(work, layout.COMBINED_ARM, k)
        if not _finished(out, key):
            seed = replicate_seed(cfg, k)
            placed = combined_training_set(work, out / "train-set", per_class, seed, excluded)
            ccfg = dataclasses.replace(cfg.classifier, seed=seed)
            _train(out / "train-set", work, out, ccfg)
            write_json(out / "train-set.json", placed)
        reps.append(_mark_finished(out, key, layout.COMBINED_ARM, k))
    summary = {"arm": layout.COMBINED_ARM, "replicates": reps, "synthetic_per_class": per_class}
    if excluded:
        summary["excluded_near_copies"] = _removed(work / layout.SELECTED, excluded)
    return summary


# --- the oracle's images ---------------------------------------------------------------------

def oracle_phantom_config(cfg: Config) -> PhantomConfig:
    """As many fresh phantom images per class as were generated, with a seed of their own."""
    return dataclasses.replace(cfg.phantom, n_per_class=cfg.generate.n_per_class,
                               seed=cfg.phantom.seed + ORACLE_SEED_OFFSET)


def to_generated_path(src: Path, dst: Path, cfg: Config) -> None:
    """One image down the path a generated image takes: prepared as stage prepare does (colour,
    data.size, data.resize), then centre-cropped and resized to the GAN's resolution as the GAN's
    loader does (prepared images are square, so the crop changes nothing), written as PNG."""
    from busgan.data.images import to_color
    from busgan.imaging import fit
    with Image.open(src) as im:
        prepared = fit(to_color(im, cfg.data.color), cfg.data.size, cfg.data.resize)
    gan_mode = "L" if cfg.gan.channels == 1 else "RGB"
    small = fit(prepared.convert(gan_mode), cfg.gan.resolution, "crop")
    with atomic_path(dst, suffix=".png") as tmp:
        small.save(tmp, format="PNG")


def _prepared_hashes(work: Path) -> set[str]:
    import csv
    with open(work / layout.DATA / "manifest.csv", newline="", encoding="utf-8") as f:
        return {row["sha256"] for row in csv.DictReader(f)}


def make_oracle_images(cfg: Config, work: Path, key: str) -> dict[str, Any]:
    """Fresh phantom images -> ``oracle/generated`` (the generated path) -> ``oracle/selected``."""
    from busgan.classifier.select import select_images
    from busgan.data.phantom import generate_phantom
    from busgan.fileio import sha256_file
    root = work / layout.ORACLE
    phantom_dir = generate_phantom(root / "phantom", oracle_phantom_config(cfg))
    sources = sorted(p for c in CLASSES for p in (phantom_dir / c).glob("*.png"))
    prepared = _prepared_hashes(work)  # the manifest, read once
    overlap = [p for p in sources if sha256_file(p) in prepared]
    if overlap:
        raise BusganError(f"{overlap[0]}: an oracle image equals a prepared image; "
                          "change phantom.seed (the oracle uses phantom.seed + 1000003)")
    generated = root / "generated"
    path_key = {"data": result_values(cfg.data), "gan": [cfg.gan.resolution, cfg.gan.channels],
                "phantom": result_values(oracle_phantom_config(cfg))}
    record = generated / "oracle.json"
    if generated.exists() and not (record.is_file() and read_json(record) == path_key):
        shutil.rmtree(generated)  # made for another path (a folder this stage owns): remade below
    write_json(record, path_key)
    for src in sources:
        dst = generated / src.parent.name / src.name
        if not dst.is_file():
            to_generated_path(src, dst, cfg)
    summary = select_images(layout.real_model(work), generated, root / "selected", cfg.select)
    return {"phantom_seed": oracle_phantom_config(cfg).seed, "images": len(sources),
            "overlap_with_prepared": 0, "selection": summary}


# --- testing every replicate of every arm ----------------------------------------------------

def test_arms(cfg: Config, work: Path, key: str) -> dict[str, Any]:
    """Every replicate of every enabled arm on ``data/test``; AUC and accuracy per replicate."""
    from busgan.classifier.evaluate import evaluate_model
    results: dict[str, list[dict[str, Any]]] = {}
    for arm in enabled_arms(cfg):
        results[arm] = []
        for k in range(1, replicate_count(cfg) + 1):
            log.info("\n=== %s arm, replicate %d: on the real test images ===", arm, k)
            metrics = evaluate_model(layout.arm_model(work, arm, k), layout.data_split(work, "test"),
                                 layout.arm_test_dir(work, arm, k), batch_size=cfg.classifier.batch_size)
            results[arm].append({k2: metrics[k2] for k2 in ("accuracy", "auc") if k2 in metrics})
    return results

