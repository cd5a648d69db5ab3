"""busgan: StyleGAN2 augmentation of breast-ultrasound classification, stage by stage.

The stage functions are attributes of the package, imported on first use (so ``import busgan``
is quick and loads no Keras backend)::

    import busgan
    cfg = busgan.load_config("configs/demo.toml")
    busgan.prepare(cfg.data, "work", phantom=cfg.phantom)

``prepare``, ``train_classifier``, ``train_gan``, ``generate_images``, ``select_images``,
``test_model``, ``compare`` and ``run_pipeline``, with ``load_config`` / ``Config`` for their
settings and ``generate_phantom`` for the simulated data; see docs/python-api.md. Importing
busgan sets the same defaults as the ``busgan`` command (``configure_environment``): the JAX
backend unless KERAS_BACKEND says otherwise.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

__version__ = "0.1.0"
CLASSES: tuple[str, str] = ("benign", "malignant")
"""Class names in label order (benign = 0, malignant = 1), as in the seed's sorted folders."""


def configure_environment() -> None:
    """The defaults the CLI and the library share; a variable already set is left alone.

    KERAS_BACKEND=jax (read by Keras when first imported, so this must run before), quiet
    TensorFlow start-up, and JAX's persistent compilation cache in ~/.cache/busgan/jax (a
    repeated or resumed run skips XLA compilation, most of a short run's time on a CPU).
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_home / "busgan" / "jax"))


configure_environment()

# name -> (module, attribute): the public API, imported when first used
_API: dict[str, tuple[str, str]] = {
    "prepare": ("busgan.data.prepare", "prepare"),
    "train_classifier": ("busgan.classifier.train", "train_classifier"),
    "train_gan": ("busgan.stylegan2.training", "train_gan"),
    "generate_images": ("busgan.stylegan2.generate", "generate_images"),
    "select_images": ("busgan.classifier.select", "select_images"),
    "test_model": ("busgan.classifier.evaluate", "evaluate_model"),
    "compare": ("busgan.stats.compare", "compare_predictions"),
    "run_pipeline": ("busgan.pipeline", "run_pipeline"),
    "generate_phantom": ("busgan.data.phantom", "generate_phantom"),
    "load_config": ("busgan.config", "load_config"),
    "Config": ("busgan.config", "Config"),
}

__all__ = ["CLASSES", "configure_environment", *_API]


def __getattr__(name: str) -> Any:
    """Import a stage function on first use (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'busgan' has no attribute {name!r}")
    module, attribute = _API[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later uses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
