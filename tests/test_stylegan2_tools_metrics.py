"""FID / KID: closed forms, scipy's sqrtm, unbiasedness, and the feature extractors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from busgan.errors import BusganError
from busgan.stylegan2 import metrics


def _sqrtm_fid(mu1, c1, mu2, c2):
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def test_frechet_closed_form_commuting_gaussians():
    # Diagonal covariances commute: FID = |dmu|^2 + sum (sqrt(a) - sqrt(b))^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1 + 0 + 9 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    got = metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_closed_form_rotated_and_scaled():
    # C2 = s^2 C1 (any C1): Tr(C1 + C2 - 2 sqrt(C1 C2)) = (1 - s)^2 Tr(C1).
    rng = np.random.default_rng(0)
    m = rng.standard_normal((6, 6))
    c1 = m @ m.T + np.eye(6)
    s = 1.7
    got = metrics.frechet_distance(np.zeros(6), c1, np.ones(6), s * s * c1)
    assert got == pytest.approx(6 + (1 - s) ** 2 * np.trace(c1), rel=1e-9)


def test_fid_from_samples_approaches_closed_form():
    rng = np.random.default_rng(1)
    x = rng.normal([0, 0, 0], [1, 2, 3], size=(200_000, 3))
    y = rng.normal([1, 0, 0], [1, 1, 3], size=(200_000, 3))
    assert metrics.fid_from_features(x, y) == pytest.approx(1 + 1, abs=0.05)


def test_fid_matches_scipy_sqrtm_on_random_features():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 32)) @ rng.standard_normal((32, 32))
    y = rng.standard_normal((400, 32)) * 1.5 + 0.3
    mu1, c1 = metrics.gaussian_stats(x)
    mu2, c2 = metrics.gaussian_stats(y)
    assert metrics.fid_from_features(x, y) == pytest.approx(_sqrtm_fid(mu1, c1, mu2, c2), rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(3).standard_normal((500, 64))
    assert abs(metrics.fid_from_features(x, x)) < 1e-6


def test_fid_refuses_one_row():
    with pytest.raises(BusganError):
        metrics.fid_from_features(np.ones((1, 3)), np.ones((5, 3)))


def test_kid_unbiased_estimator_matches_direct_sums():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((20, 5)), rng.standard_normal((20, 5)) + 0.5
    k = lambda u, v: (u @ v / 5 + 1) ** 3  # noqa: E731
    n = 20
    sxx = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    syy = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(a[i], b[j]) for i in range(n) for j in range(n)) / n ** 2
    assert metrics.mmd2_unbiased(a, b) == pytest.approx(sxx + syy - 2 * sxy, rel=1e-10)


def test_kid_is_unbiased_for_equal_distributions():
    # The unbiased estimator averages to 0 (it can be negative) for two samples of one law.
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2000, 8)), rng.standard_normal((2000, 8))
    kid = metrics.kid_from_features(x, y, num_subsets=50, max_subset_size=200)
    assert abs(kid) < 0.02
    far = metrics.kid_from_features(x, y + 1.0, num_subsets=10, max_subset_size=200)
    assert far > 10 * abs(kid) + 0.05


def test_pixel_features_rank_distributions():
    rng = np.random.default_rng(6)
    real = rng.integers(100, 156, (64, 16, 16, 1)).astype(np.uint8)
    near = rng.integers(100, 156, (64, 16, 16, 1)).astype(np.uint8)
    far = rng.integers(0, 256, (64, 16, 16, 1)).astype(np.uint8)
    ex = metrics.make_extractor(None)
    fr, fn, ff = ex(real), ex(near), ex(far)
    assert fr.shape == (64, 256)
    assert metrics.fid_from_features(fr, fn) < metrics.fid_from_features(fr, ff)


def test_unknown_feature_model_is_refused(tmp_path):
    with pytest.raises(BusganError, match="give"):
        metrics.make_extractor(tmp_path / "weights.bin")
    with pytest.raises(BusganError, match="not found"):
        metrics.make_extractor(tmp_path / "missing.keras")
    with pytest.raises(BusganError, match="not found"):
        metrics.make_extractor(tmp_path / "missing.h5")


@pytest.mark.keras
def test_classifier_penultimate_features(tmp_path):
    import keras

    inp = keras.Input((32, 32, 3))
    pixels = keras.layers.Rescaling(1 / 255, name="preprocess")(inp)  # the model scales its input
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(pixels))
    x = keras.layers.Dense(16, activation="relu", name="head")(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    path = tmp_path / "model.keras"
    model = keras.Model(inp, out)
    model.save(path)
    ex = metrics.make_extractor(path)
    images = np.random.default_rng(7).integers(0, 256, (5, 32, 32, 1)).astype(np.uint8)
    feats = ex(images)
    assert feats.shape == (5, 16)
    assert "head" in ex.name
    # raw pixels go in: the features are the head's output on the model's own input
    head = keras.Model(model.input, model.get_layer("head").output)
    rgb = np.repeat(images, 3, axis=-1).astype(np.float32)
    np.testing.assert_allclose(feats, keras.ops.convert_to_numpy(head(rgb)), rtol=1e-5, atol=1e-6)
    # a classifier saved before models scaled their own input is refused
    keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(16, name="head2")(
        keras.layers.GlobalAveragePooling2D()(inp)))).save(tmp_path / "old.keras")
    with pytest.raises(BusganError, match="old.keras: saved by an older busgan"):
        metrics.make_extractor(tmp_path / "old.keras")
