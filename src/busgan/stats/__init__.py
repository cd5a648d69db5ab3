"""Stage 7 statistics: McNemar's and DeLong's tests, intervals, bootstrap, comparison report.

Names are loaded on first use, so ``busgan --help`` does not pay for scipy and statsmodels.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "delong_test": "delong", "delong_cov": "delong", "auc_ci": "delong", "midranks": "delong",
    "DeLongResult": "delong", "AucInterval": "delong",
    "mcnemar": "mcnemar_tests", "mcnemar_table": "mcnemar_tests", "McNemarResult": "mcnemar_tests",
    "proportion_ci": "intervals", "proportion": "intervals",
    "bootstrap_auc_diff": "bootstrap", "BootstrapResult": "bootstrap",
    "compare_arrays": "compare", "compare_predictions": "compare", "read_predictions": "compare",
    "match_predictions": "compare", "Predictions": "compare",
    "format_summary": "report", "format_markdown": "report",
    "plot_roc_overlay": "plot", "roc_points": "plot",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from busgan.stats.bootstrap import BootstrapResult, bootstrap_auc_diff
    from busgan.stats.compare import (Predictions, compare_arrays, compare_predictions,
                                      match_predictions, read_predictions)
    from busgan.stats.delong import AucInterval, DeLongResult, auc_ci, delong_cov, delong_test, midranks
    from busgan.stats.intervals import proportion, proportion_ci
    from busgan.stats.mcnemar_tests import McNemarResult, mcnemar, mcnemar_table
    from busgan.stats.plot import plot_roc_overlay, roc_points
    from busgan.stats.report import format_markdown, format_summary


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'busgan.stats' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"busgan.stats.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
