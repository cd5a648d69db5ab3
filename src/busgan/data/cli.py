"""``busgan phantom`` and ``busgan prepare``: thin shells over the stage-0 functions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from busgan.config import add_config_args, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``phantom`` and ``prepare`` subcommands."""
    p = sub.add_parser(
        "phantom", help="simulate B-mode breast-ultrasound images (the embedded demo data)",
        description="Write OUT/benign/*.png, OUT/malignant/*.png and OUT/lesions.csv (ground-truth "
                    "lesion parameters) from a convolution model of ultrasound image formation. "
                    "Simulated data, not patient images. Deterministic for a seed.")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--contact-sheet", action="store_true",
                   help="also save DIR/contact_sheet.png (8 images per class)")
    add_config_args(p, "phantom")
    p.set_defaults(func=_phantom)

    q = sub.add_parser(
        "prepare", help="stage 0: import, resize, de-duplicate and split images into WORK/data",
        description="Build WORK/data/{train,val,test}/{benign,malignant}/*.png and WORK/data/manifest.csv "
                    "from a folder per class, the BUSI layout, the seed's Train/Test tree, or the "
                    "phantom (the default). Exact and near-duplicate images are kept in one split.")
    q.add_argument("--work", required=True, type=Path, metavar="DIR", help="work directory")
    q.add_argument("--force", action="store_true",
                   help="replace prepared data in WORK/data (only data busgan prepared: a folder holding other "
                        "files is refused even with --force)")
    q.add_argument("--contact-sheet", action="store_true",
                   help="also save WORK/data/contact_sheet.png (8 training images per class)")
    add_config_args(q, "data", "phantom")
    q.set_defaults(func=_prepare)


def _phantom(args: argparse.Namespace) -> int:
    from busgan.data.contact_sheet import contact_sheet
    from busgan.data.phantom import generate_phantom

    cfg = config_from_args(args).phantom
    out = generate_phantom(args.out, cfg)
    print(f"phantom: {cfg.n_per_class} images per class at {cfg.size}x{cfg.size} in {out}")
    if cfg.n_per_class >= 650:
        import numpy as np

        from busgan.data.phantom import difficulty_auc, read_lesions
        x, y = read_lesions(out / "lesions.csv")
        first = np.r_[0:650, cfg.n_per_class:cfg.n_per_class + 650]
        print(f"difficulty: logistic regression on the lesion parameters, 1,000 train / 300 test: "
              f"AUC {difficulty_auc(x[first], y[first]):.3f}")
    if args.contact_sheet:
        print(f"contact sheet: {contact_sheet(out, out / 'contact_sheet.png')}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from busgan.data.contact_sheet import contact_sheet
    from busgan.data.prepare import prepare

    cfg = config_from_args(args)
    summary = prepare(cfg.data, args.work, force=args.force, phantom=cfg.phantom)
    dup = {k: v for k, v in summary["duplicates"].items() if k != "list"}
    print(json.dumps({"counts": summary["counts"], "duplicates": dup}, indent=2))
    if summary["duplicates"]["groups"]:
        print(f"duplicate groups are listed in {args.work / 'data' / 'prepare.json'} and in manifest.csv (dup_group)")
    links = summary.get("skipped", {}).get("links", [])
    if links:
        print(f"skipped {len(links)} symbolic link(s) (dangling, looped or to folders), e.g. "
              f"{links[0]}; all are listed in {args.work / 'data' / 'prepare.json'} (skipped.links)")
    print(f"prepared data: {args.work / 'data'} (manifest.csv, prepare.json)")
    if args.contact_sheet:
        data = args.work / "data"
        print(f"contact sheet: {contact_sheet(data / 'train', data / 'contact_sheet.png')}")
    return 0
