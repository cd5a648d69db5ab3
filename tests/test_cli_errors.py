"""Everyday mistakes and environment conditions end in one line, never a traceback (issue 11, 7-9).

Every case runs ``busgan.cli.main`` in-process with only the light stages registered (no Keras
import). Running as root, a read-only folder is writable, so read-only, permission and full-disk
conditions are simulated by making the operating-system call raise the error it would raise.
"""

from __future__ import annotations

import csv
import errno
import os
import time
from pathlib import Path

import numpy as np
import pytest

import busgan.cli as busgan_cli
import busgan.data.cli as data_cli
import busgan.fileio as fileio
from busgan.config import Config, apply_override, load_config
from busgan.errors import BusganError
from busgan.stylegan2 import generate as gen

PHANTOM = ["--n-per-class", "1", "--size", "32", "--workers", "1"]
HEADER = ["file", "true_label", "pred_label", "prob_benign", "prob_malignant"]


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
        ) -> tuple[int, str]:
    """(exit status, stdout + stderr) of ``busgan ARGV``."""
    monkeypatch.setattr(busgan_cli, "COMMAND_MODULES",
                        ("busgan.data.cli", "busgan.stylegan2.cli", "busgan.stats.cli"))
    rc = busgan_cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out + out.err


def one_line(text: str, *names: object) -> str:
    """The single error line of ``text``, checked: no traceback, names everything in ``names``."""
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert ": error: " in lines[0]
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def predictions(path: Path, n: int = 20, bom: bool = False, bad: str | None = None) -> Path:
    """A valid predictions.csv with both classes (``bad``: prob_malignant of the first row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(n):
            y = i % 2
            p = float(np.clip(0.3 * y + 0.35 + rng.normal(0, 0.2), 0.01, 0.99))
            shown = bad if (bad is not None and i == 0) else repr(p)
            w.writerow([f"img{i:03d}.png", ("benign", "malignant")[y],
                        ("benign", "malignant")[p >= 0.5], repr(1 - p), shown])
    return path


# --- operating-system errors ---------------------------------------------------------------

@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied")])
def test_unwritable_folder_is_one_line(tmp_path, monkeypatch, capsys, code, words):
    def refuse(*a, dir=None, prefix="", suffix="", **kw):
        raise OSError(code, os.strerror(code), os.path.join(dir, f"{prefix}XXXXXXXX{suffix}"))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", refuse)
    rc, text = run(monkeypatch, capsys, ["phantom", "--out", str(tmp_path / "ph"), *PHANTOM])
    line = one_line(text, "phantom.json", words)
    assert rc == 2 and fileio.TEMP_PREFIX + "phantom.json" not in line  # the file, not its temporary


def test_disk_full_says_how_much(tmp_path, monkeypatch, capsys):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a write names no file

    monkeypatch.setattr(fileio.os, "fsync", full)
    rc, text = run(monkeypatch, capsys, ["phantom", "--out", str(tmp_path / "ph"), *PHANTOM])
    line = one_line(text, "phantom.json", "no space left", "needed for this file", "free")
    assert rc == 2 and "bytes needed" in line
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(fileio.TEMP_PREFIX) and p.is_file()]


def test_out_is_a_file(tmp_path, monkeypatch, capsys):  # FileExistsError
    a = predictions(tmp_path / "a" / "predictions.csv")
    b = predictions(tmp_path / "b" / "predictions.csv")
    blocker = tmp_path / "stats"
    blocker.write_text("mine")
    rc, text = run(monkeypatch, capsys, ["compare", str(a), str(b), "--out", str(blocker),
                                         "--bootstrap", "0"])
    one_line(text, blocker, "is a file, where a folder is needed")
    assert rc == 2 and blocker.read_text() == "mine"


def test_out_below_a_file(tmp_path, monkeypatch, capsys):  # NotADirectoryError
    blocker = tmp_path / "f"
    blocker.write_text("mine")
    rc, text = run(monkeypatch, capsys, ["phantom", "--out", str(blocker / "sub"), *PHANTOM])
    one_line(text, blocker, "is a file, where a folder is needed")
    assert rc == 2 and blocker.read_text() == "mine"


def test_phantom_out_current_directory_refused_up_front(tmp_path, monkeypatch, capsys):  # EBUSY
    work = tmp_path / "here"
    work.mkdir()
    monkeypatch.chdir(work)
    rc, text = run(monkeypatch, capsys, ["phantom", "--out", ".", *PHANTOM])
    one_line(text, "current directory", "--out")
    assert rc == 2 and os.listdir(work) == [] and os.listdir(tmp_path) == ["here"]  # no ..partial
    rc, text = run(monkeypatch, capsys, ["phantom", "--out", "..", *PHANTOM])
    one_line(text, "above the current directory")
    assert rc == 2 and os.listdir(tmp_path) == ["here"]


def test_phantom_out_mount_point_refused(tmp_path, monkeypatch, capsys):  # EBUSY
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == mnt or real(p))
    rc, text = run(monkeypatch, capsys, ["phantom", "--out", str(mnt), *PHANTOM])
    one_line(text, mnt, "mount point", mnt / "phantom")
    assert rc == 2 and os.listdir(tmp_path) == ["mnt"] and os.listdir(mnt) == []
    rc, text = run(monkeypatch, capsys, ["phantom", "--out", "/", *PHANTOM])
    assert rc == 2 and "cannot be replaced" in one_line(text, "/")


# --- CSV files -----------------------------------------------------------------------------

def test_binary_predictions_csv(tmp_path, monkeypatch, capsys):  # UnicodeDecodeError
    a = predictions(tmp_path / "a" / "predictions.csv")
    b = tmp_path / "b" / "predictions.csv"
    b.parent.mkdir()
    b.write_bytes(bytes(range(256)) * 4)
    rc, text = run(monkeypatch, capsys, ["compare", str(a), str(b), "--out", str(tmp_path / "s")])
    one_line(text, b, "not UTF-8")
    assert rc == 2 and not (tmp_path / "s").exists()


def test_latin1_predictions_csv(tmp_path, monkeypatch, capsys):
    a = predictions(tmp_path / "a" / "predictions.csv")
    b = tmp_path / "b.csv"
    b.write_bytes(a.read_bytes().replace(b"img000.png", "imag\xe9.png".encode("latin-1")))
    rc, text = run(monkeypatch, capsys, ["compare", str(a), str(b), "--out", str(tmp_path / "s")])
    one_line(text, b, "not UTF-8")
    assert rc == 2


def test_excel_bom_csv_accepted(tmp_path, monkeypatch, capsys):
    a = predictions(tmp_path / "a" / "predictions.csv")
    b = predictions(tmp_path / "b" / "predictions.csv", bom=True)
    assert b.read_bytes().startswith(b"\xef\xbb\xbffile,")
    rc, text = run(monkeypatch, capsys, ["compare", str(a), str(b), "--out", str(tmp_path / "s"),
                                         "--bootstrap", "0"])
    assert rc == 0, text
    assert (tmp_path / "s" / "stats.json").is_file()


@pytest.mark.parametrize("value", ["1.5", "-0.01", "nan", "inf"])
def test_probability_outside_0_1_refused(tmp_path, monkeypatch, capsys, value):
    a = predictions(tmp_path / "a" / "predictions.csv")
    b = predictions(tmp_path / "b" / "predictions.csv", bad=value)
    rc, text = run(monkeypatch, capsys, ["compare", str(a), str(b), "--out", str(tmp_path / "s")])
    line = one_line(text, b, "line 2", "prob_malignant")
    assert rc == 2 and ("outside [0, 1]" in line or "not a finite number" in line)
    assert not (tmp_path / "s").exists()


# --- numbers: psi, float keys, seeds -------------------------------------------------------

@pytest.mark.parametrize("how", ["option", "abbreviated", "set", "file"])
def test_nan_psi_refused(tmp_path, monkeypatch, capsys, how):
    args = ["generate", "--network", str(tmp_path / "gan"), "--out", str(tmp_path / "out")]
    if how == "option":
        args += ["--truncation", "nan"]
    elif how == "abbreviated":
        args += ["--trunc=-inf"]
    elif how == "set":
        args += ["--set", "generate.truncation=inf"]
    else:
        cfg = tmp_path / "c.toml"
        cfg.write_text("[generate]\ntruncation = nan\n")
        args += ["--config", str(cfg)]
    rc, text = run(monkeypatch, capsys, args)
    one_line(text, "generate.truncation", "not a finite number")
    assert rc == 2 and not (tmp_path / "out").exists()


def test_nan_psi_refused_by_the_api(tmp_path):
    with pytest.raises(BusganError, match="not a finite number"):
        gen.generate_images(tmp_path / "gan", tmp_path / "out", range(1, 3), float("nan"), 2)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("assignment, match", [
    ("gan.lr=nan", "not a finite number"),
    ("classifier.learning_rate=inf", "not a finite number"),
    ("gan.kimg=-1", "out of range; give a value 0.0 or more"),
    ("select.min_probability=1.5", "between 0.0 and 1.0"),
    ("compare.alpha=-0.5", "between 0.0 and 1.0"),
    ("data.val_fraction=2", "between 0.0 and 1.0"),
    ("generate.n_per_class=0", "between 1 and 4294967295"),
    ("generate.truncation=1e400", "not a finite number"),
])
def test_float_keys_finite_and_in_declared_range(tmp_path, assignment, match):
    with pytest.raises(BusganError, match=match.replace("[", r"\[")):
        apply_override(Config(), assignment)
    section, rest = assignment.split(".", 1)
    key, value = rest.split("=")
    toml = tmp_path / "c.toml"
    toml.write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(BusganError, match=f"{toml}.*{section}.{key}"):
        load_config(toml)
    apply_override(Config(), "generate.truncation=-0.7")  # no range declared: any finite psi


def test_seeds_bounds_checked_before_building(monkeypatch, capsys, tmp_path):
    t = time.perf_counter()
    with pytest.raises(BusganError, match="4294967296 is too large"):
        gen.parse_seeds("0-4294967296")
    everything = gen.parse_seeds("0-4294967295")  # valid: kept as a range, not a list
    assert len(everything) == 2**32 and everything[-1] == 2**32 - 1 and everything[:3] == [0, 1, 2]
    assert time.perf_counter() - t < 1.0
    assert gen.parse_seeds("5,1-7,3-9,2") == [5, 1, 2, 3, 4, 6, 7, 8, 9]
    base = ["generate", "--network", str(tmp_path / "gan"), "--out", str(tmp_path / "o")]
    rc, text = run(monkeypatch, capsys, [*base, "--seeds", "0-4294967296"])
    one_line(text, "--seeds", "from 0 to 4294967295")
    assert rc == 2
    rc, text = run(monkeypatch, capsys, [*base, "--seeds", "10-2"])
    one_line(text, "10-2", "ends below its start", "2-10")
    assert rc == 2


def test_seeds_are_streamed(tmp_path):
    calls: list[int] = []

    def render(seeds):
        calls.append(len(seeds))
        return np.zeros((len(seeds), 8, 8, 1), np.uint8)

    assert gen.write_images(render, gen.parse_seeds("3-7,1"), tmp_path, 4) == 6
    assert calls == [4, 4] and len(list(tmp_path.glob("seed*.png"))) == 6


# --- --debug and genuine bugs --------------------------------------------------------------

@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path, monkeypatch, capsys, where):
    args = ["generate", "--network", "x", "--out", str(tmp_path / "o"), "--seeds", "10-2"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    rc, text = run(monkeypatch, capsys, args)
    assert rc == 2 and "Traceback" in text and "parse_seeds" in text
    assert text.rstrip().splitlines()[-1].startswith("busgan generate: error: --seeds '10-2'")


def test_debug_shows_the_traceback_of_an_os_error(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "f"
    blocker.write_text("")
    rc, text = run(monkeypatch, capsys, ["phantom", "--debug", "--out", str(blocker / "s"), *PHANTOM])
    assert rc == 2 and "Traceback" in text and "NotADirectoryError" in text


def test_a_bug_still_prints_its_traceback_and_how_to_report(monkeypatch, capsys, tmp_path):
    def broken(args):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(data_cli, "_phantom", broken)
    rc, text = run(monkeypatch, capsys, ["phantom", "--out", str(tmp_path / "p")])
    assert rc == 1 and "Traceback" in text and "TypeError: unsupported operand" in text
    assert "bug in busgan" in text and "report" in text


def test_out_of_memory_is_one_line(monkeypatch, capsys, tmp_path):
    def big(args):
        raise MemoryError

    monkeypatch.setattr(data_cli, "_phantom", big)
    rc, text = run(monkeypatch, capsys, ["phantom", "--out", str(tmp_path / "p")])
    one_line(text, "out of memory")
    assert rc == 2
