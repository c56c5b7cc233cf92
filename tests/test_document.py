"""Tests for blurnet_jax.report."""

import base64
import os
from pathlib import Path
import re
import shutil
import urllib.parse

from PIL import Image
import pytest

from blurnet_jax import document as report
from tests.helpers import browser, browser_image_counts

_TABLE_MD = """\
| variant | accuracy | loss | steps |
|---|---:|---:|---:|
| baseline | 87.3% | 0.512 | 1000 |
| blur 5x5 | 90.0% | — | 2000 |"""
_IMG_SRC = re.compile(r'<img src="data:image/png;base64,([^"]*)"')
_MD_LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def _png(path: Path, color=(200, 30, 30), size=(24, 16)) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new("RGB", size, color).save(path)
  return path


def _blocks(inside: str, outside: Path) -> list:
  return [
      report.Heading("Setup"),
      report.Paragraph("Run with `--config.blur=5x5` then "
                       "<script>alert('x')</script> & compare."),
      report.Bullets(["first `a|b`", "second"]),
      report.Heading("Results"),
      report.Table(["variant", "accuracy", "loss", "steps"],
                   [["baseline", 0.8734, 0.51234, 1000],
                    ["blur 5x5", 0.9, None, 2000]],
                   caption="Clean accuracy",
                   formats={"accuracy": ".1%", "loss": ".3f"}),
      report.Heading("Curves", level=3),
      report.Figure(inside, caption="Inside"),
      report.Figure(outside, caption="Outside"),
      report.Heading("Config"),
      report.Code('{"blur": "5x5", "html": "<b>"}', language="json"),
  ]


@pytest.fixture
def written(tmp_path):
  report_dir = tmp_path / "run" / "report"
  inside = _png(report_dir / "plots" / "inside.png")
  outside = _png(tmp_path / "elsewhere" / "outside.png", color=(20, 90, 200))
  md, page = report.write_report(report_dir, "BlurNet <report>",
                                 _blocks("plots/inside.png", outside))
  return md, page, [inside, outside]


def test_markdown(written):
  md_path, _, pngs = written
  md = md_path.read_text(encoding="utf-8")
  assert md_path.name == "report.md"
  assert md.startswith("# BlurNet \\<report\\>\n")
  assert "*Clean accuracy*\n\n" + _TABLE_MD + "\n" in md
  assert "Run with `--config.blur=5x5` then \\<script\\>" in md
  assert "- first `a|b`\n- second" in md
  assert "### Curves" in md
  assert '```json\n{"blur": "5x5", "html": "<b>"}\n```' in md
  links = [urllib.parse.unquote(x) for x in _MD_LINK.findall(md)]
  assert links == ["plots/inside.png", "figures/outside.png"]
  for link, png in zip(links, pngs):
    assert (md_path.parent / link).read_bytes() == png.read_bytes()
  # Moving the folder keeps the links working.
  moved = shutil.move(md_path.parent, md_path.parents[2] / "moved")
  assert all((Path(moved) / link).is_file() for link in links)


def test_html(written):
  md_path, page_path, pngs = written
  page = page_path.read_text(encoding="utf-8")
  assert page_path.name == "index.html"
  assert '<meta charset="utf-8">' in page
  assert "<title>BlurNet &lt;report&gt;</title>" in page
  assert "<script" not in page.lower()
  assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp;" in page
  assert "<code>--config.blur=5x5</code>" in page
  assert '<td class="num">—</td>' in page and "<td>baseline</td>" in page
  assert '<pre><code class="language-json">{&quot;blur&quot;' in page
  images = _IMG_SRC.findall(page)
  assert [base64.b64decode(x) for x in images] == [p.read_bytes() for p in pngs]
  nav = page[page.index("<nav>"):page.index("</nav>")]
  for text in ("Setup", "Results", "Curves", "Config"):
    slug = text.lower()
    assert f'<a href="#{slug}">{text}</a>' in nav
    assert f'id="{slug}">{text}</h' in page
  # Only the two documents and the figures; no temp files left behind.
  assert sorted(os.listdir(page_path.parent)) == [
      "figures", "index.html", "plots", "report.md"]


def test_table_cells():
  table = report.Table(["name", "x|y"], [["a|b", 1.5], [None, 2]])
  assert report.Table(["a"], []).numeric() == [False]
  assert table.cells() == [["a|b", "1.5"], ["—", "2"]]
  assert table.numeric() == [False, True]


def test_table_pipes_in_markdown(tmp_path):
  table = report.Table(["name", "x|y"], [["a|b", 0.25]], formats={"x|y": ".2f"})
  md, _ = report.write_report(tmp_path, "T", [table])
  assert ("| name | x\\|y |\n|---|---:|\n| a\\|b | 0.25 |"
          in md.read_text(encoding="utf-8"))


def test_from_records():
  table = report.Table.from_records(
      [{"a": 1, "b": 0.5}, {"b": 0.25, "c": "x"}], formats={"b": ".0%"})
  assert table.columns == ("a", "b", "c")
  assert table.rows == ((1, 0.5, None), (None, 0.25, "x"))
  assert table.cells() == [["1", "50%", "—"], ["—", "25%", "x"]]
  picked = report.Table.from_records([{"a": 1, "b": 2}], columns=["b"])
  assert picked.rows == ((2,),)


def test_figure_name_clash_and_reuse(tmp_path):
  one = _png(tmp_path / "a" / "plot.png")
  two = _png(tmp_path / "b" / "plot.png", color=(0, 0, 0))
  md, _ = report.write_report(
      tmp_path / "report", "T",
      [report.Figure(one), report.Figure(two), report.Figure(one)])
  assert _MD_LINK.findall(md.read_text()) == [
      "figures/plot.png", "figures/plot-2.png", "figures/plot.png"]
  assert (md.parent / "figures/plot-2.png").read_bytes() == two.read_bytes()


def test_code_fence_longer_than_backticks_inside(tmp_path):
  md, _ = report.write_report(tmp_path, "T", [report.Code("a ``` b")])
  assert "````\na ``` b\n````" in md.read_text()


def test_missing_figure_keeps_old_report(tmp_path):
  md, page = report.write_report(tmp_path, "Old", [report.Paragraph("old")])
  before = md.read_text(), page.read_text()
  with pytest.raises(ValueError, match=r"figure file .*nope\.png not found; "):
    report.write_report(tmp_path, "New", [report.Paragraph("new"),
                                          report.Figure("nope.png")])
  assert (md.read_text(), page.read_text()) == before
  assert sorted(os.listdir(tmp_path)) == ["index.html", "report.md"]


def test_not_png(tmp_path):
  (tmp_path / "fig.png").write_text("not an image")
  with pytest.raises(ValueError, match="is not a PNG; save it as PNG"):
    report.write_report(tmp_path, "T", [report.Figure("fig.png")])


def test_wrong_row_length():
  with pytest.raises(ValueError, match=r"table 'acc' row 1 has 1 cells for 2 "
                     r"columns \['a', 'b'\]; give every row"):
    report.Table(["a", "b"], [[1, 2], [3]], caption="acc")


def test_format_for_unknown_column():
  with pytest.raises(ValueError, match=r"unknown columns \['acc'\]"):
    report.Table(["a"], [[1]], formats={"acc": ".1%"})


def test_bad_format_spec(tmp_path):
  table = report.Table(["a"], [[0.5]], formats={"a": ".q"})
  with pytest.raises(ValueError, match="format '.q' of column 'a' fails"):
    report.write_report(tmp_path, "T", [table])


def test_unknown_block(tmp_path):
  with pytest.raises(ValueError, match=r"blocks\[1\] is a str, not a report "
                     "block; use Heading"):
    report.write_report(tmp_path / "r", "T", [report.Heading("h"), "text"])
  assert not (tmp_path / "r").exists()


def test_bad_heading_level():
  with pytest.raises(ValueError, match="level 7; use a level from 1 to 6"):
    report.Heading("h", level=7)


# ------------------------------------------------------- headless browser ---


@pytest.mark.slow
def test_images_load_in_headless_browser(written, tmp_path):
  chromium = browser()  # skips without one
  _, page, pngs = written
  alone = tmp_path / "alone"  # Opened on its own, away from the figures.
  alone.mkdir()
  shutil.copy(page, alone / "index.html")
  assert browser_image_counts(chromium, alone / "index.html", tmp_path) == (
      len(pngs), 0)
  # The check itself must notice a broken image.
  broken = alone / "broken.html"
  broken.write_text(_IMG_SRC.sub('<img src="data:image/png;base64,AAAA"',
                                 page.read_text(), count=1))
  assert browser_image_counts(chromium, broken, tmp_path) == (len(pngs) - 1, 1)
