"""Issue 11, points 10-13: resource limits, model-loading safety, no downloads at run time,
and the small ones (symbolic links, EXIF sizes, odd file names, best.json)."""

from __future__ import annotations

import csv
import json
import re
import tomllib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busgan.cli import main
from busgan.config import ClassifierConfig, load_config
from busgan.data import images as dimages
from busgan.data.images import load_image
from busgan.errors import BusganError, shown

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUSGAN_NO_PROGRESS", "1")


def one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def gradient16(h: int, w: int) -> np.ndarray:
    """A 16-bit gradient using the whole range (so the /257 rule applies)."""
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 65535) // max(w - 1, 1) // 2 + (y * 65535) // max(h - 1, 1) // 2).astype(np.uint16)


def expected_8bit(v: np.ndarray) -> np.ndarray:
    """floor(v / 257 + 0.5) in integers: the documented rule, computed independently."""
    return ((2 * v.astype(np.int64) + 257) // 514).clip(0, 255).astype(np.uint8)


# -- point 10: large 16-bit images, decompression bombs ------------------------------------

def test_16bit_conversion_is_banded_and_equals_the_whole_image_rule(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    arr = gradient16(203, 157)
    Image.fromarray(arr).save(tmp_path / "small.png")
    assert Image.open(tmp_path / "small.png").mode == "I;16"
    monkeypatch.setattr(dimages, "BAND_PIXELS", 1000)  # many bands on a small image
    got = np.asarray(load_image(tmp_path / "small.png").image)
    assert np.array_equal(got, expected_8bit(arr))
    twelve = (arr // 16).astype(np.uint16)  # 12-bit data: divided by 4095/255
    Image.fromarray(twelve).save(tmp_path / "twelve.png")
    want = np.clip(np.floor(twelve / (4095 / 255) + 0.5), 0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(load_image(tmp_path / "twelve.png").image), want)


def test_large_16bit_png_converts_in_bounded_memory(tmp_path: Path) -> None:
    """A 6000x6000 16-bit PNG (72 MB decoded): the conversion never makes a float64 copy of
    the whole image (288 MB; the old code peaked above 800 MB). Takes a few seconds."""
    n = 6000
    arr = gradient16(n, n)
    Image.fromarray(arr).save(tmp_path / "big.png", compress_level=1)
    rows = arr[[0, n // 2, n - 1]]
    del arr
    tracemalloc.start()
    try:
        loaded = load_image(tmp_path / "big.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100e6, f"peak {peak / 1e6:.0f} MB"
    assert (loaded.width, loaded.height, loaded.mode, loaded.image.mode) == (n, n, "I;16", "L")
    out = np.asarray(loaded.image)
    assert np.array_equal(out[[0, n // 2, n - 1]], expected_8bit(rows))


def test_decompression_bomb_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    Image.new("L", (120, 100)).save(tmp_path / "warn.png")   # over the limit: Pillow only warns
    Image.new("L", (300, 100)).save(tmp_path / "error.png")  # over twice the limit: Pillow errors
    for name in ("warn.png", "error.png"):
        with pytest.raises(BusganError) as e:
            load_image(tmp_path / name)
        text = one_line(e)
        assert text.startswith(str(tmp_path / name)) and "10,000 pixels" in text and "downscale" in text
    doc = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    assert "Largest accepted image" in doc and "89,478,485" in doc


# -- point 11: model loading ---------------------------------------------------------------

def test_keras_floor_and_every_load_model_is_safe() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "keras>=3.14" in deps
    for env in (ROOT / "envs").glob("*.txt"):
        for line in env.read_text().splitlines():
            m = re.match(r"keras==(\d+)\.(\d+)", line.strip())
            if m:
                assert (int(m[1]), int(m[2])) >= (3, 14), (env, line)
    calls = []
    for py in (ROOT / "src" / "busgan").rglob("*.py"):
        text = py.read_text(encoding="utf-8")
        for m in re.finditer(r"load_model\(([^)]*)\)", text):
            if "``" not in text[max(0, m.start() - 30):m.start()]:  # not a docstring mention
                calls.append((py.name, m.group(1)))
    assert calls and all("safe_mode=True" in args for _, args in calls), calls


@pytest.mark.keras
def test_keras_file_with_code_is_refused_and_never_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    from busgan.classifier import model as cmodel
    from busgan.stylegan2 import metrics

    marker = tmp_path / "marker.txt"

    # the attacker's code: a Python lambda, which Keras stores as bytecode in the .keras file
    # (the path is a constant in its code: Keras restores neither defaults nor closures)
    payload = eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]")  # noqa: S307

    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Lambda(payload, name="preprocess")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="probs__benign__malignant")(x)
    evil = tmp_path / "model.keras"
    keras.Model(inputs, outputs, name="busgan_classifier").save(evil)
    marker.unlink()  # building the model ran it once
    keras.saving.load_model(evil, safe_mode=False)  # the control: unsafe loading runs the code
    assert marker.is_file()
    marker.unlink()

    with pytest.raises(BusganError) as e:
        cmodel.load_classifier(evil)
    assert "refused" in one_line(e) and str(evil) in str(e.value)
    with pytest.raises(BusganError) as e:
        metrics.classifier_features(evil)
    assert "refused" in one_line(e)
    assert not marker.exists()

    # a legacy .h5 "model" is never given to load_model at all
    (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")

    def no_load(*a: object, **k: object) -> None:
        raise AssertionError("load_model called on an .h5 file")
    monkeypatch.setattr(keras.saving, "load_model", no_load)
    with pytest.raises(BusganError) as e:
        cmodel.load_classifier(tmp_path / "model.h5")
    assert "not a Keras v3 model file (.keras)" in one_line(e)


# -- point 12: no downloads at run time ----------------------------------------------------

def test_weights_default_is_none_and_paper_asks_for_imagenet() -> None:
    assert ClassifierConfig().weights == "none"
    assert load_config(ROOT / "configs" / "paper.toml").classifier.weights == "imagenet"


@pytest.mark.keras
def test_imagenet_refused_up_front_when_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in keras.applications model that fetches its weights the way they all do
    (``file_utils.get_file`` into ``models/``), so the test runs in a second; the real
    MobileNetV3Small offline is a case of benchmarks/fault_matrix.py."""
    import keras
    from keras.src.ops import operation_utils
    from keras.src.utils import file_utils

    from busgan.classifier import model as cmodel

    name = "fake_weights_tf_dim_ordering_tf_kernels_notop.h5"

    def application(include_top: bool = True, weights: str | None = None, input_tensor: object = None,
                    input_shape: object = None) -> keras.Model:
        x = keras.layers.Conv2D(4, 3, name="fake_conv")(input_tensor)
        model = keras.Model(operation_utils.get_source_inputs(input_tensor), x, name="fake")
        if weights == "imagenet":
            model.load_weights(file_utils.get_file(name, "https://example.invalid/" + name,
                                                   cache_subdir="models", file_hash="0" * 64))
        return model
    application.__module__ = keras.applications.MobileNetV3Small.__module__  # its preprocess_input
    monkeypatch.setattr(keras.applications, "MobileNetV3Small", application)

    def no_network(*a: object, **k: object) -> None:
        raise AssertionError("busgan tried to download")
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    cfg = ClassifierConfig(backbone="MobileNetV3Small", weights="imagenet", input_size=16)
    with pytest.raises(BusganError) as e:
        cmodel.build_backbone(cfg)
    text = one_line(e)
    assert f"--set classifier.weights=/path/to/{name}" in text, text
    assert str(home / "models") in text and "never downloads" in text, text

    # a cached file with the wrong hash is refused the same way (never re-downloaded)
    (home / "models").mkdir(exist_ok=True)
    (home / "models" / name).write_bytes(b"partial download")
    with pytest.raises(BusganError) as e:
        cmodel.build_backbone(cfg)
    assert "hash differs" in one_line(e) and "delete the file" in str(e.value)

    # the file in the Keras cache is used (legacy .h5 weights of the same architecture)
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    donor = application(input_tensor=keras.Input((16, 16, 3)))
    donor.get_layer("fake_conv").set_weights([np.full((3, 3, 3, 4), 0.25, np.float32), np.ones(4, np.float32)])
    with h5py.File(home / "models" / name, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, donor)
    monkeypatch.setattr(file_utils, "validate_file", lambda *a, **k: True)  # our file, not Google's
    built = cmodel.build_backbone(cfg)
    assert np.all(built.get_layer("fake_conv").get_weights()[0] == 0.25)
    assert file_utils.get_file.__module__ == "keras.src.utils.file_utils"  # restored afterwards


# -- point 13: small ones ------------------------------------------------------------------

def _img(path: Path, seed: int, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    coarse = np.random.default_rng(seed).integers(0, 256, (5, 5), dtype=np.uint8)
    Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC).save(path)
    return path


def test_links_reported_and_manifest_size_after_exif(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    for i in range(4):
        _img(src / "benign" / f"b{i}.png", i)
        _img(src / "malignant" / f"m{i}.png", 10 + i)
    # a JPEG stored 40 wide x 30 high with EXIF orientation 6 (rotate 90): shown 30 x 40
    exif = Image.Exif()
    exif[0x0112] = 6
    jpg = Image.fromarray(np.random.default_rng(7).integers(0, 256, (30, 40), dtype=np.uint8))
    jpg.save(src / "benign" / "rotated.jpg", exif=exif.tobytes())
    (src / "benign" / "dangling.png").symlink_to(src / "benign" / "gone.png")
    (src / "benign" / "loop.png").symlink_to("loop.png")
    (src / "malignant" / "up").symlink_to("..")
    (src / "malignant" / "ok.png").symlink_to(src / "malignant" / "m0.png")  # a link to an image: read

    work = tmp_path / "w"
    assert main(["prepare", "--source", str(src), "--work", str(work), "--size", "16",
                 "--test-per-class", "1", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "skipped 3 symbolic link(s)" in out
    summary = json.loads((work / "data" / "prepare.json").read_text())
    links = summary["skipped"]["links"]
    assert sorted(s.split(" ")[0] for s in links) == ["benign/dangling.png", "benign/loop.png", "malignant/up"]
    assert any("dangling" in s for s in links) and sum("loop" in s for s in links) == 2
    with open(work / "data" / "manifest.csv", newline="") as f:
        rows = {r["source"]: r for r in csv.DictReader(f)}
    assert (rows["benign/rotated.jpg"]["orig_width"], rows["benign/rotated.jpg"]["orig_height"]) == ("30", "40")
    assert (rows["benign/b0.png"]["orig_width"], rows["benign/b0.png"]["orig_height"]) == ("40", "30")
    assert "malignant/ok.png" in rows and summary["images"] == 10


def test_file_name_with_newline_is_quoted_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert shown("a b/c.png") == "a b/c.png"
    assert shown("bad\nname.png") == "'bad\\nname.png'"
    bad = tmp_path / "bad\nname.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(BusganError) as e:
        load_image(bad)
    assert "'" + str(bad).replace("\n", "\\n") + "'" in one_line(e)

    src = tmp_path / "src"
    for i in range(3):
        _img(src / "benign" / f"b{i}.png", i)
        _img(src / "malignant" / f"m{i}.png", 10 + i)
    (src / "benign" / "evil\nname.png").write_bytes(b"junk")
    assert main(["prepare", "--source", str(src), "--work", str(tmp_path / "w"), "--size", "16",
                 "--test-per-class", "1", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "evil\\nname.png'" in err and "Traceback" not in err


def test_best_json_may_name_only_a_snapshot_in_its_folder(tmp_path: Path) -> None:
    from busgan.stylegan2.generate import best_snapshot, resolve_network

    gan = tmp_path / "gan"
    (gan / "snapshots").mkdir(parents=True)
    (gan / "snapshots" / "snapshot-000001.npz").write_bytes(b"x")
    outside = tmp_path / "elsewhere.npz"
    outside.write_bytes(b"x")

    def best(name: object) -> None:
        (gan / "best.json").write_text(json.dumps({"snapshot": name, "fid": 1.0}))

    best("snapshots/snapshot-000001.npz")
    assert resolve_network(gan) == gan / "snapshots" / "snapshot-000001.npz"
    (gan / "snapshots" / "link.npz").symlink_to(outside)
    for name in ("../elsewhere.npz", str(outside), "snapshots/../../elsewhere.npz", "snapshots/link.npz",
                 "", None, 3):
        best(name)
        with pytest.raises(BusganError) as e:
            best_snapshot(gan)
        text = one_line(e)
        assert text.startswith(str(gan / "best.json")) and "train-gan" in text, text
    (gan / "best.json").write_text("{not json")
    with pytest.raises(BusganError):
        resolve_network(gan)
