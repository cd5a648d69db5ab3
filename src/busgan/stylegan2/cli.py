"""``busgan train-gan`` and ``busgan generate``: thin shells over ``train_gan`` and
``generate_images``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from busgan.config import add_config_args, config_from_args


def register(sub: Any) -> None:
    """Add ``train-gan`` and ``generate``."""
    p = sub.add_parser(
        "train-gan", help="train one class's StyleGAN2 (stage 2)",
        description="Train a StyleGAN2 on one class's images; snapshots, FID/KID per snapshot, "
                    "best.json = lowest FID. Rerun the same command to resume.")
    p.add_argument("--data", type=Path, required=True, help="folder of one class's images")
    p.add_argument("--out", type=Path, required=True, help="output folder (snapshots/, fid.csv, best.json, ...)")
    p.add_argument("--resume", choices=("auto", "none"), default="auto",
                   help="auto: continue from the newest snapshot in --out; none: --out must hold none")
    p.add_argument("--features", type=Path, default=None,
                   help="FID features: a busgan classifier model.keras or InceptionV3 notop .h5 "
                        "(default: offline pixel features, see docs/stylegan2.md)")
    p.add_argument("--devices", type=int, default=None, help="local devices to use (JAX; default all)")
    add_config_args(p, "gan")  # --preset e|f|custom, --resolution, ...
    p.set_defaults(func=_train)

    g = sub.add_parser(
        "generate", help="images from a trained generator, one file per seed (stage 3)",
        description="Write seedNNNNNN.png per seed (existing files skipped) and a grid beside the folder.")
    g.add_argument("--network", type=Path, required=True,
                   help="a snapshot-*.npz, or a train-gan --out folder (or FOLDER/best) for its best snapshot")
    g.add_argument("--out", type=Path, required=True, help="output folder")
    g.add_argument("--seeds", default=None, help="e.g. 1-25000 or 1,5,7-9 (default: 1..n-per-class)")
    add_config_args(g, "generate")  # --truncation (also --trunc), --batch-size, --format
    g.set_defaults(func=_generate)


def _train(args: argparse.Namespace) -> int:
    from busgan.stylegan2.training import train_gan
    cfg = config_from_args(args).gan
    best = train_gan(args.data, args.out, cfg, resume=args.resume == "auto",
                     feature_model=args.features, devices=args.devices)
    print(f"best snapshot: {best}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from busgan.stylegan2.generate import generate_images, parse_seeds
    cfg = config_from_args(args).generate
    # psi and every other key were checked (finite, in range) when the config was loaded;
    # seeds are ranges, checked before any is made, never one list
    seeds = parse_seeds(args.seeds) if args.seeds else range(1, cfg.n_per_class + 1)
    network = args.network
    if network.name == "best" and not network.exists():
        network = network.parent
    n = generate_images(network, args.out, seeds, cfg.truncation, cfg.batch_size, cfg.format)
    print(f"{n} images in {args.out}")
    return 0
