"""`busgan run`: the paper's stages 0-7 in order, resumable.

Each stage writes ``records/NN-name.json`` when it finishes: the hash of the config sections
that decide its result, the hashes of its inputs (the outputs of the stages it reads), the
hash of its own outputs, a summary, versions and timings. A stage whose record matches the
current config and inputs, and whose outputs are still there unchanged, is skipped, so the
same command after a crash or Ctrl-C continues where it stopped. Stages that run for long
(GAN training, generation, selection) also resume inside themselves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busgan import CLASSES
from busgan.config import Config, config_hash
from busgan.errors import BusganError
from busgan.fileio import atomic_path, read_json, remove_stale_temporaries, sha256_file, write_json
from busgan.versions import software_versions


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: what decides its result, what it reads, what it writes."""

    number: int
    name: str
    title: str
    sections: tuple[str, ...]
    depends: tuple[int, ...]
    run: Callable[["Context"], dict[str, Any]]
    outputs: Callable[[Path], list[Path]]


@dataclass
class Context:
    """What a stage function gets: the config and the work directory."""

    cfg: Config
    work: Path


# --- the stages -----------------------------------------------------------------------------

def _prepare(ctx: Context) -> dict[str, Any]:
    from busgan.data.prepare import prepare
    return prepare(ctx.cfg.data, ctx.work, force=True, phantom=ctx.cfg.phantom)


def _train_real(ctx: Context) -> dict[str, Any]:
    from busgan.classifier.train import train_classifier
    data = ctx.work / "data"
    model = train_classifier(data / "train", data / "val", ctx.work / "real", ctx.cfg.classifier)
    return {"model": str(model.relative_to(ctx.work)), **_train_summary(ctx.work / "real")}


def _train_gans(ctx: Context) -> dict[str, Any]:
    from busgan.stylegan2.training import train_gan
    feature_model = ctx.work / "real" / "model.keras"
    best: dict[str, Any] = {}
    for cls in CLASSES:
        snapshot = train_gan(ctx.work / "data" / "train" / cls, ctx.work / "stylegan2" / cls,
                             ctx.cfg.gan, resume=True, feature_model=feature_model)
        best[cls] = str(Path(snapshot).relative_to(ctx.work))
    return {"best_snapshots": best}


def _generate(ctx: Context) -> dict[str, Any]:
    from busgan.stylegan2.generate import generate_images
    g = ctx.cfg.generate
    seeds = range(1, g.n_per_class + 1)
    counts = {}
    for cls in CLASSES:
        counts[cls] = generate_images(ctx.work / "stylegan2" / cls, ctx.work / "sgan_out" / cls,
                                      seeds, g.truncation, g.batch_size, g.format)
    return {"generated": counts}


def _select(ctx: Context) -> dict[str, Any]:
    from busgan.classifier.select import select_images
    return select_images(ctx.work / "real" / "model.keras", ctx.work / "sgan_out",
                         ctx.work / "selected", ctx.cfg.select)


def _train_synthetic(ctx: Context) -> dict[str, Any]:
    """The classifier on selected synthetic images; cascade rounds fine-tune the previous one."""
    from busgan.classifier.train import train_classifier
    syn = ctx.cfg.synthetic
    init: Path | None = None
    rounds = []
    for r in range(1, syn.rounds + 1):
        out = ctx.work / "synthetic" / f"round{r}"
        if (out / "model.keras").is_file() and (out / "train.json").is_file():
            model = out / "model.keras"  # this round finished before an interruption
        else:
            # A fresh random draw of per_class images each round, as in the paper's cascade.
            cfg = dataclasses.replace(ctx.cfg.classifier, seed=ctx.cfg.classifier.seed + r - 1,
                                      val_fraction=syn.val_fraction)
            model = train_classifier(ctx.work / "selected", None, out, cfg, init=init,
                                     per_class=syn.per_class)
        rounds.append({"round": r, "model": str(model.relative_to(ctx.work)),
                       "images": syn.per_class * len(CLASSES) * r, **_train_summary(out)})
        init = model
    final = ctx.work / "synthetic" / "model.keras"
    _copy_atomically(init, final)  # type: ignore[arg-type]
    return {"rounds": rounds, "model": str(final.relative_to(ctx.work))}


def _test(ctx: Context) -> dict[str, Any]:
    from busgan.classifier.evaluate import test_model
    results = {}
    for name in ("real", "synthetic"):
        print(f"\n=== {name}-trained classifier on the real test images ===")
        metrics = test_model(ctx.work / name / "model.keras", ctx.work / "data" / "test",
                             ctx.work / name / "test", batch_size=ctx.cfg.classifier.batch_size)
        results[name] = {k: metrics[k] for k in ("accuracy", "auc") if k in metrics}
    return results


def _compare(ctx: Context) -> dict[str, Any]:
    from busgan.stats.compare import compare_predictions
    stats = compare_predictions(ctx.work / "real" / "test" / "predictions.csv",
                                ctx.work / "synthetic" / "test" / "predictions.csv",
                                ctx.work / "stats", ctx.cfg.compare, names=("real", "synthetic"))
    return {"mcnemar_exact_p": stats["mcnemar"]["exact_p"], "delong_p": stats["delong"]["p"]}


def _train_summary(out: Path) -> dict[str, Any]:
    record = out / "train.json"
    if not record.is_file():
        return {}
    data = read_json(record)
    keep = ("images", "epochs_run", "best_val_loss", "val_auc", "seconds")
    return {k: data[k] for k in keep if k in data}


def _copy_atomically(src: Path, dst: Path) -> None:
    """The last cascade round's model as the stage's output (a copy: rounds stay inspectable)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _files(*names: str) -> Callable[[Path], list[Path]]:
    """The stage's output files or folders, relative to the work directory."""
    return lambda work: [work / n for n in names]


STAGES: tuple[Stage, ...] = (
    Stage(0, "prepare", "image preparation", ("phantom", "data"), (), _prepare,
          _files("data/manifest.csv")),
    Stage(1, "train-real", "classifier on real images (1-1)", ("classifier",), (0,), _train_real,
          _files("real/model.keras")),
    Stage(2, "train-gan", "StyleGAN2 per class (1-2)", ("gan",), (0, 1), _train_gans,
          _files("stylegan2")),
    Stage(3, "generate", "generation (1-2)", ("generate",), (2,), _generate, _files("sgan_out")),
    Stage(4, "select", "selection by the real model (1-3)", ("select",), (1, 3), _select,
          _files("selected")),
    Stage(5, "train-synthetic", "classifier on synthetic images (1-4)", ("classifier", "synthetic"),
          (4,), _train_synthetic, _files("synthetic/model.keras")),
    Stage(6, "test", "test both models (2)", (), (0, 1, 5), _test,
          _files("real/test/predictions.csv", "synthetic/test/predictions.csv")),
    Stage(7, "compare", "McNemar and DeLong (3)", ("compare",), (6,), _compare,
          _files("stats/stats.json")),
)


# --- records and resume ---------------------------------------------------------------------

def outputs_hash(stage: Stage, work: Path) -> str | None:
    """A digest of the stage's outputs; None when any is missing.

    Single files are hashed by content; folders by the names and sizes of their files
    (reading tens of thousands of generated images on every resume would be slow).
    """
    h = hashlib.sha256()
    for path in stage.outputs(work):
        if path.is_file():
            h.update(f"{path.relative_to(work)}:{sha256_file(path)}".encode())
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not files:
                return None
            for p in files:
                h.update(f"{p.relative_to(work)}:{p.stat().st_size}\n".encode())
        else:
            return None
    return h.hexdigest()[:16]


def record_path(work: Path, stage: Stage) -> Path:
    return work / "records" / f"{stage.number}-{stage.name}.json"


def read_record(work: Path, stage: Stage) -> dict[str, Any] | None:
    path = record_path(work, stage)
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError):
        return None  # an unreadable record means the stage runs again


def expected_keys(cfg: Config, work: Path, stage: Stage) -> tuple[str, str]:
    """(config hash, inputs hash) the stage's record must carry to be skipped."""
    sections = {s: dataclasses.asdict(getattr(cfg, s)) for s in stage.sections}
    upstream = []
    for number in stage.depends:
        rec = read_record(work, STAGES[number])
        upstream.append(rec["outputs_hash"] if rec else None)
    return config_hash(sections), config_hash(upstream)


def is_current(cfg: Config, work: Path, stage: Stage) -> bool:
    """Whether the stage's record matches the config, its inputs and its outputs on disk."""
    rec = read_record(work, stage)
    if rec is None:
        return False
    cfg_hash, in_hash = expected_keys(cfg, work, stage)
    return (rec.get("config_hash") == cfg_hash and rec.get("inputs_hash") == in_hash
            and rec.get("outputs_hash") == outputs_hash(stage, work))


def validate_paths(cfg: Config) -> None:
    """Refuse a config naming a path that does not exist, before any work starts."""
    if cfg.data.source != "phantom" and not Path(cfg.data.source).exists():
        raise BusganError(f"config key 'data.source': {cfg.data.source} does not exist; "
                          "give an image folder or 'phantom'")
    w = cfg.classifier.weights
    if w not in ("imagenet", "none") and not Path(w).is_file():
        raise BusganError(f"config key 'classifier.weights': file {w} not found; "
                          "give a local weights file, 'imagenet' or 'none'")


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def run_pipeline(cfg: Config, work: Path, only: int | None = None, until: int | None = None,
                 report: bool = True) -> dict[int, dict[str, Any]]:
    """Run (or resume) the stages; returns each run or skipped stage's record."""
    validate_paths(cfg)
    work.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(work)  # only one `busgan run` may use a work directory at a time
    last = len(STAGES) - 1 if until is None else until
    chosen = [s for s in STAGES if (only is None or s.number == only) and s.number <= last]
    if only is not None:
        for number in STAGES[only].depends:
            if not is_current(cfg, work, STAGES[number]):
                raise BusganError(f"stage {only} needs stage {number} ({STAGES[number].name}) first: "
                                  f"run `busgan run CONFIG --work {work} --until {number}`")
    previous = _previous_timings(work)
    start = time.monotonic()
    records: dict[int, dict[str, Any]] = {}
    for stage in chosen:
        elapsed = time.monotonic() - start
        remaining = [previous.get(s.name) for s in chosen if s.number >= stage.number]
        eta = (" · ETA " + _fmt(sum(remaining))) if all(r is not None for r in remaining) else ""  # type: ignore[arg-type]
        head = f"[busgan run] stage {stage.number + 1} of {len(STAGES)}: {stage.number} {stage.name} ({stage.title}) · elapsed {_fmt(elapsed)}{eta}"
        if is_current(cfg, work, stage):
            print(f"{head} · done before, skipped", flush=True)
            records[stage.number] = read_record(work, stage)  # type: ignore[assignment]
            continue
        print(head, flush=True)
        cfg_hash, in_hash = expected_keys(cfg, work, stage)
        t0 = time.monotonic()
        summary = stage.run(Context(cfg, work))
        seconds = time.monotonic() - t0
        out_hash = outputs_hash(stage, work)
        if out_hash is None:
            raise BusganError(f"stage {stage.number} ({stage.name}) finished without writing "
                              f"{', '.join(str(p) for p in stage.outputs(work))}")
        rec = {"stage": stage.number, "name": stage.name, "config_hash": cfg_hash,
               "inputs_hash": in_hash, "outputs_hash": out_hash, "summary": summary,
               "seconds": round(seconds, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "versions": software_versions()}
        write_json(record_path(work, stage), rec)
        records[stage.number] = rec
    total = time.monotonic() - start
    print(f"[busgan run] finished stages {', '.join(str(s.number) for s in chosen)} in {_fmt(total)}",
          flush=True)
    if report and all(read_record(work, s) for s in STAGES):
        from busgan.report import write_report
        md, html = write_report(cfg, work)
        print(f"[busgan run] report: {md} and {html}")
    return records


def _previous_timings(work: Path) -> dict[str, float]:
    """Stage durations from the records already there, for an ETA on reruns."""
    out = {}
    for stage in STAGES:
        rec = read_record(work, stage)
        if rec:
            out[stage.name] = float(rec.get("seconds", 0.0))
    return out
