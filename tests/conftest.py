"""Suite-wide pytest hooks."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whole-module slow files (pipeline runs, GAN trainings) first, the rest in file order.

    With pytest-xdist's ``--dist loadfile`` each file goes to one worker in this order: the
    longest files then start at once instead of last, so the two workers end together
    (scripts/test.sh); without xdist only the order changes."""
    def whole_module_slow(item: pytest.Item) -> bool:
        marks = getattr(item.module, "pytestmark", [])
        marks = marks if isinstance(marks, list) else [marks]
        return any(m.name == "slow" for m in marks)
    items.sort(key=lambda item: not whole_module_slow(item))  # stable: file order kept within
