"""Progress bars with rate and ETA (tqdm), quiet when output is not a terminal unless asked."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", **kwargs: Any) -> Any:
    """Return a tqdm bar (rate and ETA shown). Set BUSGAN_NO_PROGRESS=1 to silence it."""
    disable = os.environ.get("BUSGAN_NO_PROGRESS") == "1"
    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True,
                disable=disable, leave=True, **kwargs)
