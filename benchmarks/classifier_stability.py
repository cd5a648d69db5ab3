"""The real arm's spread over classifier seeds, for each early-stopping monitor (issue 10, point 3).

Prepares the config's phantom data with another phantom seed (by default 0: the seed settings
are chosen on, never the study's), trains the real classifier once per classifier seed and
monitor on data/train, early-stopped on data/val, and prints the validation AUC (scikit-learn,
exact) per seed with its mean and standard deviation; target sd <= 0.02. Test images are not
scored: settings are chosen on validation images only.

    KERAS_BACKEND=jax python benchmarks/classifier_stability.py                  # cpu-study, 5 seeds
    KERAS_BACKEND=jax python benchmarks/classifier_stability.py --seeds 3 --monitors val_auc
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("BUSGAN_NO_PROGRESS", "1")

from busgan.classifier.train import train_classifier  # noqa: E402
from busgan.config import load_config  # noqa: E402
from busgan.fileio import read_json  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=Path("configs/cpu-study.toml"))
    ap.add_argument("--phantom-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=5, help="classifier seeds 0..N-1")
    ap.add_argument("--monitors", nargs="+", default=["val_loss", "val_auc"])
    ap.add_argument("--work", type=Path, default=None, help="kept when given (default: a temporary folder)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="busgan-stability-"))
    subprocess.run([sys.executable, "-m", "busgan", "run", str(args.config), "--work", str(work), "-q",
                    "--set", f"phantom.seed={args.phantom_seed}", "--until", "prepare"], check=True)
    cfg = load_config(args.config).classifier
    print(f"| monitor | validation AUC per seed (0..{args.seeds - 1}) | best epochs | mean | sd |")
    print("|---|---|---|---|---|")
    for monitor in args.monitors:
        aucs, epochs = [], []
        for seed in range(args.seeds):
            out = work / "stability" / f"{monitor}-seed{seed}"
            train_classifier(work / "data" / "train", work / "data" / "val", out,
                             dataclasses.replace(cfg, monitor=monitor, seed=seed))
            record = read_json(out / "train.json")
            aucs.append(record["val_auc"])
            epochs.append(f"{record['best_epoch']}/{record['epochs_run']}")
        print(f"| {monitor} | {', '.join(f'{a:.3f}' for a in aucs)} | {', '.join(epochs)} | "
              f"{statistics.mean(aucs):.3f} | {statistics.stdev(aucs):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
