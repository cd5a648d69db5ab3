"""Subcommand ``audit``: the memorization audit of a work directory (see ``busgan.audit``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from busgan import layout
from busgan.config import add_config_args, config_from_args
from busgan.errors import BusganError


def _audit(args: argparse.Namespace) -> int:
    from busgan.audit import audit_work
    from busgan.lock import folder_lock

    cfg = config_from_args(args)
    work = Path(args.work)
    if not work.is_dir():
        raise BusganError(f"{work}: work directory not found; give the --work of busgan run or prepare")
    with folder_lock(work):  # busgan run writes the same files
        audit_work(cfg, work, model=Path(args.model) if args.model else None,
                   out=Path(args.out) if args.out else None,
                   selected=Path(args.selected) if args.selected else None,
                   generated=Path(args.generated) if args.generated else None)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``busgan audit`` to the ``busgan`` command."""
    p = sub.add_parser(
        "audit", help="memorization audit: are generated images near-copies of training images?",
        description="For each class, the distance from every selected (with --include-all-generated, "
                    "every generated) image to its nearest training image, in pixels after the "
                    "classifier's resize and in the real-trained classifier's features, against the "
                    "same distance from each validation image (real vs real). Flags near-copies; "
                    "writes distances.csv, audit.json, excluded.csv and per-class plots in --out "
                    "and prints a short summary.")
    p.add_argument("--work", default="work", help="work directory holding data/ and selected/ (default: work)")
    p.add_argument("--model", metavar="MODEL",
                   help="the real-trained classifier whose features are compared (default: WORK/real/model.keras)")
    p.add_argument("--selected", metavar="DIR", help=f"selected images (default: WORK/{layout.SELECTED})")
    p.add_argument("--generated", metavar="DIR",
                   help=f"every generated image, audited with --include-all-generated (default: WORK/{layout.GENERATED})")
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: WORK/{layout.AUDIT})")
    add_config_args(p, "audit")
    p.set_defaults(func=_audit)
