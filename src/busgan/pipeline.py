"""`busgan run`: the paper's stages 0-7 in order, resumable.

Each stage writes ``records/NAME.json`` (see ``busgan.records``) when it finishes: the hash
of the config keys that decide its result (declared with each key, ``config.opt``), the
hashes of its inputs (the outputs of the stages it reads), the hash of its own outputs, a
summary, versions and timings. A stage whose record matches the
current config and inputs, and whose outputs are still there unchanged, is skipped, so the
same command after a crash or Ctrl-C continues where it stopped. Stages that run for long
(GAN training, generation, selection) also resume inside themselves.

Messages are logged (``busgan.pipeline``): stage headers at INFO, warnings at WARNING; the
report's path and the verdict, printed last, are results (``busgan.progress.RESULT``), so
``busgan run -q`` shows only warnings, errors and those.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busgan import CLASSES, layout
from busgan.config import Config, GanConfig, config_hash, result_values
from busgan.errors import BusganError
from busgan.fileio import read_json, remove_stale_temporaries, sha256_file
from busgan.lock import folder_lock
from busgan.progress import RESULT
from busgan.records import read_record, write_record
from busgan.versions import software_versions

log = logging.getLogger(__name__)
_gan_log = logging.getLogger("busgan.stylegan2.training").info  # ticks: hidden by --quiet


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: what decides its result, what it reads, what it writes.

    Its position in ``STAGES`` gives its number in headers; ``paper`` is its section in the
    paper and ``alias`` the paper's stage number (0-7), accepted by ``--only`` / ``--until``.
    """

    name: str
    title: str
    sections: tuple[str, ...]
    depends: tuple[str, ...]
    run: Callable[["Context"], dict[str, Any]]
    outputs: Callable[[Path], list[Path]]
    paper: str = ""
    alias: int | None = None
    enabled: Callable[[Config], bool] = lambda cfg: True  # e.g. an arm the config leaves out


@dataclass
class Context:
    """What a stage function gets: the config and the work directory."""

    cfg: Config
    work: Path
    key: str = ""  # identifies this run of the stage (config and inputs): resumable parts check it


# --- the stages -----------------------------------------------------------------------------

def _prepare(ctx: Context) -> dict[str, Any]:
    """Stage 0 with force (a changed config or source rebuilds data/): safe because prepare
    replaces only a data/ it wrote itself and refuses a source overlapping the work directory."""
    from busgan.data.prepare import prepare
    return prepare(ctx.cfg.data, ctx.work, force=True, phantom=ctx.cfg.phantom)


def _train_real(ctx: Context) -> dict[str, Any]:
    from busgan.classifier.train import train_classifier
    w = ctx.work
    model = train_classifier(layout.data_split(w, "train"), layout.data_split(w, "val"), w / layout.REAL,
                             ctx.cfg.classifier)
    return {"model": str(model.relative_to(w)), **_train_summary(w / layout.REAL)}


def class_gan_config(gan: GanConfig, cls: str) -> GanConfig:
    """The GAN config of one class: its own seed, derived from ``gan.seed`` and the class name,
    so the class GANs start from different weights and see different random numbers."""
    derived = zlib.crc32(f"{gan.seed}:{cls}".encode()) & 0xFFFFF  # step seeds keep 20 bits
    return dataclasses.replace(gan, seed=derived)


def resolution_mismatch(cfg: Config) -> str | None:
    """A warning when real images are prepared at another size than the GAN generates: the
    arms trained on generated (or oracle) images then see other images than they are tested on."""
    if cfg.data.size == cfg.gan.resolution:
        return None
    return (f"data.size = {cfg.data.size} but gan.resolution = {cfg.gan.resolution}: generated "
            f"images are resized to the classifier's input, real ones are not, so the synthetic "
            f"and oracle arms train on images unlike the test images (the paper uses one size for "
            f"both); set data.size = {cfg.gan.resolution} for a like-for-like comparison")


def _import_gans(ctx: Context) -> dict[str, Any]:
    """Stage train-gan with ``gan.import``: each class's NVlabs pickle becomes its snapshot."""
    from busgan.stylegan2.nvlabs_import import import_snapshot
    imports, best = ctx.cfg.gan.import_networks, {}
    for cls in CLASSES:
        snapshot = import_snapshot(Path(imports[cls]).expanduser(), ctx.work / layout.GANS / cls)
        best[cls] = str(Path(snapshot).relative_to(ctx.work))
    return {"best_snapshots": best, "imported": {c: imports[c] for c in CLASSES}}


def _train_gans(ctx: Context) -> dict[str, Any]:
    from busgan.stylegan2.training import train_gan
    if ctx.cfg.gan.import_networks:
        return _import_gans(ctx)
    warning = resolution_mismatch(ctx.cfg)
    if warning:
        log.warning(f"[busgan run] warning: {warning}")
    w, gan = ctx.work, ctx.cfg.gan
    train, val = layout.data_split(w, "train"), layout.data_split(w, "val")
    if gan.conditional:  # one GAN for both classes, on the folder of class folders
        snapshot = train_gan(train, layout.gan_dir(w, CLASSES[0], True), gan, resume=True,
                             feature_model=layout.real_model(w), floor_dir=val, log=_gan_log)
        rel = str(Path(snapshot).relative_to(w))
        return {"best_snapshots": {c: rel for c in CLASSES}, "conditional": True}
    best: dict[str, Any] = {}
    for cls in init_order(gan.init_from):
        source = gan.init_from.get(cls)
        init = None if source is None else (layout.gan_dir(w, source, False) if source in CLASSES
                                            else Path(source).expanduser())
        snapshot = train_gan(train / cls, layout.gan_dir(w, cls, False), class_gan_config(gan, cls),
                             resume=True, feature_model=layout.real_model(w), floor_dir=val / cls,
                             init_from=init, log=_gan_log)
        best[cls] = str(Path(snapshot).relative_to(w))
    return {"best_snapshots": best, **({"init_from": dict(gan.init_from)} if gan.init_from else {})}


def init_order(init_from: dict[str, str]) -> list[str]:
    """The classes in training order: one started from another class's GAN comes after it."""
    return sorted(CLASSES, key=lambda c: init_from.get(c) in CLASSES)


def _generate(ctx: Context) -> dict[str, Any]:
    """Generate and select in one pass (``generate_select``: every image scored in memory, the
    accepted ones written to sgan_out/, the selection to selected/): ``n_per_class`` images per
    class; with ``generate.max_per_class`` go on in chunks until each class has the accepted
    images the synthetic arm needs (``per_class x rounds``) or reaches the cap."""
    from busgan.generate_select import generate_and_select
    w, g, syn = ctx.work, ctx.cfg.generate, ctx.cfg.synthetic
    quota, cap = syn.per_class * syn.rounds, max(g.max_per_class, g.n_per_class)
    wanted = {cls: g.n_per_class for cls in CLASSES}
    while True:
        summary = generate_and_select(
            layout.real_model(w), {c: layout.gan_dir(w, c, ctx.cfg.gan.conditional) for c in CLASSES},
            {c: w / layout.GENERATED / c for c in CLASSES}, w / layout.SELECTED,
            {c: range(1, wanted[c] + 1) for c in CLASSES}, g.truncation, g.batch_size, g.format,
            ctx.cfg.select)
        if cap == g.n_per_class:
            return {"generated": wanted, "quota": quota, "cap": cap, "independence": _independence(ctx)}
        accepted = {c: v["accepted"] for c, v in summary.items()}
        short = {c: n for c, n in wanted.items() if accepted.get(c, 0) < quota and n < cap}
        if not short:
            return {"generated": wanted, "accepted": accepted, "quota": quota, "cap": cap,
                    "quota_reached": all(accepted.get(c, 0) >= quota for c in CLASSES),
                    "independence": _independence(ctx)}
        for c, n in short.items():  # enough for the quota at the acceptance rate seen, +10%
            rate = max(accepted.get(c, 0), 1) / n
            wanted[c] = min(cap, max(2 * n, int(1.1 * quota / rate) + 1))
        log.info(f"[busgan run] accepted {', '.join(f'{accepted.get(c, 0)} {c}' for c in CLASSES)} of {quota} "
                 f"needed per class: generating up to {', '.join(f'{wanted[c]} {c}' for c in CLASSES)} "
                 f"(cap {cap} per class)")


def _independence(ctx: Context) -> dict[str, Any]:
    """Same-seed images of the two class GANs against random real pairs (warned when too alike)."""
    from busgan.stylegan2.independence import paired_correlations
    result = paired_correlations(ctx.work / layout.GENERATED, layout.data_split(ctx.work, "train"))
    if result.get("warning"):
        log.warning(f"[busgan run] warning: same-seed images of the two class GANs correlate at a median "
                    f"of {result['generated_median']:.3f}, above the 99th percentile of real benign-"
                    f"malignant pairs ({result['real_p99']:.3f}): the class GANs make similar pictures")
    return result


def _select(ctx: Context) -> dict[str, Any]:
    from busgan.classifier.select import select_images
    from busgan.generate_select import finish_selection, is_fused
    model, selected = layout.real_model(ctx.work), ctx.work / layout.SELECTED
    if is_fused(selected):  # the generate stage scored every image: only the rule is applied
        return finish_selection(model, selected, ctx.cfg.select)
    return select_images(model, ctx.work / layout.GENERATED, selected, ctx.cfg.select)


def _audit(ctx: Context) -> dict[str, Any]:
    from busgan.audit import audit_work
    return audit_work(ctx.cfg, ctx.work)


def _arm_stage(fn_name: str) -> Callable[[Context], dict[str, Any]]:
    """A stage running ``busgan.arms.<fn_name>(cfg, work, key)`` (imported when it runs)."""
    def run(ctx: Context) -> dict[str, Any]:
        from busgan import arms
        return getattr(arms, fn_name)(ctx.cfg, ctx.work, ctx.key)
    return run


def _efficiency(ctx: Context) -> dict[str, Any]:
    from busgan.efficiency import data_efficiency
    return data_efficiency(ctx.cfg, ctx.work, ctx.key)


def _compare(ctx: Context) -> dict[str, Any]:
    from busgan.arms import enabled_arms, replicate_count
    from busgan.stats.verdict import write_verdict
    k = replicate_count(ctx.cfg)
    arms = {arm: [layout.arm_predictions(ctx.work, arm, i) for i in range(1, k + 1)]
            for arm in enabled_arms(ctx.cfg)}
    verdict = write_verdict(arms, ctx.work / layout.STATS, ctx.cfg.compare)
    return {"primary": verdict["primary"]["decision"], "aucs": verdict["aucs"],
            "warnings": verdict["warnings"]}


def _oracle_on(cfg: Config) -> bool:
    from busgan.arms import oracle_enabled
    return oracle_enabled(cfg)


def _train_summary(out: Path) -> dict[str, Any]:
    record = out / "train.json"
    if not record.is_file():
        return {}
    data = read_json(record)
    keep = ("counts", "val_dir", "epochs_run", "best_epoch", "val_loss", "val_auc", "seconds")
    return {k: data[k] for k in keep if k in data}


def _files(*names: str) -> Callable[[Path], list[Path]]:
    """The stage's output files or folders, relative to the work directory."""
    return lambda work: [work / n for n in names]


_ARM_KEYS = ("classifier", "synthetic", "compare.replicates")
STAGES: tuple[Stage, ...] = (
    Stage("prepare", "image preparation", ("phantom", "data"), (), _prepare,
          _files(f"{layout.DATA}/manifest.csv"), paper="0", alias=0),
    Stage("train-real", "classifier on real images", ("classifier",), ("prepare",), _train_real,
          _files(f"{layout.REAL}/{layout.MODEL_FILE}"), paper="1-1", alias=1),
    Stage("train-gan", "StyleGAN2 per class (or one conditional)", ("gan",), ("prepare", "train-real"), _train_gans,
          _files(layout.GANS), paper="1-2", alias=2),
    Stage("generate", "generation (to the synthetic arm's quota)",
          ("generate", "select", "synthetic.per_class", "synthetic.rounds"), ("train-gan", "train-real"),
          _generate, _files(layout.GENERATED), paper="1-2", alias=3),
    Stage("select", "selection by the real model", ("select",), ("train-real", "generate"),
          _select, _files(layout.SELECTED), paper="1-3", alias=4),
    # Its output is the exclusion list alone (a header unless audit.policy = "exclude"), so a
    # rerun of the audit under "report" leaves the arms that depend on it alone.
    Stage("audit", "memorization audit: generated images against the training images",
          ("audit", "data.near_duplicate_bits"), ("prepare", "train-real", "generate", "select"), _audit,
          _files(f"{layout.AUDIT}/{layout.EXCLUDED_FILE}"), enabled=lambda cfg: cfg.audit.enabled),
    Stage("arm-synthetic", "classifier on synthetic images, each replicate", _ARM_KEYS,
          ("prepare", "select", "audit"), _arm_stage("train_synthetic_arm"), _files(f"{layout.ARMS}/{layout.SYNTHETIC_ARM}"),
          paper="1-4", alias=5),
    Stage("arm-real", "classifier on real images, each replicate", _ARM_KEYS, ("prepare", "train-real"),
          _arm_stage("train_real_arm"), _files(f"{layout.ARMS}/{layout.REAL_ARM}")),
    Stage("arm-real+synthetic", "classifier on real plus synthetic images, each replicate", _ARM_KEYS,
          ("prepare", "select", "audit"), _arm_stage("train_combined_arm"), _files(f"{layout.ARMS}/{layout.COMBINED_ARM}"),
          enabled=lambda cfg: cfg.arms.real_plus_synthetic),
    Stage("oracle-images", "fresh phantom images on the generated images' path",
          ("phantom", "data", "select", "gan.resolution", "gan.channels", "generate.n_per_class"),
          ("prepare", "train-real"), _arm_stage("make_oracle_images"), _files(f"{layout.ORACLE}/selected"),
          enabled=_oracle_on),
    Stage("arm-oracle", "classifier on the oracle's images, each replicate", _ARM_KEYS,
          ("prepare", "oracle-images"), _arm_stage("train_oracle_arm"), _files(f"{layout.ARMS}/{layout.ORACLE_ARM}"),
          enabled=_oracle_on),
    Stage("test", "every arm on the real test images",
          ("compare.replicates", "arms.real_plus_synthetic", "arms.oracle"),
          ("prepare", "arm-real", "arm-synthetic", "arm-real+synthetic", "arm-oracle"),
          _arm_stage("test_arms"), _files(layout.EVALUATION), paper="2", alias=6),
    Stage("efficiency", "data-efficiency curve: fewer real images, with and without synthetic",
          (*_ARM_KEYS, "arms.efficiency"), ("prepare", "select", "audit", "test"), _efficiency,
          _files(f"{layout.EFFICIENCY}/efficiency.csv"), enabled=lambda cfg: bool(cfg.arms.efficiency)),
    Stage("compare", "the pre-specified verdict, and DeLong and McNemar per replicate", ("compare",),
          ("test",), _compare, _files(f"{layout.STATS}/stats.json"), paper="3", alias=7),
)


def stage_named(key: str | int) -> Stage:
    """The stage called ``key``, or whose paper number (alias) it is; refused with the choices."""
    for stage in STAGES:
        if str(key) == stage.name or (stage.alias is not None and str(key) == str(stage.alias)):
            return stage
    raise BusganError(f"unknown stage {key!r}; choose one of: {stage_choices()}")


def stage_choices() -> str:
    """The stage names with their paper numbers, for help texts and errors."""
    return ", ".join(s.name if s.alias is None else f"{s.name} ({s.alias})" for s in STAGES)


def stage_header(stage: Stage) -> str:
    """E.g. "[4/8] generate (paper 1-2)": position in the stage list, name, paper section."""
    position = STAGES.index(stage) + 1
    return f"[{position}/{len(STAGES)}] {stage.name}" + (f" (paper {stage.paper})" if stage.paper else "")


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


def _section_values(cfg: Config, name: str) -> Any:
    """A section's result-deciding values, or one key's value for "section.key"."""
    section, _, key = name.partition(".")
    values = result_values(getattr(cfg, section))
    return values[key] if key else values


def expected_keys(cfg: Config, work: Path, stage: Stage) -> tuple[str, str]:
    """(config hash, inputs hash) the stage's record must carry to be skipped."""
    sections = {s: _section_values(cfg, s) for s in stage.sections}
    upstream = []
    for name in stage.depends:
        if not stage_named(name).enabled(cfg):
            continue
        rec = read_record(work, name)
        upstream.append(rec["outputs_hash"] if rec else None)
    return config_hash(sections), config_hash(upstream)


def is_current(cfg: Config, work: Path, stage: Stage) -> bool:
    """Whether the stage's record matches the config, its inputs and its outputs on disk."""
    rec = read_record(work, stage.name)
    if rec is None:
        return False
    cfg_hash, in_hash = expected_keys(cfg, work, stage)
    return (rec.get("config_hash") == cfg_hash and rec.get("inputs_hash") == in_hash
            and rec.get("outputs_hash") == outputs_hash(stage, work))


def validate_paths(cfg: Config, work: Path | None = None) -> None:
    """Refuse a config naming a path that does not exist, or (given ``work``) a source folder
    and work directory inside one another, before any work starts."""
    phantom = cfg.data.source.strip().lower() == "phantom"
    if not phantom and not Path(cfg.data.source).expanduser().exists():
        raise BusganError(f"config key 'data.source': {cfg.data.source} does not exist; "
                          "give an image folder or 'phantom'")
    if not phantom and work is not None:
        from busgan.data.prepare import check_apart
        check_apart(Path(cfg.data.source), work)
    imports = cfg.gan.import_networks
    if imports:
        if sorted(imports) != sorted(CLASSES):
            raise BusganError(f"config key 'gan.import': give one NVlabs pickle per class, e.g. import = "
                              f"{{ benign = \"benign.pkl\", malignant = \"malignant.pkl\" }} (got: "
                              f"{', '.join(sorted(imports)) or 'none'})")
        for cls, pkl in imports.items():
            if not Path(pkl).expanduser().is_file():
                raise BusganError(f"config key 'gan.import': {cls} network {pkl} not found; give the "
                                  "path of a network-snapshot-*.pkl")
    _check_init_from(cfg)
    w = cfg.classifier.weights
    if w not in ("imagenet", "none") and not Path(w).is_file():
        raise BusganError(f"config key 'classifier.weights': file {w} not found; "
                          "give a local weights file, 'imagenet' or 'none'")


def _check_init_from(cfg: Config) -> None:
    """gan.init_from: each class at most once, from the other class or an existing snapshot."""
    init = cfg.gan.init_from
    example = 'init_from = { malignant = "benign" }'
    if init and (cfg.gan.conditional or cfg.gan.import_networks):
        raise BusganError("config key 'gan.init_from': only for GANs trained per class (not with "
                          "gan.conditional or gan.import); remove it")
    for cls, source in init.items():
        if cls not in CLASSES:
            raise BusganError(f"config key 'gan.init_from': {cls!r} is not a class; give e.g. {example}")
        if source == cls or (source in CLASSES and init.get(source) in CLASSES):
            raise BusganError(f"config key 'gan.init_from': {cls} from {source} is circular; start one "
                              f"class from the other (e.g. {example}), not both")
        if source not in CLASSES and not Path(source).expanduser().exists():
            raise BusganError(f"config key 'gan.init_from': {cls} starts from {source}, which does not "
                              "exist; give the other class's name, a snapshot-*.npz or a train-gan folder")


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _chosen(cfg: Config, only: str | int | None, until: str | int | None) -> list[Stage]:
    if only is not None:
        stage = stage_named(only)
        if not stage.enabled(cfg):
            raise BusganError(f"stage {stage.name} is switched off by this config (see [arms])")
        return [stage]
    last = len(STAGES) if until is None else STAGES.index(stage_named(until)) + 1
    return [s for s in STAGES[:last] if s.enabled(cfg)]


def run_pipeline(cfg: Config, work: Path, only: str | int | None = None,
                 until: str | int | None = None, report: bool = True) -> dict[str, dict[str, Any]]:
    """Run (or resume) the stages; returns each run or skipped stage's record, by name.

    ``only`` / ``until``: a stage name or the paper's stage number (see ``stage_named``).
    """
    validate_paths(cfg, work)
    chosen = _chosen(cfg, only, until)
    with folder_lock(work):
        return _run_locked(cfg, work, chosen, only is not None, report)


def _run_locked(cfg: Config, work: Path, chosen: list[Stage], only: bool,
                report: bool) -> dict[str, dict[str, Any]]:
    remove_stale_temporaries(work)  # safe: the lock keeps every other busgan process out
    if only:
        for name in chosen[0].depends:
            if stage_named(name).enabled(cfg) and not is_current(cfg, work, stage_named(name)):
                raise BusganError(f"stage {chosen[0].name} needs stage {name} first: "
                                  f"run `busgan run CONFIG --work {work} --until {name}`")
    previous = _previous_timings(work)
    start = time.monotonic()
    records: dict[str, dict[str, Any]] = {}
    for i, stage in enumerate(chosen):
        remaining = [previous.get(s.name) for s in chosen[i:]]
        eta = "" if None in remaining else " · ETA " + _fmt(sum(r for r in remaining if r is not None))
        head = f"[busgan run] {stage_header(stage)}: {stage.title} · elapsed {_fmt(time.monotonic() - start)}{eta}"
        current = read_record(work, stage.name) if is_current(cfg, work, stage) else None
        if current is not None:
            log.info(f"{head} · done before, skipped")
            records[stage.name] = current
            continue
        log.info(head)
        records[stage.name] = _run_stage(cfg, work, stage)
    log.info(f"[busgan run] finished {', '.join(s.name for s in chosen)} in {_fmt(time.monotonic() - start)}")
    if report and all(read_record(work, s.name) for s in STAGES if s.enabled(cfg)):
        from busgan.report import write_report
        md, html = write_report(cfg, work)
        log.info(f"[busgan run] report: {md} and {html}", extra=RESULT)
    verdict = work / layout.STATS / "stats.md"
    if any(s.name == "compare" for s in chosen) and verdict.is_file():  # last: what the run was for
        log.info("\n" + verdict.read_text(encoding="utf-8").rstrip("\n"), extra=RESULT)
    return records


def _run_stage(cfg: Config, work: Path, stage: Stage) -> dict[str, Any]:
    """Run one stage and write its record (only once its outputs are all there)."""
    cfg_hash, in_hash = expected_keys(cfg, work, stage)
    t0 = time.monotonic()
    summary = stage.run(Context(cfg, work, key=f"{cfg_hash}-{in_hash}"))
    seconds = time.monotonic() - t0
    out_hash = outputs_hash(stage, work)
    if out_hash is None:
        raise BusganError(f"stage {stage.name} finished without writing "
                          f"{', '.join(str(p) for p in stage.outputs(work))}")
    rec = {"stage": stage.name, "config_hash": cfg_hash, "inputs_hash": in_hash,
           "outputs_hash": out_hash, "summary": summary, "seconds": round(seconds, 2),
           "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": software_versions()}
    write_record(work, stage.name, rec)
    return rec


def _previous_timings(work: Path) -> dict[str, float]:
    """Stage durations from the records already there, for an ETA on reruns."""
    out = {}
    for stage in STAGES:
        rec = read_record(work, stage.name)
        if rec:
            out[stage.name] = float(rec.get("seconds", 0.0))
    return out
