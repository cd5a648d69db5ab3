"""A process pool with a progress bar, shared by the phantom and prepare."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from busgan.progress import progress

T = TypeVar("T")


def worker_count(requested: int) -> int:
    """``requested`` workers, or one per CPU core this process may use when 0."""
    if requested > 0:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def _start_method() -> str:
    """'fork' (fast) on Linux, 'spawn' when a multithreaded runtime (JAX, TensorFlow) is loaded."""
    threaded = any(m in sys.modules for m in ("jax", "tensorflow", "torch"))
    return "fork" if sys.platform.startswith("linux") and not threaded else "spawn"


def imap(fn: Callable[[Any], T], tasks: Sequence[Any], workers: int, desc: str) -> Iterator[T]:
    """Results of ``fn`` over ``tasks`` in completion order (in-process for one worker or few tasks)."""
    bar = progress(total=len(tasks), desc=desc, unit="img")
    try:
        if workers <= 1 or len(tasks) < 8:
            for t in tasks:
                yield fn(t)
                bar.update()
        else:
            ctx = multiprocessing.get_context(_start_method())
            with ctx.Pool(min(workers, len(tasks))) as pool:
                for res in pool.imap_unordered(fn, tasks, chunksize=4):
                    yield res
                    bar.update()
    finally:
        bar.close()
