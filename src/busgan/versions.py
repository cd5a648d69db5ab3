"""Versions of the software that produced a result (written into every stage record)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

from busgan import __version__


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def software_versions() -> dict[str, str | None]:
    """busgan, Python, Keras and its backend, and the numeric libraries."""
    backend = os.environ.get("KERAS_BACKEND", "jax")
    if "keras" in sys.modules:  # the backend Keras actually chose, once imported
        backend = sys.modules["keras"].backend.backend()
    versions: dict[str, str | None] = {
        "busgan": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "keras_backend": backend,
    }
    for dist in ("keras", "jax", "jaxlib", "tensorflow", "tensorflow-cpu", "numpy", "scipy",
                 "scikit-learn", "statsmodels", "pillow"):
        versions[dist] = _version(dist)
    return {k: v for k, v in versions.items() if v is not None}
