"""The ``busgan`` command: one subcommand per pipeline stage.

Each area registers its subcommands from its own ``cli`` module (``register(subparsers)``),
so stages can be developed independently. A handler returns an exit code; a BusganError,
and an operating-system error (read-only or full disk, a file where a folder is needed ...),
becomes one line on stderr and exit status 2; ``--debug`` adds the traceback. Anything else is
a bug in busgan: its traceback is printed, with how to report it, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from busgan import __version__
from busgan.errors import BusganError, os_error_message

# Modules that contribute subcommands, in the order of the pipeline.
COMMAND_MODULES: tuple[str, ...] = (
    "busgan.data.cli",
    "busgan.classifier.cli",
    "busgan.stylegan2.cli",
    "busgan.stylegan2.metrics_cli",
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
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (also after the command's "
                             "name, or BUSGAN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _log_to_stdout() -> Callable[[], None]:
    """Show the library's messages (loggers under ``busgan``, INFO and up) as plain lines on
    stdout, as the commands printed them; returns the function that undoes it."""
    logger = logging.getLogger("busgan")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # once, also where the root logger has a handler

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    return undo


# Commands that resume inside an existing --out folder: two of them there at once would
# write the same files, so they lock it (when it exists; a new folder cannot be in use yet).
_OUT_LOCKED = ("train-gan", "generate", "select", "train-classifier")


def _work_lock(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """A stage command given an existing work directory holds its lock (``busgan run`` takes
    it itself, after checking the config); a resuming command locks its existing --out."""
    from busgan.lock import folder_lock
    work, out = getattr(args, "work", None), getattr(args, "out", None)
    if args.command == "run":
        return contextlib.nullcontext()
    if args.command in _OUT_LOCKED and out is not None and Path(out).is_dir():
        return folder_lock(Path(out), "output folder")
    if args.command == "prepare" and work is not None and Path(work).is_dir():
        return folder_lock(Path(work))
    return contextlib.nullcontext()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    # JAX's persistent compilation cache: a resumed or repeated run skips XLA compilation
    # (on a CPU that is most of a short run's time: 3m40 -> 1m12 for the tiny test pipeline).
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_home / "busgan" / "jax"))
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere before a "--" (also after the subcommand's name)
    end = words.index("--") if "--" in words else len(words)
    debug = "--debug" in words[:end] or os.environ.get("BUSGAN_DEBUG", "") not in ("", "0")
    words = [w for i, w in enumerate(words) if not (i < end and w == "--debug")]
    args = parser.parse_args(words)
    prefix = f"busgan {args.command}"
    undo_logging = _log_to_stdout()
    try:
        with _work_lock(args):
            return int(args.func(args) or 0)
    except BusganError as e:
        return _fail(prefix, str(e), debug)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as e:
        # The operating system refused (read-only, full, permissions, a file in the way ...):
        # an environment condition or a user mistake, never a traceback (unless --debug).
        folder = getattr(args, "out", None) or getattr(args, "work", None)
        return _fail(prefix, os_error_message(e, folder), debug)
    except UnicodeDecodeError as e:  # a text file that is not UTF-8, read where not expected
        return _fail(prefix, f"a file is not UTF-8 text (byte {e.start}: {e.reason}); save it as "
                             "UTF-8 (run with --debug to see which file was being read)", debug)
    except MemoryError:
        return _fail(prefix, "out of memory; use a smaller batch size or fewer workers "
                             "(run with --debug to see where)", debug)
    except Exception as e:  # a genuine bug: the traceback, and how to report it
        traceback.print_exc()
        print(f"{prefix}: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print(f"{prefix}: this is a bug in busgan {__version__}, not a problem with your input; "
              "please report it to the busgan maintainers with the command line and the "
              "traceback above", file=sys.stderr)
        return 1
    finally:  # the Python API is quiet again after a command (tests call main() in-process)
        undo_logging()


def _fail(prefix: str, message: str, debug: bool) -> int:
    """Print the one-line error (after the traceback with --debug); exit status 2."""
    if debug:
        traceback.print_exc()
    print(f"{prefix}: error: {' '.join(message.splitlines())}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
