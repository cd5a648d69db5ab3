"""Progress display (issue 13, point 1): plain lines off a terminal, fitted bars on one, quiet.

Figures are checked against their hand-formatted text (4 significant digits: 0.123456 is
"0.1235"), widths against the terminal's 80 and 120 columns.
"""

from __future__ import annotations

import io

import pytest

from busgan import progress as prog

LOGS = {"loss": 0.123456, "auc": 0.9, "accuracy": 0.8125, "val_loss": 0.2345, "val_auc": 0.87654,
        "val_accuracy": 0.75, "learning_rate": 0.001}
KEY = ("loss 0.1235", "val_loss 0.2345", "val_auc 0.8765")


class FakeTerminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def loud(monkeypatch):
    monkeypatch.delenv("BUSGAN_NO_PROGRESS", raising=False)
    previous = prog.set_quiet(False)
    yield
    prog.set_quiet(previous)


def epoch(bar, steps: int) -> None:
    """What the classifier's Keras callback does with a bar during one epoch."""
    for _ in range(steps):
        bar.update(1)
        bar.set_postfix(loss="0.5000", refresh=False)
    bar.set_postfix({k: f"{v:.4g}" for k, v in LOGS.items()}, refresh=False)
    bar.close()


def test_off_terminal_one_plain_line_per_bar() -> None:
    out = io.StringIO()  # a pipe or a file: not a TTY
    for e in (1, 2):
        epoch(prog.progress(total=40, desc=f"epoch {e}/2", unit="batch", file=out), 40)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    for line in lines:
        assert line.startswith(f"{line.split(':')[0]}: 40/40 batch in 00:00")
        # the figures that matter first, in this order, then the others as Keras gave them
        assert line.index(KEY[0]) < line.index(KEY[1]) < line.index(KEY[2]) < line.index("auc 0.9")
        assert "learning_rate 0.001" in line


def test_off_terminal_iteration_and_empty_bars() -> None:
    out = io.StringIO()
    assert list(prog.progress(range(3), desc="scoring", unit="img", file=out)) == [0, 1, 2]
    prog.progress(total=0, desc="nothing", file=out).close()  # nothing to do: says nothing
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("scoring: 3/3 img in 00:00")


def test_long_bar_off_terminal_gets_a_line_per_interval() -> None:
    out = io.StringIO()
    bar = prog.Lines(None, 4, "generate benign", "img", out, interval=0.0)
    for _ in range(4):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and "\r" not in out.getvalue()
    assert lines[0].startswith("generate benign: 1/4 img (25%), 00:00 elapsed")
    assert lines[-1].startswith("generate benign: 4/4 img in 00:00")


@pytest.mark.parametrize("width", [80, 120])
def test_fitted_line_keeps_the_key_figures(width: int) -> None:
    line = prog.fit_line("epoch 12/50", 1250, 1250, 12.3, 101.6, "batch", LOGS, width)
    assert len(line) <= width
    for figure in KEY:
        assert figure in line
    assert line.startswith("epoch 12/50 ") and "1250/1250 00:12<00:00" in line
    if width == 120:
        # two more figures fit, in order; the third ("val_accuracy 0.75", 17 characters) would
        # leave no room for a bar, and the bar (full: 1250 of 1250) takes up the slack exactly
        assert line.endswith("val_auc 0.8765 auc 0.9 accuracy 0.8125") and "val_accuracy" not in line
        bar = line[line.index("|") + 1:line.rindex("|")]
        assert len(line) == 120 and set(bar) == {"#"} and len(bar) >= prog.MIN_BAR
    else:
        assert "|" not in line and "auc 0.9" not in line  # the bar, then the others gave way


def test_fitted_line_bar_shows_the_fraction() -> None:
    line = prog.fit_line("scoring", 5, 10, 1.0, 5.0, "img", {}, 80)  # room for more than MAX_BAR
    bar = line[line.index("|") + 1:line.rindex("|")]
    assert len(bar) == prog.MAX_BAR and bar.count("#") == prog.MAX_BAR // 2
    assert line.endswith("5/10 00:01<00:01 5 img/s")


def test_terminal_bar_redraws_within_80_columns() -> None:
    term = FakeTerminal()
    epoch(prog.progress(total=40, desc="epoch 3/50", unit="batch", file=term, ncols=80), 40)
    frames = [f.rstrip() for f in term.getvalue().rstrip("\n").split("\r") if f.strip()]
    assert frames and all(len(f) <= 80 for f in frames)
    for figure in KEY:
        assert figure in frames[-1]


def test_quiet_and_environment_silence_everything(monkeypatch) -> None:
    out, term = io.StringIO(), FakeTerminal()
    prog.set_quiet(True)
    epoch(prog.progress(total=3, desc="epoch 1/1", file=out), 3)
    epoch(prog.progress(total=3, desc="epoch 1/1", file=term), 3)
    assert list(prog.progress(range(2), file=out)) == [0, 1]
    prog.set_quiet(False)
    monkeypatch.setenv("BUSGAN_NO_PROGRESS", "1")
    epoch(prog.progress(total=3, desc="epoch 1/1", file=out), 3)
    assert out.getvalue() == "" and term.getvalue() == ""
