"""`busgan run`: the whole pipeline from one config file."""

from __future__ import annotations

import argparse
from pathlib import Path

from busgan.cli import add_command, add_work_option
from busgan.config import apply_override, load_config
from busgan.errors import BusganError
from busgan.pipeline import stage_choices


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, "run", help="run the whole pipeline, resumable",
        description="Run the pipeline's stages in order. A stage whose record matches the "
                    "config and its inputs is skipped, so the same command continues after a "
                    "crash or Ctrl-C. Writes report.md and report.html in the work directory.",
        example=["busgan run configs/demo.toml --work runs/demo",
                 "busgan run --config configs/paper.toml --work runs/busi --until train-gan -q"])
    p.add_argument("config", metavar="CONFIG", nargs="?", help="TOML config, e.g. configs/demo.toml")
    p.add_argument("--config", dest="config_option", metavar="TOML",
                   help="the same as CONFIG, as in every other command")
    add_work_option(p, "work directory (created)")
    p.add_argument("--only", metavar="STAGE",
                   help=f"run this stage only, by name or paper number: {stage_choices()}")
    p.add_argument("--until", metavar="STAGE", help="run the stages up to and including STAGE")
    p.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                   help="override a config key, e.g. --set gan.kimg=20 (repeatable)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from busgan.pipeline import run_pipeline

    given = [c for c in (args.config, args.config_option) if c]
    if not given:
        raise BusganError("give a config file, e.g. busgan run configs/demo.toml "
                          "--work runs/demo (or --config configs/demo.toml)")
    if len(given) == 2 and Path(given[0]) != Path(given[1]):
        raise BusganError(f"two config files ({given[0]} and --config {given[1]}); give one")
    cfg = load_config(given[0])
    for assignment in args.set:
        apply_override(cfg, assignment)
    run_pipeline(cfg, Path(args.work), only=args.only, until=args.until)
    return 0
