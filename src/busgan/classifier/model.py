"""The classifier network: a ``keras.applications`` backbone with the seed's two-layer head.

The model is built functionally on the backbone's input so that ``model.layers`` is the flat
list the seed indexed when it froze ``model.layers[:775]``. The model is named
``busgan_classifier`` and its output layer carries the class order (``probs__benign__malignant``),
so a saved ``.keras`` file says by itself what it is and which label is which.

The model takes raw pixel values (0-255, any dtype: uint8 works) and scales them itself: its
second layer, named ``preprocess``, is the backbone's own input preprocessing
(``classifier.preprocess = "auto"``: that of its ``keras.applications`` family, e.g. [-1, 1]
for InceptionResNetV2; /255 for the 'tiny' backbone) or the seed's /255 (``"unit"``). It is a
built-in Keras layer, so ``keras.saving.load_model(path, safe_mode=True).predict(images)``
needs no busgan code. Models saved before busgan put the scaling inside (no ``preprocess``
layer; they expected images already divided by 255) are refused with a one-line message.
"""

from __future__ import annotations

import importlib
import os
import zipfile
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np

from busgan import CLASSES
from busgan.config import ClassifierConfig
from busgan.errors import BusganError
from busgan.layout import FEATURE_LAYER, PREPROCESS_LAYER

MODEL_NAME = "busgan_classifier"
OUTPUT_PREFIX = "probs__"
"""The layer mapping raw pixels (0-255) to what the backbone expects (stylegan2/metrics.py
looks for this name too)."""
TINY = "tiny"
"""A four-convolution CNN for tests and quick demos (not for real results)."""
SMALL = "small"
"""A seven-convolution VGG-style CNN for CPU studies at 32-64 px (stable where 'tiny' is not)."""


def output_layer_name(classes: tuple[str, ...] = CLASSES) -> str:
    """The name of the softmax layer, which records the class order in the saved file."""
    return OUTPUT_PREFIX + "__".join(classes)


def _tiny_backbone(inputs: keras.KerasTensor, x: keras.KerasTensor) -> keras.Model:
    """Four strided 3x3 convolutions with BatchNormalization: trains in seconds on a CPU."""
    for i, filters in enumerate((16, 32, 64, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"tiny_conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.8, name=f"tiny_bn{i}")(x)
        x = keras.layers.ReLU(name=f"tiny_relu{i}")(x)
    return keras.Model(inputs, x, name="tiny")


def _small_backbone(inputs: keras.KerasTensor, x: keras.KerasTensor) -> keras.Model:
    """Three stages of two 3x3 convolutions (BatchNormalization, ReLU) and a 2x2 max-pool, then
    one more convolution: full-resolution first layers keep the small lesion details that the
    'tiny' backbone's stride-2 first convolution throws away at 32 px."""
    for stage, filters in enumerate((32, 64, 128), start=1):
        for j in (1, 2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"small_conv{stage}{j}")(x)
            x = keras.layers.BatchNormalization(name=f"small_bn{stage}{j}")(x)
            x = keras.layers.ReLU(name=f"small_relu{stage}{j}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"small_pool{stage}")(x)
    x = keras.layers.Conv2D(128, 3, padding="same", use_bias=False, name="small_conv4")(x)
    x = keras.layers.BatchNormalization(name="small_bn4")(x)
    x = keras.layers.ReLU(name="small_relu4")(x)
    return keras.Model(inputs, x, name="small")


_OWN_BACKBONES = {TINY: _tiny_backbone, SMALL: _small_backbone}


def _application(name: str) -> object:
    """The ``keras.applications`` constructor called ``name`` (a clear error otherwise)."""
    ctor = getattr(keras.applications, name, None)
    if ctor is None or not callable(ctor) or name[:1].islower():
        raise BusganError(
            f"classifier.backbone: '{name}' is not a keras.applications model; "
            f"use e.g. InceptionResNetV2, MobileNetV3Small, '{SMALL}' (CPU studies) or '{TINY}' (tests)")
    return ctor


Affine = tuple[np.ndarray, np.ndarray]
"""A per-pixel channel map ``y = A @ x + b`` (A 3x3, b 3), which every preprocessing is."""
UNIT: Affine = (np.eye(3) / 255.0, np.zeros(3))
"""The seed's scaling: pixel values divided by 255."""


def _family_affine(name: str) -> Affine:
    """The ``preprocess_input`` of backbone ``name``'s family (the module defining it, e.g.
    ``keras.applications.inception_resnet_v2``), as ``(A, b)``.

    Every family's preprocessing is a per-pixel channel map (scaling to [-1, 1], ImageNet mean
    and std, RGB->BGR minus the mean, or none for models that scale inside); probing it at
    0 and at 255 on each channel gives the map exactly, and a random image checks it.
    """
    module = importlib.import_module(getattr(_application(name), "__module__", None) or "builtins")
    fn = getattr(module, "preprocess_input", None)
    probe = np.zeros((4, 1, 1, 3), np.float32)
    probe[[1, 2, 3], 0, 0, [0, 1, 2]] = 255.0
    check = np.random.default_rng(0).uniform(0, 255, (1, 4, 4, 3)).astype(np.float32)
    try:
        y = np.asarray(fn(probe.copy()), np.float64).reshape(4, 3)  # type: ignore[misc]
        b = y[0]
        a = (y[1:] - b).T / 255.0
        fits = np.allclose(np.asarray(fn(check.copy()), np.float64), check @ a.T + b, rtol=1e-5, atol=1e-4)
    except Exception:  # noqa: BLE001 - no preprocess_input, or one that is not per pixel
        fits = False
    if not fits:
        raise BusganError(f"classifier.preprocess: the keras.applications preprocessing of {name} "
                          "is not a per-pixel channel map busgan can put in the model; set "
                          "classifier.preprocess = \"unit\" (pixel values / 255)")
    return a, b


def preprocessing_affine(cfg: ClassifierConfig) -> Affine:
    """What ``classifier.preprocess`` asks for this backbone, as a channel map of raw pixels."""
    if cfg.preprocess == "unit" or cfg.backbone in _OWN_BACKBONES:
        return UNIT
    return _family_affine(cfg.backbone)


def preprocessing_layer(affine: Affine) -> keras.layers.Layer:
    """The built-in layer applying ``affine`` in float32: Rescaling (per channel when needed),
    or, where channels are reordered (RGB->BGR), a fixed non-trainable Dense(3)."""
    a, b = (np.asarray(v, np.float64) for v in affine)
    common = dict(name=PREPROCESS_LAYER, dtype="float32", trainable=False)
    if np.count_nonzero(a - np.diag(np.diag(a))) == 0:
        scale, offset = np.diag(a), b
        same = np.all(scale == scale[0]) and np.all(offset == offset[0])
        return keras.layers.Rescaling(float(scale[0]) if same else scale.tolist(),
                                      float(offset[0]) if same else offset.tolist(), **common)
    dense = keras.layers.Dense(3, **common)
    dense.build((None, 3))
    dense.set_weights([a.T.astype(np.float32), b.astype(np.float32)])
    return dense


def _weights_argument(weights: str) -> str | None:
    """Map ``classifier.weights`` to Keras' ``weights=`` (None, 'imagenet' or a checked path)."""
    if weights.lower() == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BusganError(f"classifier.weights: file {path} not found; give an existing weights "
                          "file (.h5 / .weights.h5), 'imagenet' or 'none'")
    return str(path)


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME`` or ``~/.keras`` (then ``models/``)."""
    env = os.environ.get("KERAS_HOME")
    if env:
        return Path(env).expanduser()
    try:
        from keras.src.backend import config as keras_config  # the folder Keras itself uses
        return Path(keras_config.keras_home()).expanduser()
    except (ImportError, AttributeError):  # pragma: no cover - another Keras layout
        return Path("~/.keras").expanduser()


@contextmanager
def _cached_weights_only(backbone: str) -> Iterator[None]:
    """While building ``backbone`` with ``weights='imagenet'``, let Keras take its weights
    file from the Keras cache only: busgan never downloads at run time.

    ``keras.applications`` fetch their weights through ``keras.utils.get_file``; that call
    is replaced for the duration by one that serves the cached file (hash checked, as Keras
    checks it) and otherwise refuses with one line saying how to give a local file.
    """
    import inspect
    import urllib.parse

    from keras.src.utils import file_utils

    original = file_utils.get_file
    signature = inspect.signature(original)

    def get_file(*args: object, **kwargs: object) -> str:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        origin = str(a.get("origin") or "")
        name = os.fspath(a.get("fname") or "") or os.path.basename(urllib.parse.urlsplit(origin).path)
        base = Path(os.fspath(a["cache_dir"])).expanduser() if a.get("cache_dir") else keras_cache_dir()
        sub = str(a.get("cache_subdir") or "")
        target = base / sub / name
        if not target.is_file() and not os.access(base, os.W_OK):
            target = Path("/tmp/.keras") / sub / name  # where Keras goes when the cache is read-only
        how = (f"download {name} on a machine with network access (from {origin}) and give it with "
               f"--set classifier.weights=/path/to/{name} (train-classifier: --weights PATH), "
               f"or put it in {target.parent}, or use classifier.weights = 'none'")
        if not target.is_file():
            raise BusganError(f"classifier.weights: 'imagenet' needs {name} for {backbone}, which is "
                              f"not in the Keras cache {target.parent} (busgan never downloads at "
                              f"run time); {how}")
        file_hash = a.get("file_hash") or a.get("md5_hash")
        if file_hash and not file_utils.validate_file(str(target), str(file_hash),
                                                      algorithm=str(a.get("hash_algorithm") or "auto")):
            raise BusganError(f"{target}: the cached ImageNet weights of {backbone} are incomplete or "
                              f"altered (hash differs); delete the file and {how}")
        return str(target)  # the cached file, hash checked: Keras is never asked to download

    file_utils.get_file = get_file  # keras.applications call file_utils.get_file at call time
    try:
        yield
    finally:
        file_utils.get_file = original


def build_backbone(cfg: ClassifierConfig) -> keras.Model:
    """The feature extractor without its top, loaded with the configured weights.

    Its input is raw pixels (0-255); its first layer after the input is the preprocessing.
    """
    shape = (cfg.input_size, cfg.input_size, 3)
    weights = _weights_argument(cfg.weights)
    inputs = keras.Input(shape, name="image")
    preprocess = preprocessing_layer(preprocessing_affine(cfg))
    x = preprocess(inputs)
    if cfg.backbone in _OWN_BACKBONES:
        backbone = _OWN_BACKBONES[cfg.backbone](inputs, x)
        if weights == "imagenet":
            raise BusganError(f"classifier.weights: the '{cfg.backbone}' backbone has no ImageNet weights; "
                              "use --weights none or a local weights file")
        if weights is not None:
            _load_weights(backbone, Path(weights))
        return backbone
    ctor = _application(cfg.backbone)
    try:
        if weights == "imagenet":
            with _cached_weights_only(cfg.backbone):
                return _build_application(ctor, weights, x, preprocess, shape)
        return _build_application(ctor, weights, x, preprocess, shape)
    except BusganError:
        raise
    except Exception as e:  # Keras raises a bare Exception for download failures
        text = str(e)
        if weights == "imagenet" and ("URL fetch failure" in text or "urlopen" in text
                                      or isinstance(e, OSError)):
            raise BusganError(
                f"classifier.weights: the ImageNet weights of {cfg.backbone} could not be downloaded "
                f"({text.splitlines()[0][:160]}); download the '_notop' weights file on a machine "
                "with network access and pass --weights PATH, or use --weights none") from None
        if weights not in (None, "imagenet"):
            raise BusganError(f"classifier.weights: {weights} does not fit {cfg.backbone} at "
                              f"{cfg.input_size}px ({text.splitlines()[0][:160]}); give the "
                              "backbone's include_top=False weights file") from None
        raise BusganError(f"classifier.backbone: {cfg.backbone} cannot be built at input_size "
                          f"{cfg.input_size} ({text.splitlines()[0][:160]}); choose another "
                          "input_size or backbone") from None


def _build_application(ctor: object, weights: str | None, x: keras.KerasTensor,
                       preprocess: keras.layers.Layer, shape: tuple[int, int, int]) -> keras.Model:
    """The ``keras.applications`` backbone on ``x`` (the preprocessed input) with ``weights``."""
    if not preprocess.weights or weights is None:
        return ctor(include_top=False, weights=weights, input_tensor=x, input_shape=shape)  # type: ignore[operator]
    # Keras loads .h5 weights by counting layers with weights: load them into the plain
    # backbone, then copy them in order past the (weighted) preprocessing layer.
    plain = ctor(include_top=False, weights=weights, input_shape=shape)  # type: ignore[operator]
    backbone = ctor(include_top=False, weights=None, input_tensor=x, input_shape=shape)  # type: ignore[operator]
    targets = [layer for layer in backbone.layers if layer.weights and layer is not preprocess]
    for src, dst in zip([layer for layer in plain.layers if layer.weights], targets, strict=True):
        dst.set_weights(src.get_weights())
    return backbone


def _load_weights(model: keras.Model, path: Path) -> None:
    try:
        model.load_weights(path)
    except Exception as e:
        raise BusganError(f"classifier.weights: {path} does not fit the {model.name} backbone "
                          f"({str(e).splitlines()[0][:160]}); give weights saved from the same "
                          "backbone and input_size") from None


def is_pretrained(cfg: ClassifierConfig) -> bool:
    """Whether the backbone starts from learned weights (the seed froze layers only then)."""
    return cfg.weights.lower() != "none"


def counted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """``model.layers`` without the preprocessing layer: the list the seed's indices refer to."""
    return [layer for layer in model.layers if layer.name != PREPROCESS_LAYER]


def freeze(model: keras.Model, n_layers: int) -> int:
    """Freeze the first ``n_layers`` layers except BatchNormalization, as the seed did.

    The layers are counted as the seed counted ``model.layers[:775]`` (the input layer first;
    the preprocessing layer, which the seed's model did not have and which has nothing to
    train, not counted). Returns the number of layers frozen. BatchNormalization stays
    trainable so that its statistics adapt to ultrasound images.
    """
    frozen = 0
    for layer in counted_layers(model)[:n_layers]:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = True
        else:
            layer.trainable = False
            frozen += 1
    return frozen


def build_classifier(cfg: ClassifierConfig) -> keras.Model:
    """Backbone -> GlobalAveragePooling2D -> Dense(head_units, relu) -> Dense(2, softmax)."""
    keras.utils.set_random_seed(cfg.seed)
    backbone = build_backbone(cfg)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(backbone.output)
    x = keras.layers.Dense(cfg.head_units, activation="relu", name=FEATURE_LAYER)(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", dtype="float32",
                                 name=output_layer_name())(x)
    model = keras.Model(backbone.input, outputs, name=MODEL_NAME)
    if is_pretrained(cfg):
        freeze(model, cfg.freeze_layers)
    return model


def model_classes(model: keras.Model, path: Path | str) -> tuple[str, ...]:
    """The class order a busgan model was trained with, or a BusganError naming ``path``."""
    names = [layer.name for layer in model.layers if layer.name.startswith(OUTPUT_PREFIX)]
    if model.name != MODEL_NAME or len(names) != 1:
        raise BusganError(f"{path}: not a busgan classifier (no '{MODEL_NAME}' model with a "
                          f"'{OUTPUT_PREFIX}...' output); give a model.keras written by "
                          "busgan train-classifier")
    return tuple(names[0][len(OUTPUT_PREFIX):].split("__"))


def input_size(model: keras.Model) -> int:
    """The square input side of a classifier."""
    shape = model.input_shape
    return int(shape[1])


def load_classifier(path: Path | str, expected_size: int | None = None) -> keras.Model:
    """Load a ``model.keras`` written by busgan and check it (class order, its own input
    preprocessing, input size). The model takes raw pixel values 0-255."""
    path = Path(path)
    if not path.is_file():
        raise BusganError(f"{path}: model file not found; train one with busgan train-classifier")
    model = load_keras_model(path)
    classes = model_classes(model, path)
    if all(layer.name != PREPROCESS_LAYER for layer in model.layers):
        raise BusganError(f"{path}: saved by an older busgan that scaled images outside the model "
                          f"(no '{PREPROCESS_LAYER}' layer; it expects pixels / 255); retrain it "
                          "with busgan train-classifier")
    if classes != CLASSES:
        raise BusganError(f"{path}: the model's label order {list(classes)} differs from busgan's "
                          f"{list(CLASSES)}; retrain it with busgan train-classifier")
    shape = model.input_shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise BusganError(f"{path}: input shape {shape} is not square RGB; give a busgan classifier")
    if expected_size is not None and input_size(model) != expected_size:
        raise BusganError(f"{path}: input size {input_size(model)} differs from "
                          f"classifier.input_size={expected_size}; set --input-size "
                          f"{input_size(model)} or give a model trained at {expected_size}")
    return model


def load_keras_model(path: Path | str) -> keras.Model:
    """``keras.saving.load_model`` made safe for files from anywhere: only the ``.keras`` format,
    always with ``safe_mode=True`` (no Python code such as a Lambda layer is ever deserialised
    or run), and any failure as one line naming ``path``.

    Legacy ``.h5`` / SavedModel files are never loaded as models (Keras' safe mode does not
    cover them); an ``.h5`` file is only ever read as weights into an architecture busgan
    builds (``classifier.weights``, InceptionV3 for FID).
    """
    path = Path(path)
    if path.suffix.lower() != ".keras":
        raise BusganError(f"{path}: not a Keras v3 model file (.keras); busgan loads whole models only "
                          "from .keras files written by busgan train-classifier (an .h5 file is "
                          "weights: give it as classifier.weights / --feature-model instead)")
    if not zipfile.is_zipfile(path):
        raise BusganError(f"{path}: cannot be read as a Keras model (not a .keras zip archive); "
                          "give a model.keras written by busgan train-classifier")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - any failure to load is the file's
        text = " ".join(str(e).split())
        if "safe_mode" in text or "unsafe" in text.lower() or "lambda" in text.lower():
            raise BusganError(f"{path}: refused: the model holds Python code (e.g. a Lambda layer), which "
                              "busgan never runs; give a model.keras written by busgan "
                              "train-classifier") from None
        raise BusganError(f"{path}: cannot be read as a Keras model ({text[:160] or type(e).__name__}); "
                          "give a model.keras written by busgan train-classifier") from None
