"""Resume logic of `busgan run` on stand-in stages: skip what matches, rerun what changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from busgan import pipeline
from busgan.config import Config
from busgan.errors import BusganError
from busgan.pipeline import Context, Stage


def _stages(calls: list[str]) -> tuple[Stage, ...]:
    def writer(name: str, text: Any):
        def run(ctx: Context) -> dict[str, Any]:
            calls.append(name)
            (ctx.work / f"{name}.txt").write_text(str(text(ctx)))
            return {"ran": name}
        return run

    return (
        Stage(0, "a", "first", ("gan",), (), writer("a", lambda c: c.cfg.gan.kimg),
              lambda w: [w / "a.txt"]),
        Stage(1, "b", "second", ("generate",), (0,), writer("b", lambda c: c.cfg.generate.truncation),
              lambda w: [w / "b.txt"]),
        Stage(2, "c", "third", (), (1,), writer("c", lambda c: "x"), lambda w: [w / "c.txt"]),
    )


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(pipeline, "STAGES", _stages(calls))
    return calls


def test_second_run_skips_everything(tmp_path: Path, stages: list[str]) -> None:
    cfg = Config()
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    assert stages == ["a", "b", "c"]
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    assert stages == ["a", "b", "c"]


def test_config_change_reruns_that_stage_and_downstream(tmp_path: Path, stages: list[str]) -> None:
    cfg = Config()
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    cfg.generate.truncation = 0.5
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    assert stages == ["a", "b", "c", "b", "c"]


def test_unrelated_section_change_skips(tmp_path: Path, stages: list[str]) -> None:
    cfg = Config()
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    cfg.compare.alpha = 0.01
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    assert stages == ["a", "b", "c"]


def test_deleted_output_reruns(tmp_path: Path, stages: list[str]) -> None:
    cfg = Config()
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    (tmp_path / "b.txt").unlink()
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    assert stages == ["a", "b", "c", "b"]  # b rewrites the same content, so c still matches


def test_interrupted_stage_resumes(tmp_path: Path, stages: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config()
    original = pipeline.STAGES

    def boom(ctx: Context) -> dict[str, Any]:
        raise KeyboardInterrupt

    broken = (original[0], Stage(1, "b", "second", ("generate",), (0,), boom, original[1].outputs), original[2])
    monkeypatch.setattr(pipeline, "STAGES", broken)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_pipeline(cfg, tmp_path, report=False)
    assert not (tmp_path / "records" / "1-b.json").exists()
    monkeypatch.setattr(pipeline, "STAGES", original)
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    assert stages == ["a", "b", "c"]


def test_only_and_until(tmp_path: Path, stages: list[str]) -> None:
    cfg = Config()
    with pytest.raises(BusganError, match="needs stage 0"):
        pipeline.run_pipeline(cfg, tmp_path, only=1, report=False)
    pipeline.run_pipeline(cfg, tmp_path, until=0, report=False)
    assert stages == ["a"]
    pipeline.run_pipeline(cfg, tmp_path, only=1, report=False)
    assert stages == ["a", "b"]


def test_missing_source_path_refused(tmp_path: Path, stages: list[str]) -> None:
    cfg = Config()
    cfg.data.source = str(tmp_path / "nowhere")
    with pytest.raises(BusganError, match="data.source"):
        pipeline.run_pipeline(cfg, tmp_path, report=False)
