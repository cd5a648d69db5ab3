"""Input checks shared by the statistics: bad input is refused with one line, never a NaN."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from busgan.errors import BusganError


def binary_labels(y_true: ArrayLike, name: str = "y_true", need_both: bool = True) -> NDArray[np.bool_]:
    """``y_true`` as a boolean vector (True = positive); refuses anything but 0/1 or booleans.

    With ``need_both`` a missing class is refused too: no AUC exists without both classes.
    """
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0:
        raise BusganError(f"{name}: expected a non-empty 1-D vector of 0/1 labels, got shape {y.shape}")
    if y.dtype == bool:
        pos = y
    else:
        try:
            values = y.astype(float)
        except (TypeError, ValueError):
            raise BusganError(f"{name}: labels must be 0/1 or booleans (1 = positive), "
                              f"got {y.dtype} values; map the class names to 0/1 first") from None
        bad = ~np.isin(values, (0.0, 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BusganError(f"{name}: label {y[i]!r} at index {i} is not 0 or 1; "
                              "give 1 for the positive (malignant) class and 0 for the negative")
        pos = values == 1.0
    if need_both:
        m = int(pos.sum())
        if m == 0 or m == pos.size:
            missing = "positive (1)" if m == 0 else "negative (0)"
            raise BusganError(f"{name}: no {missing} cases among {pos.size}; an AUC needs at least one "
                              "case of each class, so test on a set holding both")
    return pos


def finite_scores(score: ArrayLike, size: int, name: str = "score") -> NDArray[np.float64]:
    """``score`` as float64 of length ``size``; NaN is refused (it has no rank)."""
    try:
        s = np.asarray(score, dtype=np.float64)
    except (TypeError, ValueError):
        raise BusganError(f"{name}: scores must be numbers; convert them to floats first") from None
    if s.ndim != 1 or s.size != size:
        raise BusganError(f"{name}: expected {size} scores (one per label), got shape {s.shape}")
    nan = np.isnan(s)
    if nan.any():
        i = int(np.flatnonzero(nan)[0])
        raise BusganError(f"{name}: {int(nan.sum())} NaN score(s), the first at index {i}; "
                          "NaN cannot be ranked, so fix or drop those predictions")
    return s


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """A significance level strictly between 0 and 1."""
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise BusganError(f"{name}: {alpha!r} is not between 0 and 1; use e.g. 0.05")
    return a
