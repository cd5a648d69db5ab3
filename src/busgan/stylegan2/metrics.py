"""FID and KID between real and generated images, with a pluggable feature extractor.

Why pluggable: the reference Inception weights cannot be downloaded offline, so the score can
come from (a) Keras InceptionV3 with ImageNet weights from a local file, (b) the penultimate
layer (the head's Dense layer) of a trained busgan classifier, or (c) an offline fallback of
fixed random projections of downsampled pixels. Scores from different extractors are not
comparable; Keras InceptionV3 also differs from the 2015 TensorFlow graph used by papers, so
even (a) is not comparable with published FIDs. Within one run every extractor ranks snapshots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from busgan.errors import BusganError
from busgan.layout import FEATURE_LAYER, PREPROCESS_LAYER


# --- statistics ---------------------------------------------------------------------------

def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of a feature matrix (N, D), in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise BusganError(f"features: need at least 2 rows of shape (N, D), got {f.shape}; "
                          "measure FID on more images")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1-mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^1/2).

    Tr((C1 C2)^1/2) is computed as the sum of square roots of the eigenvalues of the symmetric
    matrix C1^1/2 C2 C1^1/2 (same spectrum as C1 C2), which stays real and stable where a
    general matrix square root of C1 C2 picks up imaginary noise.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    s1 = _sqrt_psd(cov1)
    m = s1 @ cov2 @ s1
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt, 0.0))


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two feature matrices (N, D)."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def kid_from_features(real: np.ndarray, fake: np.ndarray, num_subsets: int = 100,
                      max_subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD^2 with the kernel (x.y/d + 1)^3.

    Averaged over random subsets (as in Binkowski et al. 2018) to bound memory and time.
    """
    x = np.asarray(real, np.float64)
    y = np.asarray(fake, np.float64)
    n = min(x.shape[0], y.shape[0], max_subset_size)
    if n < 2:
        raise BusganError("KID: need at least 2 real and 2 generated images; measure on more images")
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        a = x[rng.choice(x.shape[0], n, replace=False)]
        b = y[rng.choice(y.shape[0], n, replace=False)]
        total += mmd2_unbiased(a, b, d)
    return total / num_subsets


def mmd2_unbiased(a: np.ndarray, b: np.ndarray, d: int | None = None) -> float:
    """Unbiased MMD^2 between equal-size samples with the cubic polynomial kernel."""
    d = d or a.shape[1]
    n = a.shape[0]
    kxx = (a @ a.T / d + 1) ** 3
    kyy = (b @ b.T / d + 1) ** 3
    kxy = (a @ b.T / d + 1) ** 3
    sxx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


# --- feature extractors --------------------------------------------------------------------

class FeatureExtractor(Protocol):
    """Maps a uint8 image batch (N, H, W, C), C in {1, 3}, to features (N, D)."""

    name: str

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


def _to_rgb_float(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 NHWC (1 or 3 channels) -> float32 RGB in [0, 255] at size x size (bilinear)."""
    import keras

    x = np.asarray(images, np.float32)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[1] != size or x.shape[2] != size:
        x = keras.ops.convert_to_numpy(
            keras.ops.image.resize(x, (size, size), interpolation="bilinear", antialias=True))
    return x


@dataclass
class PixelFeatures:
    """Offline fallback: fixed random projections of 32x32 grayscale pixels (256-d).

    Needs no weights and no network. It compares low-order image statistics only, so it is a
    ranking signal within one run, not a perceptual metric; FIDs from it are not comparable
    with any Inception FID.
    """

    dims: int = 256
    side: int = 32
    seed: int = 1234
    name: str = "pixels32-randproj256"

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self._proj = rng.standard_normal((self.side * self.side, self.dims)) / self.side

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, np.float32).mean(axis=-1)  # grayscale
        n, h, w = x.shape
        if h % self.side == 0 and w % self.side == 0:
            x = x.reshape(n, self.side, h // self.side, self.side, w // self.side).mean(axis=(2, 4))
        else:
            from PIL import Image
            x = np.stack([np.asarray(Image.fromarray(im).resize((self.side, self.side), Image.BILINEAR))
                          for im in x.astype(np.float32)])
        flat = x.reshape(n, -1) / 127.5 - 1.0
        return flat @ self._proj


class KerasFeatures:
    """Features from a Keras model (InceptionV3 pool, or a classifier's penultimate layer)."""

    def __init__(self, model: object, size: int, preprocess: Callable[[np.ndarray], np.ndarray],
                 name: str, batch_size: int = 64) -> None:
        self.model, self.size, self.preprocess, self.name = model, size, preprocess, name
        self.batch_size = batch_size

    def __call__(self, images: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(images), self.batch_size):
            x = self.preprocess(_to_rgb_float(images[i:i + self.batch_size], self.size))
            out.append(np.asarray(self.model.predict_on_batch(x), np.float64))  # type: ignore[attr-defined]
        return np.concatenate(out).reshape(len(images), -1)


def inception_features(weights: Path | None, size: int = 299) -> KerasFeatures:
    """Keras InceptionV3 (no top, average pool, 2048-d) with weights from a local file.

    ``weights=None`` builds random weights (tests only: the scores mean nothing).
    """
    import keras

    if weights is not None and not Path(weights).is_file():
        raise BusganError(f"{weights}: Inception weights file not found; give the path of "
                          "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5")
    model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None,
                                           input_shape=(size, size, 3))
    if weights is not None:
        try:
            model.load_weights(str(weights))
        except Exception as e:  # noqa: BLE001 - any load failure is the user's file
            raise BusganError(f"{weights}: not InceptionV3 (no top) weights ({type(e).__name__}); "
                              "give the notop .h5 file from keras.applications") from None
    return KerasFeatures(model, size, keras.applications.inception_v3.preprocess_input,
                         "keras-inception-v3" if weights else "inception-v3-random")


def classifier_features(path: Path) -> KerasFeatures:
    """The penultimate layer of a busgan classifier (the last Dense layer before the output).

    Prefers the layer named ``head_dense`` (busgan's Dense(head_units) head). Images go in as
    RGB pixel values 0-255 at the model's input size: the model scales them itself (its
    ``preprocess`` layer), as ``busgan.classifier`` feeds them.
    """
    import keras

    if not Path(path).is_file():
        raise BusganError(f"{path}: classifier model not found; give the model.keras written "
                          "by busgan train-classifier, or Inception weights (.h5)")
    from busgan.classifier.model import load_keras_model

    model = load_keras_model(path)  # .keras only, safe_mode=True, one-line errors
    if all(layer.name != PREPROCESS_LAYER for layer in model.layers):
        raise BusganError(f"{path}: saved by an older busgan that scaled images outside the model "
                          "(no 'preprocess' layer); retrain it with busgan train-classifier")
    dense = [layer for layer in _flat_layers(model) if isinstance(layer, keras.layers.Dense)
             and layer.name != PREPROCESS_LAYER]
    if len(dense) < 2:
        raise BusganError(f"{path}: no Dense layer before the output; give a busgan classifier")
    head = next((d for d in dense if d.name == FEATURE_LAYER), dense[-2])
    feat = keras.Model(model.inputs, head.output)
    size = int(model.inputs[0].shape[1] or 256)
    return KerasFeatures(feat, size, lambda x: x, f"classifier:{Path(path).name}:{head.name}")


def _flat_layers(model: object) -> list[object]:
    import keras

    out: list[object] = []
    for layer in model.layers:  # type: ignore[attr-defined]
        if isinstance(layer, keras.Model) and not isinstance(layer, keras.layers.Dense):
            continue  # a nested backbone's Dense layers are not the head
        out.append(layer)
    return out


def make_extractor(feature_model: Path | None) -> FeatureExtractor:
    """Choose the extractor: ``.keras`` -> classifier, ``.h5`` -> InceptionV3, None -> pixels."""
    if feature_model is None:
        return PixelFeatures()
    p = Path(feature_model)
    if p.suffix == ".keras":
        return classifier_features(p)
    if p.suffix == ".h5":
        return inception_features(p)
    raise BusganError(f"{p}: unknown feature model; give a classifier model.keras or "
                      "InceptionV3 notop weights (.h5)")


def features_of(extractor: FeatureExtractor, batches: Iterable[np.ndarray]) -> np.ndarray:
    """Concatenate the features of a stream of uint8 image batches."""
    return np.concatenate([extractor(b) for b in batches])
