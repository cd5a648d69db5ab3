"""Classifier stages end to end on tiny made-in-test images (both backends).

One short training run (the 'tiny' backbone, 32x32) is shared by the tests; InceptionResNetV2
is built once at 75x75 (its smallest input) to check the seed's freezing rule.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from busgan import CLASSES
from busgan.classifier import evaluate, model as cmodel, select as cselect
from busgan.classifier.train import train_classifier
from busgan.cli import main
from busgan.config import ClassifierConfig, SelectConfig
from busgan.errors import BusganError
from busgan.fileio import read_json

pytestmark = pytest.mark.keras
SIZE = 32
# jit only on JAX: without it JAX runs op by op, while TensorFlow runs a graph (XLA compiles slowly)
JAX = keras.backend.backend() == "jax"


def lesion_image(label: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """Speckle with a dark lesion: round (benign) or a thin tall bar (malignant)."""
    img = rng.normal(110, 25, (size, size))
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.3 * size, 0.7 * size, 2)
    r = rng.uniform(0.15 * size, 0.25 * size)
    mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) if label == 0 else \
        ((abs(yy - cy) < r) & (abs(xx - cx) < r / 3))
    img[mask] = 30
    return np.clip(img, 0, 255).astype(np.uint8)


def make_tree(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(lesion_image(label, rng), "L").save(root / name / f"{name}_{i:03d}.png")
    return root


def tiny_cfg(**kw: object) -> ClassifierConfig:
    base = dict(backbone="tiny", weights="none", input_size=SIZE, head_units=32, batch_size=20,
                epochs=6, patience=3, workers=2, seed=0, jit=JAX)
    base.update(kw)
    return ClassifierConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """WORK/data/{train,val,test} and a model trained on it through the CLI."""
    work = tmp_path_factory.mktemp("work")
    make_tree(work / "data" / "train", 40, seed=0)
    make_tree(work / "data" / "val", 10, seed=1)
    make_tree(work / "data" / "test", 20, seed=2)
    args = ["train-classifier", "--work", str(work), "--backbone", "tiny", "--weights", "none",
            "--input-size", str(SIZE), "--head-units", "32", "--batch-size", "20", "--epochs", "8",
            "--jit" if JAX else "--no-jit"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BUSGAN_NO_PROGRESS", "1")
        assert main(args) == 0
    return work


@pytest.fixture(autouse=True)
def no_progress_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUSGAN_NO_PROGRESS", "1")


def test_training_writes_outputs_and_learns(work: Path) -> None:
    out = work / "real"
    for name in ("model.keras", "history.csv", "learning_curve.png", "train.json"):
        assert (out / name).is_file(), name
    record = read_json(out / "train.json")
    assert record["counts"] == {"train": {"benign": 40, "malignant": 40},
                                "val": {"benign": 10, "malignant": 10}}
    assert record["val_source"] == "val_dir"
    # 8 epochs of 80 images reach a validation AUC of 0.99 (JAX) or 1.0 (TensorFlow); chance is 0.5
    assert record["val_auc"] >= 0.9, record["val_auc"]
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == record["epochs_run"] and {"loss", "val_loss", "val_auc"} <= set(rows[0])


def test_test_stage_report_and_files(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["test", str(work / "real" / "model.keras"), "--work", str(work)]) == 0
    printed = capsys.readouterr().out
    out = work / "real" / "test"
    metrics = read_json(out / "metrics.json")
    assert "Malig recall(sensitivity):" in printed and printed.rstrip().endswith(f"AUC: {metrics['auc']}")
    assert metrics["auc"] > 0.9 and 0.0 <= metrics["accuracy"] <= 1.0
    assert set(metrics["classes"]["benign"]) >= {"sensitivity", "specificity"}
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "true_label", "pred_label", "prob_benign", "prob_malignant"]
    assert len(rows) == 40 and rows[0]["file"] == "benign/benign_000.png"
    correct = sum(r["true_label"] == r["pred_label"] for r in rows)
    assert correct == metrics["correct"]
    assert (out / "roc.png").stat().st_size > 0 and (out / "confusion.png").stat().st_size > 0


def test_init_starts_from_given_weights_and_per_class(work: Path, tmp_path: Path) -> None:
    init = work / "real" / "model.keras"
    # learning rate 0: no update, so the result must equal the init weights
    cfg = tiny_cfg(learning_rate=0.0, epochs=1)
    path = train_classifier(work / "data" / "train", None, tmp_path / "ft", cfg, init=init, per_class=15)
    before = keras.saving.load_model(init, compile=False).get_layer("head_dense").get_weights()
    after = keras.saving.load_model(path, compile=False).get_layer("head_dense").get_weights()
    fresh = cmodel.build_classifier(tiny_cfg()).get_layer("head_dense").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert not np.array_equal(before[0], fresh[0])
    record = read_json(tmp_path / "ft" / "train.json")
    assert record["init"] == str(init) and record["val_source"] == "held out of train_dir"
    assert sum(record["counts"]["train"].values()) + sum(record["counts"]["val"].values()) == 30
    with pytest.raises(BusganError, match="input size 32 differs"):
        train_classifier(work / "data" / "train", None, tmp_path / "x", tiny_cfg(input_size=48), init=init)


def brightness_model(path: Path, classes: tuple[str, ...] = CLASSES, name: str = cmodel.MODEL_NAME) -> Path:
    """A classifier of known outputs: P(malignant) = sigmoid(40 * (mean brightness - 0.5))."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    out = keras.layers.Dense(2, activation="softmax", name=cmodel.output_layer_name(classes))(x)
    model = keras.Model(inputs, out, name=name)
    model.layers[-1].set_weights([np.array([[0.0, 40 / 3]] * 3, np.float32), np.array([0.0, -20.0], np.float32)])
    model.save(path)
    return path


def flat_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((SIZE, SIZE), value, np.uint8), "L").save(path)


def test_select_keeps_what_the_rule_says_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = brightness_model(tmp_path / "m.keras")
    gen = tmp_path / "gen"
    values = {"benign": [10, 60, 120, 140, 200], "malignant": [100, 135, 150, 220, 250]}
    for name, vals in values.items():
        for v in vals:
            flat_png(gen / name / f"{v:03d}.png", v)
    # brightness/255 > 0.5 (value >= 128) is malignant
    summary = cselect.select_images(model, gen, tmp_path / "sel", SelectConfig())
    kept = {c: sorted(p.name for p in (tmp_path / "sel" / c).iterdir()) for c in CLASSES}
    assert kept == {"benign": ["010.png", "060.png", "120.png"],
                    "malignant": ["135.png", "150.png", "220.png", "250.png"]}
    assert summary["benign"] == {"generated": 5, "accepted": 3, "kept": 3, "acceptance_rate": 0.6}
    with open(tmp_path / "sel" / "scores.csv") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert len(rows) == 10 and rows["malignant/100.png"]["kept"] == "0"
    assert float(rows["benign/200.png"]["prob_malignant"]) > 0.99

    # rerun: nothing is scored again; only a new image is
    calls: list[int] = []
    real_predict = cselect.predict_files
    monkeypatch.setattr(cselect, "predict_files", lambda m, files, bs: calls.append(len(files)) or real_predict(m, files, bs))
    flat_png(gen / "malignant" / "240.png", 240)
    cfg = SelectConfig(min_probability=0.9, max_per_class=2, keep="top")
    summary = cselect.select_images(model, gen, tmp_path / "sel", cfg)
    assert calls == [1]
    kept = {c: sorted(p.name for p in (tmp_path / "sel" / c).iterdir()) for c in CLASSES}
    # P(benign) >= 0.9 needs value <= ~113: 010, 060; top-2 malignant: the brightest
    assert kept == {"benign": ["010.png", "060.png"], "malignant": ["240.png", "250.png"]}
    assert summary["malignant"]["accepted"] == 4 and summary["malignant"]["kept"] == 2
    rand = cselect.select_images(model, gen, tmp_path / "sel", SelectConfig(max_per_class=2, keep="random", seed=1))
    assert calls == [1] and rand["malignant"]["kept"] == 2
    assert main(["select", "--model", str(model), "--generated", str(gen), "--out", str(tmp_path / "cli"),
                 "--max-per-class", "3", "--keep", "random"]) == 0
    assert read_json(tmp_path / "cli" / "select.json")["classes"]["malignant"]["kept"] == 3
    with pytest.raises(BusganError, match="output folder is the generated folder"):
        cselect.select_images(model, gen, gen, SelectConfig())


def test_bad_models_are_refused(tmp_path: Path, work: Path) -> None:
    plain = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(BusganError, match=r"plain.keras: not a busgan classifier"):
        cmodel.load_classifier(tmp_path / "plain.keras")
    swapped = brightness_model(tmp_path / "swapped.keras", classes=("malignant", "benign"))
    with pytest.raises(BusganError, match=r"swapped.keras: the model's label order"):
        evaluate.test_model(swapped, work / "data" / "test", tmp_path / "t")
    (tmp_path / "junk.keras").write_bytes(b"junk")
    with pytest.raises(BusganError, match=r"junk.keras: cannot be read"):
        cmodel.load_classifier(tmp_path / "junk.keras")
    with pytest.raises(BusganError, match=r"input size 32 differs from classifier.input_size=64"):
        cmodel.load_classifier(work / "real" / "model.keras", expected_size=64)
    bad = tmp_path / "bad_test"
    flat_png(bad / "benign" / "a.png", 0)
    flat_png(bad / "cyst" / "a.png", 0)
    assert main(["test", str(work / "real" / "model.keras"), "--test", str(bad)]) == 2


def test_weights_local_file_freezes_and_imagenet_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backbone = cmodel.build_backbone(tiny_cfg(seed=5))
    backbone.save_weights(tmp_path / "tiny.weights.h5")
    model = cmodel.build_classifier(tiny_cfg(weights=str(tmp_path / "tiny.weights.h5"), freeze_layers=3))
    assert np.array_equal(model.get_layer("tiny_conv1").get_weights()[0], backbone.get_layer("tiny_conv1").get_weights()[0])
    # layers 0-2: input, conv1 frozen, bn1 trainable (BatchNormalization is never frozen)
    assert [layer.trainable for layer in model.layers[:4]] == [False, False, True, True]
    assert all(layer.trainable for layer in cmodel.build_classifier(tiny_cfg()).layers)

    def offline(*args: object, **kwargs: object) -> None:
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- "
                        "[Errno -2] Name or service not known")
    monkeypatch.setattr(keras.applications, "MobileNetV3Small", offline)
    with pytest.raises(BusganError, match=r"could not be downloaded.*--weights PATH.*--weights none"):
        cmodel.build_classifier(ClassifierConfig(backbone="MobileNetV3Small", weights="imagenet", input_size=SIZE))
    with pytest.raises(BusganError, match="not a keras.applications model"):
        cmodel.build_classifier(ClassifierConfig(backbone="NoSuchNet", weights="none"))
    with pytest.raises(BusganError, match="missing.h5 not found"):
        cmodel.build_classifier(tiny_cfg(weights=str(tmp_path / "missing.h5")))


def test_inception_resnet_v2_head_and_freezing_rule() -> None:
    cfg = ClassifierConfig(weights="none", input_size=75, head_units=8)
    model = cmodel.build_classifier(cfg)
    assert model.input_shape == (None, 75, 75, 3) and model.output_shape == (None, 2)
    assert [layer.name for layer in model.layers[-3:]] == ["head_pool", "head_dense", "probs__benign__malignant"]
    assert all(layer.trainable for layer in model.layers)  # weights 'none': everything trains
    cmodel.freeze(model, 775)
    for i, layer in enumerate(model.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == (i >= 775 or is_bn), (i, layer.name)
    assert len(model.layers) > 775


@pytest.mark.skipif(not os.environ.get("BUSGAN_SLOW_TESTS"), reason="a minute per backend; set BUSGAN_SLOW_TESTS=1")
def test_inception_resnet_v2_train_step(tmp_path: Path) -> None:
    make_tree(tmp_path / "train", 4, seed=0)
    cfg = ClassifierConfig(weights="none", input_size=75, batch_size=4, epochs=1, jit=False, workers=1)
    path = train_classifier(tmp_path / "train", None, tmp_path / "out", cfg)
    assert cmodel.input_size(cmodel.load_classifier(path)) == 75
