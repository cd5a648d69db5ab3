"""`busgan run`: the whole pipeline from one config file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from busgan.config import apply_override, load_config
from busgan.pipeline import stage_choices


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "run", help="run the whole pipeline, resumable",
        description="Run the pipeline's stages in order. A stage whose record matches the "
                    "config and its inputs is skipped, so the same command continues after a "
                    "crash or Ctrl-C. Writes report.md and report.html in the work directory.")
    p.add_argument("config", metavar="CONFIG", help="TOML config, e.g. configs/demo.toml")
    p.add_argument("--work", required=True, metavar="DIR", help="work directory (created)")
    p.add_argument("--only", metavar="STAGE",
                   help=f"run this stage only, by name or paper number: {stage_choices()}")
    p.add_argument("--until", metavar="STAGE", help="run the stages up to and including STAGE")
    p.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                   help="override a config key, e.g. --set gan.kimg=20 (repeatable)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from busgan.pipeline import run_pipeline

    cfg = load_config(args.config)
    for assignment in args.set:
        apply_override(cfg, assignment)
    run_pipeline(cfg, Path(args.work), only=args.only, until=args.until)
    return 0
