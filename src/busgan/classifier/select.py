"""Stage 4: keep the generated images that the real-trained classifier puts in their own class.

The paper's rule keeps an image when the argmax prediction is the class its generator was
trained on. Images are scored in chunks (bounded memory for any number of images) and the
scores are saved after each chunk, so a rerun scores only what is new. Scores are thrown
away when the model file changes.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from busgan import CLASSES
from busgan.classifier.dataset import list_images, scan_classes
from busgan.classifier.evaluate import predict_files
from busgan.classifier.model import load_classifier
from busgan.config import SelectConfig
from busgan.errors import BusganError
from busgan.fileio import TEMP_NAME, atomic_path, sha256_file, atomic_write_text, read_json, write_json
from busgan.progress import progress

log = logging.getLogger(__name__)

CHUNK = 2048
"""Images scored between two saves of scores.csv."""
SCORE_COLUMNS = ["file", "class", "pred_label", *(f"prob_{c}" for c in CLASSES), "kept"]


def read_scores(path: Path) -> dict[str, np.ndarray]:
    """Saved probabilities by relative file name (empty when there is no file)."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: tolerate Excel's BOM
            return {row["file"]: np.array([float(row[f"prob_{c}"]) for c in CLASSES])
                    for row in csv.DictReader(f)}
    except (KeyError, ValueError, TypeError, csv.Error):  # UnicodeDecodeError is a ValueError
        raise BusganError(f"{path}: not a busgan scores file; delete it to score again") from None


def write_scores(path: Path, rel: list[str], labels: np.ndarray, scores: dict[str, np.ndarray],
                 kept: set[str] | None = None) -> None:
    """scores.csv: one row per scored image (kept = 1/0 once the rule has been applied)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(SCORE_COLUMNS)
    for r, label in zip(rel, labels):
        p = scores.get(r)
        if p is None:
            continue
        flag = "" if kept is None else int(r in kept)
        writer.writerow([r, CLASSES[label], CLASSES[int(np.argmax(p))], *(repr(float(v)) for v in p), flag])
    atomic_write_text(path, buf.getvalue())


def accepts(probs: np.ndarray, c: int, cfg: SelectConfig) -> bool:
    """The paper's rule: class ``c`` predicted (argmax), with at least the minimum probability."""
    return int(np.argmax(probs)) == c and probs[c] >= cfg.min_probability


def classifier_input(image: np.ndarray, size: int) -> np.ndarray:
    """A uint8 image (H, W, 1 or 3) as the file loader gives it after decoding its PNG:
    RGB, Pillow's bilinear resize to ``size``, float32 0-255 (``dataset.load_image``), so an
    image scored in memory gets the very inputs, bit for bit, it would get from its file."""
    from busgan.imaging import classifier_pixels
    return classifier_pixels(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image), size)


def choose(rel: list[str], labels: np.ndarray, scores: dict[str, np.ndarray], cfg: SelectConfig
           ) -> dict[int, list[int]]:
    """Indices kept per class: own class predicted, probability >= minimum, at most N."""
    rng = np.random.default_rng(cfg.seed)
    kept: dict[int, list[int]] = {}
    for c in range(len(CLASSES)):
        idx = [i for i in np.flatnonzero(labels == c) if accepts(scores[rel[i]], c, cfg)]
        if cfg.max_per_class > 0 and len(idx) > cfg.max_per_class:
            if cfg.keep == "top":
                idx = sorted(idx, key=lambda i: (-scores[rel[i]][c], rel[i]))[:cfg.max_per_class]
            else:
                idx = sorted(rng.choice(idx, cfg.max_per_class, replace=False).tolist())
        kept[c] = sorted(int(i) for i in idx)
    return kept


def place(src: Path, dst: Path, link: bool) -> None:
    """Copy (or hard-link) ``src`` to ``dst`` unless an identical-size file is there already."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        return
    with atomic_path(dst) as tmp:
        tmp.unlink()
        if link:
            try:
                os.link(src, tmp)
                return
            except OSError:
                pass
        shutil.copyfile(src, tmp)


def _is_selection(record: Path) -> bool:
    """Whether ``record`` is a select.json that busgan select wrote (its first write, always)."""
    try:
        rec = read_json(record)
    except (OSError, ValueError):
        return False
    return isinstance(rec, dict) and "model_sha256" in rec


def check_out(out_dir: Path, generated_dir: Path) -> set[str]:
    """The images (``class/name``) a previous selection recorded in ``out_dir``; refuse an
    ``out_dir`` that busgan select did not write, before any scoring.

    A selection overwrites select.json and scores.csv and removes kept images the rule no
    longer keeps, so it may run only in a new or empty folder or in one it wrote (select.json
    is written before anything else), and only there among images scores.csv records.
    """
    out, gen = out_dir.resolve(), generated_dir.resolve()
    if out == gen:
        raise BusganError(f"{out_dir}: the output folder is the generated folder (selection removes "
                          "images it does not keep there); give another --out")
    if out.is_relative_to(gen) or gen.is_relative_to(out):
        raise BusganError(f"{out_dir}: the output folder and the generated folder {generated_dir} are "
                          "inside one another; give an --out outside it")
    if out_dir.exists() and not out_dir.is_dir():
        raise BusganError(f"{out_dir}: is a file, not a folder; give another --out")
    if not out_dir.is_dir() or all(TEMP_NAME.match(p.name) for p in out_dir.iterdir()):
        return set()
    if not _is_selection(out_dir / "select.json"):
        raise BusganError(f"{out_dir}: is not empty and was not written by busgan select (no select.json); "
                          "give an empty or new --out")
    written = set(read_scores(out_dir / "scores.csv"))
    for name in CLASSES:
        for image in list_images(out_dir / name) if (out_dir / name).is_dir() else []:
            if f"{name}/{image.name}" not in written:
                raise BusganError(f"{image}: was not written by busgan select (not in scores.csv); "
                                  f"move it out of {out_dir / name} or give another --out")
    return written


def select_images(model_path: Path, generated_dir: Path, out_dir: Path, cfg: SelectConfig) -> dict:
    """Score ``generated_dir/{benign,malignant}`` and keep images by the configured rule.

    Writes ``out_dir/<class>/`` (kept images), ``out_dir/scores.csv`` (every image) and
    ``out_dir/select.json``; returns generated / accepted / kept counts and rates per class.
    ``out_dir`` must be new, empty or written by an earlier selection (see ``check_out``).
    """
    model_path, generated_dir, out_dir = Path(model_path), Path(generated_dir), Path(out_dir)
    written = check_out(out_dir, generated_dir)
    model = load_classifier(model_path)
    files, labels = scan_classes(generated_dir, require_all=False)
    rel = [f.relative_to(generated_dir).as_posix() for f in files]
    out_dir.mkdir(parents=True, exist_ok=True)
    record_path, scores_path = out_dir / "select.json", out_dir / "scores.csv"
    model_hash = sha256_file(model_path)
    previous = read_json(record_path) if record_path.is_file() else {}
    scores = read_scores(scores_path) if previous.get("model_sha256") == model_hash else {}
    write_json(record_path, {**previous, "model_sha256": model_hash})
    todo = [i for i, r in enumerate(rel) if r not in scores]
    if todo:
        bar = progress(total=len(todo), desc="scoring", unit="img")
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            probs = predict_files(model, [files[i] for i in chunk], cfg.batch_size)
            scores.update({rel[i]: p for i, p in zip(chunk, probs)})
            write_scores(scores_path, rel, labels, scores)
            bar.update(len(chunk))
        bar.close()
    summary = apply_rule(rel, labels, scores, files, out_dir, cfg, written)
    write_json(record_path, {"stage": "select", "model": str(model_path), "model_sha256": model_hash,
                             "generated_dir": str(generated_dir), "config": vars(cfg).copy(),
                             "classes": summary})
    return summary


def apply_rule(rel: list[str], labels: np.ndarray, scores: dict[str, np.ndarray], sources: list[Path],
               out_dir: Path, cfg: SelectConfig, written: set[str]) -> dict[str, Any]:
    """Keep by the rule: place the kept ``sources`` in ``out_dir/<class>/``, remove the images an
    earlier selection wrote (``written``) that are no longer kept, write scores.csv with the kept
    flags; return generated / accepted / kept counts and rates per class."""
    kept = choose(rel, labels, scores, cfg)
    summary: dict[str, Any] = {}
    for c, name in enumerate(CLASSES):
        n = int((labels == c).sum())
        accepted = sum(1 for i in np.flatnonzero(labels == c) if accepts(scores[rel[i]], c, cfg))
        if n == 0:
            continue
        dest = out_dir / name
        dest.mkdir(parents=True, exist_ok=True)
        wanted = {sources[i].name for i in kept[c]}
        for stale in list_images(dest):  # only images an earlier selection recorded writing
            if stale.name not in wanted and f"{name}/{stale.name}" in written:
                stale.unlink()
        for i in progress(kept[c], desc=f"writing {name}", unit="img"):
            place(sources[i], dest / sources[i].name, cfg.link)
        summary[name] = {"generated": n, "accepted": accepted, "kept": len(kept[c]),
                         "acceptance_rate": accepted / n}
        log.info("%s: %d generated, %d accepted (%.1f%%), %d kept in %s",
                 name, n, accepted, 100 * accepted / n, len(kept[c]), dest)
    write_scores(out_dir / "scores.csv", rel, labels, scores, {rel[i] for idx in kept.values() for i in idx})
    return summary
