"""Memorization-audit search speed: exact nearest training image of every generated image.

Usage: python benchmarks/audit_speed.py [--generated 25000] [--train 1000] [--size 64]
                                        [--features 128] [--batch 256] [--classes 2]

At the demo's sizes (configs/demo.toml: the classifier sees 64x64 grey images and its
feature layer has 128 units) each class searches ``--generated`` images against ``--train``
training images in three spaces: pixels (uint8, 4,096 dimensions), features (float32) and
64-bit perceptual hashes. Only the search is timed (images are random: the search does the
same work whatever they show); loading, features and plots are not. The target is under a
minute per class on the CPU. Peak memory is printed beside it (the search holds the training
vectors and one block of ``--batch`` queries).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from busgan.audit import ExactIndex, hamming_nearest


def _check(pixels: np.ndarray, train: np.ndarray, d2: np.ndarray, idx: np.ndarray, n: int = 20) -> None:
    """The first ``n`` answers against a brute-force float64 search (exactness, not speed)."""
    q = pixels[:n].astype(np.float64)
    brute = ((q[:, None, :] - train[None].astype(np.float64)) ** 2).sum(-1)
    assert np.array_equal(brute.argmin(1), idx[:n]) and np.allclose(brute.min(1), d2[:n], rtol=0, atol=1e-6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generated", type=int, default=25_000, help="generated images per class")
    ap.add_argument("--train", type=int, default=1_000, help="training images per class")
    ap.add_argument("--size", type=int, default=64, help="the classifier's input side (grey pixels)")
    ap.add_argument("--features", type=int, default=128, help="feature width (classifier.head_units)")
    ap.add_argument("--batch", type=int, default=256, help="queries per block (audit.batch_size)")
    ap.add_argument("--classes", type=int, default=2)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    dims = args.size * args.size
    total = 0.0
    for c in range(args.classes):
        train_px = rng.integers(0, 256, (args.train, dims), dtype=np.uint8)
        gen_px = rng.integers(0, 256, (args.generated, dims), dtype=np.uint8)
        train_ft = rng.standard_normal((args.train, args.features)).astype(np.float32)
        gen_ft = rng.standard_normal((args.generated, args.features)).astype(np.float32)
        train_h = rng.integers(0, 2**63, args.train, dtype=np.uint64)
        gen_h = rng.integers(0, 2**63, args.generated, dtype=np.uint64)
        t0 = time.perf_counter()
        d2, idx = ExactIndex(train_px, args.batch).query(gen_px)
        t1 = time.perf_counter()
        ExactIndex(train_ft, args.batch).query(gen_ft)
        t2 = time.perf_counter()
        hamming_nearest(gen_h, train_h)
        t3 = time.perf_counter()
        total += t3 - t0
        print(f"class {c + 1}: {args.generated} x {args.train} images: pixels ({dims} dims) {t1 - t0:.2f} s, "
              f"features ({args.features} dims) {t2 - t1:.2f} s, hashes {t3 - t2:.2f} s; "
              f"total {t3 - t0:.2f} s", flush=True)
        _check(gen_px, train_px, d2, idx)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.classes} classes: {total:.2f} s in all, {total / args.classes:.2f} s per class "
          f"(target: under 60 s per class); peak memory {peak:.0f} MB (inputs included); "
          "answers equal a brute-force search on a sample")


if __name__ == "__main__":
    main()
