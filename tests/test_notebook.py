"""What results show in a Jupyter notebook: HTML tables and inline pictures (convlab.notebook)."""

import re

import convlab
from convlab.notebook import html_table, in_notebook, png_html
from tests.helpers import assert_png


def test_a_summary_displays_as_an_html_table_of_every_layer():
    result = convlab.summary("lenet5")
    page = result._repr_html_()
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    assert len(rows) == 1 + len(result.layers) + 1  # header, one per layer, the totals
    assert "<caption>lenet5 at 1x32x32</caption>" in page
    assert "61,706" in page and "Multiply-adds" in page


def test_html_tables_escape_their_cells():
    page = html_table(["a", "b"], [["<script>", 1]], right=[False, True])
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert '<td style="text-align:right">1</td>' in page


def test_png_html_embeds_the_picture(tmp_path):
    from PIL import Image

    Image.new("RGB", (120, 100), "red").save(tmp_path / "p.png")
    assert_png(tmp_path / "p.png")
    assert png_html(tmp_path / "p.png").startswith('<img src="data:image/png;base64,iVBOR')
    assert png_html(tmp_path / "missing.png") == ""


def test_outside_a_kernel_is_not_a_notebook(monkeypatch):
    monkeypatch.delenv("CONVLAB_NOTEBOOK", raising=False)
    assert in_notebook() is False
    monkeypatch.setenv("CONVLAB_NOTEBOOK", "1")
    assert in_notebook() is True
