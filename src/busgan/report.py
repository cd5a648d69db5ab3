"""The final report of `busgan run`: report.md and a self-contained report.html.

Both are rendered from one list of blocks (headings, paragraphs, tables, preformatted text,
images), so they always say the same thing. The HTML embeds its images as data URIs and
can be mailed as one file.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from busgan import CLASSES, layout
from busgan.config import Config
from busgan.fileio import atomic_path, atomic_write_text, read_json
from busgan.records import read_records
from busgan.stats.verdict import verdict_parts


@dataclass
class Document:
    """A report as blocks: ("h", level, text), ("p", text), ("table", header, rows),
    ("pre", text), ("img", path, caption), ("row", [(path, label)], caption): images side by
    side, ("details", summary, text): preformatted text folded under a summary line."""

    blocks: list[tuple[Any, ...]] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", header, [[_cell(c) for c in r] for r in rows]))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def img(self, path: Path, caption: str) -> None:
        if path.is_file():
            self.blocks.append(("img", path, caption))

    def row(self, images: list[tuple[Path, str]], caption: str) -> None:
        shown = [(path, label) for path, label in images if path.is_file()]
        if shown:
            self.blocks.append(("row", shown, caption))

    def details(self, summary: str, text: str) -> None:
        self.blocks.append(("details", summary, text))

    def markdown(self, base: Path, embed: bool = False) -> str:
        """The report in Markdown; images as paths relative to ``base``, or with ``embed`` as
        data URIs (a self-contained page)."""
        return _markdown(self.blocks, base, embed)

    def html(self, title: str, base: Path) -> str:
        """A self-contained HTML page of the same Markdown, rendered by markdown-it-py (a
        maintained CommonMark renderer; raw HTML in the text is escaped, not passed through:
        the one element it cannot write, a folded ``details`` block, is written here)."""
        from markdown_it import MarkdownIt
        renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
        body, run = [], []
        for b in [*self.blocks, ("end",)]:
            if b[0] not in ("details", "end"):
                run.append(b)
                continue
            body.append(renderer.render(_markdown(run, base, embed=True)))
            run = []
            if b[0] == "details":
                body.append(f"<details><summary>{html.escape(b[1])}</summary>\n"
                            f"<pre><code>{html.escape(b[2].rstrip())}</code></pre></details>\n")
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;"
                "line-height:1.45;padding:0 1em}table{border-collapse:collapse;margin:.5em 0}"
                "td,th{border:1px solid #bbb;padding:3px 8px}th{background:#eee}"
                "pre{background:#f6f6f6;padding:.6em;overflow:auto}img{max-width:100%}"
                "p>img{margin:0 6px 6px 0;vertical-align:top}"
                "summary{cursor:pointer;font-weight:600;margin:.5em 0}</style></head><body>\n"
                + "".join(body) + "</body></html>\n")


def _markdown(blocks: list[tuple[Any, ...]], base: Path, embed: bool) -> str:
    """Blocks as Markdown (see ``Document.markdown``); numeric table columns right-aligned."""
    def src(path: Path) -> str:
        return (f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
                if embed else path.relative_to(base).as_posix())

    out: list[str] = []
    for b in blocks:
        if b[0] == "h":
            out.append(f"{'#' * b[1]} {b[2]}\n")
        elif b[0] == "p":
            out.append(f"{b[1]}\n")
        elif b[0] == "table":
            out.append("| " + " | ".join(b[1]) + " |")
            out.append("|" + "".join("---:|" if _numeric([r[i] for r in b[2]]) else ":---|"
                                     for i in range(len(b[1]))))
            out.extend("| " + " | ".join(r) + " |" for r in b[2])
            out.append("")
        elif b[0] == "pre":
            out.append(f"```\n{b[1].rstrip()}\n```\n")
        elif b[0] == "img":
            out.append(f"![{b[2]}]({src(b[1])})\n\n*{b[2]}*\n")
        elif b[0] == "row":
            out.append(" ".join(f"![{label}]({src(path)})" for path, label in b[1]) + f"\n\n*{b[2]}*\n")
        elif b[0] == "details":  # GitHub and most Markdown viewers fold it; the HTML page does
            out.append(f"<details><summary>{html.escape(b[1])}</summary>\n\n```\n{b[2].rstrip()}\n```\n\n"
                       "</details>\n")
    return "\n".join(out)


_NUMBER = re.compile(r"[+-]?(\d[\d,]*(\.\d*)?|\.\d+)(e[+-]?\d+)?%?(\s|$)|\d+(:\d\d)+$", re.I)


def _numeric(column: list[str]) -> bool:
    """Whether a table column holds figures (most cells start with a number, a time such as
    1:23 included, a version such as 0.10.2 not): right-aligned."""
    cells = [c.strip() for c in column if c.strip() not in ("", "-")]
    return bool(cells) and 2 * sum(bool(_NUMBER.match(c)) for c in cells) > len(cells)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return str(value)


def _load(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def _count_images(folder: Path) -> int:
    return sum(1 for p in folder.glob("*") if p.suffix.lower() in (".png", ".bmp", ".jpg", ".jpeg"))


def build_document(cfg: Config, work: Path) -> Document:
    """Assemble the report from the files the stages wrote."""
    doc = Document()
    records = read_records(work)
    stats = _load(work / layout.STATS / "stats.json") or {}
    prep = _load(work / layout.DATA / "prepare.json") or {}
    arms = _arm_results(work)

    doc.h(1, "busgan report: real- vs synthetic-trained classifier")
    if cfg.data.source == "phantom":
        doc.p("**Data: simulated phantom images** (busgan phantom), not patient images; "
              "the figures below say nothing about clinical performance.")
    else:
        doc.p(f"Data: the images in {Path(cfg.data.source).name or cfg.data.source} (data.source in the "
              "configuration below).")
    doc.p(_verdict(stats))

    doc.h(2, "Dataset (stage 0)")
    counts = prep.get("counts", {})
    if counts:
        rows = [[split] + [counts.get(split, {}).get(c, 0) for c in CLASSES]
                + [sum(counts.get(split, {}).get(c, 0) for c in CLASSES)] for split in ("train", "val", "test")]
        doc.table(["split", *CLASSES, "total"], rows)
    dups = prep.get("duplicates")
    if dups is not None:
        doc.p(f"Duplicates: {_duplicates(dups)}.")

    doc.h(2, "Images used by each stage")
    doc.table(["stage", "images"], _usage_rows(cfg, work, records))
    syn = records.get("arm-synthetic", {}).get("summary", {})
    if syn.get("shortfall"):
        doc.p(f"**Shortfall:** selection kept {_per_class(syn.get('selected'))} images, fewer than "
              f"synthetic.per_class = {syn.get('per_class_wanted')}; the synthetic classifier "
              f"trained on {syn.get('per_class_trained')} per class (balanced).")
    doc.p("The GANs, the FID reference set and the selection used training images only; "
          "no test image was seen before stage 6.")

    doc.h(2, "Every arm on the same real test images (stage test)")
    doc.table(["arm", "replicate", "accuracy", "AUC"],
              [[arm, k, m.get("accuracy", "-"), m.get("auc", "-")] for arm, reps in arms.items()
               for k, m in enumerate(reps, start=1)])
    for arm in arms:
        text = layout.arm_test_dir(work, arm, 1) / "report.txt"
        if text.is_file():
            doc.h(3, f"{arm} arm, replicate 1: the paper's printout")
            doc.p(f"Figures rounded to 4 decimals; the exact printout is in "
                  f"{text.relative_to(work).as_posix()}.")
            doc.pre(printout(text.read_text(encoding="utf-8"), work))
            doc.img(layout.arm_test_dir(work, arm, 1) / "roc.png", f"ROC of the {arm} arm, replicate 1")
            doc.img(layout.arm_test_dir(work, arm, 1) / "confusion.png",
                    f"Confusion matrix of the {arm} arm, replicate 1")
            curve = plot_learning_curve(work, arm)
            if curve is not None:
                doc.img(curve, f"Learning curve of the {arm} arm, replicate 1 (validation: real images); "
                               "the dashed line marks the best epoch, whose weights were kept")

    doc.h(2, "The verdict and the tests (stage compare)")
    if stats.get("primary"):
        parts = verdict_parts(stats)
        for text in parts["primary"]:
            doc.p(text)
        doc.h(3, "Every arm (secondary arms: intervals, no tests)")
        header, rows = parts["arms"]  # stats.json's keys come back sorted: the layout's order
        order = {arm: i for i, arm in enumerate(layout.ARM_NAMES)}
        doc.table(header, sorted(rows, key=lambda r: order.get(r[0], len(order))))
        doc.h(3, "Per replicate: DeLong (H0: equal AUCs) and McNemar (H0: equal error rates)")
        doc.table(*parts["per_replicate"])
        for w in parts["warnings"]:
            doc.p(f"**Warning:** {w}")
    doc.img(work / layout.STATS / "reliability.png", "Reliability of each arm (replicate 1)")

    doc.h(2, "Generated images next to real ones (stages 2-3)")
    ind = records.get("generate", {}).get("summary", {}).get("independence", {})
    if ind.get("pairs"):
        doc.p(f"Independence of the class GANs: images of the same seed from the two generators "
              f"correlate at a median of {ind['generated_median']:.3f} ({ind['pairs']} seeds); random "
              f"benign-malignant pairs of real images: median {ind['real_median']:.3f}, 99th percentile "
              f"{ind['real_p99']:.3f}." + (" **Warning: the class GANs make similar pictures.**"
                                           if ind.get("warning") else ""))
    for cls in CLASSES:
        doc.row(*_grids(work, cls))

    doc.h(2, "FID per snapshot (stage 2)")
    conditional = _conditional(work)
    if conditional:
        doc.p("One conditional StyleGAN2 for both classes (gan.conditional): FID and KID per class, "
              "and their mean, which chose the best snapshot.")
    for cls in [layout.CONDITIONAL_GAN] if conditional else CLASSES:
        fid = work / layout.GANS / cls / "fid.csv"
        if fid.is_file():
            with open(fid, newline="") as f:
                rows = list(csv.reader(f))
            if rows:
                doc.h(3, cls)
                doc.table([h.upper() if h in ("fid", "kid") else h for h in rows[0]],
                          [[_figure(c) for c in r] for r in rows[1:]])
        best = _load(work / layout.GANS / cls / "best.json")
        if best:
            doc.p(f"{cls}: best snapshot {_best_snapshot(best)}")
        losses = plot_gan_losses(work, cls)
        if losses is not None:
            doc.img(losses, f"{cls}: generator and discriminator losses, R1 penalty and ADA p against kimg")
    for cls in CLASSES:
        curves = plot_fidelity_curves(work, cls)
        if curves is not None:
            doc.img(curves, f"{cls}: KID, FID, precision and recall per snapshot in each feature space "
                            "(solid), and the same between two real sets (dashed: the floor)")

    doc.h(2, "Selection by the real-trained classifier (stage 4)")
    sel = records.get("select", {}).get("summary", {})
    if sel:
        doc.table(["class", "generated and scored", "accepted", "acceptance rate", "kept"],
                  [[cls, v.get("generated", "-"), v.get("accepted", "-"),
                    f"{100 * v['acceptance_rate']:.1f}%" if isinstance(v.get("acceptance_rate"), (int, float)) else "-",
                    v.get("kept", "-")] for cls, v in sel.items() if isinstance(v, dict)])

    from busgan.audit import add_report_section
    add_report_section(doc, work)  # the memorization audit, when it ran
    from busgan.efficiency import add_report_section as add_efficiency_section
    add_efficiency_section(doc, work)  # the data-efficiency curve, when it ran

    doc.h(2, "Time per stage")
    from busgan.pipeline import STAGES
    timed = [(s.name, records[s.name]) for s in STAGES if s.name in records]
    doc.table(["stage", "time (m:ss)"], [[name, clock(float(rec.get("seconds", 0)))] for name, rec in timed])
    doc.p(f"Total: {clock(sum(float(r.get('seconds', 0)) for _, r in timed))} "
          "(stages run in earlier invocations included).")

    _configuration(cfg, work, doc)

    doc.h(2, "Software")
    versions = next(iter(records.values()), {}).get("versions", {}) if records else {}
    doc.table(["package", "version"], [[k, v] for k, v in versions.items()])
    return doc


def _verdict(stats: dict[str, Any]) -> str:
    decision = stats.get("primary", {}).get("decision")
    if not decision:
        return "The comparison has not run yet."
    return f"**Result (pre-specified primary comparison):** {decision['statement']}."


def _training_folder(work: Path, arm: str) -> Path | None:
    """The folder with history.csv of the arm's replicate 1 (its last cascade round), if any."""
    rep = layout.replicate_dir(work, arm, 1)
    candidates = [work / layout.REAL] if arm == layout.REAL_ARM else []
    candidates += [rep, *sorted(rep.glob("round*"), reverse=True)]
    return next((c for c in candidates if (c / "history.csv").is_file()), None)


def plot_learning_curve(work: Path, arm: str) -> Path | None:
    """report_assets/learning_curve_ARM.png: loss and AUC per epoch, training and validation,
    the best epoch (train.json's, whose weights were kept) marked; None without a history."""
    folder = _training_folder(work, arm)
    if folder is None:
        return None
    with open(folder / "history.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("epoch")]
    if not rows:
        return None
    import matplotlib.pyplot as plt
    from busgan.stats.plot import _save as _save_figure  # the project's PNG writer
    best = (_load(folder / "train.json") or {}).get("best_epoch")
    epochs = [int(float(r["epoch"])) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharex=True)
    for ax, key in zip(axes, ("loss", "auc")):
        for name, style in ((key, "-o"), (f"val_{key}", "-s")):
            pts = [(e, float(r[name])) for e, r in zip(epochs, rows) if r.get(name) not in (None, "")]
            if pts:
                ax.plot([e for e, _ in pts], [v for _, v in pts], style, label=name)
        if best is not None:
            ax.axvline(best, color="k", linestyle="--", linewidth=1, label=f"best epoch ({best})")
        ax.set_title("loss" if key == "loss" else "AUC")
        ax.set_xlabel("epoch")
        ax.set_xlim(min(epochs) - 0.3, max(epochs) + 0.3)  # a best first or last epoch off the frame
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{arm} arm, replicate 1: learning curve")
    target = _save_figure(fig, work / "report_assets" / f"learning_curve_{_file_name(arm)}.png")
    plt.close(fig)
    return target


def _file_name(arm: str) -> str:
    return arm.replace("+", "_plus_")


_LONG_DECIMAL = re.compile(r"(?<![\w.])(\d+\.\d{5,})(?![\w.])")


def printout(text: str, work: Path) -> str:
    """A classifier printout as the report shows it: paths relative to the work directory and
    figures rounded to 4 decimals (0.4444444444444444 -> 0.4444)."""
    for prefix in {str(work.resolve()), str(work), str(work.absolute())}:
        text = text.replace(prefix.rstrip("/") + "/", "")
    return _LONG_DECIMAL.sub(lambda m: f"{float(m.group(1)):.4f}", text)


def clock(seconds: float) -> str:
    """A duration as m:ss, or h:mm:ss from an hour."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _toml_value(value: Any) -> str:
    """A config value in TOML (strings, numbers and booleans as JSON writes them, tables inline)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _configuration(cfg: Config, work: Path, doc: Document) -> None:
    """Every config key with its value (TOML), and the command that reproduces the run."""
    import dataclasses
    lines = []
    for section in dataclasses.fields(cfg):
        lines.append(f"[{section.name}]")
        for key, value in dataclasses.asdict(getattr(cfg, section.name)).items():
            key = {"import_networks": "import"}.get(key, key)  # its TOML spelling (config.SPELLED_KEYS)
            lines.append(f"{key} = {_toml_value(value)}" if value is not None else f"# {key}: unset")
        lines.append("")
    doc.h(2, "Configuration (every key, as resolved)")
    doc.p("Reproduce: save the configuration below as config.toml and run "
          "`busgan run config.toml --work WORK`.")
    doc.details("The configuration (click to show)", "\n".join(lines))


def _arm_results(work: Path) -> dict[str, list[dict[str, Any]]]:
    """metrics.json of every tested replicate of every arm, in the layout's arm order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for arm in layout.ARM_NAMES:
        reps = []
        k = 1
        while (m := _load(layout.arm_test_dir(work, arm, k) / "metrics.json")) is not None:
            reps.append(m)
            k += 1
        if reps:
            out[arm] = reps
    return out


def _usage_rows(cfg: Config, work: Path, records: dict[str, dict[str, Any]]) -> list[list[Any]]:
    data = work / layout.DATA
    rows: list[list[Any]] = []
    for cls in CLASSES:
        rows.append([f"classifier on real images, GAN and FID reference: train/{cls}",
                     _count_images(data / "train" / cls)])
    for cls in CLASSES:
        rows.append([f"validation of every classifier (real images): val/{cls}",
                     _count_images(data / "val" / cls)])
    selection = records.get("select", {}).get("summary", {})
    for cls in CLASSES:  # scored, not on disk: only accepted images (and a sample) are written
        generated = (selection.get(cls) or {}).get("generated")
        rows.append([f"generated {cls} (scored by the real classifier)",
                     generated if generated is not None else _count_images(work / layout.GENERATED / cls)])
    for cls in CLASSES:
        rows.append([f"selected {cls}", _count_images(work / layout.SELECTED / cls)])
    for arm in layout.ARM_NAMES:  # what was trained on, read from each replicate's record
        for k, rep in enumerate(records.get(f"arm-{arm}", {}).get("summary", {}).get("replicates", []), 1):
            for split in ("train", "val"):
                for cls, n in (rep.get("counts") or {}).get(split, {}).items():
                    rows.append([f"{arm} arm, replicate {k}: {split} {cls}", n])
    for cls in CLASSES:
        rows.append([f"test (every arm): test/{cls}", _count_images(data / "test" / cls)])
    return rows


def _grids(work: Path, cls: str) -> tuple[list[tuple[Path, str]], str]:
    """The contact sheets ``write_real_grids`` wrote for a class, and their caption."""
    assets = work / "report_assets"
    sheets = [(assets / f"{name}_{cls}.png", f"{cls}: {label}") for name, label in GRIDS]
    caption = (f"{cls}: real training images, generated images (the first seeds), and the generated "
               "images the real classifier accepted and rejected; every tile at the same size (images "
               "enlarged by a whole factor, pixels kept square; each label gives the images' own size)")
    return sheets, caption


def _duplicates(d: dict[str, Any]) -> str:
    """prepare.json's duplicates as a sentence."""
    if not d.get("groups"):
        return "none found"
    text = (f"{d['groups']} group(s) of {d.get('images_in_groups', 0)} images ({d.get('exact_pairs', 0)} "
            f"exact, {d.get('near_pairs', 0)} near pairs), each group kept in one split")
    if d.get("cross_class_groups"):
        text += f"; {d['cross_class_groups']} span both classes"
    return text + (f"; {d['moved_to_test']} image(s) moved to test" if d.get("moved_to_test") else "")


def _per_class(value: Any) -> str:
    """{"benign": 23, "malignant": 5} -> "23 benign, 5 malignant" (anything else as text)."""
    if isinstance(value, dict):
        return ", ".join(f"{n} {c}" for c, n in value.items())
    return str(value)


def _figure(text: str) -> str:
    """A CSV cell as the report shows it: numbers to 4 significant digits, text as it is."""
    try:
        return f"{float(text):.4g}"
    except ValueError:
        return text


def _best_snapshot(best: dict[str, Any]) -> str:
    """best.json as a sentence: snapshot, kimg, FID, KID, feature space."""
    parts = [Path(str(best.get("snapshot", "?"))).name]
    if isinstance(best.get("kimg"), (int, float)):
        parts.append(f"at kimg {best['kimg']:.4g}")
    figures = [f"{k.upper()} {best[k]:.4g}" for k in ("fid", "kid") if isinstance(best.get(k), (int, float))]
    text = " ".join(parts) + (": " + ", ".join(figures) if figures else "")
    return text + (f" (features {best['features']})" if best.get("features") else "")


def plot_gan_losses(work: Path, cls: str) -> Path | None:
    """report_assets/gan_losses_CLASS.png from the class's stats.csv (one row per tick), or None."""
    source = work / layout.GANS / cls / "stats.csv"
    if not source.is_file():
        return None
    import matplotlib.pyplot as plt
    from busgan.stats.plot import _save as _save_figure  # the project's PNG writer
    with open(source, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharex=True)  # R1 is logged on some ticks only
    for ax, keys, title in ((axes[0], ("loss_g", "loss_d"), "losses"), (axes[1], ("r1_penalty",), "R1 penalty"),
                            (axes[2], ("ada_p",), "ADA probability p")):
        for key in keys:
            pts = [(float(r["kimg"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker=".", label=key)
        ax.set_title(title)
        ax.set_xlabel("kimg (thousands of real images shown)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{cls}: StyleGAN2 training")
    target = _save_figure(fig, work / "report_assets" / f"gan_losses_{cls}.png")
    plt.close(fig)
    return target


def _conditional(work: Path) -> bool:
    """Whether the run trained one conditional GAN (stylegan2/conditional/) for both classes."""
    return (work / layout.GANS / layout.CONDITIONAL_GAN).is_dir()


def plot_fidelity_curves(work: Path, cls: str) -> Path | None:
    """report_assets/fidelity_CLASS.png from the class's metrics.csv (train-gan), or None."""
    source = layout.gan_dir(work, cls, _conditional(work)) / "metrics.csv"
    if not source.is_file():
        return None
    import matplotlib.pyplot as plt
    from busgan.stats.plot import _save as _save_figure  # the project's PNG writer
    with open(source, newline="", encoding="utf-8") as f:  # a conditional GAN's file has every class
        rows = [r for r in csv.DictReader(f) if r.get("kimg") and r.get("class", cls) in (cls, "")]
    if not rows:
        return None
    metrics = ("kid", "fid", "precision", "recall")
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
    for ax, metric in zip(axes, metrics):
        for i, space in enumerate(sorted({r["space"] for r in rows})):
            pts = sorted((float(r["kimg"]), float(r["value"]), float(r["floor"]))
                         for r in rows if r["space"] == space and r["metric"] == metric)
            if not pts:
                continue
            colour = f"C{i}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=colour, label=space)
            ax.plot([p[0] for p in pts], [p[2] for p in pts], linestyle="--", color=colour)
        ax.set_title(metric.upper() if metric in ("kid", "fid") else metric)
        ax.set_xlabel("kimg (thousands of real images shown)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{cls}: fidelity per snapshot (dashed: real-vs-real floor)")
    target = _save_figure(fig, work / "report_assets" / f"fidelity_{cls}.png")
    plt.close(fig)
    return target


GRIDS = (("real", "real (training)"), ("generated", "generated"), ("selected", "generated, accepted"),
         ("rejected", "generated, rejected"))
"""The contact sheets of each class (report_assets/NAME_CLASS.png) and their labels."""
TILE_MIN = 64
"""Smallest side of a tile on a contact sheet, in pixels: small images are enlarged to it."""


def write_real_grids(work: Path, n: int = 16, cols: int = 4) -> None:
    """Contact sheets of real training images and generated ones (all, accepted, rejected), the
    first ``n`` of each, every tile at one size: each class's largest image side, enlarged by a
    whole factor to at least TILE_MIN (nearest neighbour, so the pixels stay visible); each
    sheet labelled with what it shows and its images' own size."""
    for cls in CLASSES:
        files = sorted((layout.data_split(work, "train") / cls).glob("*.png"))[:n]
        generated = sorted((work / layout.GENERATED / cls).glob("seed*.png"))
        kept = {p.name for p in (work / layout.SELECTED / cls).glob("seed*.png")}
        groups = {"real": files, "generated": generated[:n],
                  "selected": [p for p in generated if p.name in kept][:n],
                  # the generated folder keeps the first seeds of each class whatever the
                  # selection decided, so rejected examples are always on disk
                  "rejected": [p for p in generated if p.name not in kept][:n] if kept else []}
        sides = {}
        for name, group in groups.items():
            if group:
                with Image.open(group[0]) as first:
                    sides[name] = first.size[0]
        side = max(sides.values(), default=1)
        tile = side * -(-TILE_MIN // side)
        for name, label in GRIDS:
            target = work / "report_assets" / f"{name}_{cls}.png"
            if not groups[name]:
                target.unlink(missing_ok=True)  # none now: no stale sheet of an earlier run
                continue
            sheet = _contact_sheet(groups[name], tile, cols, f"{cls}: {label}, {sides[name]}x{sides[name]}")
            with atomic_path(target) as tmp:
                sheet.save(tmp, format="PNG")


def _contact_sheet(files: list[Path], tile: int, cols: int, label: str, gap: int = 4) -> Image.Image:
    """The images as ``tile``-pixel squares in grey frames, ``cols`` to a row, a label above."""
    from PIL import ImageDraw, ImageFont
    font, head = ImageFont.load_default(size=13), 20
    cols = min(cols, len(files))
    rows = -(-len(files) // cols)
    step = tile + gap
    width = max(cols * step, int(font.getlength(label)) + 4)
    sheet = Image.new("L", (width, head + rows * step), 255)
    draw = ImageDraw.Draw(sheet)
    draw.text((1, 2), label, fill=0, font=font)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            small = im.convert("L")
        x, y = 1 + i % cols * step, head + 1 + i // cols * step
        draw.rectangle((x - 1, y - 1, x + tile, y + tile), outline=150)  # light tiles stay apart
        sheet.paste(small.resize((tile, tile), Image.NEAREST if small.size[0] <= tile else Image.LANCZOS),
                    (x, y))
    return sheet


def write_report(cfg: Config, work: Path) -> tuple[Path, Path]:
    """Write report.md and report.html in the work directory."""
    write_real_grids(work)
    doc = build_document(cfg, work)
    md, page = work / "report.md", work / "report.html"
    atomic_write_text(md, doc.markdown(work))
    atomic_write_text(page, doc.html("busgan report", work))
    return md, page
