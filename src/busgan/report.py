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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from busgan import CLASSES, layout
from busgan.config import Config
from busgan.fileio import atomic_path, atomic_write_text, read_json
from busgan.imaging import image_grid
from busgan.records import read_records
from busgan.stats.verdict import verdict_parts


@dataclass
class Document:
    """A report as blocks: ("h", level, text), ("p", text), ("table", header, rows),
    ("pre", text), ("img", path, caption)."""

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

    def markdown(self, base: Path, embed: bool = False) -> str:
        """The report in Markdown; images as paths relative to ``base``, or with ``embed`` as
        data URIs (a self-contained page)."""
        out: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"{'#' * b[1]} {b[2]}\n")
            elif b[0] == "p":
                out.append(f"{b[1]}\n")
            elif b[0] == "table":
                out.append("| " + " | ".join(b[1]) + " |")
                out.append("|" + "---|" * len(b[1]))
                out.extend("| " + " | ".join(r) + " |" for r in b[2])
                out.append("")
            elif b[0] == "pre":
                out.append(f"```\n{b[1].rstrip()}\n```\n")
            elif b[0] == "img":
                src = (f"data:image/png;base64,{base64.b64encode(b[1].read_bytes()).decode('ascii')}"
                       if embed else b[1].relative_to(base).as_posix())
                out.append(f"![{b[2]}]({src})\n\n*{b[2]}*\n")
        return "\n".join(out)

    def html(self, title: str, base: Path) -> str:
        """A self-contained HTML page of the same Markdown, rendered by markdown-it-py (a
        maintained CommonMark renderer; raw HTML in the text is escaped, not passed through)."""
        from markdown_it import MarkdownIt
        body = MarkdownIt("commonmark", {"html": False}).enable("table").render(self.markdown(base, embed=True))
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
                "line-height:1.45;padding:0 1em}table{border-collapse:collapse;margin:.5em 0}"
                "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
                "td:first-child{text-align:left}pre{background:#f6f6f6;padding:.6em;overflow:auto}"
                "img{max-width:100%}</style></head><body>\n" + body + "</body></html>\n")


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
        doc.p(f"Data: {cfg.data.source}")
    doc.p(_verdict(stats))

    doc.h(2, "Dataset (stage 0)")
    counts = prep.get("counts", {})
    if counts:
        rows = [[split] + [counts.get(split, {}).get(c, 0) for c in CLASSES]
                + [sum(counts.get(split, {}).get(c, 0) for c in CLASSES)] for split in ("train", "val", "test")]
        doc.table(["split", *CLASSES, "total"], rows)
    dups = prep.get("duplicates")
    if dups is not None:
        doc.p(f"Duplicates found (kept in one split each): {_describe(dups)}.")

    doc.h(2, "Images used by each stage")
    doc.table(["stage", "images"], _usage_rows(cfg, work, records))
    syn = records.get("arm-synthetic", {}).get("summary", {})
    if syn.get("shortfall"):
        doc.p(f"**Shortfall:** selection kept {syn.get('selected')} images, fewer than "
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
            doc.pre(text.read_text())
            doc.img(layout.arm_test_dir(work, arm, 1) / "roc.png", f"ROC of the {arm} arm, replicate 1")
            doc.img(layout.arm_test_dir(work, arm, 1) / "confusion.png",
                    f"Confusion matrix of the {arm} arm, replicate 1")
            curve = _learning_curve(work, arm)
            if curve is not None:
                doc.img(curve, f"Learning curve of the {arm} arm, replicate 1 (real validation images)")

    doc.h(2, "The verdict and the tests (stage compare)")
    if stats.get("primary"):
        parts = verdict_parts(stats)
        for text in parts["primary"]:
            doc.p(text)
        doc.h(3, "Every arm (secondary arms: intervals, no tests)")
        doc.table(*parts["arms"])
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
        for path, caption in _grids(work, cls):
            doc.img(path, caption)

    doc.h(2, "FID per snapshot (stage 2)")
    for cls in CLASSES:
        fid = work / layout.GANS / cls / "fid.csv"
        if fid.is_file():
            with open(fid, newline="") as f:
                rows = list(csv.reader(f))
            if rows:
                doc.h(3, cls)
                doc.table(rows[0], rows[1:])
        best = _load(work / layout.GANS / cls / "best.json")
        if best:
            doc.p(f"{cls}: best snapshot {_describe(best)}")
        losses = plot_gan_losses(work, cls)
        if losses is not None:
            doc.img(losses, f"{cls}: generator and discriminator losses, R1 penalty and ADA p against kimg")
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
    doc.table(["stage", "seconds"], [[name, rec.get("seconds", "-")] for name, rec in records.items()])
    doc.p(f"Total: {sum(float(r.get('seconds', 0)) for r in records.values()):.0f} s "
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


def _learning_curve(work: Path, arm: str) -> Path | None:
    """The learning_curve.png of the arm's replicate 1 (its last cascade round), if any."""
    rep = layout.replicate_dir(work, arm, 1)
    candidates = [work / layout.REAL / "learning_curve.png"] if arm == layout.REAL_ARM else []
    candidates += [rep / "learning_curve.png", *sorted(rep.glob("round*/learning_curve.png"), reverse=True)]
    return next((c for c in candidates if c.is_file()), None)


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
    doc.p("Reproduce: save the block below as config.toml and run `busgan run config.toml --work WORK`.")
    doc.pre("\n".join(lines))


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


def _grids(work: Path, cls: str) -> list[tuple[Path, str]]:
    """The real and generated contact sheets written by ``write_real_grids``."""
    assets = work / "report_assets"
    return [(assets / f"real_{cls}.png", f"{cls}: real training images"),
            (assets / f"generated_{cls}.png", f"{cls}: generated images (the first 16 seeds), at the same scale"),
            (assets / f"selected_{cls}.png", f"{cls}: generated images the real classifier accepted (first 16)"),
            (assets / f"rejected_{cls}.png", f"{cls}: generated images it rejected (first 16)")]


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_describe(v)}" for k, v in value.items())
    if isinstance(value, list):
        return f"{len(value)} groups" if value and isinstance(value[0], (list, dict)) else str(value)
    return str(value)


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
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
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


def plot_fidelity_curves(work: Path, cls: str) -> Path | None:
    """report_assets/fidelity_CLASS.png from the class's metrics.csv (train-gan), or None."""
    source = work / layout.GANS / cls / "metrics.csv"
    if not source.is_file():
        return None
    import matplotlib.pyplot as plt
    from busgan.stats.plot import _save as _save_figure  # the project's PNG writer
    with open(source, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("kimg")]
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


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def write_real_grids(work: Path, n: int = 16) -> None:
    """Contact sheets of real training images and generated ones, side by side in the report."""
    for cls in CLASSES:
        files = sorted((layout.data_split(work, "train") / cls).glob("*.png"))[:n]
        generated = sorted((work / layout.GENERATED / cls).glob("seed*.png"))
        kept = {p.name for p in (work / layout.SELECTED / cls).glob("seed*.png")}
        groups = (("real", files), ("generated", generated[:n]),
                  ("selected", [p for p in generated if p.name in kept][:n]),
                  # the generated folder keeps the first seeds of each class whatever the
                  # selection decided, so rejected examples are always on disk
                  ("rejected", [p for p in generated if p.name not in kept][:n] if kept else []))
        for name, group in groups:
            if not group:
                continue
            with Image.open(group[0]) as first:
                side = first.size[0]
            tiles = []
            for f in group:
                with Image.open(f) as im:
                    tiles.append(np.asarray(im.convert("L").resize((side, side)))[..., None])
            sheet = Image.fromarray(image_grid(np.stack(tiles), cols=8)[..., 0])
            target = work / "report_assets" / f"{name}_{cls}.png"
            with atomic_path(target) as tmp:
                sheet.save(tmp, format="PNG")


def write_report(cfg: Config, work: Path) -> tuple[Path, Path]:
    """Write report.md and report.html in the work directory."""
    write_real_grids(work)
    doc = build_document(cfg, work)
    md, page = work / "report.md", work / "report.html"
    atomic_write_text(md, doc.markdown(work))
    atomic_write_text(page, doc.html("busgan report", work))
    return md, page
