"""`busgan compare` and compare_predictions: files in, three files out, clear refusals."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busgan import cli as busgan_cli
from busgan.config import CompareConfig
from busgan.errors import BusganError
from busgan.stats import compare_arrays, compare_predictions, delong_test, mcnemar

HEADER = ["file", "true_label", "pred_label", "prob_benign", "prob_malignant"]


def _model(seed: int, y: np.ndarray, noise: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(4 * (y - 0.5) + rng.normal(0, noise, y.size))))


def write_predictions(path: Path, files: list[str], y: np.ndarray, p: np.ndarray,
                      order: np.ndarray | None = None, rows: list[list[str]] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    order = np.arange(len(files)) if order is None else order
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in order:
            w.writerow([files[i], "malignant" if y[i] else "benign",
                        "malignant" if p[i] >= 0.5 else "benign", repr(float(1 - p[i])), repr(float(p[i]))])
        for r in rows or []:
            w.writerow(r)
    return path


@pytest.fixture()
def pair(tmp_path: Path) -> dict:
    y = np.r_[np.ones(40, bool), np.zeros(50, bool)]
    files = [f"{'malignant' if t else 'benign'}/img{i:03d}.png" for i, t in enumerate(y)]
    pa, pb = _model(0, y, 1.0), _model(1, y, 2.5)
    a = write_predictions(tmp_path / "real" / "test" / "predictions.csv", files, y, pa)
    # the second file lists the images in another order: matching is by file name
    b = write_predictions(tmp_path / "synthetic" / "test" / "predictions.csv", files, y, pb,
                          order=np.random.default_rng(2).permutation(len(files)))
    return {"y": y, "files": files, "pa": pa, "pb": pb, "a": a, "b": b, "tmp": tmp_path}


def _strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path} holds {name}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_compare_predictions_writes_three_files(pair):
    out = pair["tmp"] / "stats"
    r = compare_predictions(pair["a"], pair["b"].parent, out, CompareConfig(bootstrap=200))
    assert sorted(p.name for p in out.iterdir()) == ["roc_overlay.png", "stats.json", "stats.md"]
    assert _strict_json(out / "stats.json") == json.loads(json.dumps(r))
    with Image.open(out / "roc_overlay.png") as im:
        assert im.format == "PNG" and min(im.size) > 200
    md = (out / "stats.md").read_text()
    assert "DeLong" in md and "McNemar" in md and "real" in md and "synthetic" in md


def test_result_dict_structure_and_values(pair):
    y, pa, pb = pair["y"], pair["pa"], pair["pb"]
    r = compare_predictions(pair["a"], pair["b"], pair["tmp"] / "out", CompareConfig(bootstrap=100),
                            names=("A", "B"))
    assert {"schema", "busgan_version", "names", "positive_class", "alpha", "n", "models", "mcnemar",
            "mcnemar_positives", "mcnemar_negatives", "delong", "bootstrap", "notes", "inputs",
            "config", "files"} <= set(r)
    assert r["names"] == {"a": "A", "b": "B"} and r["positive_class"] == "malignant"
    assert r["n"] == {"total": 90, "positive": 40, "negative": 50}
    d = delong_test(y, pa, pb)
    for key in ("auc_a", "auc_b", "z", "p", "ci_low", "ci_high"):
        assert r["delong"][key] == pytest.approx(getattr(d, key), rel=1e-12)
    ca, cb = (pa >= 0.5) == y, (pb >= 0.5) == y
    ref = mcnemar(ca, cb)
    assert (r["mcnemar"]["b"], r["mcnemar"]["c"], r["mcnemar"]["exact_p"]) == (ref.b, ref.c, ref.exact_p)
    assert r["mcnemar_positives"]["n"] == 40 and r["mcnemar_negatives"]["n"] == 50
    acc = r["models"]["a"]["accuracy"]
    assert acc["k"] == int(ca.sum()) and acc["n"] == 90
    assert r["models"]["a"]["sensitivity"]["k"] == int(ca[y].sum())
    assert r["models"]["b"]["specificity"]["k"] == int(cb[~y].sum())
    assert r["models"]["b"]["auc"]["estimate"] == r["delong"]["auc_b"]
    assert r["bootstrap"]["n_resamples"] == 100 and r["config"]["bootstrap"] == 100
    assert len(r["inputs"]["a"]["sha256"]) == 64


def test_default_bootstrap_and_off(pair):
    r = compare_predictions(pair["a"], pair["b"], pair["tmp"] / "o1", CompareConfig())
    assert r["bootstrap"]["n_resamples"] == 2000 and r["bootstrap"]["seed"] == 0
    y, pa, pb = pair["y"], pair["pa"], pair["pb"]
    off = compare_arrays(y, pa >= 0.5, pb >= 0.5, pa, pb, bootstrap=0)
    assert off["bootstrap"] is None and off["delong"] == r["delong"]
    assert off["models"] == r["models"] and off["mcnemar"] == r["mcnemar"]


def test_compare_arrays_edge_cases_stay_finite():
    y = np.r_[np.ones(5, bool), np.zeros(5, bool)]
    r = compare_arrays(y, y, y, y.astype(float), y.astype(float), bootstrap=0)  # identical, perfect
    assert (r["delong"]["z"], r["delong"]["p"]) == (0.0, 1.0)
    assert (r["mcnemar"]["b"], r["mcnemar"]["c"], r["mcnemar"]["exact_p"]) == (0, 0, 1.0)
    r = compare_arrays(y, y, np.ones(10, bool), y.astype(float), np.ones(10), bootstrap=50)
    assert r["delong"]["p"] is None and len(r["notes"]) == 2
    json.loads(json.dumps(r, allow_nan=False))


def _cli(monkeypatch, argv: list[str]) -> int:
    # only this stage's commands, so the test does not import Keras through other stages
    monkeypatch.setattr(busgan_cli, "COMMAND_MODULES", ("busgan.stats.cli",))
    return busgan_cli.main(argv)


def test_cli_prints_summary_and_writes_files(pair, monkeypatch, capsys):
    out = pair["tmp"] / "cli_out"
    rc = _cli(monkeypatch, ["compare", str(pair["a"].parent), str(pair["b"]), "--out", str(out),
                            "--bootstrap", "100", "--set", "compare.alpha=0.1"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "McNemar" in text and "DeLong" in text and "90% confidence intervals" in text
    assert "Bootstrap (100 stratified resamples" in text
    assert _strict_json(out / "stats.json")["alpha"] == 0.1


def test_cli_error_is_one_line_and_exit_2(pair, monkeypatch, capsys):
    rc = _cli(monkeypatch, ["compare", str(pair["a"]), str(pair["tmp"] / "nowhere"),
                            "--out", str(pair["tmp"] / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "nowhere" in err and "busgan test" in err
    assert not (pair["tmp"] / "x").exists()


@pytest.mark.parametrize("case, match", [
    ("missing", "not found"),
    ("empty_folder", "predictions.csv: not found"),
    ("other_images", "different test images"),
    ("extra_image", "different test images"),
    ("labels", "disagree on the true label"),
    ("nan", "not a finite number"),
    ("text_prob", "not a finite number"),
    ("bad_label", "is not one of benign, malignant"),
    ("column", "missing column"),
    ("duplicate", "already appears on line"),
    ("header_only", "no predictions"),
    ("one_class", "every test image is malignant"),
])
def test_bad_files_are_refused(pair, case, match):
    y, files, pb, tmp = pair["y"], pair["files"], pair["pb"], pair["tmp"]
    bad = tmp / "bad" / "predictions.csv"
    a = pair["a"]
    if case == "missing":
        bad = tmp / "no_such.csv"
    elif case == "empty_folder":
        (tmp / "empty").mkdir()
        bad = tmp / "empty"
    elif case == "other_images":
        write_predictions(bad, [f + "x" if i == 3 else f for i, f in enumerate(files)], y, pb)
    elif case == "extra_image":
        write_predictions(bad, files, y, pb, rows=[["extra.png", "benign", "benign", "0.9", "0.1"]])
    elif case == "labels":
        write_predictions(bad, files, np.where(np.arange(90) == 7, ~y, y), pb)
    elif case in ("nan", "text_prob", "bad_label", "duplicate"):
        row = {"nan": [files[0], "malignant", "benign", "0.5", "nan"],
               "text_prob": [files[0], "malignant", "benign", "0.5", "high"],
               "bad_label": [files[0], "Malignant?", "benign", "0.5", "0.5"],
               "duplicate": [files[5], "malignant", "benign", "0.5", "0.5"]}[case]
        keep = np.arange(1, 90) if case != "duplicate" else None
        write_predictions(bad, files, y, pb, order=keep, rows=[row])
    elif case == "column":
        bad.parent.mkdir(parents=True)
        bad.write_text("file,true_label,pred_label,prob_malignant\nx.png,benign,benign,0.1\n")
    elif case == "header_only":
        bad.parent.mkdir(parents=True)
        bad.write_text(",".join(HEADER) + "\n")
    elif case == "one_class":
        ones = np.ones(90, bool)
        a = write_predictions(tmp / "m1" / "predictions.csv", files, ones, pair["pa"])
        write_predictions(bad, files, ones, pb)
    with pytest.raises(BusganError, match=match) as e:
        compare_predictions(a, bad, tmp / "stats", CompareConfig())
    assert "\n" not in str(e.value)
    assert not (tmp / "stats").exists()


def test_bad_config_is_refused(pair):
    with pytest.raises(BusganError, match="compare.alpha"):
        compare_predictions(pair["a"], pair["b"], pair["tmp"] / "s", CompareConfig(alpha=0))
    with pytest.raises(BusganError, match="compare.bootstrap"):
        compare_predictions(pair["a"], pair["b"], pair["tmp"] / "s", CompareConfig(bootstrap=-1))


def test_imports_are_light_and_names_resolve():
    """One fresh interpreter (they are slow to start): lazy CLI import, no Keras or backends,
    and every public name still a function or class once all submodules are loaded."""
    code = """
import importlib, pkgutil, sys, types
import busgan.stats.cli
assert "scipy.stats" not in sys.modules and "statsmodels" not in sys.modules
import busgan.stats as s
for m in pkgutil.iter_modules(s.__path__):
    importlib.import_module("busgan.stats." + m.name)
s.delong_test([0, 1], [0.1, 0.2], [0.2, 0.1])
s.compare_arrays([0, 1], [0, 1], [1, 1], [0.1, 0.9], [0.6, 0.7], bootstrap=10)
bad = [m for m in ("keras", "jax", "tensorflow", "torch") if m in sys.modules]
assert not bad, bad
bad = [n for n in s.__all__ if isinstance(getattr(s, n), types.ModuleType)]
assert not bad, bad
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_cli_help(monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        _cli(monkeypatch, ["compare", "--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0 and "--bootstrap" in text and "--alpha" in text and "--names" in text
