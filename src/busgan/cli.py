"""The ``busgan`` command: one subcommand per pipeline stage.

Each area registers its subcommands from its own ``cli`` module (``register(subparsers)``),
so stages can be developed independently. A handler returns an exit code; a BusganError,
and an operating-system error (read-only or full disk, a file where a folder is needed ...),
becomes one line on stderr and exit status 2; ``--debug`` adds the traceback. Anything else is
a bug in busgan: its traceback is printed, with how to report it, and the exit status is 1.

Conventions every command shares (helpers below): ``--work`` defaults to ``work``, ``--out``
is also accepted as ``--outdir``, ``-q`` / ``--quiet`` works before or after the command's
name, and each ``--help`` ends with examples.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from busgan import __version__, configure_environment
from busgan.errors import BusganError, os_error_message

# Modules that contribute subcommands, in the order of the pipeline.
COMMAND_MODULES: tuple[str, ...] = (
    "busgan.data.cli",
    "busgan.classifier.cli",
    "busgan.stylegan2.cli",
    "busgan.stylegan2.metrics_cli",
    "busgan.audit_cli",
    "busgan.stats.cli",
    "busgan.pipeline_cli",
)


# The order of ``busgan --help``: the pipeline's. A command not listed goes before ``run``.
PIPELINE_ORDER: tuple[str, ...] = (
    "phantom", "prepare", "train-classifier", "train-gan", "import-nvlabs", "export", "generate",
    "metrics", "select", "audit", "test", "compare", "run")
WORK_DEFAULT = "work"
"""The work directory of every command that has one, when --work is not given."""
# Examples for commands whose module gives none (its own epilog wins).
_FALLBACK_EXAMPLES: dict[str, tuple[str, ...]] = {
    "import-nvlabs": ("busgan import-nvlabs network-snapshot-005000.pkl --out gans/benign",
                      "busgan generate --network gans/benign --out gen/benign --seeds 1-100"),
    "audit": ("busgan audit --work runs/demo",),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Paragraphs of a description wrapped to the terminal; indented lines (the examples of
    an epilog, a table) kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for par in textwrap.dedent(text).strip("\n").split("\n\n"):
            if any(line.startswith(" ") for line in par.splitlines()) or par.endswith(":"):
                out.append(textwrap.indent(par, indent))
            else:
                out.append(textwrap.fill(" ".join(par.split()), width, initial_indent=indent,
                                         subsequent_indent=indent))
        return "\n\n".join(out)


def examples(*lines: str) -> str:
    """An epilog: ``examples:`` and one command per line (what every --help ends with)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_command(sub: Any, name: str, *, help: str, description: str, example: Sequence[str],
                **kw: Any) -> argparse.ArgumentParser:
    """A subcommand whose --help wraps ``description`` and ends with the ``example`` lines."""
    return sub.add_parser(name, help=help, description=description, epilog=examples(*example),
                          formatter_class=HelpFormatter, **kw)


def add_work_option(p: argparse.ArgumentParser, what: str = "work directory") -> None:
    """``--work DIR`` with the one default (WORK_DEFAULT)."""
    p.add_argument("--work", type=Path, default=Path(WORK_DEFAULT), metavar="DIR",
                   help=f"{what} (default: {WORK_DEFAULT})")


def add_out_option(p: argparse.ArgumentParser, help: str, **kw: Any) -> None:
    """``--out`` (also ``--outdir``, as NVlabs' tools spell it)."""
    kw.setdefault("metavar", "DIR")
    p.add_argument("--out", "--outdir", dest="out", help=help, **kw)


def _conform(name: str, p: argparse.ArgumentParser) -> None:
    """What every subcommand accepts, also where its module did not ask: ``-q``/``--quiet``
    and ``--debug`` after the command's name, ``--outdir`` beside ``--out``."""
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars or progress lines, only warnings, errors and results")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the Python traceback of an error")
    options = p._option_string_actions  # argparse has no public lookup of an option by name
    if "--out" in options and "--outdir" not in options:
        out = options["--out"]
        p.add_argument("--outdir", dest=out.dest, type=out.type, metavar=out.metavar,
                       default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        out.help = f"{out.help} (also --outdir)" if out.help else "(also --outdir)"
    if p.formatter_class is argparse.HelpFormatter:
        p.formatter_class = HelpFormatter
    if p.epilog is None and name in _FALLBACK_EXAMPLES:
        p.epilog = examples(*_FALLBACK_EXAMPLES[name])


def _in_pipeline_order(sub: Any) -> None:
    """List the subcommands in ``busgan --help`` in PIPELINE_ORDER."""
    rank = {name: i for i, name in enumerate(PIPELINE_ORDER)}
    before_run = rank["run"] - 0.5
    sub._choices_actions.sort(key=lambda a: rank.get(a.dest, before_run))


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available stage's subcommand."""
    parser = argparse.ArgumentParser(
        prog="busgan", formatter_class=HelpFormatter,
        description="StyleGAN2 augmentation for breast-ultrasound classification: "
                    "prepare data, train classifiers and GANs, generate, select, test, compare.",
        epilog=examples("busgan run configs/demo.toml --work runs/demo   # the whole pipeline",
                        "busgan train-gan --help                          # one stage's options"),
    )
    parser.add_argument("--version", action="version", version=f"busgan {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (also after the command's "
                             "name, or BUSGAN_DEBUG=1)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars or progress lines, only warnings, errors and "
                             "results (also after the command's name)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for name, p in sub.choices.items():
        _conform(name, p)
    _in_pipeline_order(sub)
    return parser


def _log_to_stdout(quiet: bool = False) -> Callable[[], None]:
    """Show the library's messages (loggers under ``busgan``, INFO and up; when ``quiet`` only
    warnings, errors and results, see ``busgan.progress``) as plain lines on stdout, as the
    commands printed them, and silence progress when ``quiet``; returns the function that
    undoes both."""
    from busgan.progress import is_shown_when_quiet, set_quiet

    logger = logging.getLogger("busgan")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    if quiet:
        handler.addFilter(is_shown_when_quiet)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # once, also where the root logger has a handler
    was_quiet = set_quiet(quiet)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        set_quiet(was_quiet)
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
    # The library's defaults (backend, JAX's compilation cache: a resumed or repeated run skips
    # XLA compilation, 3m40 -> 1m12 for the tiny test pipeline on a CPU), also for the API.
    configure_environment()
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere before a "--" (also after the subcommand's name)
    end = words.index("--") if "--" in words else len(words)
    debug = "--debug" in words[:end] or os.environ.get("BUSGAN_DEBUG", "") not in ("", "0")
    words = [w for i, w in enumerate(words) if not (i < end and w == "--debug")]
    args = parser.parse_args(words)
    args.argv = words  # the command as given: --processes N reruns it in each worker
    prefix = f"busgan {args.command}"
    undo_logging = _log_to_stdout(quiet=bool(getattr(args, "quiet", False)))
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
