"""The paper's printout, folder scanning, splits and augmentation (no Keras model built)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix, f1_score,
                             precision_score, recall_score, roc_auc_score)

from busgan import CLASSES
from busgan.classifier.dataset import (ImageFolderDataset, augment, load_image, sample_per_class,
                                       scan_classes, stratified_split)
from busgan.classifier.report import compute_metrics, format_report
from busgan.errors import BusganError

# The seed's printout of its real-trained model (README), without the title, Keras' progress
# bar and the AUC line (whose value depends on probabilities it never saved).
SEED_PRINTOUT = """
Benign
[[138 12]
[ 18 132]]
Benign precision: 0.9166666666666666 ( 132 / 144.0 )
Benign recall(sensitivity): 0.88 ( 132 / 150.0 )
Benign specificity: 0.92 ( 138 / 150.0 )
Benign f_1 score: 0.8979591836734694 ( 1.6133333333333333 / 1.7966666666666666 )

Malignancy
[[132 18]
[ 12 138]]
Malig precision: 0.8846153846153846 ( 138 / 156.0 )
Malig recall(sensitivity): 0.92 ( 138 / 150.0 )
Malig specificity: 0.88 ( 132 / 150.0 )
Malig f_1 score: 0.9019607843137256 ( 1.6276923076923078 / 1.8046153846153845 )

Accuracy: 0.9 ( 270 / 300.0 )

precision recall f1-score support

Benign 0.917 0.880 0.898 150
Malignant 0.885 0.920 0.902 150

accuracy 0.900 300
macro avg 0.901 0.900 0.900 300
weighted avg 0.901 0.900 0.900 300
"""


def seed_predictions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """150 + 150 labels: 132 benign right, 18 wrong; 138 malignant right, 12 wrong."""
    y_true = np.array([0] * 150 + [1] * 150)
    y_pred = np.array([0] * 132 + [1] * 18 + [1] * 138 + [0] * 12)
    rng = np.random.default_rng(0)
    prob = np.where(y_pred == 1, rng.uniform(0.5, 1.0, 300), rng.uniform(0.0, 0.5, 300))
    return y_true, y_pred, prob


def normalise(text: str) -> list[str]:
    """Lines with runs of spaces collapsed (the seed's README collapsed numpy's alignment)."""
    return [re.sub(r"\s+", " ", line).strip() for line in text.strip().splitlines()]


def test_report_reproduces_the_seed_printout() -> None:
    y_true, y_pred, prob = seed_predictions()
    metrics = compute_metrics(y_true, y_pred, prob, CLASSES)
    text = format_report(y_true, y_pred, metrics, CLASSES)
    lines = normalise(text)
    assert lines[-1] == f"AUC: {roc_auc_score(y_true, prob)}"
    assert lines[:-1] == normalise(SEED_PRINTOUT) + [""]  # the seed had its progress bar there
    # numpy's own matrix print and scikit-learn's own report, unaltered
    assert "[[138  12]\n [ 18 132]]" in text
    assert classification_report(y_true, y_pred, target_names=["Benign", "Malignant"], digits=3) in text


def test_metrics_equal_scikit_learn() -> None:
    y_true, y_pred, prob = seed_predictions()
    m = compute_metrics(y_true, y_pred, prob, CLASSES)
    assert m["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist() == [[132, 18], [12, 138]]
    assert m["accuracy"] == accuracy_score(y_true, y_pred) == 0.9
    assert m["auc"] == roc_auc_score(y_true, prob)
    for label, name in enumerate(CLASSES):
        s = m["classes"][name]
        kw = dict(pos_label=label)
        assert s["precision"] == pytest.approx(precision_score(y_true, y_pred, **kw), abs=1e-15)
        assert s["sensitivity"] == pytest.approx(recall_score(y_true, y_pred, **kw), abs=1e-15)
        assert s["f1"] == pytest.approx(f1_score(y_true, y_pred, **kw), abs=1e-15)
        other = 1 - label
        assert s["specificity"] == pytest.approx(recall_score(y_true, y_pred, pos_label=other), abs=1e-15)
    assert m["classes"]["benign"]["confusion_matrix"] == [[138, 12], [18, 132]]


def write_png(path: Path, value: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8), "L").save(path)


def test_scan_classes_labels_and_errors(tmp_path: Path) -> None:
    for name, n in (("benign", 3), ("malignant", 2)):
        for i in range(n):
            write_png(tmp_path / "ok" / name / f"{i}.png", 10 * i)
    files, labels = scan_classes(tmp_path / "ok")
    assert [f.parent.name for f in files] == ["benign"] * 3 + ["malignant"] * 2
    assert labels.tolist() == [0, 0, 0, 1, 1]

    write_png(tmp_path / "unknown" / "benign" / "a.png", 0)
    write_png(tmp_path / "unknown" / "BreastMalignancy" / "a.png", 0)
    with pytest.raises(BusganError, match=r"unknown class folder.*BreastMalignancy"):
        scan_classes(tmp_path / "unknown")
    write_png(tmp_path / "empty" / "benign" / "a.png", 0)
    (tmp_path / "empty" / "malignant").mkdir()
    with pytest.raises(BusganError, match=r"malignant: no images"):
        scan_classes(tmp_path / "empty")
    with pytest.raises(BusganError, match=r"malignant: class folder missing"):
        scan_classes(_only_benign(tmp_path))
    assert scan_classes(_only_benign(tmp_path), require_all=False)[1].tolist() == [0]
    with pytest.raises(BusganError, match="not found"):
        scan_classes(tmp_path / "absent")


def _only_benign(tmp_path: Path) -> Path:
    write_png(tmp_path / "one" / "benign" / "a.png", 0)
    return tmp_path / "one"


def test_split_and_per_class_sampling_are_seeded_and_stratified() -> None:
    labels = np.array([0] * 50 + [1] * 30)
    tr, va = stratified_split(labels, 0.2, seed=3)
    assert len(va) == 16 and set(tr).isdisjoint(va) and len(tr) + len(va) == 80
    assert np.bincount(labels[va]).tolist() == [10, 6]
    assert np.array_equal(va, stratified_split(labels, 0.2, seed=3)[1])
    pick = sample_per_class(labels, 20, seed=1)
    assert np.bincount(labels[pick]).tolist() == [20, 20]
    assert np.array_equal(pick, sample_per_class(labels, 20, seed=1))
    assert not np.array_equal(pick, sample_per_class(labels, 20, seed=2))
    assert len(sample_per_class(labels, 40, seed=1)) == 70  # a short class gives all it has


def test_loading_is_rgb_resized_and_not_scaled(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", 255, size=20)
    x = load_image(tmp_path / "a.png", 8)
    # raw pixel values: the model scales them itself (its 'preprocess' layer)
    assert x.shape == (8, 8, 3) and x.dtype == np.float32 and np.array_equal(x, np.full_like(x, 255.0))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(BusganError, match="bad.png"):
        load_image(tmp_path / "bad.png", 8)


def test_augmentation_shifts_with_edge_fill_and_flips() -> None:
    image = np.arange(100, dtype=np.float32).reshape(10, 10, 1)
    rng = np.random.default_rng(0)
    out = [augment(image, rng, 0.1, True) for _ in range(50)]
    assert all(o.shape == image.shape for o in out)
    assert any(not np.array_equal(o, image) for o in out)
    assert np.array_equal(augment(image, rng, 0.0, False), image)
    flipped = [o for o in (augment(image, np.random.default_rng(s), 0.0, True) for s in range(20))
               if not np.array_equal(o, image)]
    assert flipped and np.array_equal(flipped[0], image[:, ::-1])


def test_dataset_batches_are_labelled_and_repeatable(tmp_path: Path) -> None:
    files = []
    for i in range(10):
        write_png(tmp_path / f"{i}.png", 20 * i)
        files.append(tmp_path / f"{i}.png")
    labels = np.array([0] * 5 + [1] * 5)
    ds = ImageFolderDataset(files, labels, size=4, batch_size=4, shuffle=True, shift=0.1, flip=True, seed=1)
    assert len(ds) == 3
    x, y = ds[0]
    assert x.shape == (4, 4, 4, 3) and y.shape == (4, 2)
    idx = ds.batch_indices(0)
    assert np.array_equal(y.argmax(1), labels[idx])
    assert np.array_equal(x[:, 0, 0, 0], np.array([20 * i for i in idx]))  # flat images, raw pixels
    again = ImageFolderDataset(files, labels, size=4, batch_size=4, shuffle=True, seed=1)
    assert np.array_equal(again.batch_indices(0), idx)
    ds.on_epoch_end()
    assert sorted(np.concatenate([ds.batch_indices(b) for b in range(3)])) == list(range(10))
    assert ImageFolderDataset(files, None, size=4, batch_size=4)[2][0].shape == (2, 4, 4, 3)
