"""The report's document model: one set of blocks rendered as Markdown and as HTML."""

from __future__ import annotations

from pathlib import Path

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
    assert "<strong>Result:</strong> &lt;b&gt; &amp; co" in html and "<td>0.5000</td>" in html
    assert "<th>k</th>" in html and "<h1>Title</h1>" in html
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
