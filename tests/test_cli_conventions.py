"""What every command shares (issue 13, points 1-3): options with one meaning, help that ends
with examples in pipeline order, quiet and plain output, a readable prepare summary, and
strict JSON wherever busgan writes JSON.

The parser is built with every command module (argparse only: no Keras is imported); the one
command that runs, ``prepare``, works on a dozen 32x32 images made here.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import busgan.cli as cli
from busgan import CLASSES
from busgan.fileio import dumps_json, write_json
from busgan.records import write_record

SRC = Path(__file__).resolve().parents[1] / "src" / "busgan"


def refuse(name: str) -> None:
    raise AssertionError(f"non-standard JSON constant {name}")


def strict(text: str) -> object:
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return cli.build_parser()


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {o: a for a in p._actions for o in a.option_strings}


# --- help -------------------------------------------------------------------------------------

def test_every_help_ends_with_examples(parser) -> None:
    for name, p in {"busgan": parser, **commands(parser)}.items():
        text = p.format_help().rstrip("\n").splitlines()
        start = max(i for i, line in enumerate(text) if line == "examples:")
        shown = text[start + 1:]
        assert 1 <= len(shown) <= 2, (name, shown)
        assert all(line.startswith("  busgan ") for line in shown), (name, shown)


def test_commands_listed_in_pipeline_order(parser) -> None:
    listed = re.findall(r"^    ([a-z][a-z-]+)", parser.format_help(), re.M)
    pipeline = ["phantom", "prepare", "train-classifier", "train-gan", "generate", "select", "test",
                "compare", "run"]
    assert [c for c in listed if c in pipeline] == pipeline
    assert listed[-1] == "run" and set(listed) == set(commands(parser))


# --- one meaning per option -------------------------------------------------------------------

def test_out_outdir_work_config_quiet_everywhere(parser) -> None:
    for name, p in commands(parser).items():
        opts = options(p)
        if "--out" in opts:  # --outdir writes the same destination
            assert opts["--outdir"].dest == opts["--out"].dest == "out", name
        if "--work" in opts:
            assert opts["--work"].default in ("work", Path("work")), name
        if "--set" in opts or name == "run":
            assert "--config" in opts, name
        assert {"-q", "--quiet"} <= opts.keys(), name


def test_values_through_aliases(parser, tmp_path) -> None:
    a = parser.parse_args(["generate", "--network", "n", "--outdir", "o", "--trunc", "0.7",
                           "--noise-mode", "random"])
    b = parser.parse_args(["generate", "--network", "n", "--out", "o", "--truncation", "0.7"])
    assert a.out == b.out == Path("o") and a.cfg__generate__truncation == b.cfg__generate__truncation == 0.7
    assert a.noise_mode == "random" and b.noise_mode == "const"
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "--network", "n", "--out", "o", "--noise-mode", "loud"])
    assert parser.parse_args(["-q", "compare", "a", "b"]).quiet is True
    assert parser.parse_args(["compare", "a", "b", "-q"]).quiet is True
    assert parser.parse_args(["compare", "a", "b"]).quiet is False
    run = parser.parse_args(["run", "--config", "c.toml"])
    assert run.config is None and run.config_option == "c.toml" and run.work == Path("work")
    assert parser.parse_args(["run", "c.toml"]).config == "c.toml"


def test_run_needs_one_config(capsys, tmp_path) -> None:
    assert cli.main(["run", "--work", str(tmp_path / "w")]) == 2
    assert cli.main(["run", "a.toml", "--config", "b.toml", "--work", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "give a config file" in err[0] and "two config files" in err[1]
    assert not (tmp_path / "w").exists()


def test_workers_zero_is_one_per_core_in_every_command(monkeypatch, tmp_path) -> None:
    seen: dict[str, int] = {}
    fake = types.ModuleType("busgan.classifier.train")
    fake.train_classifier = lambda *a, **k: seen.update(classifier=a[3].workers)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "busgan.classifier.train", fake)
    (tmp_path / "train").mkdir()
    assert cli.main(["train-classifier", "--train", str(tmp_path / "train"), "--no-val",
                     "--out", str(tmp_path / "o"), "--workers", "0"]) == 0
    from busgan.data.parallel import worker_count  # what prepare and phantom do with 0
    cores = len(os.sched_getaffinity(0))
    assert seen["classifier"] == worker_count(0) == cores
    assert cli.main(["train-classifier", "--train", str(tmp_path / "train"), "--no-val",
                     "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    assert seen["classifier"] == 1


# --- prepare's summary, quiet, plain output, strict JSON -------------------------------------

def source_tree(root: Path) -> Path:
    """6 noise images per class; benign_5 is an exact copy of benign_0 (one duplicate pair)."""
    rng = np.random.default_rng(3)
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(6 if c == "malignant" else 5):
            Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L").save(root / c / f"{c}_{i}.png")
    shutil.copy(root / "benign" / "benign_0.png", root / "benign" / "benign_5.png")
    return root


PREPARE = ["--size", "32", "--test-per-class", "1", "--val-fraction", "0.25", "--workers", "1"]


def test_prepare_prints_a_summary_not_json(tmp_path, capsys) -> None:
    src = source_tree(tmp_path / "src")
    work = tmp_path / "w"
    assert cli.main(["prepare", "--work", str(work), "--source", str(src), *PREPARE]) == 0
    out = capsys.readouterr()
    assert "{" not in out.out and "\r" not in out.out + out.err
    with open(work / "data" / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    lines = out.out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == [*CLASSES, "total"])
    table = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in lines[header + 1:header + 5]}
    for split in ("train", "val", "test"):
        want = [sum(r["split"] == split and r["class"] == c for r in rows) for c in CLASSES]
        assert table[split] == [*want, sum(want)]
    assert table["total"] == [6, 6, 12]
    assert table["test"] == [1, 1, 2]
    dup = next(line for line in lines if line.startswith("duplicates:"))
    assert dup.startswith("duplicates: 1 group of 2 images (1 exact, 0 near pairs)")
    record = strict((work / "data" / "prepare.json").read_text())
    assert record["duplicates"]["groups"] == 1  # type: ignore[index]


def test_quiet_prepare_prints_no_progress(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("BUSGAN_NO_PROGRESS", raising=False)  # scripts/test.sh sets it
    src = source_tree(tmp_path / "src")
    assert cli.main(["prepare", "--work", str(tmp_path / "a"), "--source", str(src), *PREPARE]) == 0
    loud = capsys.readouterr()
    assert re.search(r"^prepare: 12/12 img in ", loud.err, re.M)  # one plain line, no frames
    assert cli.main(["prepare", "-q", "--work", str(tmp_path / "b"), "--source", str(src), *PREPARE]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and "prepared 12 images" in quiet.out  # results stay


def test_quiet_shows_warnings_errors_and_results_only(capsys) -> None:
    """What -q means for every command: the library's INFO lines (stage headers, train-gan ticks)
    go, warnings, errors and records marked as results (busgan run's verdict) stay."""
    import logging
    from busgan.progress import RESULT, is_quiet
    log = logging.getLogger("busgan.pipeline")
    for quiet, shown in ((False, "[1/14] prepare\n[train-gan] tick 1\nwarning: w\nerror: e\nverdict\n"),
                         (True, "warning: w\nerror: e\nverdict\n")):
        undo = cli._log_to_stdout(quiet)
        assert is_quiet() or not quiet  # progress bars and lines off with -q
        log.info("[1/14] prepare")
        logging.getLogger("busgan.stylegan2.training").info("[train-gan] tick 1")
        log.warning("warning: w")
        log.error("error: e")
        log.info("verdict", extra=RESULT)
        undo()
        assert capsys.readouterr().out == shown
    log.info("verdict", extra=RESULT)  # the Python API stays quiet after a command
    assert capsys.readouterr().out == ""


def test_busgan_run_reports_through_the_logger() -> None:
    """Nothing `busgan run` executes prints past -q: its stages log, and the GANs it trains get
    a logger for their ticks (train_gan's own default is print)."""
    modules = ("pipeline.py", "arms.py", "efficiency.py", "audit.py", "report.py", "generate_select.py",
               "classifier/train.py", "classifier/select.py", "classifier/evaluate.py")
    assert [m for m in modules if re.search(r"\bprint\(", (SRC / m).read_text(encoding="utf-8"))] == []
    pipeline = (SRC / "pipeline.py").read_text(encoding="utf-8")
    calls = re.findall(r"train_gan\((.*?)\)\n", pipeline, re.S)
    assert calls and all("log=_gan_log" in c for c in calls)


def test_every_json_writer_is_strict(tmp_path) -> None:
    obj = {"auc": math.nan, "p": [0.5, math.inf, -math.inf], "n": np.int64(3), "x": np.float32(0.25),
           "a": np.arange(3), "path": tmp_path, 7: "seven"}
    write_json(tmp_path / "m.json", obj)
    back = strict((tmp_path / "m.json").read_text())
    assert back == {"auc": None, "p": [0.5, None, None], "n": 3, "x": 0.25, "a": [0, 1, 2],
                    "path": str(tmp_path), "7": "seven",
                    "_nonfinite": {"/auc": "NaN", "/p/1": "Infinity", "/p/2": "-Infinity"}}
    assert strict(dumps_json([math.nan])) == [None]
    write_record(tmp_path, "compare", {"summary": {"delong_p": math.nan}})
    rec = strict((tmp_path / "records" / "compare.json").read_text())
    assert rec["_nonfinite"] == {"/summary/delong_p": "NaN"}  # type: ignore[index]
    from busgan.stylegan2 import snapshot as snap  # the metadata inside a snapshot, too
    path = snap.save_snapshot(tmp_path / snap.snapshot_name(1), {"aug_p": np.float32(0)},
                              {"nimg": 1, "fid": math.inf})
    with np.load(path, allow_pickle=False) as z:
        meta = strict(bytes(z[snap.META_KEY]).decode())
    assert meta["fid"] is None and meta["_nonfinite"] == {"/fid": "Infinity"}  # type: ignore[index]


def test_no_module_writes_json_around_the_helper() -> None:
    # json.dump(obj, file) writes NaN as the non-standard NaN; fileio.write_json is the one writer
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if p.name != "fileio.py" and re.search(r"\bjson\.dump\(", p.read_text(encoding="utf-8"))]
    assert offenders == []
