"""The memorization audit: does a generated image copy a training image (a patient's scan)?

For each class, the nearest training image of every selected (optionally every generated)
image is found in two spaces, both after the classifier's resize, with the real images first
brought to the generated images' resolution as the GAN saw them (see ``load_rgb``): pixels
(distances reported as the RMS grey-level difference) and the real-trained classifier's features
(``layout.FEATURE_LAYER``, the FID space); beside them the Hamming distance of perceptual
hashes, as ``prepare`` tests near-duplicates. The reference for "how close two different
patients' images come" is the same nearest distance from each validation image to the
training images: two disjoint real sets (prepare keeps near-duplicates within one split).

A generated image is a **near-copy** when its nearest-training distance in either space is
below the ``audit.threshold_quantile`` quantile of the real-vs-real distances (0: the
smallest, closer than any two different real images came), or its hash is within
``phash_bits`` of a training image's. As a statistic, not a flag: the share of generated
images closer than the real-vs-real 1st percentile, against the 1% an image drawn like the
real ones would give.

The search is exact and memory-bounded: float32 matrix products over blocks of queries
shortlist candidates, whose distances are then recomputed from the differences, summed in
float64 (no cancellation: an exact copy is at 0.0, and pixel distances are exact). Memory: the
training vectors plus one block of queries.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from busgan import CLASSES, layout
from busgan.config import Config
from busgan.errors import BusganError
from busgan.fileio import atomic_path, atomic_write_text, read_json, write_json

log = logging.getLogger(__name__)

SHORTLIST = 2
"""Candidates per query re-ranked by their exact distances: float32 products only have to put
the nearest among these, and their error is far below the gap between two different images
(where it is not, the two candidates are equally near to within that error)."""
BLOCK_BYTES = 64 << 20
"""About the memory of one block of queries (their float32 copy and their scores)."""
CLOSEST = 8
"""Closest generated/training pairs shown per class."""
REFERENCE_PERCENTILE = 1.0
"""The statistic's real-vs-real percentile: an image drawn like the real ones falls below it 1% of the time."""
SETS = ("selected", "generated")
CSV_COLUMNS = ("class", "set", "file", "pixel_distance", "pixel_nearest", "feature_distance",
               "feature_nearest", "phash_bits", "phash_nearest", "near_copy", "reasons")

FeatureFn = Callable[[np.ndarray], np.ndarray]
"""float32 RGB images (n, s, s, 3), values 0-255, at the classifier's input size -> (n, F)."""


# --- exact nearest neighbours ------------------------------------------------------------

class ExactIndex:
    """Exact Euclidean nearest neighbours among the rows of ``reference``, kept as given (uint8
    pixels stay uint8: their differences, and so the final distances, are exact)."""

    def __init__(self, reference: np.ndarray, block: int | None = None) -> None:
        ref = np.asarray(reference)
        if ref.ndim != 2 or len(ref) == 0:
            raise BusganError(f"nearest neighbours: need a non-empty (N, D) reference, got shape {ref.shape}")
        self.raw = ref
        # centred before the float32 products: smaller norms, smaller rounding error
        self.mean = ref.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.centred = ref.astype(np.float32) - self.mean
        self.sq = np.einsum("ij,ij->i", self.centred, self.centred)
        self.k = min(SHORTLIST, len(ref))
        # large blocks keep the matrix product efficient; the budget keeps memory bounded
        self.block = block or int(np.clip(BLOCK_BYTES // (4 * (ref.shape[1] + len(ref))), 16, 4096))

    def query(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(squared distance, reference index) of each query row's nearest reference row;
        ties go to the lowest index."""
        q_all = np.asarray(queries)
        if q_all.ndim != 2 or q_all.shape[1] != self.raw.shape[1]:
            raise BusganError(f"nearest neighbours: queries of shape {q_all.shape} against a "
                              f"reference of width {self.raw.shape[1]}")
        d2 = np.empty(len(q_all), np.float64)
        idx = np.empty(len(q_all), np.int64)
        for start in range(0, len(q_all), self.block):
            q = q_all[start:start + self.block].astype(np.float32)
            # |q - r|^2 up to the row constant |q|^2, which does not change the ranking
            score = self.sq[None, :] - 2.0 * ((q - self.mean) @ self.centred.T)
            if self.k < score.shape[1]:
                short = np.sort(np.argpartition(score, self.k - 1, axis=1)[:, :self.k], axis=1)
            else:
                short = np.broadcast_to(np.arange(score.shape[1]), score.shape)
            exact = np.stack([self._exact(q, short[:, j]) for j in range(short.shape[1])], axis=1)
            best = np.argmin(exact, axis=1)  # candidates in index order: ties go to the lowest
            rows = np.arange(len(q))
            d2[start:start + len(q)] = exact[rows, best]
            idx[start:start + len(q)] = short[rows, best]
        return d2, idx

    def _exact(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Squared distances from each query to one candidate each, summed in float64."""
        diff = q - self.raw[rows].astype(np.float32)  # exact for uint8 pixels
        return np.einsum("nd,nd->n", diff, diff, dtype=np.float64)


def hamming_nearest(queries: np.ndarray, reference: np.ndarray, block: int = 4096
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(bits, index) of each 64-bit hash's nearest reference hash (ties: the lowest index)."""
    from busgan.data.duplicates import _popcount
    q, ref = np.asarray(queries, np.uint64), np.asarray(reference, np.uint64)
    bits, idx = np.empty(len(q), np.int64), np.empty(len(q), np.int64)
    for s in range(0, len(q), block):
        d = _popcount(q[s:s + block, None] ^ ref[None, :])
        idx[s:s + block] = np.argmin(d, axis=1)
        bits[s:s + block] = d[np.arange(len(d)), idx[s:s + block]]
    return bits, idx


# --- the images in the audit's spaces ----------------------------------------------------

@dataclass
class Embedding:
    """Images in the audit's spaces: pixels (uint8, flattened), features, perceptual hashes."""
    pixels: np.ndarray
    features: np.ndarray
    phash: np.ndarray

    def __len__(self) -> int:
        return len(self.phash)


def load_rgb(path: Path, size: int, via: int | None = None) -> np.ndarray:
    """One image as the classifier's loader feeds it (``classifier.dataset.load_image``: RGB,
    bilinear to ``size``, float32 0-255), without importing Keras (the audit's search and its
    benchmark run on NumPy alone).

    ``via``: first bring the image to this side as the GAN's loader does (centre crop, Lanczos),
    so that real images take the generated images' path: compared with sharper real images,
    a GAN's lower-resolution output would otherwise look closer to every training image than
    two real images are to each other (less speckle to differ by), a false memorization signal.
    """
    from busgan.imaging import load_classifier_image
    return load_classifier_image(path, size, via)


def _load(files: Sequence[Path], size: int, via: int | None = None) -> np.ndarray:
    return np.stack([load_rgb(f, size, via) for f in files])


def _features(fn: FeatureFn, rgb: np.ndarray, batch: int) -> np.ndarray:
    """Features in fixed-size batches (the last one padded), so a compiled model compiles once."""
    out = []
    for i in range(0, len(rgb), batch):
        x = rgb[i:i + batch]
        pad = batch - len(x)
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        out.append(np.asarray(fn(x), np.float32).reshape(batch, -1)[:batch - pad])
    return np.concatenate(out)


def embed(rgb: np.ndarray, fn: FeatureFn, gray: bool, batch: int) -> Embedding:
    """The spaces of a batch of loaded images (see ``_load``)."""
    from busgan.data.duplicates import perceptual_hash
    img = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    pixels = (img[..., :1] if gray else img).reshape(len(img), -1)
    hashes = np.array([perceptual_hash(Image.fromarray(im)) for im in img], np.uint64)
    return Embedding(pixels, _features(fn, rgb, batch), hashes)


def is_gray(rgb: np.ndarray) -> bool:
    """Whether every image has equal channels: then the pixel space is one channel (3x faster,
    and the RMS difference is the same)."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def embed_files(files: Sequence[Path], size: int, fn: FeatureFn, gray: bool, batch: int,
                via: int | None = None) -> Iterator[Embedding]:
    """The spaces of ``files``, a block of ``batch`` images at a time (bounded memory)."""
    for i in range(0, len(files), batch):
        yield embed(_load(files[i:i + batch], size, via), fn, gray, batch)


def _concat(parts: Sequence[Embedding]) -> Embedding:
    return Embedding(np.concatenate([p.pixels for p in parts]), np.concatenate([p.features for p in parts]),
                     np.concatenate([p.phash for p in parts]))


# --- nearest training images, thresholds and flags -----------------------------------------

@dataclass
class Neighbours:
    """Each query image's nearest training image in each space: distance and training index.
    Pixel distances are RMS differences in grey levels (Euclidean / sqrt(dimensions))."""
    pixel: np.ndarray
    pixel_index: np.ndarray
    feature: np.ndarray
    feature_index: np.ndarray
    bits: np.ndarray
    bits_index: np.ndarray

    @staticmethod
    def concat(parts: Sequence["Neighbours"]) -> "Neighbours":
        names = ("pixel", "pixel_index", "feature", "feature_index", "bits", "bits_index")
        if not parts:
            return Neighbours(*(np.zeros(0, np.int64 if n.endswith(("index", "bits")) else np.float64)
                                for n in names))
        return Neighbours(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))

    def __len__(self) -> int:
        return len(self.pixel)


class TrainingIndex:
    """The training images of one class, searchable in every space."""

    def __init__(self, train: Embedding) -> None:
        self.pixels = ExactIndex(train.pixels)
        self.features = ExactIndex(train.features)
        self.phash = train.phash
        self.dims = train.pixels.shape[1]

    def nearest(self, q: Embedding) -> Neighbours:
        p2, pi = self.pixels.query(q.pixels)
        f2, fi = self.features.query(q.features)
        bits, bi = hamming_nearest(q.phash, self.phash)
        return Neighbours(np.sqrt(p2 / self.dims), pi, np.sqrt(f2), fi, bits, bi)


@dataclass(frozen=True)
class Thresholds:
    """Below ``pixel`` or ``feature``, or within ``bits``: a near-copy. ``*_p1``: the statistic's cut."""
    pixel: float
    feature: float
    bits: int
    pixel_p1: float
    feature_p1: float


def thresholds(reference: Neighbours, quantile: float, bits: int, scale: float = 1.0) -> Thresholds:
    """The near-copy thresholds from the real-vs-real nearest distances (``scale`` x their
    ``quantile``)."""
    if len(reference) == 0:
        raise BusganError("memorization audit: no real-vs-real reference (no validation image)")
    q = float(quantile)
    return Thresholds(scale * float(np.quantile(reference.pixel, q)),
                      scale * float(np.quantile(reference.feature, q)),
                      int(bits), float(np.percentile(reference.pixel, REFERENCE_PERCENTILE)),
                      float(np.percentile(reference.feature, REFERENCE_PERCENTILE)))


def chance_share(n_reference: int, quantile: float, scale: float) -> float | None:
    """The share of images drawn like the real ones expected below the threshold, per space: a
    new image and the n validation images are exchangeable, so it falls below their q-quantile
    (q = 0: their smallest) with chance (q (n - 1) + 1) / (n + 1). None when ``scale`` != 1."""
    if scale != 1.0 or n_reference < 1:
        return None
    return (quantile * (n_reference - 1) + 1) / (n_reference + 1)


def reasons(n: Neighbours, t: Thresholds) -> list[str]:
    """Why each image is a near-copy ("pixels+phash" ...), "" when it is not one."""
    hits = (n.pixel < t.pixel, n.feature < t.feature, n.bits <= t.bits)
    return ["+".join(name for name, h in zip(("pixels", "features", "phash"), row) if h)
            for row in zip(*hits)]


def near_copies(n: Neighbours, t: Thresholds) -> np.ndarray:
    """A boolean per image: closer than the threshold in either space, or within the hash bits."""
    return (n.pixel < t.pixel) | (n.feature < t.feature) | (n.bits <= t.bits)


def set_summary(n: Neighbours, t: Thresholds) -> dict[str, Any]:
    """Counts and shares of one audited set (or of the real-vs-real reference)."""
    count = len(n)
    flags = near_copies(n, t)
    share = (lambda k: float(k) / count) if count else (lambda k: 0.0)
    out: dict[str, Any] = {"images": count, "near_copies": int(flags.sum()),
                           "near_copy_share": share(flags.sum())}
    if count:
        out["by_reason"] = {"pixels": int((n.pixel < t.pixel).sum()),
                            "features": int((n.feature < t.feature).sum()),
                            "phash": int((n.bits <= t.bits).sum())}
        out["below_real_p1"] = {"pixels": share((n.pixel < t.pixel_p1).sum()),
                                "features": share((n.feature < t.feature_p1).sum())}
        out["smallest"] = {"pixels": float(n.pixel.min()), "features": float(n.feature.min()),
                           "phash_bits": int(n.bits.min())}
        out["median"] = {"pixels": float(np.median(n.pixel)), "features": float(np.median(n.feature))}
    return out


# --- one class ---------------------------------------------------------------------------

@dataclass
class ClassAudit:
    """The audit of one class: its files, the reference, the thresholds and each audited set."""
    cls: str
    train_files: list[Path]
    reference_files: list[Path]
    reference: Neighbours
    thresholds: Thresholds
    sets: dict[str, tuple[list[Path], Neighbours]]
    via: int | None = None  # the generated images' side, which real images were brought to


def audit_class(cls: str, train_files: list[Path], reference_files: list[Path],
                audited: dict[str, list[Path]], fn: FeatureFn, size: int, quantile: float,
                bits: int, batch: int = 256, scale: float = 1.0, via: int | None = None) -> ClassAudit:
    """Nearest training images of the reference (validation) images and of each audited set.

    Every image is first brought to the side ``via`` (the generated images' side, see
    ``load_rgb``; None: as it is), then to the classifier's ``size``.
    """
    if not train_files:
        raise BusganError(f"memorization audit: no {cls} training image to compare with; run busgan prepare")
    if not reference_files:
        raise BusganError(f"memorization audit: no {cls} validation image for the real-vs-real reference; "
                          "set data.val_fraction above 0 and prepare again, or set audit.enabled = false")
    parts, gray = [], True
    for i in range(0, len(train_files), batch):  # kept as uint8 RGB until the channels are known
        rgb = _load(train_files[i:i + batch], size, via)
        gray = gray and is_gray(rgb)
        parts.append(embed(rgb, fn, False, batch))
    train = _concat(parts)
    if gray:
        train.pixels = np.ascontiguousarray(train.pixels.reshape(len(train), -1, 3)[:, :, 0])
    index = TrainingIndex(train)

    def search(files: list[Path]) -> Neighbours:
        return Neighbours.concat([index.nearest(e) for e in embed_files(files, size, fn, gray, batch, via)])

    reference = search(reference_files)
    t = thresholds(reference, quantile, bits, scale)
    sets = {name: (files, search(files)) for name, files in audited.items()}
    return ClassAudit(cls, train_files, reference_files, reference, t, sets, via)


def _native_side(path: Path | None) -> int | None:
    """The side of a (square) generated image; None without one."""
    if path is None:
        return None
    try:
        with Image.open(path) as im:
            return int(max(im.size))
    except OSError as e:
        raise BusganError(f"{path}: not a readable image ({e}); delete or replace it") from None


def class_summary(a: ClassAudit, quantile: float, scale: float) -> dict[str, Any]:
    t = a.thresholds
    return {"training_images": len(a.train_files), "generated_side": a.via,
            "reference": set_summary(a.reference, t),
            "chance_share_per_space": chance_share(len(a.reference), quantile, scale),
            "thresholds": {"pixels": t.pixel, "features": t.feature, "phash_bits": t.bits,
                           "pixels_p1": t.pixel_p1, "features_p1": t.feature_p1},
            **{name: set_summary(n, t) for name, (_, n) in a.sets.items()}}


# --- the stage -----------------------------------------------------------------------------

def classifier_space(model: Path, batch: int) -> tuple[FeatureFn, int]:
    """The real-trained classifier's feature layer (the FID space) and its input size."""
    if not Path(model).is_file():
        raise BusganError(f"{model}: the real-trained classifier was not found; train it first "
                          "(busgan run CONFIG --until train-real) or give --model")
    from busgan.stylegan2.metrics import classifier_features
    extractor = classifier_features(model)
    extractor.batch_size = batch  # one predict per padded batch
    return extractor, extractor.size


def audit_work(cfg: Config, work: Path, *, model: Path | None = None, out: Path | None = None,
               selected: Path | None = None, generated: Path | None = None,
               space: tuple[FeatureFn, int] | None = None) -> dict[str, Any]:
    """Audit ``selected`` (default WORK/selected; also WORK/sgan_out with
    ``audit.include_all_generated``) against WORK/data/train, with WORK/data/val as the
    real-vs-real reference. Writes ``out`` (default WORK/audit): distances.csv, audit.json,
    CLASS_distances.png, CLASS_closest.png and, last, excluded.csv; returns the summary.

    ``space``: a stand-in (feature function, input size) for the classifier's features.
    """
    work = Path(work)
    a = cfg.audit
    out = Path(out) if out is not None else work / layout.AUDIT
    folders = {"selected": Path(selected) if selected is not None else work / layout.SELECTED}
    if a.include_all_generated:
        folders["generated"] = Path(generated) if generated is not None else work / layout.GENERATED
    for name, folder in folders.items():
        if not folder.is_dir():
            raise BusganError(f"{folder}: folder of {name} images not found; run busgan select first "
                              "(or give the folder)")
    bits = a.phash_bits if a.phash_bits >= 0 else cfg.data.near_duplicate_bits
    fn, size = space if space is not None else classifier_space(
        Path(model) if model is not None else layout.real_model(work), a.batch_size)
    excluded_path = out / layout.EXCLUDED_FILE
    excluded_path.unlink(missing_ok=True)  # written last: never a stale list beside new distances

    audits = []
    for cls in CLASSES:
        train = _images(layout.data_split(work, "train") / cls, required=True)
        ref = _images(layout.data_split(work, "val") / cls, required=True)
        audited = {name: _images(folder / cls, required=False) for name, folder in folders.items()}
        via = _native_side(next((f[0] for f in audited.values() if f), None))
        audits.append(audit_class(cls, train, ref, audited, fn, size, a.threshold_quantile, bits,
                                  a.batch_size, a.threshold_scale, via))

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "distances.csv", _distances_csv(audits, folders, work))
    excluded_rows = _excluded_rows(audits) if a.policy == "exclude" else []
    summary: dict[str, Any] = {
        "policy": a.policy, "threshold_quantile": a.threshold_quantile,
        "threshold_scale": a.threshold_scale, "phash_bits": bits,
        "pixel_space": f"{size}x{size}, RMS grey-level difference", "feature_space": layout.FEATURE_LAYER,
        "classes": {x.cls: class_summary(x, a.threshold_quantile, a.threshold_scale) for x in audits},
        "excluded": {c: sum(1 for r in excluded_rows if r[1] == c) for c in CLASSES}}
    for x in audits:
        plot_distances(x, out / f"{x.cls}_distances.png")
        plot_closest(x, out / f"{x.cls}_closest.png", size)
    write_json(out / "audit.json", summary)
    _write_excluded(excluded_path, excluded_rows)
    for line in summary_lines(summary):
        log.info("%s", line)
    return summary


def _images(folder: Path, required: bool) -> list[Path]:
    from busgan.imaging import list_images
    if not folder.is_dir():
        if required:
            raise BusganError(f"{folder}: folder not found; the audit compares with the prepared "
                              "images: run busgan prepare (or give the right --work)")
        return []
    return list_images(folder)


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _distances_csv(audits: Sequence[ClassAudit], folders: dict[str, Path], work: Path) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for x in audits:
        groups = [("reference", x.reference_files, x.reference, work)]
        groups += [(name, files, n, folders[name]) for name, (files, n) in x.sets.items()]
        for name, files, n, base in groups:
            why = reasons(n, x.thresholds)
            for i, f in enumerate(files):
                w.writerow([x.cls, name, _rel(f, base), f"{n.pixel[i]:.6g}", x.train_files[n.pixel_index[i]].name,
                            f"{n.feature[i]:.6g}", x.train_files[n.feature_index[i]].name, int(n.bits[i]),
                            x.train_files[n.bits_index[i]].name, int(bool(why[i])), why[i]])
    return buf.getvalue()


def _excluded_rows(audits: Sequence[ClassAudit]) -> list[tuple[str, str, str]]:
    rows = []
    for x in audits:
        if "selected" not in x.sets:
            continue
        files, n = x.sets["selected"]
        rows += [(f"{x.cls}/{f.name}", x.cls, why) for f, why in zip(files, reasons(n, x.thresholds)) if why]
    return rows


def _write_excluded(path: Path, rows: Sequence[tuple[str, str, str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(layout.EXCLUDED_COLUMNS)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_excluded(work: Path) -> frozenset[str]:
    """The selected images (``class/name``) audit/excluded.csv keeps out of the synthetic arms."""
    path = layout.audit_excluded(work)
    if not path.is_file():
        raise BusganError(f"{path}: not found; audit.policy = 'exclude' needs the audit stage first: "
                          f"busgan run CONFIG --work {work} --until audit")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != layout.EXCLUDED_COLUMNS:
                raise ValueError
            return frozenset(row["file"] for row in reader)
    except (ValueError, csv.Error):
        raise BusganError(f"{path}: not an audit exclusion list; delete it and run the audit "
                          "stage again") from None


def _chance_text(c: dict[str, Any]) -> str:
    chance = c.get("chance_share_per_space")
    return "" if chance is None else f"; {100 * chance:.1f}% per space by chance alone"


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The short terminal summary of the audit."""
    lines = ["[busgan audit] memorization: each generated image's nearest training image, against "
             "each validation image's (real vs real)"]
    for cls, c in summary["classes"].items():
        ref = c["reference"]
        for name in SETS:
            s = c.get(name)
            if s is None:
                continue
            if not s["images"]:
                lines.append(f"  {cls}, {name}: no image to audit")
                continue
            lines.append(
                f"  {cls}, {name}: {s['near_copies']} near-copies of {s['images']} "
                f"({100 * s['near_copy_share']:.1f}%{_chance_text(c)}); closest: pixels "
                f"{s['smallest']['pixels']:.2f} (real vs real {ref['smallest']['pixels']:.2f}), features "
                f"{s['smallest']['features']:.3g} ({ref['smallest']['features']:.3g}); below the real-vs-real "
                f"1st percentile: pixels {100 * s['below_real_p1']['pixels']:.1f}%, features "
                f"{100 * s['below_real_p1']['features']:.1f}% (1% expected without memorization)")
    if summary.get("policy") == "exclude":
        lines.append("  policy exclude: removed from the selected set " +
                     ", ".join(f"{n} {c}" for c, n in summary["excluded"].items()))
    return lines


# --- figures -------------------------------------------------------------------------------

def _plt() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)  # margins set by the caller: "tight" would draw twice
    _plt().close(fig)


def _primary(x: ClassAudit) -> tuple[str, list[Path], Neighbours] | None:
    """The largest audited set (every generated image when audited, else the selected ones)."""
    for name in reversed(SETS):
        if name in x.sets and x.sets[name][0]:
            return name, *x.sets[name]
    return None


def plot_distances(x: ClassAudit, path: Path) -> None:
    """Per space, the histograms of generated-to-train and real-vs-real nearest distances."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    primary = _primary(x)
    t = x.thresholds
    for ax, attr, label, cut in ((axes[0], "pixel", "pixels: RMS grey-level difference", t.pixel),
                                 (axes[1], "feature", "classifier features: Euclidean distance", t.feature)):
        real = getattr(x.reference, attr)
        gen = getattr(primary[2], attr) if primary else np.zeros(0)
        both = np.concatenate([real, gen])
        bins = np.linspace(0.0, float(both.max()) * 1.02 + 1e-9, 40)
        if len(gen):
            ax.hist(gen, bins=bins, density=True, alpha=0.55, label=f"{primary[0]} to train ({len(gen)})")
        ax.hist(real, bins=bins, density=True, alpha=0.55, label=f"validation to train ({len(real)})")
        ax.axvline(cut, color="k", ls="--", lw=1, label="near-copy threshold")
        ax.set_xlabel(label)
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.suptitle(f"{x.cls}: distance to the nearest training image")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.88, wspace=0.18)
    _save(fig, path)


def closest_pairs(x: ClassAudit, k: int = CLOSEST) -> list[tuple[Path, Path, float, float, bool]]:
    """The ``k`` audited images closest to a training image, with their partner: (generated,
    training, pixel distance, feature distance, near-copy). Closeness is the smaller of the two
    distances as fractions of the real-vs-real medians; the partner is the nearest in that space."""
    primary = _primary(x)
    if primary is None:
        return []
    _, files, n = primary
    scale_p = float(np.median(x.reference.pixel)) or 1.0
    scale_f = float(np.median(x.reference.feature)) or 1.0
    rel_p, rel_f = n.pixel / scale_p, n.feature / scale_f
    closeness = np.minimum(rel_p, rel_f)
    flags = near_copies(n, x.thresholds)
    order = np.lexsort((np.arange(len(files)), closeness))[:k]
    return [(files[i], x.train_files[n.pixel_index[i] if rel_p[i] <= rel_f[i] else n.feature_index[i]],
             float(n.pixel[i]), float(n.feature[i]), bool(flags[i])) for i in order]


def plot_closest(x: ClassAudit, path: Path, size: int) -> None:
    """The closest pairs side by side: generated on top, its nearest training image below,
    distances under each pair (red: a near-copy). Drawn with PIL: quick at any count."""
    from PIL import ImageDraw
    pairs = closest_pairs(x)
    if not pairs:
        return
    side = max(size, 96)  # small images enlarged (nearest neighbour: pixels stay visible)
    gap, text_h = 4, 26
    sheet = Image.new("RGB", (len(pairs) * (side + gap) + gap, 2 * side + 3 * gap + text_h), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (gen, train, dp, df, flag) in enumerate(pairs):
        left = gap + j * (side + gap)
        for row, f in enumerate((gen, train)):
            tile = Image.fromarray(_load([f], size, x.via)[0].astype(np.uint8)).resize((side, side), Image.NEAREST)
            sheet.paste(tile, (left, gap + row * (side + gap)))
        colour = (200, 0, 0) if flag else (0, 0, 0)
        y = 2 * side + 2 * gap
        draw.text((left, y), f"px {dp:.1f}" + (" COPY" if flag else ""), fill=colour)
        draw.text((left, y + 12), f"ft {df:.3g}", fill=colour)
    with atomic_path(path, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")


# --- the report's section --------------------------------------------------------------------

def add_report_section(doc: Any, work: Path) -> None:
    """The audit's section of the run report, on a ``busgan.report.Document``."""
    path = Path(work) / layout.AUDIT / "audit.json"
    if not path.is_file():
        return
    s = read_json(path)
    doc.h(2, "Memorization audit: generated images against the training images (stage audit)")
    rule = ("the smallest" if s["threshold_quantile"] == 0
            else f"the {s['threshold_quantile']:g} quantile of the")
    sides = sorted({c.get("generated_side") for c in s["classes"].values()} - {None})
    path = (f", the real images first brought to the generated images' {'/'.join(map(str, sides))} pixels "
            "as the GAN saw them" if sides else "")
    doc.p(f"For every generated image, the distance to its nearest training image of the same class, in "
          f"pixels ({s['pixel_space']}{path}) and in the real-trained classifier's features "
          f"({s['feature_space']}); as the reference, the same for every validation image (real vs real: "
          f"two different patients' images). A near-copy is closer than {rule} real-vs-real distance in "
          f"either space{'' if s.get('threshold_scale', 1.0) == 1.0 else ' (times ' + format(s['threshold_scale'], 'g') + ')'}, "
          f"or within {s['phash_bits']} perceptual-hash bits of a training image. Images drawn like the real "
          "ones still fall below that distance by chance (per space, 1 in n + 1 for n validation images: "
          "the chance column), and 1% of them below the real-vs-real 1st percentile; memorization shows "
          "as shares well above these, and as near-identical pairs below.")
    rows = []
    for cls, c in s["classes"].items():
        for name in ("reference", *SETS):
            v = c.get(name)
            if not v or not v["images"]:
                continue
            what = "validation (real vs real)" if name == "reference" else name
            chance = c.get("chance_share_per_space")
            own = name == "reference"  # its share below its own percentile says nothing
            rows.append([cls, what, v["images"], v["near_copies"], f"{100 * v['near_copy_share']:.1f}%",
                         "-" if chance is None or own else f"{100 * chance:.1f}%",
                         "-" if own else f"{100 * v['below_real_p1']['pixels']:.1f}%",
                         "-" if own else f"{100 * v['below_real_p1']['features']:.1f}%",
                         f"{v['smallest']['pixels']:.2f}", f"{v['smallest']['features']:.3g}",
                         v["smallest"]["phash_bits"]])
    doc.table(["class", "set", "images", "near-copies", "share", "chance per space", "below real p1 (pixels)",
               "below real p1 (features)", "closest (pixels)", "closest (features)", "closest (hash bits)"],
              rows)
    if s["policy"] == "exclude":
        doc.p("**Policy exclude:** removed from the selected set before the synthetic arms trained: " +
              ", ".join(f"{n} {c}" for c, n in s["excluded"].items()) + ".")
    for cls in s["classes"]:
        doc.img(Path(work) / layout.AUDIT / f"{cls}_distances.png",
                f"{cls}: distance to the nearest training image, generated and real vs real")
        t = s["classes"][cls]["thresholds"]
        doc.img(Path(work) / layout.AUDIT / f"{cls}_closest.png",
                f"{cls}: the {CLOSEST} generated images closest to a training image (top), that image "
                f"(bottom) and their distances (px: pixels, ft: features; the closest real-vs-real pair: "
                f"px {t['pixels']:.1f}, ft {t['features']:.3g}; red: a near-copy)")


def report_markdown(work: Path) -> str:
    """The audit's section of report.md on its own (image paths relative to ``work``)."""
    from busgan.report import Document
    doc = Document()
    add_report_section(doc, work)
    return doc.markdown(Path(work))
