"""Rerun stages of a finished ``busgan run`` work directory, each in a fresh copy of it, and
print (as JSON) the files whose bytes differ from the original: the per-stage determinism
check of tests/test_pipeline_run.py, in one process so that imports are paid once.

    python tests/rerun_stages.py REFERENCE CONFIG SCRATCH STAGE [STAGE ...]

Before comparing, the work directory's own path is replaced by "WORK" in text files (records
name their folders) and timing fields (``seconds``, ``finished`` ...) are dropped from JSON
files. A Keras ``.keras`` file is compared by what it holds (its config, with the Python
object ids Keras writes renumbered in order of appearance, and every weight array), not by its
zip bytes, which carry the save time. Nothing else is forgiven.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

TIMING_KEYS = frozenset({"seconds", "finished", "started", "elapsed", "elapsed_seconds", "wall_seconds",
                         "images_per_second"})
TEXT_SUFFIXES = (".json", ".csv", ".md", ".txt", ".html", ".toml")


def _without_timings(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def keras_content(path: Path) -> bytes:
    """A .keras file's config (object ids renumbered, no save date) and weights, as bytes."""
    import h5py
    import numpy as np
    with zipfile.ZipFile(path) as z:
        config = z.read("config.json").decode()
        ids: dict[str, str] = {}
        config = re.sub(r'"shared_object_id": (\d+)',
                        lambda m: f'"shared_object_id": {ids.setdefault(m.group(1), str(len(ids)))}', config)
        out = [config.encode()]
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as h5:
            names: list[str] = []
            h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            for name in sorted(names):
                out += [name.encode(), np.asarray(h5[name][()]).tobytes()]
    return b"\0".join(out)


def digest(work: Path, *also: Path) -> dict[str, str]:
    """sha256 of every file under ``work`` (its path made relative), normalised as above;
    ``also``: other paths to read as the work directory (a copy's files name the original)."""
    out = {}
    for p in sorted(work.rglob("*")):
        if not p.is_file() or p.is_symlink() or p.name.startswith("events.out.tfevents"):
            continue  # TensorBoard event files hold wall-clock times by design
        data = keras_content(p) if p.suffix == ".keras" else p.read_bytes()
        if p.suffix in TEXT_SUFFIXES:
            text = data.decode("utf-8", "replace")
            for root in (work, *also):
                text = text.replace(str(root), "WORK")
            if p.suffix == ".json":
                text = json.dumps(_without_timings(json.loads(text)), sort_keys=True)
            data = text.encode()
        out[p.relative_to(work).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


def _written_by(name: str, work: Path, outputs: list[Path]) -> list[Path]:
    """What stage ``name`` writes. Beyond its declared outputs: prepare writes the whole data
    folder, and generate (generating and scoring in one pass) also writes selected/'s
    scores.csv and select.json, which select then reads to apply the rule: those stay for
    select, whose own output is the kept images."""
    from busgan import CLASSES
    from busgan.layout import DATA, SELECTED
    if name == "prepare":
        return [work / DATA]
    if name == "generate":
        return [*outputs, work / SELECTED]
    if name == "select":
        return [work / SELECTED / c for c in CLASSES if (work / SELECTED / c).exists()]
    return [p for p in outputs if p.exists()]


def main(reference: Path, config: str, scratch: Path, names: list[str]) -> dict[str, list[str]]:
    from busgan.config import load_config
    from busgan.pipeline import run_pipeline, stage_named
    cfg = load_config(config)
    expected = digest(reference)
    differ: dict[str, list[str]] = {}
    for name in names:
        stage = stage_named(name)
        work = scratch / name.replace("+", "_")
        shutil.copytree(reference, work, symlinks=True)
        for path in _written_by(name, work, stage.outputs(work)):  # its outputs go, its inputs stay
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        (work / "records" / f"{name}.json").unlink()
        run_pipeline(cfg, work, only=name, report=False)
        got = digest(work, reference)
        differ[name] = sorted(k for k in expected.keys() | got.keys()
                              if expected.get(k) != got.get(k) and not k.startswith("records/"))
        shutil.rmtree(work)
    return differ


if __name__ == "__main__":
    ref, config, scratch, *stages = sys.argv[1:]
    print(json.dumps(main(Path(ref), config, Path(scratch), stages)))
