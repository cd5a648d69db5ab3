"""Resume logic of `busgan run` on stand-in stages: skip what matches, rerun what changed."""

from __future__ import annotations

import dataclasses
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
        Stage("a", "first", ("gan",), (), writer("a", lambda c: c.cfg.gan.kimg),
              lambda w: [w / "a.txt"], alias=0),
        Stage("b", "second", ("generate",), ("a",), writer("b", lambda c: c.cfg.generate.truncation),
              lambda w: [w / "b.txt"], alias=1),
        Stage("c", "third", (), ("b",), writer("c", lambda c: "x"), lambda w: [w / "c.txt"], alias=2),
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

    broken = (original[0], dataclasses.replace(original[1], run=boom), original[2])
    monkeypatch.setattr(pipeline, "STAGES", broken)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_pipeline(cfg, tmp_path, report=False)
    assert not (tmp_path / "records" / "b.json").exists()
    monkeypatch.setattr(pipeline, "STAGES", original)
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    assert stages == ["a", "b", "c"]


def test_only_and_until(tmp_path: Path, stages: list[str]) -> None:
    cfg = Config()
    with pytest.raises(BusganError, match="needs stage a"):
        pipeline.run_pipeline(cfg, tmp_path, only=1, report=False)
    pipeline.run_pipeline(cfg, tmp_path, until=0, report=False)
    assert stages == ["a"]
    pipeline.run_pipeline(cfg, tmp_path, only="b", report=False)  # by name or by paper number
    assert stages == ["a", "b"]
    with pytest.raises(BusganError, match="unknown stage 'z'.*a \\(0\\), b \\(1\\), c \\(2\\)"):
        pipeline.run_pipeline(cfg, tmp_path, only="z", report=False)


def test_missing_source_path_refused(tmp_path: Path, stages: list[str]) -> None:
    cfg = Config()
    cfg.data.source = str(tmp_path / "nowhere")
    with pytest.raises(BusganError, match="data.source"):
        pipeline.run_pipeline(cfg, tmp_path, report=False)


# --- the real stage list, with stand-in work: which config keys rerun which stages ---------

@pytest.fixture
def real_graph(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """pipeline.STAGES with its real names, sections and dependencies; each stage only writes
    a file that depends on its config and inputs, as a real output would, so a run takes
    milliseconds."""
    calls: list[str] = []

    def standin(stage: Stage) -> Stage:
        def run(ctx: Context) -> dict[str, Any]:
            calls.append(stage.name)
            keys = pipeline.expected_keys(ctx.cfg, ctx.work, stage)
            (ctx.work / f"{stage.name}.out").write_text(repr(keys))
            return {}
        return dataclasses.replace(stage, run=run, outputs=lambda w: [w / f"{stage.name}.out"])

    monkeypatch.setattr(pipeline, "STAGES", tuple(standin(s) for s in pipeline.STAGES))
    return calls


ALL = [s.name for s in pipeline.STAGES if s.enabled(Config())]  # the default config's stages


@pytest.mark.parametrize("key,value", [("classifier.workers", 7), ("classifier.loader", "threads"),
                                       ("data.workers", 3), ("phantom.workers", 3),
                                       ("gan.tick_kimg", 0.25), ("gan.keep_snapshots", 0),
                                       ("select.link", True)])
def test_keys_without_effect_skip_every_stage(tmp_path: Path, real_graph: list[str], key: str,
                                              value: Any) -> None:
    cfg = Config()
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    section, name = key.split(".")
    setattr(getattr(cfg, section), name, value)
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    assert real_graph == ALL  # the second run skipped everything


def test_classifier_epochs_reruns_the_classifiers_and_what_follows(tmp_path: Path,
                                                                   real_graph: list[str]) -> None:
    cfg = Config()
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    cfg.classifier.epochs = 3
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    assert real_graph[len(ALL):] == ALL[1:]  # everything from train-real on


def test_gan_kimg_reruns_training_and_downstream(tmp_path: Path, real_graph: list[str]) -> None:
    cfg = Config()
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    cfg.gan.kimg = 1.0  # effect "resume": still a new result
    pipeline.run_pipeline(cfg, tmp_path, report=False)
    # the real arm and the oracle never see a GAN: they are not retrained
    assert real_graph[len(ALL):] == ["train-gan", "generate", "select", "audit", "arm-synthetic",
                                     "arm-real+synthetic", "test", "compare"]


def test_headers_and_choices_come_from_the_stage_list() -> None:
    assert pipeline.stage_header(pipeline.STAGES[3]) == f"[4/{len(pipeline.STAGES)}] generate (paper 1-2)"
    assert pipeline.stage_named(3).name == "generate" and pipeline.stage_named("generate").alias == 3
    assert [s.alias for s in pipeline.STAGES if s.alias is not None] == list(range(8))
