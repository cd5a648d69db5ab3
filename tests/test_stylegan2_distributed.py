"""Several processes on 127.0.0.1 (jax.distributed, CPU, one device each) give the weights and
images of one process: ``--processes 2`` for train-gan and generate, and the seed split."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from busgan.errors import BusganError
from busgan.stylegan2.distributed import process_layout, process_share
from busgan.stylegan2.generate import Seeds, parse_seeds
from test_stylegan2_tools_training import CFG, TRAIN_ARGS, arrays, make_images

JAX_ONLY = pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "jax") != "jax",
                              reason="several processes use jax.distributed; TensorFlow trains in one")


def test_seed_shares_cover_every_seed_once():
    seeds = parse_seeds("0-4,10,20-29")
    shares = [process_share(seeds, i, 3) for i in range(3)]
    assert all(isinstance(s, Seeds) for s in shares) and [len(s) for s in shares] == [5, 5, 6]
    assert [x for s in shares for x in s] == list(seeds)
    huge = process_share(parse_seeds(f"0-{2**32 - 1}"), 3, 4)  # ranges: never a list of seeds
    assert huge.ranges == [range(3 * 2**30, 2**32)]
    assert process_share(range(1, 4), 1, 4) == range(1, 2) and len(process_share([7], 0, 2)) == 0


def test_process_environment_errors_are_one_line(monkeypatch):
    for k in ("BUSGAN_COORDINATOR", "BUSGAN_NUM_PROCESSES", "BUSGAN_PROCESS_ID"):
        monkeypatch.delenv(k, raising=False)
    assert process_layout() == (0, 1)
    monkeypatch.setenv("BUSGAN_COORDINATOR", "10.0.0.1:29500")
    with pytest.raises(BusganError, match="BUSGAN_NUM_PROCESSES and BUSGAN_PROCESS_ID not; set all three"):
        process_layout()
    monkeypatch.setenv("BUSGAN_NUM_PROCESSES", "2")
    monkeypatch.setenv("BUSGAN_PROCESS_ID", "2")
    with pytest.raises(BusganError, match="must be one of 0..1"):
        process_layout()
    monkeypatch.setenv("BUSGAN_PROCESS_ID", "1")
    assert process_layout() == (1, 2)


def _busgan(*words: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m busgan WORDS`` on CPU, one device per process, the BUSGAN_* process
    variables only from ``env``."""
    ours = ("BUSGAN_COORDINATOR", "BUSGAN_NUM_PROCESSES", "BUSGAN_PROCESS_ID", "JAX_LOCAL_DEVICE_IDS")
    full = {k: v for k, v in os.environ.items() if k not in ours}
    # Optimisation level 0 compiles faster (as in test_stylegan2_tools_training).
    full.update(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", BUSGAN_NO_PROGRESS="1",
                XLA_FLAGS="--xla_backend_optimization_level=0", **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "busgan", *words], env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait(*procs: subprocess.Popen) -> list[str]:
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


@JAX_ONLY
@pytest.mark.slow  # 35-65 s on 2 cores (warm or cold JAX cache): three processes compile
def test_two_processes_train_and_generate_as_one(tmp_path):
    data = make_images(tmp_path / "benign")
    # One snapshot, at the end (FID and fidelity run in process 0 only), and no ADA (a quarter
    # of the compile time; its p reaches the state as the EMA's image count does, tested here)
    train = ["train-gan", "--data", str(data), *TRAIN_ARGS, "--kimg", str(CFG.kimg),
             "--snapshot-kimg", str(CFG.kimg), "--augment", "none"]
    one, two = tmp_path / "one", tmp_path / "two"
    out_one, out_two = _wait(_busgan(*train, "--out", str(one)),  # run side by side: 2 cores
                             _busgan(*train, "--out", str(two), "--processes", "2"))
    assert "2 x cpu:cpu in 2 processes" in out_two and out_two.count("best snapshot:") == 1
    assert "in 2 processes" not in out_one
    last = sorted((one / "snapshots").glob("snapshot-*.npz"))[-1]
    assert [p.name for p in sorted((two / "snapshots").iterdir())][-1] == last.name
    a, b = arrays(last), arrays(two / "snapshots" / last.name)
    assert a.keys() == b.keys() and len(a) > 20
    for k in a:  # 8 steps of G, D, R1, path length and EMA over a batch split in two
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-5, err_msg=k)

    seeds = ["--network", str(one), "--seeds", "0-8", "--trunc", "1.0", "--batch-size", "4"]
    g_one, g_two = tmp_path / "g1", tmp_path / "g2"
    _, out = _wait(_busgan("generate", *seeds, "--out", str(g_one)),
                   _busgan("generate", *seeds, "--out", str(g_two), "--processes", "2"))
    assert out.count("9 images in") == 1, out
    files = sorted(p.name for p in g_one.glob("seed*.png"))
    assert len(files) == 9 and sorted(p.name for p in g_two.glob("seed*.png")) == files
    for f in files:  # the same pixels, whichever process drew them
        assert (g_one / f).read_bytes() == (g_two / f).read_bytes(), f
    assert (tmp_path / "g1-grid.png").read_bytes() == (tmp_path / "g2-grid.png").read_bytes()


@JAX_ONLY
def test_processes_with_different_images_are_refused(tmp_path):
    """The cluster form (BUSGAN_* set by hand): each process checks its copy against the others'."""
    from busgan.stylegan2.distributed import _free_port
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = []
    for i in range(2):
        data = make_images(tmp_path / f"data{i}", n=16 + 4 * i)
        env = {"BUSGAN_COORDINATOR": coordinator, "BUSGAN_NUM_PROCESSES": "2", "BUSGAN_PROCESS_ID": str(i)}
        procs.append(_busgan("train-gan", "--data", str(data), "--out", str(tmp_path / f"out{i}"),
                             *TRAIN_ARGS, env=env))
    for p in procs:
        out = p.communicate(timeout=300)[0]
        assert p.returncode == 2, out[-3000:]
        assert ("busgan train-gan: error: the processes of this run hold different images or weights; "
                "give every process the same --data") in out
