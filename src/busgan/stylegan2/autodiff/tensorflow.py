"""TensorFlow implementation of the autodiff seam."""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf


def value_and_grad(fn: Callable, has_aux: bool = False) -> Callable:
    """``g(params, *args) -> (fn(params, *args), d fn / d params)`` (params: a nest of tensors)."""
    def wrapped(params: Any, *args: Any, **kwargs: Any) -> Any:
        params = tf.nest.map_structure(tf.convert_to_tensor, params)
        with tf.GradientTape() as tape:
            tape.watch(params)
            out = fn(params, *args, **kwargs)
            value = out[0] if has_aux else out
        grads = tape.gradient(value, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return out, grads
    return wrapped


def input_grad(fn: Callable, x: Any) -> tuple[Any, Any]:
    """``(y, d sum(y) / dx)`` with ``y = fn(x)``; differentiable again (R1, path length)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        total = tf.reduce_sum(y)
    g = tape.gradient(total, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return y, g


def compile(fn: Callable) -> Callable:
    """One XLA program per input shape (``tf.function(jit_compile=True)``)."""
    return tf.function(fn, jit_compile=True, reduce_retracing=False)


def normal(shape: tuple[int, ...], seed: Any, dtype: str = "float32") -> Any:
    """Standard normal numbers; with a [N, 2] seed, row i of the result depends on seed i only."""
    seed = tf.cast(seed, tf.int32)
    if seed.shape.rank == 2:
        return tf.map_fn(lambda s: tf.random.stateless_normal(tuple(shape[1:]), s, dtype=dtype),
                         seed, fn_output_signature=tf.as_dtype(dtype))
    return tf.random.stateless_normal(tuple(shape), seed, dtype=dtype)


def uniform(shape: tuple[int, ...], seed: Any, dtype: str = "float32") -> Any:
    """Uniform numbers in [0, 1) (same seed conventions as ``normal``)."""
    seed = tf.cast(seed, tf.int32)
    if seed.shape.rank == 2:
        return tf.map_fn(lambda s: tf.random.stateless_uniform(tuple(shape[1:]), s, dtype=dtype),
                         seed, fn_output_signature=tf.as_dtype(dtype))
    return tf.random.stateless_uniform(tuple(shape), seed, dtype=dtype)


def device_info() -> dict[str, Any]:
    """The first device's name and peak memory in bytes (None where the device reports none)."""
    gpus = tf.config.list_logical_devices("GPU")
    name = gpus[0].name if gpus else "/device:CPU:0"
    try:
        peak = tf.config.experimental.get_memory_info(name.replace("/device:", ""))["peak"]
    except (ValueError, KeyError, RuntimeError):
        peak = None
    return {"device": name, "peak_bytes": peak}
