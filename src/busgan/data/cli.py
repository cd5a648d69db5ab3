"""``busgan phantom`` and ``busgan prepare``: thin shells over the stage-0 functions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from busgan import CLASSES
from busgan.cli import add_command, add_out_option, add_work_option
from busgan.config import add_config_args, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``phantom`` and ``prepare`` subcommands."""
    p = add_command(
        sub, "phantom", help="simulate B-mode breast-ultrasound images (the embedded demo data)",
        description="Write OUT/benign/*.png, OUT/malignant/*.png and OUT/lesions.csv (ground-truth "
                    "lesion parameters) from a convolution model of ultrasound image formation. "
                    "Simulated data, not patient images. Deterministic for a seed.",
        example=["busgan phantom --out phantom --n-per-class 200 --size 128 --contact-sheet"])
    add_out_option(p, "output folder", required=True, type=Path)
    p.add_argument("--contact-sheet", action="store_true",
                   help="also save DIR/contact_sheet.png (8 images per class)")
    add_config_args(p, "phantom")
    p.set_defaults(func=_phantom)

    q = add_command(
        sub, "prepare", help="stage 0: import, resize, de-duplicate and split images into WORK/data",
        description="Build WORK/data/{train,val,test}/{benign,malignant}/*.png and WORK/data/manifest.csv "
                    "from a folder per class, the BUSI layout, the seed's Train/Test tree, or the "
                    "phantom (the default). Exact and near-duplicate images are kept in one split. "
                    "Prints the images per split and class and the duplicates found; the full "
                    "record is WORK/data/prepare.json.",
        example=["busgan prepare --work runs/busi --source ~/data/Dataset_BUSI_with_GT --size 256",
                 "busgan prepare --config configs/demo.toml --work runs/demo   # the phantom"])
    add_work_option(q, "work directory; the images go to WORK/data")
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
    print(format_prepare_summary(summary, args.work / "data" / "prepare.json"))
    links = summary.get("skipped", {}).get("links", [])
    if links:
        print(f"skipped {len(links)} symbolic link(s) (dangling, looped or to folders), e.g. "
              f"{links[0]}; all are listed in {args.work / 'data' / 'prepare.json'} (skipped.links)")
    print(f"prepared data: {args.work / 'data'} (manifest.csv, prepare.json)")
    if args.contact_sheet:
        data = args.work / "data"
        print(f"contact sheet: {contact_sheet(data / 'train', data / 'contact_sheet.png')}")
    return 0


def count_table(counts: dict[str, dict[str, int]]) -> str:
    """Images per split (rows) and class (columns), with totals, as aligned text."""
    splits = list(counts)
    rows = [["", *CLASSES, "total"]]
    for split in splits:
        row = [counts[split].get(c, 0) for c in CLASSES]
        rows.append([split, *(f"{n:,}" for n in row), f"{sum(row):,}"])
    totals = [sum(counts[s].get(c, 0) for s in splits) for c in CLASSES]
    rows.append(["total", *(f"{n:,}" for n in totals), f"{sum(totals):,}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                                      for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def format_prepare_summary(summary: dict[str, Any], record: Path) -> str:
    """What ``busgan prepare`` prints: counts per split and class, duplicates, what was skipped."""
    lines = [f"prepared {_plural(summary.get('images', 0), 'image')} ({summary.get('layout', '?')} "
             f"layout) from {summary.get('source', '?')}:", count_table(summary["counts"])]
    d = summary.get("duplicates", {})
    if d.get("groups"):
        lines.append(
            f"duplicates: {_plural(d['groups'], 'group')} of {d.get('images_in_groups', 0):,} images "
            f"({d.get('exact_pairs', 0):,} exact, {d.get('near_pairs', 0):,} near pairs), each group "
            "kept in one split" + (f"; {d['cross_class_groups']:,} span both classes" if
                                   d.get("cross_class_groups") else "")
            + (f"; {_plural(d['moved_to_test'], 'image')} moved to test" if d.get("moved_to_test") else ""))
        lines.append(f"  listed in {record} (duplicates.list) and manifest.csv (dup_group)")
    else:
        lines.append("duplicates: none found")
    skipped = summary.get("skipped", {})
    kinds = [(k, len(v)) for k, v in skipped.items() if k != "links" and isinstance(v, list) and v]
    if kinds:
        lines.append("skipped: " + ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in kinds)
                     + f" (listed in {record})")
    return "\n".join(lines)
