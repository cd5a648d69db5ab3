"""The data-efficiency curve: test AUC against the number of real training images, with and
without the selected synthetic images (stage ``efficiency``, switched on by ``arms.efficiency``).

For every fraction f of ``arms.efficiency`` and every replicate k, a seeded draw of
round(f x n) real training images of each class (n: that class's count in ``data/train``) trains
two classifiers: on the draw alone ("real") and on the draw plus the synthetic arm's number of
selected synthetic images per class ("real+synthetic"). Both early-stop on ``data/val`` and are
tested on ``data/test``, as the arms are. The full set (f = 1) is the real and real+synthetic
arms themselves, read from stage test.

The synthetic images come from GANs trained on all real training images, so the curve answers
"how much do these synthetic images help a classifier that sees fewer real images", not "what
does the whole pipeline give when it starts from fewer images" (that needs a GAN training per
fraction); the report says so.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from busgan import CLASSES, layout
from busgan.config import Config
from busgan.fileio import atomic_path, read_json, write_json

log = logging.getLogger(__name__)
CURVE_FILE = "efficiency.csv"
CURVE_COLUMNS = ("fraction", "real_per_class", "arm", "replicate", "auc")
PLOT_FILE = "efficiency.png"
KINDS = (layout.REAL_ARM, layout.COMBINED_ARM)


def fraction_dir(work: Path, fraction: float) -> Path:
    return Path(work) / layout.EFFICIENCY / f"f{fraction:g}"


def real_draw(work: Path, fraction: float, seed: int) -> dict[str, list[Path]]:
    """round(fraction x n) real training images of each class, drawn at random (seeded)."""
    from busgan.imaging import list_images
    rng = np.random.default_rng(seed)
    draw = {}
    for c in CLASSES:
        files = sorted(list_images(layout.data_split(work, "train") / c))
        n = max(1, int(round(fraction * len(files))))
        draw[c] = [files[i] for i in np.sort(rng.choice(len(files), n, replace=False))]
    return draw


def _training_set(out: Path, real: dict[str, list[Path]], synthetic: dict[str, list[Path]]) -> None:
    """``out/{class}/``: links to the drawn real images and the synthetic ones."""
    from busgan.arms import _link_or_copy
    if out.exists():
        shutil.rmtree(out)  # a folder of links this stage made for this replicate
    for kind, files in (("real", real), ("synthetic", synthetic)):
        for c, paths in files.items():
            for f in paths:
                _link_or_copy(f, out / c / f"{kind}_{f.name}")


def _synthetic_draw(cfg: Config, work: Path, per_class: int, seed: int) -> dict[str, list[Path]]:
    """``per_class`` selected synthetic images of each class (seeded), without the audit's exclusions."""
    from busgan.arms import excluded_selection
    from busgan.classifier.dataset import sample_per_class, scan_classes
    files, labels = scan_classes(work / layout.SELECTED, require_all=False)
    excluded = excluded_selection(cfg, work)
    kept = np.array([f"{f.parent.name}/{f.name}" not in excluded for f in files], bool)
    files, labels = [f for f, k in zip(files, kept) if k], labels[kept]
    keep = sample_per_class(labels, per_class, seed)
    return {c: [files[i] for i in keep if labels[i] == k] for k, c in enumerate(CLASSES)}


def _train_and_test(cfg: Config, work: Path, key: str, fraction: float, kind: str, k: int,
                    real: dict[str, list[Path]], synthetic: dict[str, list[Path]]) -> float:
    """One classifier of the curve (resumed when finished under the same key); its test AUC."""
    from busgan.arms import _finished as finished, _mark_finished as mark_finished, _train as train_on
    from busgan.arms import replicate_seed
    from busgan.classifier.evaluate import evaluate_model
    out = fraction_dir(work, fraction) / kind / f"rep{k}"
    seed = replicate_seed(cfg, k)
    if not finished(out, key):
        _training_set(out / "train-set", real, synthetic if kind == layout.COMBINED_ARM else {})
        train_on(out / "train-set", work, out, dataclasses.replace(cfg.classifier, seed=seed))
        metrics = evaluate_model(out / layout.MODEL_FILE, layout.data_split(work, "test"), out / "test",
                                 batch_size=cfg.classifier.batch_size)
        mark_finished(out, key, kind, k, fraction=fraction, auc=metrics["auc"])
    return float(read_json(out / "arm.json")["auc"])


def full_set_auc(work: Path, arm: str, k: int) -> float:
    """The arm's own test AUC (stage test's metrics.json): the curve's point at fraction 1."""
    return float(read_json(layout.arm_test_dir(work, arm, k) / "metrics.json")["auc"])


def data_efficiency(cfg: Config, work: Path, key: str) -> dict[str, Any]:
    """Stage efficiency: every fraction x replicate x (real, real+synthetic); writes the curve's
    CSV and plot under ``efficiency/`` and returns the mean AUC per point."""
    from busgan.arms import balanced_per_class, excluded_selection, replicate_count, replicate_seed
    per_class, _ = balanced_per_class(work / layout.SELECTED, cfg.synthetic.per_class,
                                      excluded_selection(cfg, work))
    n_real = {c: len(real_draw(work, 1.0, 0)[c]) for c in CLASSES}
    rows: list[dict[str, Any]] = []
    for fraction in sorted(cfg.arms.efficiency):
        for k in range(1, replicate_count(cfg) + 1):
            seed = replicate_seed(cfg, k)  # replicate k's classifier seed also draws its images
            real = real_draw(work, fraction, seed)
            synthetic = _synthetic_draw(cfg, work, per_class, seed)
            for kind in KINDS:
                log.info("\n=== efficiency: %g of the real images, %s, replicate %d ===", fraction, kind, k)
                auc = _train_and_test(cfg, work, key, fraction, kind, k, real, synthetic)
                rows.append({"fraction": fraction, "real_per_class": min(len(v) for v in real.values()),
                             "arm": kind, "replicate": k, "auc": auc})
    for k in range(1, replicate_count(cfg) + 1):
        for kind in KINDS:
            rows.append({"fraction": 1.0, "real_per_class": min(n_real.values()), "arm": kind,
                         "replicate": k, "auc": full_set_auc(work, kind, k)})
    out = Path(work) / layout.EFFICIENCY
    _write_curve(out / CURVE_FILE, rows)
    means = curve_means(rows)
    plot_curve(means, out / PLOT_FILE, per_class)
    write_json(out / "efficiency.json", {"synthetic_per_class": per_class, "points": means,
                                         "gan_trained_on": "all real training images"})
    return {"synthetic_per_class": per_class, "points": means}


def curve_means(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation (over replicates) of the AUC at each (fraction, arm)."""
    points = []
    for fraction in sorted({r["fraction"] for r in rows}):
        for kind in KINDS:
            aucs = [r["auc"] for r in rows if r["fraction"] == fraction and r["arm"] == kind]
            n = [r["real_per_class"] for r in rows if r["fraction"] == fraction and r["arm"] == kind]
            points.append({"fraction": fraction, "real_per_class": n[0], "arm": kind, "replicates": len(aucs),
                           "mean_auc": float(np.mean(aucs)),
                           "sd_auc": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0})
    return points


def _write_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows({**r, "auc": f"{r['auc']:.6f}"} for r in rows)


def plot_curve(points: list[dict[str, Any]], path: Path, synthetic_per_class: int) -> None:
    """AUC (mean +- sd over replicates) against real training images per class, one line per arm."""
    import matplotlib.pyplot as plt
    from busgan.stats.plot import _save as save_figure
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for kind, label in ((layout.REAL_ARM, "real images only"),
                        (layout.COMBINED_ARM, f"real + {synthetic_per_class} synthetic per class")):
        pts = [p for p in points if p["arm"] == kind]
        ax.errorbar([p["real_per_class"] for p in pts], [p["mean_auc"] for p in pts],
                    yerr=[p["sd_auc"] for p in pts], marker="o", capsize=3, label=label)
    ax.set_xlabel("real training images per class")
    ax.set_ylabel("test AUC (malignant), mean +- sd over replicates")
    ax.set_title("Data efficiency")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    plt.close(fig)


def add_report_section(doc: Any, work: Path) -> None:
    """The curve's section of the run report (on a ``busgan.report.Document``), when it ran."""
    record = Path(work) / layout.EFFICIENCY / "efficiency.json"
    if not record.is_file():
        return
    data = read_json(record)
    doc.h(2, "Data efficiency (stage efficiency)")
    doc.p("Test AUC against the number of real training images per class, alone and with "
          f"{data['synthetic_per_class']} selected synthetic images per class (mean +- standard "
          "deviation over replicates). The synthetic images come from GANs trained on all real "
          "training images, so this measures what they add to a smaller real set, not what the "
          "whole pipeline gives when it starts from fewer images.")
    by_n: dict[int, dict[str, dict[str, Any]]] = {}
    for p in data["points"]:
        by_n.setdefault(p["real_per_class"], {})[p["arm"]] = p
    rows = [[n, *(f"{arms[k]['mean_auc']:.4f} +- {arms[k]['sd_auc']:.4f}" if k in arms else "-" for k in KINDS)]
            for n, arms in sorted(by_n.items())]
    doc.table(["real images per class", "real only", "real + synthetic"], rows)
    doc.img(Path(work) / layout.EFFICIENCY / PLOT_FILE, "Data efficiency: AUC against real training images")
