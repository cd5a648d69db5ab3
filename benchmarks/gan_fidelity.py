"""Fidelity per compute: two class GANs against one conditional GAN, at the same images shown.

    python benchmarks/gan_fidelity.py [--config configs/demo.toml] [--work runs/gan-fidelity]
                                      [--set SECTION.KEY=VALUE ...]

(a) ``busgan run`` as configured (one unconditional StyleGAN2 per class, gan.kimg each) and
(b) the same run with ``gan.conditional = true`` and twice gan.kimg and gan.snapshot_kimg (one
network sees as many real images as the two of (a) together, with as many snapshots), both on
the same prepared data and real classifier, each up to stage ``test``, with the extra arms off.
Printed per class: KID, FID, precision and recall of the best snapshot in both feature spaces
(the classifier's and the independent random-convolution one) beside their real-vs-real floor,
and the AUC on the real test images of the classifier trained on each run's selected images.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from busgan import CLASSES
from busgan.config import load_config
from busgan import layout

EXTRA_ARMS_OFF = ["arms.real_plus_synthetic=false", "arms.oracle=false"]
SHOWN_METRICS = ("kid", "fid", "precision", "recall")


def _run(config: Path, work: Path, sets: list[str]) -> float:
    """``busgan run CONFIG --work WORK --until test`` with ``sets``; returns its seconds."""
    cmd = [sys.executable, "-m", "busgan", "run", str(config), "--work", str(work), "--until", "test", "-q"]
    for s in sets:
        cmd += ["--set", s]
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    return time.time() - t0


def _best_rows(gan_dir: Path, cls: str) -> dict[tuple[str, str], tuple[float, float]]:
    """{(space, metric): (value, floor)} of the best snapshot's rows for ``cls``."""
    best = json.loads((gan_dir / "best.json").read_text())["snapshot"].split("/")[-1]
    with open(gan_dir / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == best and r["class"] in (cls, gan_dir.name)]
    return {(r["space"], r["metric"]): (float(r["value"]), float(r["floor"])) for r in rows}


def _auc(work: Path, arm: str) -> float:
    with open(work / layout.EVALUATION / arm / "rep1" / layout.PREDICTIONS_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    y = np.array([r["true_label"] == "malignant" for r in rows], int)
    return float(roc_auc_score(y, [float(r["prob_malignant"]) for r in rows]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=Path("configs/demo.toml"))
    ap.add_argument("--work", type=Path, default=Path("runs/gan-fidelity"))
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = ap.parse_args()
    gan = load_config(args.config).gan
    separate, conditional = args.work / "separate", args.work / "conditional"
    sets = EXTRA_ARMS_OFF + args.set
    seconds = {"separate": _run(args.config, separate, sets)}
    if not conditional.exists():  # the same prepared data and real classifier (their records too)
        conditional.mkdir(parents=True)
        for name in (layout.DATA, layout.REAL, "records"):
            shutil.copytree(separate / name, conditional / name)
        for later in (conditional / "records").iterdir():
            if later.stem not in ("prepare", "train-real"):
                later.unlink()
    seconds["conditional"] = _run(args.config, conditional, sets + [
        "gan.conditional=true", f"gan.kimg={2 * gan.kimg:g}", f"gan.snapshot_kimg={2 * gan.snapshot_kimg:g}"])

    lines = [f"config {args.config}; separate: 2 x {gan.kimg:g} kimg; conditional: 1 x {2 * gan.kimg:g} kimg",
             "", "| GANs | class | space | KID (floor) | FID (floor) | precision (floor) | recall (floor) |",
             "|---|---|---|---|---|---|---|"]
    for kind, work in (("separate", separate), ("conditional", conditional)):
        for cls in CLASSES:
            rows = _best_rows(layout.gan_dir(work, cls, kind == "conditional"), cls)
            for space in sorted({s for s, _ in rows}):
                cells = [f"{rows[(space, m)][0]:.4g} ({rows[(space, m)][1]:.4g})" if (space, m) in rows else "-"
                         for m in SHOWN_METRICS]
                lines.append(f"| {kind} | {cls} | {space} | " + " | ".join(cells) + " |")
    lines += ["", "| GANs | real-arm AUC | synthetic-arm AUC | run time (s) |", "|---|---|---|---|"]
    for kind, work in (("separate", separate), ("conditional", conditional)):
        lines.append(f"| {kind} | {_auc(work, layout.REAL_ARM):.4f} | {_auc(work, layout.SYNTHETIC_ARM):.4f} "
                     f"| {seconds[kind]:.0f} |")
    text = "\n".join(lines)
    print(text)
    (args.work / "gan_fidelity.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
