"""Data parallelism through JAX sharding (several GPUs, several processes, several hosts).

This module imports jax directly (besides ``autodiff/``) because device meshes and shardings
have no Keras equivalent; it is only used under the JAX backend. Under TensorFlow, training
runs on TensorFlow's default device and ``Devices`` is a no-op.

How it works: the training state is replicated on every device of a 1-D mesh ``data``; each
real batch is split along its first axis. ``jax.jit`` then partitions the compiled phases
(SPMD), so gradients are reduced across devices by XLA.

Several processes (multi-controller JAX): the environment names them (``BUSGAN_COORDINATOR=
host:port`` of process 0, ``BUSGAN_NUM_PROCESSES``, ``BUSGAN_PROCESS_ID``), or
``--processes N`` starts N on this machine (``run_local_processes``). ``init_distributed``
then calls ``jax.distributed.initialize`` and the mesh spans every process's devices. Each
process runs the same program on the same data (every process loads the images and derives
the same batch from the step's seed), so a global array is built from each process's own,
identical copy (``jax.make_array_from_callback``), never by sending data between hosts, and
the compiled phases' outputs stay replicated, so host reads (logs, snapshots) need no gather.
Only process 0 writes files; ``--out`` must be storage every process sees, as resuming reads
the snapshot in every process (``replicate`` refuses processes whose copies differ).
Generation needs no collective: each process renders its share of the seeds
(``process_share``) into the same folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from busgan.errors import BusganError

COORDINATOR, NUM_PROCESSES, PROCESS_ID = "BUSGAN_COORDINATOR", "BUSGAN_NUM_PROCESSES", "BUSGAN_PROCESS_ID"
SHUTDOWN_TIMEOUT_S = 60
LOCKED_BY_PARENT = "BUSGAN_LOCKED_BY_PARENT"
"""Set by ``run_local_processes`` for its workers: the parent holds the output folder's lock."""


def _jax() -> Any:
    import jax
    return jax


def _backend() -> str:
    """Keras's backend, Keras imported only now: ``--processes`` starts workers without it."""
    import keras
    return str(keras.backend.backend())


def process_layout() -> tuple[int, int]:
    """(this process's index, how many processes) from the environment; (0, 1) when unset."""
    raw = {k: os.environ.get(k, "").strip() for k in (COORDINATOR, NUM_PROCESSES, PROCESS_ID)}
    if not any(raw.values()):
        return 0, 1
    missing = [k for k, v in raw.items() if not v]
    if missing:
        raise BusganError(f"environment: {', '.join(f'{k}={raw[k]!r}' for k in raw if raw[k])} is set but "
                          f"{' and '.join(missing)} not; set all three (docs/stylegan2.md, several "
                          "processes), or none to run in one process")
    try:
        index, count = int(raw[PROCESS_ID]), int(raw[NUM_PROCESSES])
    except ValueError:
        raise BusganError(f"environment: {NUM_PROCESSES}={raw[NUM_PROCESSES]!r} and {PROCESS_ID}="
                          f"{raw[PROCESS_ID]!r} must be whole numbers, e.g. 4 and 0..3") from None
    if count < 1 or not 0 <= index < count:
        raise BusganError(f"environment: {PROCESS_ID}={index} with {NUM_PROCESSES}={count}; the id "
                          f"must be one of 0..{count - 1} and the count at least 1")
    return index, count


def init_distributed() -> int:
    """Join the other processes (``jax.distributed.initialize``) when the environment names
    several; return how many there are. Must run before JAX computes anything."""
    index, count = process_layout()
    if count == 1:
        return 1
    if _backend() != "jax":
        raise BusganError(f"{NUM_PROCESSES}={count}: several processes need KERAS_BACKEND=jax; "
                          f"unset {NUM_PROCESSES}, {PROCESS_ID} and {COORDINATOR} to run in one process")
    jax = _jax()
    if getattr(jax.distributed, "is_initialized", lambda: False)():
        return count
    try:  # older JAX has no CPU collectives by default (0.5+: gloo); a choice made is kept
        if jax.config.jax_cpu_collectives_implementation is None:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:
        pass
    # A process that fails waits this long at exit for the others (JAX's default: 5 minutes)
    kw = ({"shutdown_timeout_seconds": SHUTDOWN_TIMEOUT_S}
          if "shutdown_timeout_seconds" in inspect.signature(jax.distributed.initialize).parameters else {})
    try:
        jax.distributed.initialize(coordinator_address=os.environ[COORDINATOR],
                                   num_processes=count, process_id=index, **kw)
    except RuntimeError as e:
        if "before" in str(e):  # the backend is up: this process computed with JAX already
            raise BusganError(f"{PROCESS_ID}={index}: JAX was used in this process before joining "
                              "the others; run busgan train-gan / generate in a fresh process") from None
        raise
    return count


@contextlib.contextmanager
def peer_errors() -> Iterator[None]:
    """With several processes, a JAX runtime error (mostly a collective whose peer died) becomes
    one line that points at the process that stopped first, not a traceback called a bug."""
    try:
        yield
    except Exception as e:
        index, count = process_layout()
        if count == 1 or type(e).__name__ != "JaxRuntimeError":
            raise
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise BusganError(f"{PROCESS_ID}={index}: the JAX runtime failed ({first}); with several processes "
                          "this mostly means another one stopped first: its own error says what to fix") from None


def barrier(name: str) -> None:
    """Wait until every process of a multi-process run gets here (no-op in one process)."""
    if _backend() == "jax" and _jax().process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def process_share(seeds: Sequence[int], index: int, count: int) -> Sequence[int]:
    """Process ``index``'s contiguous share of ``seeds`` (sizes differ by one at most); ranges
    and ``Seeds`` stay ranges, so four billion seeds are never a list."""
    from busgan.stylegan2.generate import Seeds
    n = len(seeds)
    lo, hi = n * index // count, n * (index + 1) // count
    if isinstance(seeds, range):
        return seeds[lo:hi]
    if not isinstance(seeds, Seeds):
        return list(seeds)[lo:hi]
    parts, pos = [], 0
    for r in seeds.ranges:
        a, b = max(lo - pos, 0), min(hi - pos, len(r))
        if a < b:
            parts.append(r[a:b])
        pos += len(r)
    return Seeds(parts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_local_processes(words: Sequence[str], count: int) -> int:
    """Run the busgan command ``words`` as ``count`` processes of one job on this machine
    (coordinator on 127.0.0.1, worker i on local GPU i where there are GPUs); the first
    failure stops the others. Returns the exit status (0, or the first failing worker's)."""
    if count < 1:
        raise BusganError(f"--processes {count}: give 1 or more")
    if process_layout()[1] > 1:
        raise BusganError(f"--processes {count} and {NUM_PROCESSES} are both set; use one of them")
    if os.environ.get("KERAS_BACKEND", "jax") != "jax":  # the CLI sets it (configure_environment)
        raise BusganError(f"--processes {count}: several processes need KERAS_BACKEND=jax")
    coordinator = f"127.0.0.1:{_free_port()}"
    procs: list[subprocess.Popen] = []
    try:
        for i in range(count):
            env = {**os.environ, COORDINATOR: coordinator, NUM_PROCESSES: str(count),
                   PROCESS_ID: str(i), LOCKED_BY_PARENT: "1"}
            env.setdefault("JAX_LOCAL_DEVICE_IDS", str(i))  # one GPU each; CPUs ignore it
            quiet = ["--quiet"] if i else []  # process 0 shows the progress, all show errors
            procs.append(subprocess.Popen([sys.executable, "-m", "busgan", *words, "--processes", "1",
                                           *quiet], env=env))
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed or all(c == 0 for c in codes):
                return failed[0] if failed else 0
            time.sleep(0.2)
    finally:
        for p in procs:  # the others would wait for the failed one forever
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()


class Devices:
    """The devices a run uses and how arrays are placed on them."""

    def __init__(self, count: int | None = None) -> None:
        self.jax = _backend() == "jax"
        if not self.jax:
            if count not in (None, 1):
                raise BusganError(f"devices={count}: several devices need KERAS_BACKEND=jax")
            self.count, self.processes, self.is_main = 1, 1, True
            return
        jax = _jax()
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        self.processes = jax.process_count()
        local = jax.local_device_count()
        if count is not None and count > local:
            raise BusganError(f"devices={count}: only {local} available"
                              + (" in this process" if self.processes > 1 else ""))
        # ``count`` devices of every process, the same list in each process (the mesh is global)
        per = count or local
        devs = [d for p in range(self.processes)
                for d in sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)[:per]]
        self.count = len(devs)
        self.is_main = jax.process_index() == 0
        self.mesh = Mesh(np.array(devs), ("data",))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.split = NamedSharding(self.mesh, PartitionSpec("data"))
        self._to_split = jax.jit(lambda x: x, out_shardings=self.split)

    def check_batch(self, batch: int) -> None:
        if batch % self.count:
            raise BusganError(f"gan.batch_size: {batch} does not split over {self.count} devices; "
                              f"use a multiple of {self.count}")

    def replicate(self, tree: Any) -> Any:
        """Put a pytree of arrays on every device. With several processes each gives its own
        copy, which must be the same everywhere: arrays (not scalars) are compared first."""
        if not self.jax:
            import keras
            return keras.tree.map_structure(keras.ops.convert_to_tensor, tree)
        jax = _jax()
        if self.processes == 1:
            return jax.device_put(tree, self.replicated)
        host = jax.tree_util.tree_map(_host_array, tree)
        leaves = jax.tree_util.tree_leaves(host)
        if any(x.ndim for x in leaves):
            self._check_same(leaves)
        return jax.tree_util.tree_map(
            lambda x: jax.make_array_from_callback(x.shape, self.replicated, lambda i: x[i]), host)

    def _check_same(self, leaves: list[np.ndarray]) -> None:
        from jax.experimental import multihost_utils
        h = hashlib.sha256()
        for x in leaves:
            h.update(f"{x.shape}{x.dtype}".encode())
            h.update(np.ascontiguousarray(x).tobytes())
        digests = multihost_utils.process_allgather(np.frombuffer(h.digest(), np.uint8))
        if (digests != digests[0]).any():
            raise BusganError("the processes of this run hold different images or weights; give every "
                              "process the same --data, and an --out folder on storage they all see "
                              "(process 0 writes the snapshots, every process reads them to resume)")

    def shard_batch(self, x: Any) -> Any:
        """Split a batch along its first axis over the devices."""
        if not self.jax or self.count == 1:
            return x
        jax = _jax()
        if self.processes == 1:
            return jax.device_put(x, self.split)
        if isinstance(x, jax.Array):  # a global array, e.g. the sampler's: sliced where it lies
            return self._to_split(x)
        x = _host_array(x)
        return jax.make_array_from_callback(x.shape, self.split, lambda i: x[i])

    def barrier(self, name: str) -> None:
        """Wait for every process (see ``barrier``)."""
        if self.jax and self.processes > 1:
            barrier(name)

    def describe(self) -> str:
        if not self.jax:
            return "1 device (TensorFlow)"
        d = self.mesh.devices.flat[0]
        where = f" in {self.processes} processes" if self.processes > 1 else ""
        return f"{self.count} x {d.platform}:{getattr(d, 'device_kind', '')}{where}"


def _host_array(x: Any) -> np.ndarray:
    """``x`` on the host in the dtype JAX would give it (float64 -> float32 without x64)."""
    a = np.asarray(x)
    return a.astype(_jax().dtypes.canonicalize_dtype(a.dtype), copy=False)


def memory_gb() -> float:
    """Peak accelerator memory in use (GB) when the backend reports it, else peak process RSS."""
    if _backend() == "jax":
        try:
            stats = _jax().local_devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                return stats["peak_bytes_in_use"] / 2**30
        except Exception:  # noqa: BLE001 - CPU devices have no memory stats
            pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**30 if sys.platform == "darwin" else 2**20)
