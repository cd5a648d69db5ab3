"""Stages 3 and 4 in one pass: each batch rendered, scored in memory, only its kept images written.

Why: writing every generated image and reading each back to score it bound both stages to the
CPU. Here each batch is rendered on the device while CPU threads convert it to uint8 and resize
it exactly as the file loader would (``select.classifier_input``: the classifier gets the file
path's inputs bit for bit, so it makes the same decisions), the classifier scores it, and only
the images the rule accepts are encoded, into the generated folder. The first ``SHOWN`` seeds of
each class are written whatever their score: the independence check pairs them and the report
shows them, as before.

The selection folder is the one ``busgan select`` writes (kept images per class, scores.csv
with every image rendered, written or not, and select.json). Scores are saved as they come, so
a rerun renders only the seeds not yet scored, and accepted ones whose file is missing; scores
are dropped for a class whose generator, psi or format changed, and all of them when the
classifier did.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from busgan import CLASSES
from busgan.classifier import select
from busgan.classifier.model import input_size, load_classifier
from busgan.config import SelectConfig
from busgan.errors import BusganError
from busgan.fileio import read_json, sha256_file, write_json
from busgan.progress import progress
from busgan.stylegan2 import generate as gen
from busgan.stylegan2.independence import MAX_PAIRS

log = logging.getLogger(__name__)

SHOWN = MAX_PAIRS
"""Seeds of each class (the first ones asked for) written whatever their score."""
RECORD, SCORES = "select.json", "scores.csv"


def _label(rel: str) -> int:
    return CLASSES.index(rel.split("/", 1)[0])


def is_fused(out_dir: Path) -> bool:
    """Whether ``out_dir`` is a selection made by ``generate_and_select``."""
    try:
        record = read_json(Path(out_dir) / RECORD)
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and isinstance(record.get("generators"), dict)


def _prepare(images: Any, n: int, size: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A worker's part: uint8 pixels of the batch's first ``n`` rows and their classifier inputs,
    padded to the fixed batch size (one compiled scoring program)."""
    pixels = gen.as_uint8(images)[:n]
    x = np.stack([select.classifier_input(im, size) for im in pixels])
    if n < batch_size:
        x = np.concatenate([x, np.repeat(x[-1:], batch_size - n, axis=0)])
    return pixels, x


def _save_many(items: list[tuple[int, np.ndarray]], folder: Path, fmt: str) -> None:
    for seed, image in items:
        gen.save_image(folder / gen.seed_filename(seed, fmt), image)


class _Run:
    """The scores of one fused run and where they are saved."""

    def __init__(self, out_dir: Path, rows: list[str], scores: dict[str, np.ndarray]) -> None:
        self.path = out_dir / SCORES
        self.rows, self.scores = rows, scores
        self.unsaved = 0

    def add(self, rel: str, probs: np.ndarray) -> None:
        self.scores[rel] = probs
        self.unsaved += 1
        if self.unsaved >= select.CHUNK:
            self.save()

    def save(self) -> None:
        select.write_scores(self.path, self.rows, np.array([_label(r) for r in self.rows]), self.scores)
        self.unsaved = 0


def _render_class(cls: str, snapshot: Path, universe: list[tuple[int, str]], folder: Path, run: _Run,
                  model: Any, truncation: float, batch_size: int, fmt: str, cfg: SelectConfig,
                  pool: gen.WorkerPool, depth: int) -> None:
    """Render, score and write the seeds of one class that need it."""
    c = CLASSES.index(cls)
    present = {p.name for p in folder.iterdir()}

    def writes(index: int, probs: np.ndarray) -> bool:
        return index < SHOWN or select.accepts(probs, c, cfg)

    todo = [(i, s, rel) for i, (s, rel) in enumerate(universe)
            if rel not in run.scores or (writes(i, run.scores[rel]) and rel.split("/", 1)[1] not in present)]
    bar = progress(total=len(universe), desc=f"generate+select {cls}", unit="img")
    bar.update(len(universe) - len(todo))
    size = input_size(model)
    pending: collections.deque = collections.deque()

    def consume() -> None:
        items, future = pending.popleft()
        pixels, x = future.result()
        probs = np.asarray(model.predict_on_batch(x), np.float64)[:len(items)]
        keep = []
        for (i, s, rel), image, p in zip(items, pixels, probs):
            run.add(rel, p)
            if writes(i, p):
                keep.append((s, image))
            elif rel.split("/", 1)[1] in present:  # written by a run that kept it (another model)
                (folder / rel.split("/", 1)[1]).unlink(missing_ok=True)
        if keep:
            pool.submit(_save_many, keep, folder, fmt)
        bar.update(len(items))

    try:
        render = gen.snapshot_device_renderer(snapshot, truncation, image_class=cls) if todo else None
        for start in range(0, len(todo), batch_size):
            items = todo[start:start + batch_size]
            images = render(gen.padded([s for _, s, _ in items], batch_size))  # type: ignore[misc]
            pending.append((items, pool.submit(_prepare, images, len(items), size, batch_size)))
            if len(pending) > depth:  # the device renders ahead while this batch is scored
                consume()
        while pending:
            consume()
    finally:
        bar.close()


def generate_and_select(model_path: Path, networks: dict[str, Path], generated: dict[str, Path],
                        out_dir: Path, seeds: dict[str, Sequence[int]], truncation: float,
                        batch_size: int, fmt: str, cfg: SelectConfig,
                        workers: int | None = None) -> dict[str, Any]:
    """Generate the seeds of each class in ``networks`` into ``generated[class]`` and select them
    into ``out_dir`` in one pass; returns ``busgan select``'s per-class summary.

    ``networks``: a snapshot or train-gan folder per class. Classes not given keep their earlier
    scores in ``out_dir`` (one class per ``busgan generate --select`` run works).
    """
    if fmt not in gen.FORMATS:
        raise BusganError(f"format {fmt!r}: choose one of {', '.join(gen.FORMATS)}")
    if batch_size < 1:
        raise BusganError(f"batch size {batch_size}: must be at least 1")
    gen.check_truncation(truncation)
    model_path, out_dir = Path(model_path), Path(out_dir)
    generated = {c: Path(generated[c]) for c in networks}
    snapshots = {c: gen.resolve_network(n) for c, n in networks.items()}
    made = {c: gen.made_by(snapshots[c], truncation, fmt, image_class=c) for c in networks}
    written: set[str] = set()
    for c in networks:  # refuse a foreign --out before anything is written
        written |= select.check_out(out_dir, generated[c])
    model = load_classifier(model_path)
    model_hash = sha256_file(model_path)
    record_path = out_dir / RECORD
    previous = read_json(record_path) if record_path.is_file() else {}
    same_model = previous.get("model_sha256") == model_hash
    old = select.read_scores(out_dir / SCORES) if same_model else {}
    old_generators = previous.get("generators", {}) if same_model else {}
    dirs = {c: d for c, d in previous.get("generated_dirs", {}).items() if c in old_generators}
    dirs.update({c: str(generated[c]) for c in networks})

    universe = {c: [(int(s), f"{c}/{gen.seed_filename(int(s), fmt)}") for s in dict.fromkeys(seeds[c])]
                for c in networks}
    rows: list[str] = []
    scores: dict[str, np.ndarray] = {}
    for c in CLASSES:
        if c in networks:
            valid = old_generators.get(c) == made[c]
            rows += [rel for _, rel in universe[c]]
            scores.update({rel: old[rel] for _, rel in universe[c] if valid and rel in old})
        elif c in old_generators:  # another class, selected earlier with this model: kept
            kept_rows = [rel for rel in old if _label(rel) == CLASSES.index(c)]
            rows += kept_rows
            scores.update({rel: old[rel] for rel in kept_rows})
    for rel in written - set(scores):  # selected before, no longer scored: removed first
        (out_dir / rel).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(out_dir, rows, scores)
    run.save()  # before the record, so a crash never leaves stale scores under a new record
    for c in networks:
        gen.claim_output(generated[c], made[c])
    generators = {**{c: g for c, g in old_generators.items() if c in dirs}, **made}
    write_json(record_path, {"model_sha256": model_hash, "generators": generators, "generated_dirs": dirs})

    workers = workers or gen.default_workers()
    depth = max(2, workers)
    with gen.WorkerPool(workers, limit=2 * workers + 2) as pool:
        try:
            for c in networks:
                _render_class(c, snapshots[c], universe[c], generated[c], run, model, truncation,
                              batch_size, fmt, cfg, pool, depth)
        finally:
            run.save()  # what was scored survives an interruption
    for c in networks:
        folder = generated[c]
        gen.save_grid(folder, [s for s, _ in universe[c][:64]], fmt, folder.with_name(folder.name + "-grid.png"))
    return finish_selection(model_path, out_dir, cfg)


def finish_selection(model_path: Path, out_dir: Path, cfg: SelectConfig) -> dict[str, Any]:
    """Apply the rule to the scores of a fused selection (cheap: nothing is scored) and write
    its kept images, scores.csv and select.json as ``busgan select`` does."""
    model_path, out_dir = Path(model_path), Path(out_dir)
    record = read_json(out_dir / RECORD)
    if sha256_file(model_path) != record.get("model_sha256"):
        raise BusganError(f"{out_dir}: was scored by another classifier than {model_path}; run "
                          "the generate stage again (busgan run) to score with this one")
    dirs = {c: Path(d) for c, d in record["generated_dirs"].items()}
    scores = select.read_scores(out_dir / SCORES)
    rel = list(scores)
    labels = np.array([_label(r) for r in rel], dtype=np.int64)
    sources = [dirs[r.split("/", 1)[0]] / r.split("/", 1)[1] for r in rel]
    for r, label, src in zip(rel, labels, sources):
        if select.accepts(scores[r], int(label), cfg) and not src.is_file():
            raise BusganError(f"{src}: an accepted image is missing; run the same busgan run "
                              "(or busgan generate --select) again to write it")
    summary = select.apply_rule(rel, labels, scores, sources, out_dir, cfg, set(rel))
    write_json(out_dir / RECORD, {
        "stage": "select", "model": str(model_path), "model_sha256": record["model_sha256"],
        "generated_dir": str(next(iter(dirs.values())).parent) if dirs else "",
        "config": vars(cfg).copy(), "classes": summary, "generators": record["generators"],
        "generated_dirs": {c: str(d) for c, d in dirs.items()}})
    return summary
