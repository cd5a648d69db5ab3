"""Progress: a redrawn bar on a terminal, plain lines anywhere else, nothing when quiet.

On a terminal (stderr is a TTY) a tqdm bar redraws in place, fitted to the terminal's width:
the figures that matter (``loss``, ``val_loss``, ``val_auc``) are never cut; the bar shrinks
first, then the other figures and the rate are left out. Off a terminal (a pipe, ``> file``,
CI logs) no carriage return is ever written: each bar becomes one plain line when it ends
(an epoch, a generation chunk, a scoring pass), plus one line a minute while a long one runs.
``set_quiet(True)`` (the CLI's ``--quiet``) or ``BUSGAN_NO_PROGRESS=1`` silences both.

What ``--quiet`` leaves: warnings, errors and results. A command's results are what it prints
itself; library code logs, and marks a record that is a result with ``extra=RESULT`` (e.g.
``busgan run``'s verdict and the report's path), which ``is_shown_when_quiet`` lets through.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from numbers import Number
from typing import Any, TextIO, TypeVar

from tqdm.std import tqdm

T = TypeVar("T")

PRIORITY = ("loss", "val_loss", "val_auc")
"""Figures shown first and never dropped, in this order (the rest follow as given)."""
LINE_INTERVAL_S = 60.0
"""Off a terminal: seconds between the lines of a bar still running."""
MIN_BAR, MAX_BAR = 4, 30
RESULT: dict[str, Any] = {"result": True}
"""``extra=`` of a log record that is a result: shown also with ``--quiet``."""
_quiet = False


def is_shown_when_quiet(record: logging.LogRecord) -> bool:
    """Whether ``--quiet`` shows this log record: a warning, an error or a result."""
    return record.levelno >= logging.WARNING or bool(getattr(record, "result", False))


def set_quiet(quiet: bool) -> bool:
    """Silence (or restore) every progress display; returns the previous setting."""
    global _quiet
    previous, _quiet = _quiet, bool(quiet)
    return previous


def is_quiet() -> bool:
    """Whether progress is silenced (``set_quiet`` or BUSGAN_NO_PROGRESS=1)."""
    return _quiet or os.environ.get("BUSGAN_NO_PROGRESS") == "1"


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", file: TextIO | None = None, **kwargs: Any) -> Any:
    """A progress display with tqdm's interface (``update``, ``set_postfix``, ``close``,
    iteration, ``with``): a bar on a terminal, plain lines elsewhere (see the module)."""
    stream = sys.stderr if file is None else file
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if is_quiet():
        return Lines(iterable, total, desc, unit, None)
    if _is_terminal(stream):
        return TerminalBar(iterable, total=total, desc=desc, unit=unit, file=stream,
                           dynamic_ncols="ncols" not in kwargs, leave=True, **kwargs)
    return Lines(iterable, total, desc, unit, stream)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


# --- formatting ---------------------------------------------------------------------------

def _number(value: Any) -> str:
    """A figure as shown: 4 significant digits for numbers, text as given."""
    if isinstance(value, Number) and not isinstance(value, bool):
        return f"{float(value):.4g}"  # type: ignore[arg-type]
    return str(value).strip()


def ordered_figures(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, text) pairs: PRIORITY names first, then the others in their given order."""
    first = [(k, _number(figures[k])) for k in PRIORITY if k in figures]
    return first + [(k, _number(v)) for k, v in figures.items() if k not in PRIORITY]


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def _rate(rate: float | None, unit: str) -> str:
    if not rate:
        return ""
    if rate >= 1:
        return f"{rate:.0f} {unit}/s" if rate >= 100 else f"{rate:.3g} {unit}/s"
    return f"{1 / rate:.3g} s/{unit}"


def fit_line(desc: str, n: int, total: int | None, elapsed: float, rate: float | None,
             unit: str, figures: dict[str, Any], width: int, bar_chars: str = " #") -> str:
    """One terminal line of at most ``width`` characters when the essentials fit.

    Essentials (never cut): the description, the count, the time, and the PRIORITY figures.
    Then, while they fit beside a bar of MIN_BAR: the other figures in order, and the rate.
    The bar takes what is left (up to MAX_BAR), or is left out when too little is.
    """
    count = f"{n}/{total}" if total else f"{n} {unit}"
    when = _clock(elapsed) + (f"<{_clock((total - n) / rate)}" if total and rate else "")
    pairs = ordered_figures(figures)
    essential = [f"{k} {v}" for k, v in pairs if k in PRIORITY]
    optional = [f"{k} {v}" for k, v in pairs if k not in PRIORITY]
    speed = _rate(rate, unit)

    def compose(bar: str, extras: list[str], with_speed: bool) -> str:
        parts = [desc] if desc else []
        parts += ([bar] if bar else []) + [count, when] + ([speed] if with_speed else [])
        return " ".join(parts + essential + extras)

    probe = "|" + " " * MIN_BAR + "|"
    shown: list[str] = []
    for item in optional:  # in order: no later figure in a gap an earlier one left
        if len(compose(probe, shown + [item], False)) > width:
            break
        shown.append(item)
    with_speed = bool(speed) and len(compose(probe, shown, True)) <= width
    room = min(MAX_BAR, width - len(compose("", shown, with_speed)) - 3)  # "|", "|", " "
    bar = ""
    if total and room >= MIN_BAR:
        full = int(min(max(n / total, 0.0), 1.0) * room)
        bar = "|" + bar_chars[1] * full + bar_chars[0] * (room - full) + "|"
    return compose(bar, shown, with_speed)


def plain_line(desc: str, n: int, total: int | None, elapsed: float, unit: str,
               figures: dict[str, Any], done: bool) -> str:
    """The off-terminal line of a bar: when it ends, or while it runs."""
    rate = n / elapsed if elapsed > 0 and n else None
    count = f"{n}/{total} {unit}" if total else f"{n} {unit}"
    head = f"{desc}: " if desc else ""
    if done:
        speed = f" ({_rate(rate, unit)})" if rate else ""
        line = f"{head}{count} in {_clock(elapsed)}{speed}"
    else:
        pct = f" ({100 * n / total:.0f}%)" if total else ""
        eta = f", ETA {_clock((total - n) / rate)}" if total and rate else ""
        line = f"{head}{count}{pct}, {_clock(elapsed)} elapsed{eta}"
    pairs = ordered_figures(figures)
    return line + ("  " + "  ".join(f"{k} {v}" for k, v in pairs) if pairs else "")


# --- the two displays ---------------------------------------------------------------------

class TerminalBar(tqdm):  # type: ignore[misc]
    """tqdm redrawing ``fit_line``: figures kept by name (``set_postfix``), never cut."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._figures: dict[str, Any] = {}
        super().__init__(*args, **kwargs)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        self._figures = {**dict(ordered_dict or {}), **kwargs}
        if refresh:
            self.refresh()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.set_postfix({"": s} if s else {}, refresh)

    def __str__(self) -> str:
        d = self.format_dict
        utf = not self.ascii and "utf" in (getattr(self.fp, "encoding", "") or "").lower()
        return fit_line(d["prefix"] or "", d["n"], d["total"], d["elapsed"], d["rate"], d["unit"],
                        self._figures, d["ncols"] or 80, " \u2588" if utf else " #")


class Lines:
    """Off a terminal: one plain line per bar when it ends (and one a minute while it runs);
    with no stream, silent. Offers the parts of tqdm's interface that busgan uses."""

    def __init__(self, iterable: Iterable[Any] | None, total: int | None, desc: str, unit: str,
                 stream: TextIO | None, interval: float = LINE_INTERVAL_S) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.stream, self.interval = stream, interval
        self.n = 0
        self.start = self._last = time.monotonic()
        self.figures: dict[str, Any] = {}
        self.closed = False
        self._lock = threading.Lock()  # writer threads report their batches (generate)

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n
            now = time.monotonic()
            if now - self._last >= self.interval and not self.closed:
                self._last = now
                self._emit(done=False)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        self.figures = {**dict(ordered_dict or {}), **kwargs}

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.figures = {"": s} if s else {}

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        """Nothing to redraw off a terminal."""

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self.n or self.total:  # an empty bar (nothing to do) says nothing
                self._emit(done=True)

    def _emit(self, done: bool) -> None:
        if self.stream is None:
            return
        figures = {k: v for k, v in self.figures.items() if k}
        line = plain_line(self.desc, self.n, self.total, time.monotonic() - self.start, self.unit,
                          figures, done)
        extra = self.figures.get("")
        sys.stdout.flush()  # keep the order of the command's own lines in a shared log
        self.stream.write(line + (f"  {extra}" if extra else "") + "\n")
        self.stream.flush()
