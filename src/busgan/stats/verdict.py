"""The pre-specified verdict over every arm and replicate (stage compare of ``busgan run``).

Primary comparison, fixed before the run: synthetic vs real, non-inferiority at
``compare.margin`` on the mean over replicates of AUC(synthetic) - AUC(real), with a paired
bootstrap interval over test cases (``noninferiority``). The other arms are secondary and get
intervals, not tests. Per replicate, DeLong (H0: equal AUCs) and McNemar (H0: equal error
rates) are kept, each labelled with its own null hypothesis; no verdict is drawn from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from busgan import CLASSES
from busgan.config import CompareConfig
from busgan.errors import BusganError
from busgan.fileio import atomic_write_text, write_json
from busgan.stats.compare import Predictions, compare_arrays, match_predictions, read_predictions
from busgan.stats.noninferiority import arm_descriptives, non_inferiority, primary_interval
from busgan.stats.report import format_p

REFERENCE, PRIMARY = "real", "synthetic"


@dataclass(frozen=True)
class ArmPredictions:
    """Every replicate's predictions of one arm, aligned to one order of the test cases."""
    name: str
    replicates: list[Predictions]


def align(arms: dict[str, list[Path]]) -> tuple[np.ndarray, dict[str, ArmPredictions]]:
    """Read every predictions.csv and put all of them in the first file's case order; refuse
    files that do not hold the same test cases."""
    first = read_predictions(next(iter(arms.values()))[0])
    out: dict[str, ArmPredictions] = {}
    for name, paths in arms.items():
        reps = []
        for path in paths:
            ref, p = match_predictions(first, read_predictions(path))
            if len(ref.files) != len(first.files) or ref.files != first.files:
                raise BusganError(f"{path}: holds other test cases than {first.path}; "
                                  "rerun stage test so that every arm is tested on data/test")
            reps.append(p)
        out[name] = ArmPredictions(name, reps)
    return first.y_true, out


def _per_replicate(y: np.ndarray, arms: dict[str, ArmPredictions], cfg: CompareConfig) -> list[dict]:
    """DeLong and McNemar of each arm vs real, replicate k against replicate k."""
    rows = []
    real = arms[REFERENCE].replicates
    for name, arm in arms.items():
        if name == REFERENCE:
            continue
        for k, (a, b) in enumerate(zip(real, arm.replicates), start=1):
            r = compare_arrays(y, a.y_pred, b.y_pred, a.score, b.score, cfg.alpha, 0, cfg.seed,
                               names=(REFERENCE, name))
            rows.append({"arm": name, "replicate": k, "auc_real": r["delong"]["auc_a"],
                         "auc_arm": r["delong"]["auc_b"], "delong_p": r["delong"]["p"],
                         "mcnemar_exact_p": r["mcnemar"]["exact_p"],
                         "accuracy_real": r["models"]["a"]["accuracy"]["estimate"],
                         "accuracy_arm": r["models"]["b"]["accuracy"]["estimate"]})
    return rows


def decide(y: np.ndarray, arms: dict[str, ArmPredictions], cfg: CompareConfig) -> dict[str, Any]:
    """The whole verdict as a JSON-ready dict (see the module docstring)."""
    scores = {name: [p.score for p in a.replicates] for name, a in arms.items()}
    n_boot = max(int(cfg.bootstrap), 200)
    interval, decision = non_inferiority(y, scores[PRIMARY], scores[REFERENCE], cfg.margin, cfg.alpha,
                                         n_boot, cfg.seed, names=(PRIMARY, REFERENCE))
    secondary = {name: primary_interval(y, s, scores[REFERENCE], cfg.alpha, n_boot, cfg.seed,
                                        names=(name, REFERENCE)).to_dict()
                 for name, s in scores.items() if name not in (PRIMARY, REFERENCE)}
    descriptives = {name: [arm_descriptives(y, s, name=f"{name} replicate {k}")
                           for k, s in enumerate(reps, start=1)] for name, reps in scores.items()}
    warnings = [d["single_class_warning"] for reps in descriptives.values() for d in reps
                if d["single_class_warning"]]
    return {
        "n": {"total": int(y.size), "malignant": int(y.sum()), "benign": int((~y).sum())},
        "classes": list(CLASSES), "alpha": cfg.alpha, "margin": cfg.margin,
        "replicates": {name: len(a.replicates) for name, a in arms.items()},
        "primary": {"interval": interval.to_dict(), "decision": decision.to_dict()},
        "secondary": secondary, "descriptives": descriptives, "per_replicate": _per_replicate(y, arms, cfg),
        "aucs": {name: [float(v) for v in (interval.aucs_ref if name == REFERENCE else
                                            interval.aucs_arm if name == PRIMARY else
                                            secondary[name]["aucs_arm"])] for name in arms},
        "warnings": warnings,
    }


def verdict_parts(v: dict[str, Any]) -> dict[str, Any]:
    """The verdict as text and tables (header, rows), from stats.json's dict: what both the
    Markdown file and the report render, so the report never parses Markdown back."""
    d, iv = v["primary"]["decision"], v["primary"]["interval"]
    conf = f"{100 * (1 - v['alpha']):g}%"
    primary = [f"Primary comparison: {PRIMARY} vs {REFERENCE}, non-inferiority margin {v['margin']:g} AUC, "
               f"{iv['n_pos'] + iv['n_neg']} test cases ({iv['n_pos']} malignant), "
               f"{v['replicates'][PRIMARY]} replicate(s) per arm.",
               "The GANs were trained once: replicates retrain the classifiers (other seeds and "
               "draws), so the verdict is conditional on this one GAN training.",
               f"Null hypothesis: {d['null_hypothesis']}",
               f"Mean AUC({PRIMARY}) - AUC({REFERENCE}) = {d['figure']:+.4f}, {conf} interval "
               f"[{d['lower']:+.4f}, {d['upper']:+.4f}] (half-width {d['half_width']:.4f}).",
               f"**{d['statement']}**"]
    if not d["powered"]:
        primary.append(f"Power: the interval's half-width {d['half_width']:.4f} is not below the margin "
                       f"{v['margin']:g}: this test set is too small to show non-inferiority at this margin "
                       "even for an arm exactly as good as real; use more test images or replicates.")
    arm_rows = []
    for name, aucs in v["aucs"].items():
        desc = v["descriptives"][name]
        sens = np.mean([x["sensitivity_at_specificity"]["sensitivity"] for x in desc])
        brier = np.mean([x["brier"] for x in desc])
        s = None if name == REFERENCE else iv if name == PRIMARY else v["secondary"][name]
        diff = "reference" if s is None else f"{s['figure']:+.4f} [{s['lower']:+.4f}, {s['upper']:+.4f}]"
        arm_rows.append([name, len(aucs), f"{np.mean(aucs):.4f}", ", ".join(f"{a:.4f}" for a in aucs),
                         diff, f"{sens:.3f}", f"{brier:.4f}"])
    arm_header = ["arm", "replicates", "mean AUC", "AUC per replicate",
                  f"AUC(arm) - AUC(real), {conf} interval", "sensitivity at 90% specificity", "Brier"]
    rep_header = ["arm", "replicate", "AUC real", "AUC arm", "DeLong p", "McNemar exact p"]
    rep_rows = [[r["arm"], r["replicate"], f"{r['auc_real']:.4f}", f"{r['auc_arm']:.4f}",
                 format_p(r["delong_p"]), format_p(r["mcnemar_exact_p"])] for r in v["per_replicate"]]
    return {"primary": primary, "arms": (arm_header, arm_rows), "per_replicate": (rep_header, rep_rows),
            "warnings": list(v["warnings"])}


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def format_verdict(v: dict[str, Any]) -> str:
    """The verdict as Markdown: the primary statement first, then every arm, then each test."""
    parts = verdict_parts(v)
    lines = ["## Verdict (pre-specified)", ""]
    for text in parts["primary"]:
        lines += [f"- {text}" if text.startswith(("Null", "Mean", "**")) else text, ""]
    lines += ["## Every arm (secondary arms: intervals, no tests)", "", *_md_table(*parts["arms"]), "",
              "## Per replicate: DeLong (H0: equal AUCs) and McNemar (H0: equal error rates)", "",
              *_md_table(*parts["per_replicate"])]
    if parts["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in parts["warnings"]]
    return "\n".join(lines) + "\n"


def write_verdict(arms: dict[str, list[Path]], out_dir: Path, cfg: CompareConfig) -> dict[str, Any]:
    """Stage compare: read every arm's predictions, decide, write stats.json / stats.md / plots."""
    from busgan.stats.noninferiority import Reliability
    from busgan.stats.plot import plot_reliability
    if REFERENCE not in arms or PRIMARY not in arms:
        raise BusganError(f"the verdict needs the {REFERENCE} and {PRIMARY} arms; got {', '.join(arms)}")
    y, aligned = align(arms)
    verdict = decide(y, aligned, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = {name: Reliability(**{k: np.asarray(val) for k, val in reps[0]["reliability"].items()})
              for name, reps in verdict["descriptives"].items()}
    plot_reliability(curves, out_dir / "reliability.png", "Reliability (replicate 1 of each arm)")
    atomic_write_text(out_dir / "stats.md", format_verdict(verdict))
    write_json(out_dir / "stats.json", verdict)  # last: its presence means the others exist
    return verdict
