"""The ``busgan`` command: one subcommand per pipeline stage.

Each area registers its subcommands from its own ``cli`` module (``register(subparsers)``),
so stages can be developed independently. A handler returns an exit code; a BusganError
becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from busgan import __version__
from busgan.errors import BusganError

# Modules that contribute subcommands, in the order of the pipeline.
COMMAND_MODULES: tuple[str, ...] = (
    "busgan.data.cli",
    "busgan.classifier.cli",
    "busgan.stylegan2.cli",
    "busgan.stats.cli",
    "busgan.pipeline_cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available stage's subcommand."""
    parser = argparse.ArgumentParser(
        prog="busgan",
        description="StyleGAN2 augmentation for breast-ultrasound classification: "
                    "prepare data, train classifiers and GANs, generate, select, test, compare.",
    )
    parser.add_argument("--version", action="version", version=f"busgan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that stage is not there yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    # JAX's persistent compilation cache: a resumed or repeated run skips XLA compilation
    # (on a CPU that is most of a short run's time: 3m40 -> 1m12 for the tiny test pipeline).
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_home / "busgan" / "jax"))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BusganError as e:
        print(f"busgan {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"busgan {args.command}: interrupted; run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
