"""The grouped, stratified split on its own: exact counts, whole units, determinism, refusals."""

from __future__ import annotations

from collections import Counter

import pytest

from busgan.data.split import assign_splits
from busgan.errors import BusganError


def _data(n: int = 60) -> tuple[list[int], list[str]]:
    """n images per class; units of 1, 2 or 3 images (like patients or duplicate groups)."""
    units, classes = [], []
    u = 0
    for cls in ("benign", "malignant"):
        i = 0
        while i < n:
            size = min(1 + u % 3, n - i)
            units += [u] * size
            classes += [cls] * size
            i += size
            u += 1
    return units, classes


def test_exact_counts_whole_units_and_determinism() -> None:
    units, classes = _data()
    split, _ = assign_splits(units, classes, [""] * len(units), 10, 0.2, seed=3)
    count = Counter(zip(split, classes))
    assert count["test", "benign"] == count["test", "malignant"] == 10
    assert count["val", "benign"] == count["val", "malignant"] == 10  # 20% of the remaining 50
    assert all(len({s for s, uu in zip(split, units) if uu == u}) == 1 for u in set(units))
    again, _ = assign_splits(units, classes, [""] * len(units), 10, 0.2, seed=3)
    other, _ = assign_splits(units, classes, [""] * len(units), 10, 0.2, seed=4)
    assert again == split and other != split


def test_conflicting_units_stay_in_training() -> None:
    units, classes = _data(20)
    conflicted = [u == units[0] for u in units]
    for seed in range(5):
        split, notes = assign_splits(units, classes, [""] * len(units), 5, 0.3, seed, conflicted=conflicted)
        assert all(s == "train" for s, c in zip(split, conflicted) if c)
        assert notes["conflicted_units"] == 1


def test_fixed_test_split_pulls_its_units() -> None:
    units = [0, 0, 1, 2, 3, 4, 5, 5]
    classes = ["benign"] * 4 + ["malignant"] * 4
    fixed = ["test", "train", "train", "train", "train", "train", "test", "train"]
    split, notes = assign_splits(units, classes, fixed, 150, 0.0, 0)
    assert split == ["test", "test", "train", "train", "train", "train", "test", "test"]
    assert notes["moved_to_test"] == 2


def test_refusals() -> None:
    units, classes = _data(6)
    with pytest.raises(BusganError, match="at most 5"):
        assign_splits(units, classes, [""] * len(units), 6, 0.1, 0)
    big = [0] * 5 + [1] + [2] * 5 + [3]  # one unit of 5 and a single image per class
    cls = ["benign"] * 6 + ["malignant"] * 6
    with pytest.raises(BusganError, match="lower --test-per-class to 1"):
        assign_splits(big, cls, [""] * 12, 3, 0.0, 0)
