"""``busgan metrics``: KID, FID, precision and recall of a snapshot or an image folder, each
next to its real-vs-real floor, for users who train elsewhere (issue 12, point 4).

A thin shell over ``fidelity.class_fidelity``: images are read with the GAN trainer's own
loader (``training.load_class_images``: centre crop, Lanczos resize), so real images are
measured exactly as ``train-gan`` sees them, and a snapshot is rendered with ``generate.py``'s
renderer (EMA generator, constant noise, seeds 0..n-1).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from busgan.cli import add_command, add_out_option
from busgan.errors import BusganError


def register(sub: Any) -> None:
    """Add ``metrics``."""
    p = add_command(
        sub, "metrics", help="KID/FID/precision/recall of generated images vs real, with a real-vs-real floor",
        example=["busgan metrics --network gans/benign --real data/train/benign --real2 data/val/benign",
                 "busgan metrics --fake gen/benign --real data/train/benign --features classifier:model.keras"],
        description="Measure one class's generated images (a snapshot, or a folder of images) against "
                    "a folder of real images: KID (primary), FID, improved precision and recall (k = 3), "
                    "each next to the same metric between two disjoint real sets of the same size "
                    "(--real vs --real2, or two seeded halves of --real). Rows go to --out (metrics.csv).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--network", type=Path, metavar="PATH",
                     help="a snapshot-*.npz, or a train-gan --out folder (or FOLDER/best) for its best snapshot")
    src.add_argument("--fake", type=Path, metavar="DIR", help="a folder of generated images")
    p.add_argument("--real", type=Path, required=True, metavar="DIR", help="a folder of the class's real images")
    p.add_argument("--real2", type=Path, default=None, metavar="DIR",
                   help="a second, disjoint folder of real images of the class (e.g. validation) for the "
                        "floor; default: --real split into two seeded halves")
    p.add_argument("--features", action="append", default=None, metavar="SPEC",
                   help="feature space, repeatable: random (fixed random-weight CNN, the default), "
                        "random:SEED, classifier:PATH (a busgan model.keras), inception:PATH "
                        "(InceptionV3 notop .h5)")
    p.add_argument("--n", type=int, default=None,
                   help="at most this many images per set (default: as many as the smallest set has)")
    add_out_option(p, "metrics.csv to write; rows of the same class, source and space are replaced "
                      "(default: ./metrics.csv)", type=Path, default=Path("metrics.csv"), metavar="FILE")
    p.add_argument("--class", dest="cls", default=None, metavar="NAME",
                   help="class name for the rows, and the class a conditional --network draws "
                        "(default: the --real folder's name)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsampling and the halves (default 0)")
    p.add_argument("--k", type=int, default=3, help="k of the precision/recall k-NN radius (default 3)")
    p.add_argument("--truncation", type=float, default=1.0, help="--network only: truncation psi (default 1)")
    p.add_argument("--batch-size", type=int, default=32, help="--network only: images per generator batch")
    p.set_defaults(func=_metrics)


def _check_folder(folder: Path, option: str) -> None:
    from busgan.imaging import IMAGE_SUFFIXES

    if not folder.is_dir():
        raise BusganError(f"{option} {folder}: folder not found; give a folder of images")
    if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in folder.iterdir()):
        raise BusganError(f"{option} {folder}: no PNG/BMP/JPEG images; give a folder of images")


def _folder_geometry(folder: Path) -> tuple[int, int]:
    """(resolution, channels) of a folder's first image: the generated images' own size."""
    from PIL import Image

    from busgan.imaging import IMAGE_SUFFIXES

    first = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)[0]
    try:
        with Image.open(first) as im:
            return min(im.size), 1 if im.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
    except OSError as e:
        raise BusganError(f"{first}: cannot read image ({e}); remove or replace the file") from None


def _render(snapshot: Path, n: int, truncation: float, batch: int, image_class: str | None = None) -> np.ndarray:
    """Images of seeds 0..n-1 from the snapshot's EMA generator (of ``image_class`` when
    conditional), in fixed-size batches."""
    from busgan.stylegan2.generate import snapshot_renderer

    if batch < 1:
        raise BusganError(f"--batch-size {batch}: must be at least 1")
    render = snapshot_renderer(snapshot, truncation, image_class)
    out = []
    for i in range(0, n, batch):
        chunk = list(range(i, min(n, i + batch)))
        padded = chunk + [chunk[-1]] * (batch - len(chunk))
        out.append(render(np.asarray(padded, np.int64))[:len(chunk)])
    return np.concatenate(out)


def _metrics(args: argparse.Namespace) -> int:
    from busgan.stylegan2 import fidelity
    from busgan.stylegan2.training import load_class_images

    if args.n is not None and args.n < 2:
        raise BusganError(f"--n {args.n}: need at least 2 images per set (4 for precision/recall)")
    for folder, option in ((args.real, "--real"), (args.real2, "--real2"), (args.fake, "--fake")):
        if folder is not None:
            _check_folder(folder, option)
    spaces = [fidelity.feature_space(s) for s in (args.features or ["random"])]
    kimg: float | None = None
    if args.network is not None:
        from busgan.stylegan2 import snapshot as snap
        from busgan.stylegan2.generate import resolve_network

        network = args.network
        if network.name == "best" and not network.exists():
            network = network.parent
        snapshot = resolve_network(network)
        _, meta = snap.read_snapshot(snapshot)
        cfg = snap.config_from_meta(meta, str(snapshot))
        resolution, channels, source = cfg.resolution, cfg.channels, str(snapshot)
        kimg = float(meta["nimg"]) / 1000 if "nimg" in meta else None
    else:
        resolution, channels = _folder_geometry(args.fake)
        source = str(args.fake)
    real, _ = load_class_images(args.real, resolution, channels)
    real2 = None if args.real2 is None else load_class_images(args.real2, resolution, channels)[0]
    if args.network is not None:
        need = len(real) // 2 if real2 is None else min(len(real), len(real2))
        fake = _render(snapshot, max(min(need, args.n or need), 2), args.truncation, args.batch_size,
                       args.cls or Path(args.real).name)
    else:
        fake, _ = load_class_images(args.fake, resolution, channels)
    rows = fidelity.class_fidelity(real, fake, spaces, real2, cls=args.cls or args.real.name,
                                   source=source, kimg=kimg, n=args.n, k=args.k, seed=args.seed)
    fidelity.write_metrics_csv(args.out, rows)
    print(fidelity.format_table(rows))
    print(f"{len(rows)} rows in {args.out}")
    return 0
