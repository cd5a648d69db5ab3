"""JAX implementation of the autodiff seam."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def value_and_grad(fn: Callable, has_aux: bool = False) -> Callable:
    """``g(params, *args) -> (fn(params, *args), d fn / d params)`` (params: a pytree)."""
    return jax.value_and_grad(fn, argnums=0, has_aux=has_aux)


def input_grad(fn: Callable, x: Any) -> tuple[Any, Any]:
    """``(y, d sum(y) / dx)`` with ``y = fn(x)``; differentiable again (R1, path length)."""
    y, vjp = jax.vjp(fn, x)
    (g,) = vjp(jnp.ones_like(y))
    return y, g


def compile(fn: Callable) -> Callable:
    """One XLA program per input shape (``jax.jit``)."""
    return jax.jit(fn)


def _key(seed: Any) -> Any:
    return jax.lax.bitcast_convert_type(jnp.asarray(seed, jnp.int32), jnp.uint32)


def normal(shape: tuple[int, ...], seed: Any, dtype: str = "float32") -> Any:
    """Standard normal numbers; with a [N, 2] seed, row i of the result depends on seed i only."""
    seed = jnp.asarray(seed, jnp.int32)
    if seed.ndim == 2:
        return jax.vmap(lambda s: jax.random.normal(_key(s), tuple(shape[1:]), dtype))(seed)
    return jax.random.normal(_key(seed), tuple(shape), dtype)


def uniform(shape: tuple[int, ...], seed: Any, dtype: str = "float32") -> Any:
    """Uniform numbers in [0, 1) (same seed conventions as ``normal``)."""
    seed = jnp.asarray(seed, jnp.int32)
    if seed.ndim == 2:
        return jax.vmap(lambda s: jax.random.uniform(_key(s), tuple(shape[1:]), dtype))(seed)
    return jax.random.uniform(_key(seed), tuple(shape), dtype)


def device_info() -> dict[str, Any]:
    """The first device's name and peak memory in bytes (None where the device reports none)."""
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    peak = (stats or {}).get("peak_bytes_in_use")
    return {"device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}", "peak_bytes": peak}
