"""Peak memory of streaming classifier training: flat from 2,000 to 20,000 images.

Writes N small grayscale PNGs per run to a scratch folder, then trains the 'tiny' backbone for
one full epoch in a fresh process per size (``train_classifier`` with ``per_class``), and
prints each run's peak resident memory (``ru_maxrss`` of the training process and, separately,
of its child processes, e.g. loader workers). The seed loaded every image into one array, so its memory grew
linearly with the image count.

    python benchmarks/classifier_memory.py                # 2,000 and 20,000 images at 64x64
    python benchmarks/classifier_memory.py --sizes 2000 20000 --image-size 64 --dir /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from busgan.config import ClassifierConfig
from busgan.classifier.train import train_classifier
root, per_class, size, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cfg = ClassifierConfig(backbone="tiny", weights="none", input_size=size, head_units=64,
                       batch_size=batch, epochs=1, workers=2, seed=0)
start = time.time()
train_classifier(root / "train", root / "val", root / f"out_{per_class}", cfg, per_class=per_class)
print("RESULT " + json.dumps({
    "seconds": time.time() - start,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "loader_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
}))
"""


def write_images(folder: Path, per_class: int, size: int, seed: int) -> None:
    """Speckle images with a dark lesion (round or elongated), skipping files already there."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for label, name in enumerate(("benign", "malignant")):
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = d / f"{i:06d}.png"
            if path.exists():
                continue
            img = rng.normal(110, 25, (size, size))
            cy, cx = rng.uniform(0.3 * size, 0.7 * size, 2)
            r = rng.uniform(0.15, 0.25) * size
            ry, rx = (r, r) if label == 0 else (r, r / 3)
            img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = 30
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "L").save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000], help="total images per run")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dir", type=Path, help="scratch folder (kept, so reruns skip image writing)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="busgan_mem_"))
    start = time.time()
    write_images(root / "train", max(args.sizes) // 2, args.image_size, seed=0)
    write_images(root / "val", 100, args.image_size, seed=1)
    print(f"images in {root} ({time.time() - start:.0f} s)", flush=True)
    env = {**os.environ, "BUSGAN_NO_PROGRESS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    results = {}
    for n in args.sizes:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(root), str(n // 2), str(args.image_size),
                               str(args.batch_size)], env=env, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            return 1
        results[n] = json.loads(lines[-1][7:])
        r = results[n]
        print(f"{n:>7,} images: peak RSS {r['peak_rss_mib']:.0f} MiB (child processes "
              f"{r['loader_peak_rss_mib']:.0f} MiB), 1 epoch in {r['seconds']:.0f} s "
              f"({n / r['seconds']:.0f} img/s)", flush=True)
    backend = os.environ.get("KERAS_BACKEND", "keras default")
    small, large = results[min(results)], results[max(results)]
    growth = large["peak_rss_mib"] - small["peak_rss_mib"]
    print(f"backend {backend}: peak RSS {small['peak_rss_mib']:.0f} -> {large['peak_rss_mib']:.0f} MiB "
          f"({growth:+.0f} MiB for {max(results) // min(results)}x the images); "
          f"in-memory float32 arrays would need {max(results) * args.image_size ** 2 * 3 * 4 / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
