"""The Python API (issue 13, point 4): docs/python-api.md's example runs as written, in a fresh
interpreter where only busgan chooses the backend; the API is lazy and documented.

One subprocess runs the example (the real stage functions on a tiny phantom) and then reports
what it saw: the backend Keras picked, whether TensorFlow was imported, and the API's
docstrings. Its stderr is what a log file would hold, so it must have no carriage returns.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import busgan

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python-api.md"
API = ("prepare", "train_classifier", "train_gan", "generate_images", "select_images",
       "test_model", "compare", "run_pipeline")

# Run first, in the fresh interpreter: what importing busgan and reaching every API name does.
PRELUDE = """
import json, os, sys
import busgan
api = {name: bool((getattr(busgan, name).__doc__ or "").strip()) for name in %r}
import keras
before = {"env": os.environ.get("KERAS_BACKEND"), "backend": keras.backend.backend(),
          "tensorflow": "tensorflow" in sys.modules, "docs": api}
"""
REPORT = """
print("REPORT " + json.dumps(before))
"""


def example_code() -> str:
    """The first ```python block of docs/python-api.md."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/python-api.md has no ```python block"
    return blocks[0]


def strict(path: Path) -> object:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path} holds {name}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


@pytest.mark.slow  # a fresh interpreter runs the docs example: a tiny pipeline
def test_docs_example_runs_with_jax_and_without_tensorflow(tmp_path: Path, request) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "BUSGAN_NO_PROGRESS")}
    # XLA programs kept between test runs (even the small ones): most of a cold run is compiling
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider (scripts/test.sh)
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache.mkdir("busgan-jax") if cache else tmp_path / "jax-cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    code = PRELUDE % (API,) + example_code() + REPORT
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(next(line for line in done.stdout.splitlines()
                             if line.startswith("REPORT "))[7:])
    # busgan chose the backend (no KERAS_BACKEND given), as the CLI does, and reaching every
    # API function (their modules, Keras) imported no TensorFlow, though it is installed here
    assert report["env"] == "jax" and report["backend"] == "jax"
    assert report["tensorflow"] is False
    assert report["docs"] == {name: True for name in API}
    # what the example printed and wrote
    assert "images per split:" in done.stdout and re.search(r"AUC \d\.\d{3}", done.stdout)
    counts = strict(tmp_path / "work" / "data" / "prepare.json")["counts"]  # type: ignore[index]
    assert counts["test"] == {"benign": 10, "malignant": 10}
    assert (tmp_path / "work" / "real" / "model.keras").is_file()
    metrics = strict(tmp_path / "work" / "real" / "test" / "metrics.json")
    assert 0.0 <= metrics["auc"] <= 1.0  # type: ignore[index]
    written = list((tmp_path / "work").rglob("*.json"))
    assert len(written) >= 4
    for f in written:
        strict(f)
    # progress off a terminal: plain lines, one per epoch, no carriage return anywhere
    assert "\r" not in done.stderr and "\r" not in done.stdout
    epochs = [line for line in done.stderr.splitlines() if re.match(r"epoch \d+/2: ", line)]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"], done.stderr
    assert all(re.search(r"  loss \S+  val_loss \S+  val_auc \S+", line) for line in epochs)


def test_api_is_lazy_and_complete() -> None:
    assert set(API) <= set(busgan.__all__) and set(API) <= set(dir(busgan))
    try:
        busgan.no_such_stage  # noqa: B018
    except AttributeError as e:
        assert "no_such_stage" in str(e)
    else:
        raise AssertionError("an unknown attribute must raise AttributeError")


def test_cli_sets_the_backend_as_the_library_does(monkeypatch) -> None:
    import busgan.cli as cli

    calls: list[str] = []
    monkeypatch.setattr(cli, "configure_environment", lambda: calls.append("called"))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("busgan.stats.cli",))
    assert cli.main(["compare", "absent-a.csv", "absent-b.csv"]) == 2
    assert calls == ["called"]
