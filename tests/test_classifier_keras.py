"""Classifier stages end to end on tiny made-in-test images (both backends).

One short training run (the 'tiny' backbone, 32x32) is shared by the tests; InceptionResNetV2
is built once at 75x75 (its smallest input) to check the seed's freezing rule.
"""

from __future__ import annotations

import csv
import importlib
import logging
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from busgan import CLASSES
from busgan.classifier import evaluate, model as cmodel, select as cselect
from busgan.classifier.dataset import scan_classes
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


@pytest.mark.slow  # uses the module's trained classifier
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


@pytest.mark.slow  # uses the module's trained classifier
def test_test_stage_report_and_files(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["test", str(work / "real" / "model.keras"), "--work", str(work)]) == 0
    printed = capsys.readouterr().out
    out = work / "real" / "test"
    metrics = read_json(out / "metrics.json")
    assert "Malig recall(sensitivity):" in printed and printed.rstrip().endswith(f"AUC: {metrics['auc']}")
    assert printed == (out / "report.txt").read_text()  # the command prints the report as written
    evaluate.evaluate_model(work / "real" / "model.keras", work / "data" / "test", out)
    assert capsys.readouterr().out == ""  # the Python API is quiet
    assert metrics["auc"] > 0.9 and 0.0 <= metrics["accuracy"] <= 1.0
    assert set(metrics["classes"]["benign"]) >= {"sensitivity", "specificity"}
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "true_label", "pred_label", "prob_benign", "prob_malignant"]
    assert len(rows) == 40 and rows[0]["file"] == "benign/benign_000.png"
    correct = sum(r["true_label"] == r["pred_label"] for r in rows)
    assert correct == metrics["correct"]
    assert (out / "roc.png").stat().st_size > 0 and (out / "confusion.png").stat().st_size > 0


@pytest.mark.slow  # uses the module's trained classifier
def test_init_starts_from_given_weights_and_per_class(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    init = work / "real" / "model.keras"
    # learning rate 0: no update, so the result must equal the init weights
    cfg = tiny_cfg(learning_rate=0.0, epochs=1)
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="busgan"):
        path = train_classifier(work / "data" / "train", None, tmp_path / "ft", cfg, init=init, per_class=15)
    assert capsys.readouterr().out == ""  # the Python API is quiet; the line is a log record
    assert [m for m in caplog.messages if m.startswith(f"model: {path}  (epochs 1, best 1, validation AUC ")]
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


@pytest.mark.slow  # two short trainings
@pytest.mark.parametrize("monitor", ["val_loss", "val_auc"])
def test_the_monitored_best_epoch_is_restored_and_recorded(work: Path, tmp_path: Path, monitor: str) -> None:
    """classifier.monitor: the kept model is the epoch with the best monitored validation value
    (lowest loss, or highest AUC), and train.json names that epoch."""
    cfg = tiny_cfg(epochs=5, patience=5, monitor=monitor, learning_rate=3e-3)
    path = train_classifier(work / "data" / "train", work / "data" / "val", tmp_path / "m", cfg)
    with open(tmp_path / "m" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    values = [float(row[monitor]) for row in rows]
    best = (values.index(min(values)) if monitor == "val_loss" else values.index(max(values))) + 1
    assert read_json(tmp_path / "m" / "train.json")["best_epoch"] == best
    model = keras.saving.load_model(path, safe_mode=True)
    model.compile(loss=keras.losses.CategoricalCrossentropy(),
                  metrics=[keras.metrics.AUC(name="auc", multi_label=True, num_labels=len(CLASSES))])
    files, labels = scan_classes(work / "data" / "val")
    x = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    y = np.eye(len(CLASSES), dtype="float32")[labels]
    loss, auc = model.evaluate(x, y, batch_size=20, verbose=0)
    # both figures of the restored epoch (at val_auc the best epoch here is not the last one)
    assert (loss, auc) == pytest.approx((float(rows[best - 1]["val_loss"]), float(rows[best - 1]["val_auc"])), abs=1e-4)


def brightness_model(path: Path, classes: tuple[str, ...] = CLASSES, name: str = cmodel.MODEL_NAME,
                     preprocess: bool = True) -> Path:
    """A classifier of known outputs: P(malignant) = sigmoid(40 * (mean brightness - 0.5)).

    ``preprocess=False``: as busgan saved models before they scaled their input (pixels / 255
    outside the model)."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255, name=cmodel.PREPROCESS_LAYER)(inputs) if preprocess else inputs
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax", name=cmodel.output_layer_name(classes))(x)
    model = keras.Model(inputs, out, name=name)
    model.layers[-1].set_weights([np.array([[0.0, 40 / 3]] * 3, np.float32), np.array([0.0, -20.0], np.float32)])
    model.save(path)
    return path


def flat_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((SIZE, SIZE), value, np.uint8), "L").save(path)


def test_select_keeps_what_the_rule_says_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    model = brightness_model(tmp_path / "m.keras")
    gen = tmp_path / "gen"
    values = {"benign": [10, 60, 120, 140, 200], "malignant": [100, 135, 150, 220, 250]}
    for name, vals in values.items():
        for v in vals:
            flat_png(gen / name / f"{v:03d}.png", v)
    # brightness/255 > 0.5 (value >= 128) is malignant
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="busgan"):
        summary = cselect.select_images(model, gen, tmp_path / "sel", SelectConfig())
    # the Python API prints nothing; it logs what the command shows
    assert capsys.readouterr().out == ""
    assert f"benign: 5 generated, 3 accepted (60.0%), 3 kept in {tmp_path / 'sel' / 'benign'}" in caplog.messages
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
    capsys.readouterr()
    assert main(["select", "--model", str(model), "--generated", str(gen), "--out", str(tmp_path / "cli"),
                 "--max-per-class", "3", "--keep", "random"]) == 0
    assert f"malignant: 6 generated, 5 accepted (83.3%), 3 kept in {tmp_path / 'cli' / 'malignant'}\n" in \
        capsys.readouterr().out  # the command shows the library's messages on stdout
    assert read_json(tmp_path / "cli" / "select.json")["classes"]["malignant"]["kept"] == 3
    with pytest.raises(BusganError, match="output folder is the generated folder"):
        cselect.select_images(model, gen, gen, SelectConfig())


@pytest.mark.slow  # uses the module's trained classifier
def test_bad_models_are_refused(tmp_path: Path, work: Path) -> None:
    plain = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(BusganError, match=r"plain.keras: not a busgan classifier"):
        cmodel.load_classifier(tmp_path / "plain.keras")
    swapped = brightness_model(tmp_path / "swapped.keras", classes=("malignant", "benign"))
    with pytest.raises(BusganError, match=r"swapped.keras: the model's label order"):
        evaluate.evaluate_model(swapped, work / "data" / "test", tmp_path / "t")
    old = brightness_model(tmp_path / "old.keras", preprocess=False)
    with pytest.raises(BusganError, match=r"old.keras: saved by an older busgan that scaled images "
                                          r"outside the model .*retrain it") as e:
        cmodel.load_classifier(old)
    assert "\n" not in str(e.value)
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
    # layers 0-2 as the seed counted them: input, conv1 frozen, bn1 trainable (BatchNormalization
    # is never frozen); the preprocessing layer is not counted
    assert [layer.name for layer in model.layers[:3]] == ["image", "preprocess", "tiny_conv1"]
    assert [layer.trainable for layer in cmodel.counted_layers(model)[:4]] == [False, False, True, True]
    assert all(layer.trainable for layer in cmodel.counted_layers(cmodel.build_classifier(tiny_cfg())))

    def offline(*args: object, **kwargs: object) -> None:
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- "
                        "[Errno -2] Name or service not known")
    offline.__module__ = keras.applications.MobileNetV3Small.__module__  # its preprocess_input
    monkeypatch.setattr(keras.applications, "MobileNetV3Small", offline)
    with pytest.raises(BusganError, match=r"could not be downloaded.*--weights PATH.*--weights none"):
        cmodel.build_classifier(ClassifierConfig(backbone="MobileNetV3Small", weights="imagenet", input_size=SIZE))
    with pytest.raises(BusganError, match="not a keras.applications model"):
        cmodel.build_classifier(ClassifierConfig(backbone="NoSuchNet", weights="none"))
    with pytest.raises(BusganError, match="missing.h5 not found"):
        cmodel.build_classifier(tiny_cfg(weights=str(tmp_path / "missing.h5")))


@pytest.mark.slow  # builds the full InceptionResNetV2 (about 10 s)
def test_inception_resnet_v2_head_and_freezing_rule() -> None:
    cfg = ClassifierConfig(weights="none", input_size=75, head_units=8)
    model = cmodel.build_classifier(cfg)
    assert model.input_shape == (None, 75, 75, 3) and model.output_shape == (None, 2)
    assert [layer.name for layer in model.layers[-3:]] == ["head_pool", "head_dense", "probs__benign__malignant"]
    pre = model.layers[1]  # 'auto': InceptionResNetV2's own preprocess_input, x / 127.5 - 1
    assert isinstance(pre, keras.layers.Rescaling) and pre.name == "preprocess"
    assert (pre.scale, pre.offset) == (pytest.approx(1 / 127.5, rel=1e-12), -1.0)
    layers = cmodel.counted_layers(model)  # the seed's model.layers: no preprocessing layer
    assert len(layers) == len(model.layers) - 1 and isinstance(layers[1], keras.layers.Conv2D)
    assert all(layer.trainable for layer in layers)  # weights 'none': everything trains
    cmodel.freeze(model, 775)
    for i, layer in enumerate(layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == (i >= 775 or is_bn), (i, layer.name)
    assert len(layers) > 775
    unit = cmodel.build_classifier(ClassifierConfig(weights="none", input_size=75, head_units=8, preprocess="unit"))
    assert (unit.layers[1].scale, unit.layers[1].offset) == (pytest.approx(1 / 255, rel=1e-12), 0.0)  # the seed's


@pytest.mark.skipif(not os.environ.get("BUSGAN_SLOW_TESTS"), reason="a minute per backend; set BUSGAN_SLOW_TESTS=1")
def test_inception_resnet_v2_train_step(tmp_path: Path) -> None:
    make_tree(tmp_path / "train", 4, seed=0)
    cfg = ClassifierConfig(weights="none", input_size=75, batch_size=4, epochs=1, jit=False, workers=1)
    path = train_classifier(tmp_path / "train", None, tmp_path / "out", cfg)
    assert cmodel.input_size(cmodel.load_classifier(path)) == 75


@pytest.mark.slow  # uses the module's trained classifier
def test_saved_model_predicts_uint8_as_the_training_pipeline(work: Path) -> None:
    """keras.saving.load_model(path, safe_mode=True).predict(uint8 images) needs no busgan code
    and gives what the training-time pipeline (raw pixels streamed from disk) gives."""
    path = work / "real" / "model.keras"
    files, _ = scan_classes(work / "data" / "test")
    pipeline = evaluate.predict_files(cmodel.load_classifier(path), files, batch_size=8)
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    assert images.dtype == np.uint8
    plain = keras.saving.load_model(path, safe_mode=True)
    assert plain.get_layer("preprocess").get_config()["scale"] == pytest.approx(1 / 255)  # 'tiny': / 255
    np.testing.assert_allclose(plain.predict(images, verbose=0), pipeline, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backbone", ["InceptionResNetV2", "DenseNet121", "VGG16", "MobileNetV3Small"])
def test_preprocessing_layer_is_the_families_preprocess_input(backbone: str) -> None:
    """'auto' puts the keras.applications preprocessing of the backbone's family in the model:
    [-1, 1] (tf), ImageNet mean and std (torch), RGB->BGR minus the mean (caffe), none."""
    layer = cmodel.preprocessing_layer(cmodel.preprocessing_affine(ClassifierConfig(backbone=backbone)))
    module = importlib.import_module(getattr(keras.applications, backbone).__module__)
    x = np.random.default_rng(3).integers(0, 256, (2, 5, 5, 3)).astype(np.float32)
    want = module.preprocess_input(x.copy())
    got = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert layer.name == cmodel.PREPROCESS_LAYER and not layer.trainable and layer.dtype == "float32"
    unit = cmodel.preprocessing_layer(cmodel.preprocessing_affine(ClassifierConfig(backbone=backbone, preprocess="unit")))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(unit(x)), x / 255, rtol=1e-6)


def test_channel_reordering_preprocessing_keeps_the_backbones_weights(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A family whose preprocessing reorders channels (VGG, ResNet: RGB->BGR) gets a fixed Dense(3),
    a layer with weights: the backbone's weights file is loaded into the plain backbone and copied."""
    def small_vgg(include_top: bool = False, weights: str | None = None, input_shape: tuple | None = None,
                  input_tensor: object = None) -> keras.Model:  # the keras.applications signature
        inputs = keras.Input(input_shape) if input_tensor is None else input_tensor
        x = keras.layers.Conv2D(4, 3, name="block1_conv1")(inputs)
        x = keras.layers.Conv2D(4, 3, name="block1_conv2")(x)
        model = keras.Model(keras.utils.get_source_inputs(inputs)[0], x, name="vgg16")
        if weights is not None:
            model.load_weights(weights)
        return model

    small_vgg.__module__ = keras.applications.VGG16.__module__  # its family: vgg16.preprocess_input
    monkeypatch.setattr(keras.applications, "VGG16", small_vgg)
    reference = small_vgg(input_shape=(SIZE, SIZE, 3))
    reference.save_weights(tmp_path / "vgg.weights.h5")
    cfg = ClassifierConfig(backbone="VGG16", weights=str(tmp_path / "vgg.weights.h5"), input_size=SIZE,
                           head_units=4, freeze_layers=2)
    model = cmodel.build_classifier(cfg)
    assert isinstance(model.get_layer("preprocess"), keras.layers.Dense)
    for name in ("block1_conv1", "block1_conv2"):
        for a, b in zip(model.get_layer(name).get_weights(), reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.float32)
    features = keras.Model(model.input, model.get_layer("block1_conv2").output)
    want = reference(keras.applications.vgg16.preprocess_input(x.copy()))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(features(x)), keras.ops.convert_to_numpy(want),
                               rtol=1e-4, atol=1e-3)
    # freeze_layers=2 counts the input and block1_conv1, not the preprocessing layer
    assert [layer.trainable for layer in model.layers[:4]] == [False, False, False, True]
