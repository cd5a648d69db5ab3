"""Deterministic, stratified train/val/test split over units (patients joined with duplicate groups).

A unit is never divided between splits, so no test image has a copy or a sibling image of the
same patient in training. Units holding a picture labelled both benign and malignant (a
duplicate with conflicting labels) are kept out of test and validation altogether.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from busgan import CLASSES
from busgan.errors import BusganError


def _take(order: list[int], members: dict[int, list[int]], classes: Sequence[str],
          target: dict[str, int], eligible: set[int]) -> set[int]:
    """Units, in ``order``, whose images fill each class's ``target`` without overshooting it."""
    taken: set[int] = set()
    have = Counter[str]()
    for u in order:
        if u not in eligible:
            continue
        need = Counter(classes[i] for i in members[u])
        if all(have[c] + n <= target.get(c, 0) for c, n in need.items()):
            taken.add(u)
            have.update(need)
    return taken


def assign_splits(units: Sequence[int], classes: Sequence[str], fixed: Sequence[str],
                  test_per_class: int, val_fraction: float, seed: int, where: str = "source",
                  conflicted: Sequence[bool] | None = None) -> tuple[list[str], dict[str, int]]:
    """The split ('train', 'val', 'test') of every image, and notes (e.g. images moved to test).

    ``units[i]`` is the unit of image i; ``fixed[i]`` a split imposed by the source layout
    ('test' keeps the seed's own test set) or ''; ``conflicted[i]`` marks an image whose
    duplicate carries the other label (its unit stays in training). ``where`` names the source
    in errors.
    """
    members: dict[int, list[int]] = {}
    for i, u in enumerate(units):
        members.setdefault(u, []).append(i)
    unit_ids = sorted(members, key=lambda u: members[u][0])
    order = [unit_ids[k] for k in np.random.default_rng(seed).permutation(len(unit_ids))]
    bad = conflicted or [False] * len(units)
    pure = {u for u in unit_ids if not any(bad[i] for i in members[u])}
    total = Counter(classes)
    notes = {"conflicted_units": len(unit_ids) - len(pure), "moved_to_test": 0}

    if any(fixed):
        test = {u for u in unit_ids if any(fixed[i] == "test" for i in members[u])}
        notes["moved_to_test"] = sum(1 for u in test for i in members[u] if fixed[i] != "test")
    else:
        for cls in CLASSES:
            if total[cls] <= test_per_class:
                raise BusganError(
                    f"{where}: class '{cls}' has {total[cls]} images but data.test_per_class is "
                    f"{test_per_class}; lower --test-per-class (at most {max(total[cls] - 1, 0)})")
        test = _take(order, members, classes, {c: test_per_class for c in CLASSES}, pure)
        got = Counter(classes[i] for u in test for i in members[u])
        for cls in CLASSES:
            if got[cls] < test_per_class:
                raise BusganError(
                    f"{where}: only {got[cls]} '{cls}' images can go to test without splitting a "
                    f"duplicate or patient group; lower --test-per-class to {got[cls]}")

    rest = [u for u in order if u not in test]
    left = Counter(classes[i] for u in rest for i in members[u])
    val_target = {c: int(round(val_fraction * left[c])) for c in CLASSES}
    val = _take(rest, members, classes, val_target, pure)

    split = [""] * len(units)
    for u in unit_ids:
        name = "test" if u in test else "val" if u in val else "train"
        for i in members[u]:
            split[i] = name
    trained = Counter(classes[i] for i, s in enumerate(split) if s == "train")
    for cls in CLASSES:
        if trained[cls] == 0:
            raise BusganError(f"{where}: no '{cls}' images left for training; add images or lower "
                              "--test-per-class / --val-fraction")
    return split, notes
