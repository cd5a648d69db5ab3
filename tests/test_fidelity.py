"""Fidelity against a floor (issue 12 points 3-4): improved precision/recall, the random-CNN
feature space, matched subsets with the real-vs-real floor, and ``busgan metrics``.

Every number is checked against a hand-worked value or a SciPy/NumPy computation written here.
"""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
from PIL import Image
from scipy.spatial.distance import cdist

from threadpoolctl import threadpool_limits

from busgan.cli import main
from busgan.config import GanConfig
from busgan.errors import BusganError
from busgan.stylegan2 import fidelity as fd
from busgan.stylegan2 import generate
from busgan.stylegan2 import snapshot as snap


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # On a shared, busy CPU a multi-threaded LAPACK eigh of a few hundred dimensions (FID) runs
    # about 100x slower than one thread; the results are the same.
    with threadpool_limits(1):
        yield


# --- independent references -------------------------------------------------------------------

def _ref_radii(x, k):
    # sorted row of all distances: index 0 is the point itself (0), index k its k-th neighbour
    return np.sort(cdist(x, x), axis=1)[:, k]


def _ref_pr(real, fake, k=3):
    r_real, r_fake = _ref_radii(real, k), _ref_radii(fake, k)
    precision = np.mean((cdist(fake, real) <= r_real[None, :]).any(axis=1))
    recall = np.mean((cdist(real, fake) <= r_fake[None, :]).any(axis=1))
    return precision, recall


def _ref_fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def _ref_fid_eig(a, b):
    # the same distance via the eigenvalues of C1 C2 (real, >= 0: a product of PSD matrices);
    # stable where sqrtm is not, e.g. more dimensions than samples (singular covariances)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    tr = np.sqrt(np.clip(np.linalg.eigvals(c1 @ c2).real, 0, None)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * tr)


def _ref_kid(a, b):
    # unbiased MMD^2, kernel (x.y/d + 1)^3, written out as sums over i != j
    d, n = a.shape[1], a.shape[0]
    k = lambda u, v: (u @ v.T / d + 1) ** 3  # noqa: E731
    off = ~np.eye(n, dtype=bool)
    return float(k(a, a)[off].mean() + k(b, b)[off].mean() - 2 * k(a, b).mean())


# --- precision and recall -------------------------------------------------------------------

def test_precision_recall_hand_worked_1d():
    # Real: two clusters {0..3} and {100..103}. k = 3 radii: end points 3, inner points 2, so
    # the real manifold is [-3, 6] u [97, 106]. Fake: {0..3, 6, 50, 51, 52}; its radii are
    # 3, 2, 2, 3, 5 (for 6: neighbours at 3, 4, 5) and 44, 45, 46 (for 50..52), so the fake
    # manifold is [-3, 98]. Precision: 0..3 and 6 (on the boundary of the ball [0, 6] of real
    # point 3: balls are closed) are inside, 50..52 are not: 5/8. Recall: 0..3 covered,
    # 100..103 beyond 98: 4/8.
    real = np.array([0, 1, 2, 3, 100, 101, 102, 103], float)[:, None]
    fake = np.array([0, 1, 2, 3, 6, 50, 51, 52], float)[:, None]
    np.testing.assert_array_equal(fd.kth_neighbour_radii(real), [3, 2, 2, 3, 3, 2, 2, 3])
    np.testing.assert_array_equal(fd.kth_neighbour_radii(fake), [3, 2, 2, 3, 5, 44, 45, 46])
    for chunk in (1024, 3):  # blocks smaller than the set: the running k-smallest must agree
        assert fd.precision_recall(real, fake, k=3, chunk=chunk) == (0.625, 0.5)
    np.testing.assert_array_equal(fd.manifold_membership(real, fake),
                                  [True, True, True, True, True, False, False, False])


def test_precision_recall_hand_worked_2d_k1():
    # Unit square corners: each corner's nearest neighbour is at distance 1 (balls of radius 1).
    # Fakes: centre (0.5, 0.5) inside; (2, 0) at distance 1 from (1, 0): inside (closed ball);
    # (3, 3) outside -> precision 2/3. Fake radii (k = 1): centre 1.5811 (to (2,0)),
    # (2, 0) 1.5811, (3, 3) 3.1623 (to (2,0)): corners (0,1), (0,0), (1,0), (1,1) are within
    # 1.5811 of the centre (distance 0.7071) -> recall 1.
    real = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    fake = np.array([[0.5, 0.5], [2, 0], [3, 3]], float)
    p, r = fd.precision_recall(real, fake, k=1)
    assert p == pytest.approx(2 / 3) and r == 1.0


def test_precision_recall_match_scipy_bruteforce():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((70, 5))
    fake = rng.standard_normal((55, 5)) * 1.3 + 0.4
    np.testing.assert_allclose(fd.kth_neighbour_radii(real, k=3, chunk=8), _ref_radii(real, 3), rtol=1e-9)
    for chunk in (1024, 7):
        got = fd.precision_recall(real, fake, k=3, chunk=chunk)
        assert got == pytest.approx(_ref_pr(real, fake, 3))
    assert fd.precision_recall(real, fake, k=5) == pytest.approx(_ref_pr(real, fake, 5))


def test_identical_sets_score_one():
    x = np.random.default_rng(1).standard_normal((200, 2))
    assert fd.precision_recall(x, x) == (1.0, 1.0)
    dup = np.concatenate([x[:50], x[:50]])  # duplicates: still every point lies in its own ball
    assert fd.precision_recall(dup, dup.copy()) == (1.0, 1.0)


def test_precision_falls_when_fakes_leave_the_manifold():
    rng = np.random.default_rng(2)
    real, fake = rng.standard_normal((500, 8)), rng.standard_normal((500, 8))
    p_good, r_good = fd.precision_recall(real, fake)
    moved = fake.copy()
    moved[:250] += 6.0  # half the fakes far off the real manifold
    p_moved, _ = fd.precision_recall(real, moved)
    assert p_good > 0.75 and r_good > 0.75
    assert p_moved == pytest.approx(_ref_pr(real, moved)[0])
    assert abs(p_moved - p_good / 2) < 0.06  # only the unmoved half is still inside
    assert fd.precision_recall(real, fake + 6.0).precision == 0.0


def test_recall_falls_when_the_generator_drops_modes():
    rng = np.random.default_rng(3)
    modes = np.array([[10, 10], [10, -10], [-10, 10], [-10, -10]], float)
    real = np.concatenate([rng.normal(m, 1.0, (100, 2)) for m in modes])
    all_modes = np.concatenate([rng.normal(m, 1.0, (100, 2)) for m in modes])
    one_mode = rng.normal(modes[0], 1.0, (400, 2))  # mode collapse: same size, one mode
    p_all, r_all = fd.precision_recall(real, all_modes)
    p_one, r_one = fd.precision_recall(real, one_mode)
    assert p_all > 0.9 and r_all > 0.9
    assert p_one > 0.9  # every collapsed sample still looks real ...
    assert 0.15 < r_one < 0.3  # ... but only about a quarter of the real images are covered
    assert (p_one, r_one) == pytest.approx(_ref_pr(real, one_mode))


def test_precision_recall_refuse_too_few_points():
    with pytest.raises(BusganError, match="at least 4"):
        fd.precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


# --- floor and matched subsets ----------------------------------------------------------------

def test_matched_subsets_disjoint_halves_and_seeded():
    s = fd.matched_subsets(41, 100, seed=5)
    assert len(s.reference) == len(s.fake) == len(s.floor) == 20 and not s.floor_from_real2
    assert not set(s.reference) & set(s.floor)  # the floor's two real sets are disjoint
    assert len(set(s.fake)) == 20 and max(s.fake) < 100
    again = fd.matched_subsets(41, 100, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(s[:3], again[:3]))
    assert not np.array_equal(s.reference, fd.matched_subsets(41, 100, seed=6).reference)
    t = fd.matched_subsets(50, 30, n_real2=12)
    assert t.floor_from_real2 and len(t.reference) == 12 and max(t.floor) < 12
    assert len(fd.matched_subsets(50, 30, n_real2=40, n=7).fake) == 7
    with pytest.raises(BusganError):
        fd.matched_subsets(3, 10)


def test_floor_near_zero_and_far_below_a_shifted_distribution():
    rng = np.random.default_rng(4)
    n, d = 400, 16
    ref, real2 = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    fake = rng.standard_normal((n, d)) + 1.0  # shifted: true FID = ||1||^2 = 16
    out = fd.fidelity_from_features(ref, fake, real2)
    assert out["fid"] == pytest.approx((_ref_fid(ref, fake), _ref_fid(ref, real2)), rel=1e-6)
    assert out["kid"] == pytest.approx((_ref_kid(ref, fake), _ref_kid(ref, real2)), rel=1e-9, abs=1e-12)
    assert out["precision"] == pytest.approx((_ref_pr(ref, fake)[0], _ref_pr(ref, real2)[0]))
    assert out["recall"] == pytest.approx((_ref_pr(ref, fake)[1], _ref_pr(ref, real2)[1]))
    fid, fid_floor = out["fid"]
    kid, kid_floor = out["kid"]
    assert fid_floor < 1.0 and abs(kid_floor) < 0.02  # real vs real: near 0 ...
    assert fid > 14 and fid_floor < fid / 10 and kid > 100 * abs(kid_floor)  # ... far below
    assert out["precision"][1] > 0.7 and out["precision"][0] < 0.3


def _blob_images(rng, n, size=16, bright=0.0):
    """Smooth random blobs (uint8, 1 channel); ``bright`` shifts the distribution."""
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for _ in range(n):
        cy, cx, s = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.25)
        im = 60 + 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        im = im + rng.normal(0, 8, im.shape) + bright
        out.append(np.clip(im, 0, 255).astype(np.uint8)[..., None])
    return np.stack(out)


def test_class_fidelity_rows_with_floor_on_images():
    rng = np.random.default_rng(5)
    real, fake = _blob_images(rng, 40), _blob_images(rng, 30, bright=60)
    space = fd.RandomConvFeatures()
    rows = fd.class_fidelity(real, fake, [space], cls="benign", source="gen", kimg=1.5)
    assert [r["metric"] for r in rows] == list(fd.METRICS)
    assert {(r["class"], r["source"], r["kimg"], r["space"], r["n"]) for r in rows} == \
        {("benign", "gen", 1.5, "randomconv-s0", 20)}  # n = min(40 // 2, 30)
    by = {r["metric"]: r for r in rows}
    assert by["kid"]["value"] > 20 * abs(by["kid"]["floor"])
    assert by["fid"]["value"] > 5 * by["fid"]["floor"]
    assert by["precision"]["value"] < by["precision"]["floor"]
    # with equal-size sets and real2, nothing is dropped: the value is the features' own FID
    real2 = _blob_images(rng, 20)
    rows = fd.class_fidelity(real[:20], fake[:20], [space], real2)
    got = {r["metric"]: r for r in rows}["fid"]
    assert got["value"] == pytest.approx(_ref_fid_eig(space(real[:20]), space(fake[:20])), rel=1e-6, abs=1e-4)
    assert got["floor"] == pytest.approx(_ref_fid_eig(space(real[:20]), space(real2)), rel=1e-6, abs=1e-4)


# --- the random feature network ---------------------------------------------------------------

def test_conv2d_matches_scipy_correlate():
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2, 9, 9, 3)), rng.standard_normal((3, 3, 3, 4))
    ref = np.zeros((2, 9, 9, 4))
    for n in range(2):
        for o in range(4):
            ref[n, :, :, o] = sum(scipy.signal.correlate2d(x[n, :, :, c], w[:, :, c, o], mode="same")
                                  for c in range(3))
    np.testing.assert_allclose(fd.conv2d(x, w, 1), ref, atol=1e-12)
    np.testing.assert_allclose(fd.conv2d(x, w, 2), ref[:, ::2, ::2], atol=1e-12)


def test_random_features_are_deterministic():
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (6, 20, 20, 1), dtype=np.uint8)
    a = fd.RandomConvFeatures(seed=0)(images)
    b = fd.RandomConvFeatures(seed=0, batch_size=4)(images)  # a fresh network, other batches
    assert a.shape == (6, 240) and np.all(a >= 0)
    np.testing.assert_array_equal(a, fd.RandomConvFeatures(seed=0)(images))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    np.testing.assert_allclose(a[2:3], fd.RandomConvFeatures(seed=0)(images[2:3]), rtol=1e-12)
    np.testing.assert_allclose(a, fd.RandomConvFeatures()(np.repeat(images, 3, axis=-1)), rtol=1e-12)
    assert not np.allclose(a, fd.RandomConvFeatures(seed=1)(images))
    assert np.ptp(a, axis=0).max() > 0  # different images, different features


def test_feature_space_specs():
    assert fd.feature_space("random").name == "randomconv-s0"
    assert fd.feature_space("random:3").name == "randomconv-s3"
    for bad in ("bogus", "random:x", "classifier:"):
        with pytest.raises(BusganError, match="--features"):
            fd.feature_space(bad)


# --- busgan metrics ---------------------------------------------------------------------------

def _write_pngs(folder, images):
    folder.mkdir(parents=True)
    for i, im in enumerate(images):
        Image.fromarray(im[..., 0]).save(folder / f"img{i:03d}.png")


def _read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return tuple(reader.fieldnames), list(reader)


def test_cli_writes_metrics_csv_for_a_folder(tmp_path, capsys):
    rng = np.random.default_rng(8)
    _write_pngs(tmp_path / "benign", _blob_images(rng, 24))
    _write_pngs(tmp_path / "val", _blob_images(rng, 10))
    _write_pngs(tmp_path / "fake", _blob_images(rng, 12, bright=50))
    out = tmp_path / "metrics.csv"
    args = ["metrics", "--fake", str(tmp_path / "fake"), "--real", str(tmp_path / "benign"), "--out", str(out)]
    assert main(args) == 0
    header, rows = _read_csv(out)
    assert header == fd.METRICS_COLUMNS
    assert [r["metric"] for r in rows] == ["kid", "fid", "precision", "recall"]
    for r in rows:
        assert (r["class"], r["source"], r["kimg"], r["space"], r["n"]) == \
            ("benign", str(tmp_path / "fake"), "", "randomconv-s0", "12")  # 24 split in halves of 12
        assert np.isfinite(float(r["value"])) and np.isfinite(float(r["floor"]))
    table = capsys.readouterr().out
    assert "randomconv-s0" in table and "real-vs-real" in table
    # rerun with a second real folder and two spaces: same-key rows replaced, the new space added
    assert main(args + ["--real2", str(tmp_path / "val"), "--features", "random", "--features", "random:1"]) == 0
    _, rows = _read_csv(out)
    assert len(rows) == 8
    assert {r["space"] for r in rows} == {"randomconv-s0", "randomconv-s1"}
    assert {r["n"] for r in rows} == {"10"}  # min(24, 10, 12)


def test_cli_renders_a_snapshot(tmp_path, monkeypatch):
    rng = np.random.default_rng(9)
    _write_pngs(tmp_path / "real", _blob_images(rng, 20))
    cfg = dataclasses.replace(GanConfig(), resolution=16, channels=1)
    path = snap.save_snapshot(tmp_path / "run" / "snapshot-000002000.npz", {"g_ema": [np.zeros(2)]},
                              {"gan": dataclasses.asdict(cfg), "nimg": 2000})
    calls = []

    def fake_renderer(snapshot, truncation, image_class=None):
        assert snapshot == path
        def render(seeds):
            calls.append(list(seeds))
            return _blob_images(np.random.default_rng(int(seeds[0])), len(seeds), bright=40)
        return render

    monkeypatch.setattr(generate, "snapshot_renderer", fake_renderer)
    out = tmp_path / "m.csv"
    assert main(["metrics", "--network", str(path), "--real", str(tmp_path / "real"), "--class", "malignant",
                 "--batch-size", "4", "--out", str(out)]) == 0
    assert calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 9, 9]]  # seeds 0..9, last batch padded
    _, rows = _read_csv(out)
    assert [(r["class"], r["source"], r["kimg"], r["n"]) for r in rows] == [("malignant", str(path), "2", "10")] * 4


def test_cli_errors_are_one_line(tmp_path, capsys):
    _write_pngs(tmp_path / "a", _blob_images(np.random.default_rng(0), 8))
    assert main(["metrics", "--fake", str(tmp_path / "absent"), "--real", str(tmp_path / "a")]) == 2
    assert "--fake" in (err := capsys.readouterr().err) and "folder not found" in err
    (tmp_path / "empty").mkdir()
    assert main(["metrics", "--fake", str(tmp_path / "a"), "--real", str(tmp_path / "empty")]) == 2
    assert "no PNG/BMP/JPEG images" in capsys.readouterr().err
    assert main(["metrics", "--fake", str(tmp_path / "a"), "--real", str(tmp_path / "a"),
                 "--features", "nope", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--features" in capsys.readouterr().err
