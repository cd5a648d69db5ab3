"""The classifier network: a ``keras.applications`` backbone with the seed's two-layer head.

The model is built functionally on the backbone's input so that ``model.layers`` is the flat
list the seed indexed when it froze ``model.layers[:775]``. The model is named
``busgan_classifier`` and its output layer carries the class order (``probs__benign__malignant``),
so a saved ``.keras`` file says by itself what it is and which label is which.
"""

from __future__ import annotations

from pathlib import Path

import keras

from busgan import CLASSES
from busgan.config import ClassifierConfig
from busgan.errors import BusganError

MODEL_NAME = "busgan_classifier"
OUTPUT_PREFIX = "probs__"
TINY = "tiny"
"""A four-convolution CNN for tests and quick demos (not for real results)."""


def output_layer_name(classes: tuple[str, ...] = CLASSES) -> str:
    """The name of the softmax layer, which records the class order in the saved file."""
    return OUTPUT_PREFIX + "__".join(classes)


def _tiny_backbone(input_shape: tuple[int, int, int]) -> keras.Model:
    """Four strided 3x3 convolutions with BatchNormalization: trains in seconds on a CPU."""
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate((16, 32, 64, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"tiny_conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.8, name=f"tiny_bn{i}")(x)
        x = keras.layers.ReLU(name=f"tiny_relu{i}")(x)
    return keras.Model(inputs, x, name="tiny")


def _application(name: str) -> object:
    """The ``keras.applications`` constructor called ``name`` (a clear error otherwise)."""
    ctor = getattr(keras.applications, name, None)
    if ctor is None or not callable(ctor) or name[:1].islower():
        raise BusganError(
            f"classifier.backbone: '{name}' is not a keras.applications model; "
            f"use e.g. InceptionResNetV2, MobileNetV3Small, or '{TINY}' (tests/demo)")
    return ctor


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


def build_backbone(cfg: ClassifierConfig) -> keras.Model:
    """The feature extractor without its top, loaded with the configured weights."""
    shape = (cfg.input_size, cfg.input_size, 3)
    weights = _weights_argument(cfg.weights)
    if cfg.backbone == TINY:
        backbone = _tiny_backbone(shape)
        if weights == "imagenet":
            raise BusganError(f"classifier.weights: the '{TINY}' backbone has no ImageNet weights; "
                              "use --weights none or a local weights file")
        if weights is not None:
            _load_weights(backbone, Path(weights))
        return backbone
    ctor = _application(cfg.backbone)
    try:
        return ctor(include_top=False, weights=weights, input_shape=shape)  # type: ignore[operator]
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


def freeze(model: keras.Model, n_layers: int) -> int:
    """Freeze ``model.layers[:n_layers]`` except BatchNormalization, as the seed did.

    Returns the number of layers frozen. BatchNormalization stays trainable so that its
    statistics adapt to ultrasound images.
    """
    frozen = 0
    for layer in model.layers[:n_layers]:
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
    x = keras.layers.Dense(cfg.head_units, activation="relu", name="head_dense")(x)
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
    """Load a ``model.keras`` written by busgan and check it (class order, input size)."""
    path = Path(path)
    if not path.is_file():
        raise BusganError(f"{path}: model file not found; train one with busgan train-classifier")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:
        raise BusganError(f"{path}: cannot be read as a Keras model ({str(e).splitlines()[0][:160]}); "
                          "give a model.keras written by busgan train-classifier") from None
    classes = model_classes(model, path)
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
