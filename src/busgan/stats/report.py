"""Human-readable forms of the result dict: a plain-language summary and stats.md."""

from __future__ import annotations

from typing import Any

__all__ = ["format_markdown", "format_p", "format_summary", "p_text"]


def format_p(p: float | None) -> str:
    """p to 3 significant digits (trailing zeros kept: 0.500, 1.00), '< 0.0001' below that,
    'undefined' for None."""
    if p is None:
        return "undefined"
    if p < 1e-4:
        return "< 0.0001"
    return f"{p:#.3g}"


def p_text(p: float | None) -> str:
    """'p = 0.027', 'p < 0.0001' or 'p undefined', for sentences and legends."""
    text = format_p(p)
    return f"p {text}" if text.startswith("<") or p is None else f"p = {text}"


def _images(k: int) -> str:
    return f"{k} image" if k == 1 else f"{k} images"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _prop(d: dict[str, Any], key: str = "wilson") -> str:
    return f"{_pct(d['estimate'])} ({_pct(d[key + '_low'])} to {_pct(d[key + '_high'])})"


def _verdict(p: float | None, alpha: float, better: str, what: str) -> str:
    if p is None:
        return "cannot be tested; see the notes"
    if p < alpha:
        return f"significant at {alpha:g}: {better} {what}"
    return f"not significant at {alpha:g}"


def format_summary(r: dict[str, Any]) -> str:
    """The printed summary: what differs between the two models, in words and numbers."""
    a, b = r["models"]["a"], r["models"]["b"]
    na, nb = r["names"]["a"], r["names"]["b"]
    n, alpha = r["n"], r["alpha"]
    level = f"{100 * (1 - alpha):g}%"
    w = max(len(na), len(nb), 24)
    lines = [
        f"Two classifiers on the same {n['total']} test images "
        f"({n['positive']} malignant, {n['negative']} benign). {level} confidence intervals.",
        "",
        f"{'':13}{na:<{w}}  {nb:<{w}}",
    ]
    for key, label in (("accuracy", "Accuracy"), ("sensitivity", "Sensitivity"),
                       ("specificity", "Specificity")):
        lines.append(f"{label:<13}{_prop(a[key]):<{w}}  {_prop(b[key]):<{w}}")
    auc = [f"{m['auc']['estimate']:.3f} ({m['auc']['ci_low']:.3f} to {m['auc']['ci_high']:.3f})"
           for m in (a, b)]
    lines.append(f"{'AUC':<13}{auc[0]:<{w}}  {auc[1]:<{w}}")
    lines.append("(accuracy, sensitivity, specificity: Wilson intervals; AUC: DeLong intervals)")
    mc = r["mcnemar"]
    lines += [
        "",
        "Do the two models get different images wrong? (McNemar's exact test)",
        f"  {na} right where {nb} is wrong: {_images(mc['b'])}; {na} wrong where {nb} is right: "
        f"{_images(mc['c'])}.",
        f"  All images: {p_text(mc['exact_p'])} "
        f"({_verdict(mc['exact_p'], alpha, na if mc['b'] > mc['c'] else nb, 'makes fewer errors')})",
        f"  Malignant images (sensitivity): {p_text(r['mcnemar_positives']['exact_p'])}; "
        f"benign images (specificity): {p_text(r['mcnemar_negatives']['exact_p'])}",
    ]
    d = r["delong"]
    lines += ["", "Do the two models rank malignant above benign equally well? (DeLong's paired AUC test)"]
    ci = ("" if d["ci_low"] is None else f" ({level} CI {d['ci_low']:+.3f} to {d['ci_high']:+.3f})")
    z = "undefined" if d["z"] is None else f"{d['z']:.2f}"
    better = na if d["diff"] > 0 else nb
    lines.append(f"  AUC {na} - {nb} = {d['diff']:+.3f}{ci}, z = {z}, {p_text(d['p'])} "
                 f"({_verdict(d['p'], alpha, better, 'has the higher AUC')})")
    bt = r.get("bootstrap")
    if bt:
        lines.append(f"  Bootstrap ({bt['n_resamples']} stratified resamples, seed {bt['seed']}): "
                     f"{level} CI {bt['ci_low']:+.3f} to {bt['ci_high']:+.3f}, {p_text(bt['p'])}")
    for note in r.get("notes", []):
        lines.append(f"Note: {note}")
    return "\n".join(line.rstrip() for line in lines)


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "undefined" if x is None else format(x, fmt)


def format_markdown(r: dict[str, Any]) -> str:
    """stats.md: every number of the result dict in tables."""
    a, b = r["models"]["a"], r["models"]["b"]
    na, nb = r["names"]["a"], r["names"]["b"]
    alpha, n = r["alpha"], r["n"]
    level = f"{100 * (1 - alpha):g}%"
    out = [f"# Comparison: {na} vs {nb}", "",
           f"{n['total']} test images ({n['positive']} malignant = positive, {n['negative']} benign); "
           f"alpha = {alpha:g}; {level} intervals.", ""]
    if "inputs" in r:
        out += [f"- {na}: `{r['inputs']['a']['path']}`", f"- {nb}: `{r['inputs']['b']['path']}`", ""]
    out += ["## Each model", "",
            "| measure | model | k / n | estimate | Wilson CI | Clopper-Pearson CI |",
            "|---|---|---|---|---|---|"]
    for key in ("accuracy", "sensitivity", "specificity"):
        for m in (a, b):
            p = m[key]
            out.append(f"| {key} | {m['name']} | {p['k']} / {p['n']} | {p['estimate']:.4f} | "
                       f"{p['wilson_low']:.4f} to {p['wilson_high']:.4f} | "
                       f"{p['exact_low']:.4f} to {p['exact_high']:.4f} |")
    out += ["", "| model | AUC | DeLong SE | DeLong CI |", "|---|---|---|---|"]
    for m in (a, b):
        u = m["auc"]
        out.append(f"| {m['name']} | {u['estimate']:.4f} | {u['se']:.4f} | "
                   f"{u['ci_low']:.4f} to {u['ci_high']:.4f} |")
    out += ["", "## McNemar's test (paired correct / incorrect)", "",
            f"Rows: {na} correct / incorrect; columns: {nb} correct / incorrect.", "",
            "| images | table | b | c | exact p | mid-p | chi2 (p) | chi2 corrected (p) |",
            "|---|---|---|---|---|---|---|---|"]
    for key, label in (("mcnemar", "all"), ("mcnemar_positives", "malignant (sensitivity)"),
                       ("mcnemar_negatives", "benign (specificity)")):
        mc = r[key]
        out.append(f"| {label} | {mc['table']} | {mc['b']} | {mc['c']} | {format_p(mc['exact_p'])} | "
                   f"{format_p(mc['mid_p'])} | {mc['chi2']:.3f} ({format_p(mc['chi2_p'])}) | "
                   f"{mc['chi2_cc']:.3f} ({format_p(mc['chi2_cc_p'])}) |")
    d = r["delong"]
    out += ["", "## DeLong's paired test of the AUCs", "",
            "| AUC difference | SE | z | p | CI of the difference |", "|---|---|---|---|---|",
            f"| {d['diff']:+.4f} | {d['se']:.4f} | {_num(d['z'], '.3f')} | {format_p(d['p'])} | "
            f"{_num(d['ci_low'], '+.4f')} to {_num(d['ci_high'], '+.4f')} |"]
    bt = r.get("bootstrap")
    if bt:
        out += ["", f"Stratified bootstrap ({bt['n_resamples']} resamples, seed {bt['seed']}): "
                f"CI {bt['ci_low']:+.4f} to {bt['ci_high']:+.4f}, SE {bt['se']:.4f}, "
                f"{p_text(bt['p'])}."]
    if r.get("notes"):
        out += ["", "## Notes", ""] + [f"- {x}" for x in r["notes"]]
    if "files" in r:
        out += ["", f"![ROC curves]({r['files']['roc_plot']})"]
    return "\n".join(out) + "\n"
