"""Speed of the paired DeLong test: midrank algorithm at 10^6 scores per class, and its ratio to
the naive O(mn) pairwise DeLong at a small size (where both agree to rounding).

Usage: python benchmarks/delong_speed.py [--n 1000000] [--small 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from scipy.stats import norm

from busgan.stats import delong_test


def naive_delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """DeLong 1988 from all m x n pairs: O(mn) time and memory. Returns (z, p)."""
    pos = y.astype(bool)
    v10, v01, aucs = [], [], []
    for s in (a, b):
        x, yy = s[pos][:, None], s[~pos][None, :]
        psi = (x > yy) + 0.5 * (x == yy)
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    s = np.cov(np.stack(v10)) / pos.sum() + np.cov(np.stack(v01)) / (~pos).sum()
    z = (aucs[0] - aucs[1]) / np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    return float(z), float(2 * norm.sf(abs(z)))


def scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n positives + n negatives; two correlated models, one with ties (3 decimals)."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    a = rng.normal(size=2 * n) + y
    b = np.round(0.7 * a + rng.normal(0, 0.7, 2 * n), 3)
    return y, a, b


def best_time(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` runs (the least disturbed by other processes)."""
    return min(timed(fn)[0] for _ in range(repeat))


def timed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU time shows the work itself on a busy machine."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="scores per class for the big run")
    ap.add_argument("--small", type=int, default=3000, help="scores per class for the naive comparison")
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing (the best is shown)")
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), numpy {np.__version__}")

    y, a, b = scores(args.n, 0)
    r = delong_test(y, a, b)  # warm-up, and the result shown
    runs = [timed(lambda: delong_test(y, a, b)) for _ in range(args.repeat)]
    wall, cpu = min(runs)
    print(f"midrank DeLong, {args.n:,} positives + {args.n:,} negatives, 2 models: "
          f"{wall:.3f} s wall, {cpu:.3f} s CPU (best of {args.repeat}; load average "
          f"{os.getloadavg()[0]:.1f}); AUCs {r.auc_a:.4f} vs {r.auc_b:.4f}, z = {r.z:.2f}")

    y, a, b = scores(args.small, 1)
    r = delong_test(y, a, b)
    z, p = naive_delong(y, a, b)
    t_fast = best_time(lambda: delong_test(y, a, b), args.repeat)
    t_naive = best_time(lambda: naive_delong(y, a, b), args.repeat)
    print(f"at {args.small:,} per class: midrank {t_fast * 1e3:.1f} ms, naive O(mn) {t_naive * 1e3:.1f} ms, "
          f"ratio {t_naive / t_fast:.0f}x; |dz| = {abs(r.z - z):.1e}, |dp| = {abs(r.p - p):.1e}")
    est = t_naive * (args.n / args.small) ** 2
    print(f"naive O(mn) at {args.n:,} per class would take about {est / 3600:.1f} h "
          f"(and {8 * args.n ** 2 / 2 ** 40:.0f} TiB for the pair matrix)")


if __name__ == "__main__":
    main()
