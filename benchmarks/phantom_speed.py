"""Phantom speed: images per second per CPU core (render + PNG write), and with the worker pool.

Usage: python benchmarks/phantom_speed.py [--n 200] [--size 256] [--pool]

Per-core speed is measured in one process and divided by the CPU time it used, so other load on
the machine does not lower it; wall-clock figures are printed beside it. The requirement is
at least 50 images/s per core at 256x256.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BUSGAN_NO_PROGRESS", "1")

from busgan.config import PhantomConfig  # noqa: E402
from busgan.data.phantom import _write_one, generate_phantom, render_image  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="images to make (half per class)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--pool", action="store_true", help="also time generate_phantom with all cores")
    args = ap.parse_args()

    render_image(0, 0, 0, args.size)  # warm-up (FFT plans, caches)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for c in ("benign", "malignant"):
            (out / c).mkdir()
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(args.n):
            _write_one((out, 1, i % 2, i // 2, args.size))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"size {args.size}: {args.n} images in {cpu:.2f} s CPU ({wall:.2f} s wall), one process")
    print(f"images/s/core: {args.n / cpu:.1f}  (wall-clock, one process: {args.n / wall:.1f})")
    if args.pool:
        cores = len(os.sched_getaffinity(0))
        with tempfile.TemporaryDirectory() as tmp:
            cfg = PhantomConfig(n_per_class=args.n * cores // 2, size=args.size, seed=2)
            wall = time.perf_counter()
            generate_phantom(Path(tmp) / "p", cfg)
            wall = time.perf_counter() - wall
        n = 2 * cfg.n_per_class
        print(f"pool of {cores} workers: {n} images in {wall:.2f} s wall = {n / wall:.1f} images/s "
              f"({n / wall / cores:.1f} per core, wall-clock, includes lesions.csv)")


if __name__ == "__main__":
    main()
