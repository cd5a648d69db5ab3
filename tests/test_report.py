"""The report's document model: one set of blocks rendered as Markdown and as HTML; what the
report shows of the stages' files (rounded, relative, no raw dicts); its contact sheets."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from busgan import CLASSES, layout
from busgan.report import Document


def test_markdown_and_html_say_the_same(tmp_path: Path) -> None:
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    doc = Document()
    doc.h(1, "Title")
    doc.p("**Result:** <b> & co")
    doc.table(["k", "v"], [["auc", 0.5]])
    doc.img(png, "a plot")
    doc.img(tmp_path / "missing.png", "never shown")
    md, html = doc.markdown(tmp_path), doc.html("t", tmp_path)
    assert "# Title" in md and "| auc | 0.5000 |" in md and "![a plot](x.png)" in md
    assert "<strong>Result:</strong> &lt;b&gt; &amp; co" in html and '<td style="text-align:right">0.5000</td>' in html
    assert '<th style="text-align:left">k</th>' in html and "<h1>Title</h1>" in html
    assert "data:image/png;base64," in html and "never shown" not in md + html


def test_the_configuration_section_reads_back_as_the_same_config(tmp_path: Path) -> None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    from busgan.config import config_from_dict, load_config
    from busgan.report import _configuration
    cfg = load_config(Path(__file__).parent / "configs" / "tiny.toml")
    cfg.gan.import_networks = {"benign": "b.pkl", "malignant": "m.pkl"}  # a table, in its TOML spelling
    doc = Document()
    _configuration(cfg, tmp_path, doc)
    block = doc.markdown(tmp_path).split("```")[1]
    assert config_from_dict(tomllib.loads(block)) == cfg


def test_columns_align_by_content_and_details_fold(tmp_path: Path) -> None:
    doc = Document()
    doc.table(["package", "version", "time"], [["jax", "0.10.2", "1:23"], ["numpy", "2.4.6", "0:05"]])
    doc.details("The configuration (click to show)", "[gan]\nkimg = 0.128 # <b>")
    md, html = doc.markdown(tmp_path), doc.html("t", tmp_path)
    assert "|:---|:---|---:|" in md  # names and versions left, times right
    assert "<details><summary>The configuration (click to show)</summary>" in md + html
    assert "<pre><code>[gan]\nkimg = 0.128 # &lt;b&gt;</code></pre></details>" in html


def test_printout_is_relative_and_rounded(tmp_path: Path) -> None:
    from busgan.report import clock, printout
    text = f"{tmp_path}/arms/real/rep1/model.keras\nBenign precision: 0.4444444444444444 ( 8 / 18.0 )\nAUC: 0.53"
    assert printout(text, tmp_path) == ("arms/real/rep1/model.keras\nBenign precision: 0.4444 ( 8 / 18.0 )\n"
                                        "AUC: 0.53")
    assert (clock(35.19), clock(83), clock(3725)) == ("0:35", "1:23", "1:02:05")


def test_stage_files_read_as_sentences() -> None:
    from busgan.report import _best_snapshot, _duplicates, _per_class
    none = {"cross_class_groups": 0, "exact_pairs": 0, "groups": 0, "images_in_groups": 0, "list": []}
    assert _duplicates(none) == "none found"
    assert _duplicates({**none, "groups": 1, "images_in_groups": 2, "exact_pairs": 1}).startswith(
        "1 group(s) of 2 images (1 exact, 0 near pairs)")
    assert _per_class({"benign": 23, "malignant": 5}) == "23 benign, 5 malignant"
    best = {"features": "classifier:model.keras:head_dense", "fid": 0.011099447594305041,
            "kid": 0.0005879088478862915, "kimg": 0.128, "snapshot": "snapshots/snapshot-000000128.npz"}
    assert _best_snapshot(best) == ("snapshot-000000128.npz at kimg 0.128: FID 0.0111, KID 0.0005879 "
                                    "(features classifier:model.keras:head_dense)")


def test_learning_curve_marks_the_best_epoch(tmp_path: Path) -> None:
    from busgan.report import plot_learning_curve
    real = tmp_path / layout.REAL
    real.mkdir()
    (real / "history.csv").write_text("epoch,auc,loss,val_auc,val_loss\n1,0.5,0.8,0.6,0.7\n2,0.6,0.7,0.7,0.6\n"
                                      "3,0.7,0.6,0.6,0.65\n")
    (real / "train.json").write_text(json.dumps({"best_epoch": 2}))
    curve = plot_learning_curve(tmp_path, layout.REAL_ARM)
    assert curve == tmp_path / "report_assets" / "learning_curve_real.png" and curve.stat().st_size > 1000
    assert plot_learning_curve(tmp_path, layout.SYNTHETIC_ARM) is None  # no history: no figure


def test_contact_sheets_share_one_tile_size(tmp_path: Path) -> None:
    from busgan.report import write_real_grids
    for cls in CLASSES:
        for i in range(5):
            folder = layout.data_split(tmp_path, "train") / cls
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("L", (32, 32), 40 * i).save(folder / f"r{i}.png")
            (tmp_path / layout.GENERATED / cls).mkdir(parents=True, exist_ok=True)
            Image.new("L", (16, 16), 200).save(tmp_path / layout.GENERATED / cls / f"seed{i:04d}.png")
        (tmp_path / layout.SELECTED / cls).mkdir(parents=True)
        Image.new("L", (16, 16)).save(tmp_path / layout.SELECTED / cls / "seed0000.png")
    stale = tmp_path / "report_assets" / "rejected_benign.png"
    write_real_grids(tmp_path, n=4, cols=4)
    sheets = {name: Image.open(tmp_path / "report_assets" / f"{name}_benign.png")
              for name in ("real", "generated", "selected", "rejected")}
    # 4 tiles of 64 px (32 x 2, 16 x 4) and their gaps: real and generated at one scale
    assert sheets["real"].width == sheets["generated"].width == 4 * (64 + 4)
    assert sheets["real"].height == sheets["generated"].height == sheets["rejected"].height
    for f in (tmp_path / layout.SELECTED / "benign").iterdir():  # all accepted: no rejected sheet
        f.unlink()
    for i in range(5):
        Image.new("L", (16, 16)).save(tmp_path / layout.SELECTED / "benign" / f"seed{i:04d}.png")
    write_real_grids(tmp_path, n=4)
    assert not stale.exists()

