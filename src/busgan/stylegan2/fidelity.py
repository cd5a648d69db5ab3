"""Fidelity of generated images against a floor: KID, FID, improved precision and recall.

Why these measures, and why a floor:

- **KID** (Binkowski et al. 2018, "Demystifying MMD GANs") is the primary number: its
  estimator (unbiased MMD^2) has expectation 0 for two samples of one distribution at any
  sample size, so a few hundred images per class still give an unbiased value. **FID**
  (Heusel et al. 2017) is reported too, for familiarity, but it is biased upwards by an
  amount that depends on the sample size (Chong & Forsyth 2020, "Effectively Unbiased FID
  and Inception Score and where to find them"), so every comparison here uses **matched
  sample sizes**: the generated set, the real reference and the second real set all have
  the same n.
- **Improved precision and recall** (Kynkaanniemi et al. 2019, "Improved Precision and Recall
  Metric for Assessing Generative Models", k = 3) separate fidelity (generated images that
  look like some real image) from coverage (real images that some generated image resembles);
  a collapsed generator has good precision and poor recall, which FID and KID mix into one
  number.
- **The floor**: the same measures between two disjoint real sets of the same size (training
  vs validation images, or two seeded halves of one folder). Finite samples never give 0,
  so a value is only meaningful next to what real data scores against itself:
  "FID 38 (real-vs-real 9)".

Feature spaces: ``metrics.py``'s extractors (the real-trained classifier's penultimate layer,
Keras InceptionV3 from a local weights file) and :class:`RandomConvFeatures`, a fixed
random-weight convolutional network that needs no weights file and is independent of the
classifier that selects the images (see its docstring for why that is a legitimate space).

Memory is bounded: pairwise distances are computed in blocks of ``chunk`` x ``chunk``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TypedDict

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from busgan.errors import BusganError
from busgan.stylegan2 import metrics

K_NEIGHBOURS = 3
"""Kynkaanniemi et al. 2019's k for the k-NN radius (and NVlabs' StyleGAN2-ADA default)."""

KID_SUBSET = 1000
"""KID subset size (NVlabs' max_subset_size); up to it, one exact estimate on all pairs."""

METRICS = ("kid", "fid", "precision", "recall")
"""Metric names in the order rows are written (KID first: the primary measure)."""

METRICS_COLUMNS = ("class", "source", "kimg", "space", "metric", "value", "floor", "n")
"""Columns of metrics.csv; one row per (class, source, space, metric)."""


# --- improved precision and recall ----------------------------------------------------------

def _sq_dists(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows of a and b (float64, clipped at 0)."""
    return np.maximum(a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T), 0.0)


def _as_features(x: np.ndarray, what: str) -> np.ndarray:
    f = np.asarray(x, np.float64)
    if f.ndim != 2:
        raise BusganError(f"{what}: features must be a matrix (N, D), got shape {f.shape}")
    return f


def _kth_sq_radii(x: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """Squared distance of each row to its k-th nearest other row, in row x column blocks.

    Each row block keeps a running set of its k smallest distances, so memory is
    chunk x (chunk + k) whatever N is. The row itself is excluded by index (its distance set
    to inf), so an exact duplicate of a point elsewhere in the set still counts as a neighbour
    at distance 0, as in NVlabs' implementation (which takes the (k+1)-th value, self included).
    """
    n = x.shape[0]
    sq = (x * x).sum(axis=1)
    out = np.empty(n)
    for i in range(0, n, chunk):
        rows = x[i:i + chunk]
        idx = np.arange(i, i + len(rows))
        best = np.full((len(rows), k), np.inf)
        for j in range(0, n, chunk):
            d = _sq_dists(rows, sq[i:i + chunk], x[j:j + chunk], sq[j:j + chunk])
            own = (idx >= j) & (idx < j + d.shape[1])
            d[np.nonzero(own)[0], idx[own] - j] = np.inf
            both = np.concatenate([best, d], axis=1)
            best = np.partition(both, k - 1, axis=1)[:, :k]  # the k smallest so far
        out[i:i + chunk] = best.max(axis=1)  # the k-th smallest
    return out


def kth_neighbour_radii(features: np.ndarray, k: int = K_NEIGHBOURS, chunk: int = 1024) -> np.ndarray:
    """Distance of each feature vector to its k-th nearest neighbour in the same set (self excluded).

    These are the radii of the balls whose union approximates the sample's manifold.
    """
    x = _as_features(features, "k-NN radii")
    _check_k(x.shape[0], k, "k-NN radii")
    return np.sqrt(_kth_sq_radii(x, k, chunk))


def _check_k(n: int, k: int, what: str) -> None:
    if k < 1:
        raise BusganError(f"{what}: k = {k}; k must be at least 1 (Kynkaanniemi et al. use 3)")
    if n < k + 1:
        raise BusganError(f"{what}: {n} feature vectors; a k = {k} neighbourhood needs at least "
                          f"{k + 1}; measure on more images")


def _inside(reference: np.ndarray, sq_radii: np.ndarray, queries: np.ndarray, chunk: int) -> np.ndarray:
    """For each query: is it within (<=) the radius of at least one reference point?"""
    r_sq = (reference * reference).sum(axis=1)
    q_sq = (queries * queries).sum(axis=1)
    inside = np.zeros(queries.shape[0], bool)
    for i in range(0, queries.shape[0], chunk):
        for j in range(0, reference.shape[0], chunk):
            d = _sq_dists(queries[i:i + chunk], q_sq[i:i + chunk], reference[j:j + chunk], r_sq[j:j + chunk])
            inside[i:i + chunk] |= (d <= sq_radii[None, j:j + chunk]).any(axis=1)
    return inside


def manifold_membership(reference: np.ndarray, queries: np.ndarray, k: int = K_NEIGHBOURS,
                        chunk: int = 1024) -> np.ndarray:
    """Which queries lie in the reference sample's k-NN manifold (a boolean per query).

    The manifold is the union of closed balls around each reference vector with radius the
    distance to its k-th nearest reference neighbour.
    """
    ref = _as_features(reference, "manifold")
    q = _as_features(queries, "manifold")
    _check_k(ref.shape[0], k, "manifold")
    if q.shape[1] != ref.shape[1]:
        raise BusganError(f"manifold: features of different widths ({ref.shape[1]} and {q.shape[1]})")
    return _inside(ref, _kth_sq_radii(ref, k, chunk), q, chunk)


class PrecisionRecall(NamedTuple):
    precision: float
    recall: float


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = K_NEIGHBOURS,
                     chunk: int = 1024) -> PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    precision = share of generated vectors inside the real manifold (fidelity);
    recall = share of real vectors inside the generated manifold (coverage: falls when the
    generator drops modes). Both are 1.0 for identical sets.
    """
    inside_real = manifold_membership(real, fake, k, chunk)
    inside_fake = manifold_membership(fake, real, k, chunk)
    return PrecisionRecall(float(inside_real.mean()), float(inside_fake.mean()))


# --- an independent feature space: a fixed random-weight convolutional network -------------

def conv2d(x: np.ndarray, w: np.ndarray, stride: int = 1) -> np.ndarray:
    """2-D cross-correlation (as in deep-learning frameworks), zero padding k // 2.

    x: (N, H, W, Cin); w: (kh, kw, Cin, Cout) with odd kh, kw; output (N, H', W', Cout) with
    H' = (H - 1) // stride + 1 (``same`` padding for stride 1).
    """
    kh, kw = w.shape[:2]
    ph, pw = kh // 2, kw // 2
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]  # N,H',W',Cin,kh,kw
    return np.tensordot(win, w, axes=([4, 5, 3], [0, 1, 2]))


def _resize_float(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> float64 (N, side, side, C); Pillow's antialiased bilinear resize.

    Pillow rather than a Keras op: the features must not depend on the Keras backend.
    """
    from PIL import Image

    x = np.asarray(images)
    if x.shape[1] == side and x.shape[2] == side:
        return x.astype(np.float64)
    out = np.empty((x.shape[0], side, side, x.shape[3]))
    for i in range(x.shape[0]):
        for c in range(x.shape[3]):
            im = Image.fromarray(x[i, :, :, c].astype(np.float32), mode="F")
            out[i, :, :, c] = np.asarray(im.resize((side, side), Image.BILINEAR), np.float64)
    return out


@dataclass
class RandomConvFeatures:
    """A fixed random-weight CNN: 4 stride-2 3x3 conv + ReLU layers, He-normal weights from a seed.

    Input: uint8 images (N, H, W, 1 or 3), gray replicated to RGB, resized to ``side`` x
    ``side``, scaled to [-1, 1]. Output: the spatial mean of every layer's activations,
    concatenated (16 + 32 + 64 + 128 = 240 values): texture statistics at four scales, from
    edges and speckle up to blob layout at 1/16 of the image. Few dimensions on purpose: a class
    has a few hundred images, and FID's covariance of n vectors has rank below n. Pure NumPy in
    float64, so the same seed gives the same features on every machine and Keras backend, with
    no weights file.

    Why random features are a legitimate independent space: a randomly initialised
    convolutional network is a fixed, generic, nonlinear multi-scale filter bank. Jarrett et al.
    2009 ("What is the best multi-stage architecture for object recognition?") and Saxe et al.
    2011 ("On random weights and unsupervised feature learning") found random-weight conv
    architectures already give discriminative features; Ustyuzhaninov et al. 2017 ("What does
    it take to generate natural textures?") showed random shallow filters capture texture
    statistics well enough to synthesise textures; and Naeem et al. 2020 ("Reliable Fidelity and
    Diversity Metrics for Generative Models") evaluated precision/recall-type metrics in a
    randomly initialised VGG16 embedding and recommend random embeddings for domains far from
    ImageNet, such as medical images. The distances are then genuine two-sample distances
    between image distributions under a fixed map, not tied to any training task. That
    independence matters here: the real-trained classifier's features are task-relevant, but
    the same classifier selects the generated images, so its own space can reward images
    tuned to it; and Kynkaanniemi et al. 2023 ("The Role of ImageNet Classes in Frechet
    Inception Distance") showed that a supervised network's space can be matched without
    improving the images. Values from different spaces (or seeds) are not comparable.
    """

    seed: int = 0
    side: int = 64
    widths: tuple[int, ...] = (16, 32, 64, 128)
    batch_size: int = 64
    name: str = ""
    _weights: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"randomconv-s{self.seed}"
        rng = np.random.default_rng(self.seed)
        cin, self._weights = 3, []
        for cout in self.widths:
            fan_in = 9 * cin  # He-normal: keeps activation scale through ReLU layers
            self._weights.append(rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2.0 / fan_in))
            cin = cout

    @property
    def dims(self) -> int:
        return int(sum(self.widths))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise BusganError(f"random features: need images (N, H, W, 1 or 3), got {images.shape}")
        out = np.empty((images.shape[0], self.dims))
        for i in range(0, images.shape[0], self.batch_size):
            x = _resize_float(images[i:i + self.batch_size], self.side) / 127.5 - 1.0
            if x.shape[-1] == 1:
                x = np.repeat(x, 3, axis=-1)
            pooled = []
            for w in self._weights:
                x = np.maximum(conv2d(x, w, stride=2), 0.0)
                pooled.append(x.mean(axis=(1, 2)))
            out[i:i + len(x)] = np.concatenate(pooled, axis=1)
        return out


def feature_space(spec: str) -> metrics.FeatureExtractor:
    """A feature space from its command-line spec.

    ``random`` (or ``random:SEED``): :class:`RandomConvFeatures`; ``classifier:PATH``: a busgan
    classifier's penultimate layer; ``inception:PATH``: Keras InceptionV3 with the notop .h5
    weights at PATH (both from ``metrics.py``).
    """
    kind, _, arg = spec.partition(":")
    if kind == "random":
        if arg and not arg.isdigit():
            raise BusganError(f"--features {spec!r}: the seed must be a whole number, e.g. random:1")
        return RandomConvFeatures(seed=int(arg or 0))
    if kind == "classifier" and arg:
        return metrics.classifier_features(Path(arg))
    if kind == "inception" and arg:
        return metrics.inception_features(Path(arg))
    raise BusganError(f"--features {spec!r}: choose random, random:SEED, classifier:PATH "
                      "(a busgan model.keras) or inception:PATH (InceptionV3 notop .h5)")


# --- per-class fidelity with the floor --------------------------------------------------------

class Subsets(NamedTuple):
    """Indices of matched, equal-size subsets: the real reference, the generated set and the
    second real set (into ``real2`` when given, else into ``real``, disjoint from ``reference``)."""
    reference: np.ndarray
    fake: np.ndarray
    floor: np.ndarray
    floor_from_real2: bool


def matched_subsets(n_real: int, n_fake: int, n_real2: int | None = None, n: int | None = None,
                    seed: int = 0) -> Subsets:
    """Seeded equal-size subsets for a value and its floor.

    Without a second real set, ``real`` is split (seeded permutation) into two disjoint halves:
    the first is the reference for both the value and the floor, the second is the floor's
    comparison set. With ``real2`` the reference comes from ``real`` and the floor's set from
    ``real2``. The size is the smallest available (and at most ``n``), so value and floor are
    estimated at the same sample size and FID's size-dependent bias cancels in the comparison.
    """
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_real)
    if n_real2 is None:
        half = n_real // 2
        ref, other = perm[:half], perm[half:2 * half]
    else:
        ref, other = perm, rng.permutation(n_real2)
    m = min(len(ref), len(other), n_fake, n if n is not None else n_fake)
    if m < 2:
        raise BusganError(f"fidelity: only {m} image(s) per set (real {n_real}"
                          f"{'' if n_real2 is None else f', real2 {n_real2}'}, generated {n_fake}); "
                          "need at least 2 each (4 for precision/recall); use more images")
    return Subsets(ref[:m], rng.permutation(n_fake)[:m], other[:m], n_real2 is not None)


def fidelity_from_features(reference: np.ndarray, fake: np.ndarray, real2: np.ndarray,
                           k: int = K_NEIGHBOURS, seed: int = 0) -> dict[str, tuple[float, float]]:
    """{metric: (value, floor)}: reference vs fake, and reference vs real2 (the floor).

    The three sets should have the same size (see :func:`matched_subsets`). KID is the exact
    unbiased MMD^2 over all pairs up to 1000 vectors, else the mean over 100 subsets of 1000.
    """
    ref = _as_features(reference, "fidelity")
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    for other in (_as_features(fake, "fidelity"), _as_features(real2, "fidelity")):
        m = min(len(ref), len(other))
        subsets = 1 if m <= KID_SUBSET else 100
        out["kid"].append(metrics.kid_from_features(ref, other, num_subsets=subsets,
                                                    max_subset_size=KID_SUBSET, seed=seed))
        out["fid"].append(metrics.fid_from_features(ref, other))
        pr = precision_recall(ref, other, k)
        out["precision"].append(pr.precision)
        out["recall"].append(pr.recall)
    return {name: (v[0], v[1]) for name, v in out.items()}


MetricRow = TypedDict("MetricRow", {"class": str, "source": str, "kimg": float | None,
                                    "space": str, "metric": str, "value": float,
                                    "floor": float, "n": int})


def class_fidelity(real: np.ndarray, fake: np.ndarray, spaces: Sequence[metrics.FeatureExtractor],
                   real2: np.ndarray | None = None, *, cls: str = "", source: str = "",
                   kimg: float | None = None, n: int | None = None, k: int = K_NEIGHBOURS,
                   seed: int = 0) -> list[MetricRow]:
    """KID, FID, precision and recall of one class's generated images, each with its floor.

    real, fake, real2: uint8 images (N, H, W, C). The floor is real vs real2 (e.g. training vs
    validation images) or, without real2, two seeded disjoint halves of ``real``; every set is
    subsampled to one size n (:func:`matched_subsets`) before features are computed. One row
    per space and metric, in :data:`METRICS_COLUMNS` (for metrics.csv).
    """
    if not spaces:
        raise BusganError("fidelity: give at least one feature space")
    sub = matched_subsets(len(real), len(fake), None if real2 is None else len(real2), n, seed)
    sets = (np.asarray(real)[sub.reference], np.asarray(fake)[sub.fake],
            np.asarray(real2 if sub.floor_from_real2 else real)[sub.floor])
    rows: list[MetricRow] = []
    for space in spaces:
        feats = [metrics.features_of(space, (s[i:i + 256] for i in range(0, len(s), 256))) for s in sets]
        values = fidelity_from_features(feats[0], feats[1], feats[2], k, seed)
        for metric in METRICS:
            value, floor = values[metric]
            rows.append({"class": cls, "source": source, "kimg": kimg, "space": space.name,
                         "metric": metric, "value": value, "floor": floor, "n": len(sub.reference)})
    return rows


# --- metrics.csv ----------------------------------------------------------------------------

def _cell(v: object) -> str:
    if v is None:
        return ""
    return f"{v:.10g}" if isinstance(v, float) else str(v)


def write_metrics_csv(path: Path, rows: Sequence[MetricRow]) -> Path:
    """Add rows to metrics.csv (created if absent), atomically.

    Rows already there with the same class, source and space as a new row are replaced, so a
    rerun does not duplicate them, and one file can collect several classes and snapshots.
    """
    from busgan.fileio import atomic_write_text

    path = Path(path)
    old: list[dict[str, str]] = []
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != METRICS_COLUMNS:
                raise BusganError(f"{path}: not a busgan metrics.csv (columns {reader.fieldnames}); "
                                  "give another --out file")
            old = list(reader)
    new = [{c: _cell(r[c]) for c in METRICS_COLUMNS} for r in rows]  # type: ignore[literal-required]
    keys = {(r["class"], r["source"], r["space"]) for r in new}
    kept = [r for r in old if (r["class"], r["source"], r["space"]) not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(kept + new)
    atomic_write_text(path, buf.getvalue())
    return path


def format_table(rows: Sequence[MetricRow]) -> str:
    """One line per (class, source, space): each metric as 'value (real-vs-real floor)'."""
    groups: dict[tuple[str, str, str], dict[str, MetricRow]] = {}
    for r in rows:
        groups.setdefault((r["class"], r["source"], r["space"]), {})[r["metric"]] = r
    head = ["class", "space", "n", *METRICS]
    lines = [head]
    for (cls, _source, space), by in groups.items():
        cells = [cls, space, str(next(iter(by.values()))["n"])]
        for m in METRICS:
            r = by.get(m)
            fmt = "{:.4f}" if m == "kid" else ("{:.1f}" if m == "fid" else "{:.3f}")
            cells.append("-" if r is None else f"{fmt.format(r['value'])} ({fmt.format(r['floor'])})")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["  ".join(c.ljust(wd) for c, wd in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(text) + "\n(value (real-vs-real floor); KID is the primary measure)"
