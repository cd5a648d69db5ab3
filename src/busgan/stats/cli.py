"""``busgan compare``: the statistics stage on two predictions.csv files."""

from __future__ import annotations

import argparse

from busgan.cli import add_command, add_out_option
from busgan.config import add_config_args, config_from_args

DESCRIPTION = """Compare two classifiers tested on the same images (stage 7).
A and B are predictions.csv files written by `busgan test` (or their folders), e.g.
real/test and synthetic/test. Prints McNemar's tests (exact, mid-p, chi-square; all images,
malignant only, benign only), DeLong's paired AUC test, accuracy / sensitivity / specificity
with Wilson and Clopper-Pearson intervals, and optionally a bootstrap interval; writes
stats.json, stats.md and roc_overlay.png to --out."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``compare`` subcommand."""
    p = add_command(sub, "compare", help="McNemar and DeLong tests of two models' predictions",
                    description=DESCRIPTION,
                    example=["busgan compare runs/demo/real/test runs/synthetic/test --out stats",
                             "busgan compare a/predictions.csv b/predictions.csv --names real gan "
                             "--bootstrap 0"])
    p.add_argument("a", metavar="A", help="predictions.csv of the first model (rows of McNemar's table)")
    p.add_argument("b", metavar="B", help="predictions.csv of the second model (columns)")
    add_out_option(p, "output folder (default: stats)", default="stats")
    p.add_argument("--names", nargs=2, default=("real", "synthetic"), metavar=("NAME_A", "NAME_B"),
                   help="model names in the report (default: real synthetic)")
    add_config_args(p, "compare")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the comparison and print the summary."""
    from pathlib import Path

    from busgan.stats.compare import compare_predictions
    from busgan.stats.report import format_summary

    cfg = config_from_args(args)
    out = Path(args.out)
    result = compare_predictions(Path(args.a), Path(args.b), out, cfg.compare, names=tuple(args.names))
    print(format_summary(result))
    print(f"\nWrote {out / 'stats.json'}, {out / 'stats.md'} and {out / 'roc_overlay.png'}")
    return 0
