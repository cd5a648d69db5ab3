"""Data parallelism through JAX sharding (several GPUs, several hosts).

This module imports jax directly (besides ``autodiff/``) because device meshes and shardings
have no Keras equivalent; it is only used under the JAX backend. Under TensorFlow, training
runs on TensorFlow's default device and ``Devices`` is a no-op.

How it works: the training state is replicated on every device of a 1-D mesh ``data``; each
real batch is split along its first axis. ``jax.jit`` then partitions the compiled phases
(SPMD), so gradients are reduced across devices by XLA. For several hosts, call
``init_distributed()`` first (``jax.distributed.initialize``), which is done when the
environment says so (``BUSGAN_COORDINATOR=host:port``, ``BUSGAN_NUM_PROCESSES``,
``BUSGAN_PROCESS_ID``); every host loads the same data and computes the same global batch
indices, and only process 0 writes files.
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any

import keras

from busgan.errors import BusganError


def _jax() -> Any:
    import jax
    return jax


def init_distributed() -> None:
    """``jax.distributed.initialize`` when BUSGAN_COORDINATOR is set (multi-host)."""
    addr = os.environ.get("BUSGAN_COORDINATOR")
    if not addr or keras.backend.backend() != "jax":
        return
    jax = _jax()
    try:
        jax.distributed.initialize(coordinator_address=addr,
                                   num_processes=int(os.environ["BUSGAN_NUM_PROCESSES"]),
                                   process_id=int(os.environ["BUSGAN_PROCESS_ID"]))
    except KeyError as e:
        raise BusganError(f"environment: BUSGAN_COORDINATOR is set but {e.args[0]} is not; "
                          "set BUSGAN_NUM_PROCESSES and BUSGAN_PROCESS_ID too") from None
    except RuntimeError as e:
        if "already" not in str(e):
            raise


class Devices:
    """The devices a run uses and how arrays are placed on them."""

    def __init__(self, count: int | None = None) -> None:
        self.jax = keras.backend.backend() == "jax"
        if not self.jax:
            if count not in (None, 1):
                raise BusganError(f"devices={count}: several devices need KERAS_BACKEND=jax")
            self.count, self.is_main = 1, True
            return
        jax = _jax()
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        devs = jax.devices()
        if count is not None:
            if count > len(devs):
                raise BusganError(f"devices={count}: only {len(devs)} available")
            devs = devs[:count]
        self.count = len(devs)
        self.is_main = jax.process_index() == 0
        import numpy as np
        self.mesh = Mesh(np.array(devs), ("data",))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.split = NamedSharding(self.mesh, PartitionSpec("data"))

    def check_batch(self, batch: int) -> None:
        if batch % self.count:
            raise BusganError(f"gan.batch_size: {batch} does not split over {self.count} devices; "
                              f"use a multiple of {self.count}")

    def replicate(self, tree: Any) -> Any:
        """Put a pytree of arrays on every device."""
        if not self.jax:
            return keras.tree.map_structure(keras.ops.convert_to_tensor, tree)
        return _jax().device_put(tree, self.replicated)

    def shard_batch(self, x: Any) -> Any:
        """Split a batch along its first axis over the devices."""
        if not self.jax or self.count == 1:
            return x
        return _jax().device_put(x, self.split)

    def describe(self) -> str:
        if not self.jax:
            return "1 device (TensorFlow)"
        d = self.mesh.devices.flat[0]
        return f"{self.count} x {d.platform}:{getattr(d, 'device_kind', '')}"


def memory_gb() -> float:
    """Peak accelerator memory in use (GB) when the backend reports it, else peak process RSS."""
    if keras.backend.backend() == "jax":
        try:
            stats = _jax().local_devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                return stats["peak_bytes_in_use"] / 2**30
        except Exception:  # noqa: BLE001 - CPU devices have no memory stats
            pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**30 if sys.platform == "darwin" else 2**20)
