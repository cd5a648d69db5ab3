"""Stages 1 and 5: train (or fine-tune) the classifier on a folder-per-class tree.

Settings follow the seed (Adam, categorical cross-entropy, early stopping and learning-rate
reduction on validation loss, or on validation AUC with ``classifier.monitor``), except that
validation is a real held-out split: the seed validated on images it also trained on.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
from sklearn.metrics import roc_auc_score

from busgan import CLASSES, __version__
from busgan.classifier.dataset import ImageFolderDataset, sample_per_class, scan_classes, stratified_split
from busgan.classifier.model import build_classifier, load_classifier
from busgan.classifier.plots import plot_learning_curve
from busgan.config import ClassifierConfig
from busgan.errors import BusganError
from busgan.fileio import atomic_path, atomic_write_text, write_json
from busgan.progress import progress

log = logging.getLogger(__name__)


class EpochProgress(keras.callbacks.Callback):
    """A tqdm bar per epoch (rate and ETA) and one summary line when the epoch ends."""

    def __init__(self, epochs: int, steps: int) -> None:
        super().__init__()
        self.epochs = epochs
        self.steps = steps
        self.bar: Any = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.bar = progress(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="batch")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.bar.update(1)
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs:
            self.bar.set_postfix({k: f"{float(v):.4g}" for k, v in logs.items()}, refresh=False)
        self.bar.close()


@contextlib.contextmanager
def dtype_policy(mixed: bool) -> Iterator[None]:
    """Build under mixed bfloat16 when asked, restoring the global policy afterwards."""
    previous = keras.config.dtype_policy()
    if mixed:
        keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def use_processes(loader: str) -> bool:
    """Worker processes, except under JAX in auto mode (forking its threaded runtime can deadlock)."""
    if loader == "auto":
        return keras.backend.backend() != "jax"
    return loader == "processes"


def make_datasets(train_dir: Path, val_dir: Path | None, cfg: ClassifierConfig,
                  per_class: int | None) -> tuple[ImageFolderDataset, ImageFolderDataset, dict[str, Any]]:
    """Training (shuffled, augmented) and validation streams, and their per-class counts."""
    files, labels = scan_classes(train_dir)
    if per_class:
        keep = sample_per_class(labels, per_class, cfg.seed)
        files, labels = [files[i] for i in keep], labels[keep]
    if val_dir is None:
        tr, va = stratified_split(labels, cfg.val_fraction, cfg.seed)
        vfiles, vlabels = [files[i] for i in va], labels[va]
        files, labels = [files[i] for i in tr], labels[tr]
    else:
        vfiles, vlabels = scan_classes(val_dir)
    from busgan.data.parallel import worker_count
    common = dict(size=cfg.input_size, batch_size=cfg.batch_size, workers=worker_count(cfg.workers),
                  use_multiprocessing=use_processes(cfg.loader))
    train = ImageFolderDataset(files, labels, shuffle=True, shift=cfg.shift, flip=cfg.flip,
                               seed=cfg.seed, **common)  # type: ignore[arg-type]
    val = ImageFolderDataset(vfiles, vlabels, **common)  # type: ignore[arg-type]
    counts = {"train": {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)},
              "val": {c: int((vlabels == i).sum()) for i, c in enumerate(CLASSES)}}
    return train, val, counts


def compile_model(model: keras.Model, cfg: ClassifierConfig) -> None:
    """A fresh Adam each time (the paper's cascade rounds restarted the optimizer). Named, so
    that the saved file does not depend on how many optimizers the process made before."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate, name="adam"),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy", keras.metrics.AUC(name="auc", multi_label=True, num_labels=len(CLASSES))],
        jit_compile=cfg.jit,
    )


def write_history(path: Path, history: dict[str, list[float]]) -> None:
    """Per-epoch metrics as CSV (epoch numbered from 1)."""
    keys = sorted(history)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["epoch", *keys])
    for e in range(len(history[keys[0]]) if keys else 0):
        writer.writerow([e + 1, *(repr(float(history[k][e])) for k in keys)])
    atomic_write_text(path, buf.getvalue())


def validation_auc(model: keras.Model, val: ImageFolderDataset) -> float:
    """Exact ROC AUC of the malignant probability on the validation set (scikit-learn)."""
    probs = model.predict(val, verbose=0)
    labels = val.labels if val.labels is not None else np.zeros(0)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, probs[:, 1]))


# Which way each classifier.monitor value improves: for the callbacks and for best_epoch alike.
MONITOR_MODE = {"val_loss": "min", "val_auc": "max"}


def best_epoch(history: dict[str, list[float]], monitor: str) -> int | None:
    """The epoch (from 1) that early stopping restored: the first best value of ``monitor``."""
    values = history.get(monitor)
    if not values:
        return None
    return int(np.argmin(values) if MONITOR_MODE[monitor] == "min" else np.argmax(values)) + 1


def train_classifier(train_dir: Path, val_dir: Path | None, out_dir: Path, cfg: ClassifierConfig,
                     init: Path | None = None, per_class: int | None = None) -> Path:
    """Train on ``train_dir`` and write ``out_dir/model.keras`` with its history and record.

    ``val_dir=None`` holds out a seeded stratified ``cfg.val_fraction`` of ``train_dir``.
    ``init`` fine-tunes an earlier busgan model (its weights and frozen layers) with a fresh
    optimizer; ``per_class`` draws that many images per class at random (seeded).
    """
    train_dir, out_dir = Path(train_dir), Path(out_dir)
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise BusganError("classifier.epochs and classifier.batch_size must be at least 1")
    train, val, counts = make_datasets(train_dir, None if val_dir is None else Path(val_dir), cfg, per_class)
    keras.utils.set_random_seed(cfg.seed)
    with dtype_policy(cfg.mixed_precision):
        model = load_classifier(init, cfg.input_size) if init is not None else build_classifier(cfg)
    compile_model(model, cfg)
    mode = MONITOR_MODE[cfg.monitor]
    callbacks = [
        keras.callbacks.EarlyStopping(monitor=cfg.monitor, mode=mode, patience=cfg.patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor=cfg.monitor, mode=mode, factor=cfg.lr_factor,
                                          patience=cfg.lr_patience),
        EpochProgress(cfg.epochs, len(train)),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    history = model.fit(train, validation_data=val, epochs=cfg.epochs, callbacks=callbacks, verbose=0)
    seconds = time.time() - start
    val_auc = validation_auc(model, val)
    model_path = out_dir / "model.keras"
    with atomic_path(model_path, suffix=".keras") as tmp:
        model.save(tmp)
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    write_history(out_dir / "history.csv", hist)
    plot_learning_curve(hist, out_dir / "learning_curve.png")
    epochs_run = len(hist.get("loss", []))
    best = best_epoch(hist, cfg.monitor) or epochs_run
    write_json(out_dir / "train.json", {
        "stage": "train-classifier", "busgan": __version__, "keras": keras.__version__,
        "backend": keras.backend.backend(), "train_dir": str(train_dir),
        "val_dir": None if val_dir is None else str(val_dir),
        "val_source": "held out of train_dir" if val_dir is None else "val_dir",
        "init": None if init is None else str(init), "per_class": per_class,
        "classes": list(CLASSES), "counts": counts, "config": dataclasses.asdict(cfg),
        "epochs_run": epochs_run, "best_epoch": best, "val_auc": val_auc,
        "val_loss": hist["val_loss"][best - 1] if hist.get("val_loss") else None,
        "seconds": seconds, "images_per_second": sum(counts["train"].values()) * epochs_run / max(seconds, 1e-9),
        "model": model_path.name,
    })
    log.info("model: %s  (epochs %d, best %d, validation AUC %.4f)", model_path, epochs_run, best, val_auc)
    return model_path
