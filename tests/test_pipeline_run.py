"""`busgan run` end to end at tiny size: the report, and resume after SIGINT and SIGKILL.

The pipeline runs in subprocesses (as a user runs it). An interrupted run, rerun until it
finishes, must give the same final figures as an uninterrupted run and leave no temporary or
half-written file behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from busgan.fileio import TEMP_NAME
from busgan.pipeline import STAGES

CONFIG = Path(__file__).parent / "configs" / "tiny.toml"

pytestmark = pytest.mark.slow  # whole pipeline runs in subprocesses: minutes on 2 cores


def _cmd(work: Path) -> list[str]:
    return [sys.executable, "-m", "busgan", "run", str(CONFIG), "--work", str(work)]


_CACHE: dict[str, str] = {}


def _env() -> dict[str, str]:
    return {**os.environ, "BUSGAN_NO_PROGRESS": "1", "KERAS_BACKEND": "jax", **_CACHE}


def _run(work: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd(work) + list(options), env=_env(), capture_output=True, text=True,
                          timeout=600)


_QUIET: dict[str, subprocess.CompletedProcess[str]] = {}  # the reference run's output (-q)


def _interrupt(work: Path, stage: int, delay: float, sig: int) -> str:
    """Start a run, send ``sig`` ``delay`` seconds after stage ``stage`` starts; its output."""
    proc = subprocess.Popen(_cmd(work), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if f"[busgan run] [{stage + 1}/{len(STAGES)}]" in line:
            time.sleep(delay)
            proc.send_signal(sig)
            break
    rest, _ = proc.communicate(timeout=120)
    return "".join(seen) + rest


def _figures(work: Path) -> dict[str, float]:
    stats = json.loads((work / "stats" / "stats.json").read_text())
    figures = {f"auc_{arm}": aucs[0] for arm, aucs in stats["aucs"].items()}
    rep = stats["per_replicate"][0]
    return {**figures, "primary": stats["primary"]["decision"]["figure"],
            "mcnemar_p": rep["mcnemar_exact_p"], "delong_p": rep["delong_p"] or 0.0}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("uninterrupted")
    # A compilation cache of this test's own: the reruns below then start as fast as a user's.
    _CACHE["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax-cache"))
    done = _run(work, "-q")  # quiet: what it prints is checked below, at no extra run
    assert done.returncode == 0, done.stderr[-3000:]
    _QUIET["run"] = done
    return work


def _verdict(work: Path) -> str:
    return (work / "stats" / "stats.md").read_text(encoding="utf-8").rstrip("\n")


def test_quiet_run_prints_warnings_and_the_verdict_only(reference: Path) -> None:
    done = _QUIET["run"]
    out = done.stdout
    assert "\r" not in out + done.stderr
    noise = ("[busgan run] [", "[busgan run] finished", "[train-gan]", "[busgan audit]", "model:", "===",
             "epoch", "benign:", "malignant:")
    assert [line for line in out.splitlines() if line.startswith(noise)] == []
    assert "[busgan run] warning: data.size = 32 but gan.resolution = 16" in out  # tiny.toml's warning
    assert f"[busgan run] report: {reference / 'report.md'} and" in out
    assert out.rstrip("\n").endswith(_verdict(reference))  # the summary the run ends with
    assert "DeLong p" in out and "McNemar exact p" in out


def test_run_writes_reports_and_prints_the_papers_layout(reference: Path) -> None:
    arms = ("real", "synthetic", "real+synthetic", "oracle")
    for name in ("report.md", "report.html", "stats/stats.json", "stats/reliability.png",
                 *(f"evaluation/{arm}/rep1/predictions.csv" for arm in arms)):
        assert (reference / name).is_file(), name
    md = (reference / "report.md").read_text()
    assert "simulated phantom" in md
    assert "Benign recall(sensitivity)" in md and "Malignancy" in md
    assert "non-inferiority" in md and "margin 0.05" in md
    for arm in arms:
        assert f"| {arm} |" in md, arm
    assert "Data efficiency" in md and (reference / "efficiency" / "efficiency.png").is_file()
    for cls in ("benign", "malignant"):  # fidelity per snapshot against the floor, and its curves
        assert (reference / "stylegan2" / cls / "metrics.csv").is_file()
        assert f"report_assets/fidelity_{cls}.png" in md and f"report_assets/gan_losses_{cls}.png" in md
        assert f"report_assets/selected_{cls}.png" in md
    html = (reference / "report.html").read_text()
    assert "data:image/png;base64," in html
    records = sorted(p.stem for p in (reference / "records").iterdir())
    assert records == sorted(s.name for s in STAGES)
    # every arm early-stopped on the real validation images, never on synthetic ones
    for arm in arms:
        train = json.loads((reference / "arms" / arm / "rep1" / "train.json").read_text())
        assert Path(train["val_dir"]) == reference / "data" / "val", arm


def test_second_run_skips_every_stage(reference: Path) -> None:
    again = _run(reference)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, skipped") == len(STAGES)
    assert "\r" not in again.stdout + again.stderr  # a log file, as `> file 2>&1` writes it
    assert again.stdout.rstrip("\n").endswith(_verdict(reference))


def test_interrupted_runs_resume_to_the_same_figures(reference: Path, tmp_path: Path) -> None:
    seed = random.randrange(10**6)
    print(f"interruption seed {seed}")  # shown on failure, to replay the same interruptions
    rng = random.Random(seed)
    work = tmp_path / "interrupted"
    # Ctrl-C somewhere in stages 1-3 (0-based), then kill -9 in stages 3-9 (GANs to the arms)
    first = rng.randint(1, 3)
    out = _interrupt(work, first, rng.uniform(0.0, 3.0), signal.SIGINT)
    assert "interrupted" in out, out[-2000:]
    _interrupt(work, rng.randint(max(first, 3), 9), rng.uniform(0.0, 3.0), signal.SIGKILL)
    done = _run(work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped" in done.stdout  # something finished before the interruptions was reused
    leftovers = [p for p in work.rglob("*") if TEMP_NAME.match(p.name) or p.name.endswith(".partial")]
    assert leftovers == []
    expected, got = _figures(reference), _figures(work)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_two_runs_on_one_work_directory(reference: Path, tmp_path: Path) -> None:
    work = tmp_path / "shared"
    cmd = _cmd(work) + ["--until", "train-real"]
    first = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert first.stdout is not None
    for line in first.stdout:  # the first stage's header: printed while the lock is held
        if "[busgan run] [1/" in line:
            break
    second = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert second.returncode == 2
    assert f"work directory {work} is in use by process {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
    for name in ("data/manifest.csv", "real/history.csv"):  # as the lone run wrote them
        assert (work / name).read_bytes() == (reference / name).read_bytes(), name


def test_every_stage_reruns_to_the_same_bytes(reference: Path, tmp_path: Path) -> None:
    """Per-stage determinism: each stage rerun alone, in a copy of the finished run, writes
    byte-identical files (paths and timings aside: tests/rerun_stages.py). train-gan is left
    to tests/test_stylegan2_tools_training.py (a resumed training equals a straight one
    exactly) and test_stylegan2_core_train.py (same seed, same weights), where its phases
    compile at 8x8 instead of here at the tiny pipeline's size."""
    from busgan.config import load_config
    cfg = load_config(CONFIG)
    stages = [s.name for s in STAGES if s.name != "train-gan" and s.enabled(cfg)]
    script = Path(__file__).parent / "rerun_stages.py"
    done = subprocess.run([sys.executable, str(script), str(reference), str(CONFIG), str(tmp_path), *stages],
                          env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    differ = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(differ) == sorted(stages)
    assert {name: files for name, files in differ.items() if files} == {}
