"""Folder-per-class images streamed from disk in batches (``keras.utils.PyDataset``).

Only the file list lives in memory; each batch is decoded when a worker asks for it, so
memory does not grow with the number of images (the seed loaded everything into one array
and had to cap synthetic training at 14,000 images per class).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from sklearn.model_selection import train_test_split

from busgan import CLASSES
from busgan.errors import BusganError
from busgan.imaging import list_images, load_classifier_image



def scan_classes(root: Path, require_all: bool = True) -> tuple[list[Path], np.ndarray]:
    """Files and integer labels (order of ``busgan.CLASSES``) of a folder-per-class tree.

    Unknown class folders, missing or empty class folders are refused, naming the folder.
    With ``require_all=False`` a missing class folder is allowed (generated sets may hold one class).
    """
    root = Path(root)
    if not root.is_dir():
        raise BusganError(f"{root}: folder not found; expected {root}/{{{','.join(CLASSES)}}}/*.png "
                          "(run busgan prepare, or give the right folder)")
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [d for d in subdirs if d not in CLASSES]
    if unknown:
        raise BusganError(f"{root}: unknown class folder(s) {unknown}; the classes are "
                          f"{list(CLASSES)} (rename the folders or run busgan prepare)")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CLASSES):
        folder = root / name
        if not folder.is_dir():
            if require_all:
                raise BusganError(f"{folder}: class folder missing; put the {name} images there")
            continue
        found = list_images(folder)
        if not found:
            raise BusganError(f"{folder}: no images (.png, .bmp, .jpg); add images or remove the folder")
        files += found
        labels += [label] * len(found)
    if not files:
        raise BusganError(f"{root}: no class folders; expected {root}/{{{','.join(CLASSES)}}}/*.png")
    return files, np.asarray(labels, dtype=np.int64)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded, stratified (train, validation) split."""
    if not 0.0 < fraction < 1.0:
        raise BusganError(f"classifier.val_fraction: {fraction} must be between 0 and 1 (e.g. 0.1)")
    index = np.arange(len(labels))
    counts = np.bincount(labels, minlength=len(CLASSES))
    if counts.min() < 2:
        raise BusganError("training folder: each class needs at least 2 images to hold out a "
                          "validation split; add images or give --val DIR")
    n_val = max(len(CLASSES), int(round(fraction * len(labels))))
    train, val = train_test_split(index, test_size=n_val, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(val)


def sample_per_class(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of ``per_class`` images drawn at random (seeded) from each class.

    A class with fewer images contributes all of them.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(len(CLASSES)):
        idx = np.flatnonzero(labels == label)
        chosen.append(idx if len(idx) <= per_class else rng.choice(idx, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def load_image(path: Path | str, size: int) -> np.ndarray:
    """One image as float32 RGB pixel values 0-255, resized to ``size`` x ``size``.

    Not scaled: a busgan classifier scales its input itself (its ``preprocess`` layer).
    """
    return load_classifier_image(path, size)


def augment(image: np.ndarray, rng: np.random.Generator, shift: float, flip: bool) -> np.ndarray:
    """The seed's augmentation: random width/height shift (edges repeated) and horizontal flip."""
    h, w = image.shape[:2]
    dy = int(round(rng.uniform(-shift, shift) * h)) if shift > 0 else 0
    dx = int(round(rng.uniform(-shift, shift) * w)) if shift > 0 else 0
    if dy or dx:
        padded = np.pad(image, ((abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="edge")
        image = padded[abs(dy) - dy: abs(dy) - dy + h, abs(dx) - dx: abs(dx) - dx + w]
    if flip and rng.random() < 0.5:
        image = image[:, ::-1]
    return image


class ImageFolderDataset(keras.utils.PyDataset):
    """Batches of (images, one-hot labels), or images only when ``labels`` is None.

    Shuffling and augmentation are seeded by (seed, epoch, batch), so a run is repeatable
    whatever the number of workers.
    """

    def __init__(self, files: Sequence[Path | str], labels: np.ndarray | None, *, size: int,
                 batch_size: int, shuffle: bool = False, shift: float = 0.0, flip: bool = False,
                 seed: int = 0, workers: int = 1, use_multiprocessing: bool = False,
                 max_queue_size: int = 10) -> None:
        super().__init__(workers=max(1, workers), use_multiprocessing=use_multiprocessing and workers > 1,
                         max_queue_size=max_queue_size)
        self.files = [str(f) for f in files]
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.size = size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.shift = shift
        self.flip = flip
        self.seed = seed
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.files))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.files))

    def __len__(self) -> int:
        return math.ceil(len(self.files) / self.batch_size)

    def batch_indices(self, index: int) -> np.ndarray:
        """Positions in ``files`` of batch ``index`` in the current epoch."""
        return self.order[index * self.batch_size:(index + 1) * self.batch_size]

    def __getitem__(self, index: int):  # type: ignore[override]
        idx = self.batch_indices(index)
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        images = []
        for i in idx:
            image = load_image(self.files[i], self.size)
            if self.shift > 0 or self.flip:
                image = augment(image, rng, self.shift, self.flip)
            images.append(image)
        x = np.stack(images)
        if self.labels is None:
            return (x,)
        y = np.eye(len(CLASSES), dtype=np.float32)[self.labels[idx]]
        return x, y

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
