"""`convlab summary` and `convlab models` in a narrow terminal: text wraps and whole columns are left out
(the note says which), but no figure is ever cut, folded or ellipsised."""

import io
import os
import re
import subprocess
import sys
from collections import Counter

import pytest
from rich.console import Console

from convlab.analysis.format import format_count, format_si, name_pieces, print_zoo_table
from convlab.analysis.inspector import summary
from convlab.analysis.zoo import zoo_table

# A figure as the tables print it: 61,706  64x112x112  714.19  7
FIGURE = re.compile(r"\d[\d,.x]*")


def figures(text: str) -> Counter:
    """Every whitespace-separated word of ``text`` that is a figure, counted."""
    return Counter(word for word in text.split() if FIGURE.fullmatch(word))


def contains(outer: Counter, inner: Counter) -> bool:
    return not inner - outer


def render_zoo(rows: list[dict], width: int) -> str:
    buffer = io.StringIO()
    print_zoo_table(rows, Console(file=buffer, width=width, color_system=None))
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["resnet50", "googlenet", "vit_b_16", "lenet5"])
def test_summary_keeps_every_figure_whole_at_80_and_60_columns(name):
    result = summary(name)
    wide = result.render(width=200)
    # what the table must always show whole: each layer's output, parameters and multiply-adds, and the totals
    kept = Counter()
    for row in result.layers:
        kept.update(["x".join(map(str, row.output_shape))] if row.output_shape is not None else [])
        kept.update([format_count(row.params)] if row.params else [])
        kept.update([format_count(row.macs)] if row.macs else [])
    kept.update([format_count(result.totals.params), format_count(result.totals.macs)])
    assert contains(figures(wide), kept)
    for width in (80, 60):
        narrow = result.render(width=width)
        assert max(len(line) for line in narrow.splitlines()) <= width
        assert "…" not in narrow
        # no fragment of a number (a cut one would read as a figure the wide table never printed)
        assert contains(figures(wide), figures(narrow))
        assert contains(figures(narrow), kept)
    assert "Not shown at width 80: Type" in " ".join(result.render(width=80).split())


def test_the_wide_summary_leaves_nothing_out():
    wide = summary("resnet50").render(width=200)
    assert "Not shown" not in wide
    header = next(line for line in wide.splitlines() if line.startswith("Layer"))
    assert header.split() == ["Layer", "Type", "Kernel", "Output", "Values", "Params", "MACs", "RF", "Jump"]


def test_a_layer_name_wraps_between_its_parts_and_keeps_an_index_with_its_container():
    assert name_pieces("layer4.2.downsample.0") == ["layer4.2.", "downsample.0"]
    assert name_pieces("encoder.layers.encoder_layer_11.mlp.0") == [
        "encoder.",
        "layers.",
        "encoder_layer_11.",
        "mlp.0",
    ]
    table = summary("vit_b_16").render(width=60).split("\n\n")[0]  # the totals follow a blank line
    firsts = [line.split()[0] for line in table.splitlines() if line.strip()]
    start = firsts.index("encoder.layers.")
    assert firsts[start : start + 3] == ["encoder.layers.", "encoder_layer_0.", "ln_1"]
    assert not [word for word in firsts if FIGURE.fullmatch(word)]  # no index alone on a line


@pytest.fixture(scope="module")
def zoo_rows():
    return zoo_table()


@pytest.mark.parametrize("width", [80, 60])
def test_models_keeps_every_figure_whole(zoo_rows, width):
    wide, narrow = render_zoo(zoo_rows, 200), render_zoo(zoo_rows, width)
    kept = Counter()
    for row in zoo_rows:
        kept.update(["x".join(map(str, row["input_size"])), format_count(row["params"])])
        kept.update([format_si(row["macs"]).split()[0]])
    assert contains(figures(wide), kept) and contains(figures(narrow), kept)
    assert contains(figures(wide), figures(narrow))
    assert max(len(line) for line in narrow.splitlines()) <= width and "…" not in narrow
    names = [line.split()[0] for line in narrow.splitlines() if line.strip()]
    assert all(row["name"] in names for row in zoo_rows)
    assert "Not shown at width" in narrow and "Paper" in narrow.split("Not shown")[1]
    assert "Krizhevsky" in wide and "Krizhevsky" not in narrow


def test_a_table_too_wide_even_at_its_least_is_printed_whole_not_cut():
    text = summary("vit_b_16").render(width=40)
    assert "17,563,828,224" in text  # the MACs total, wider than 40 columns leave room for beside the others
    assert contains(figures(summary("vit_b_16").render(width=200)), figures(text))


def test_the_command_reads_its_width_from_COLUMNS_when_piped():
    completed = subprocess.run(
        [sys.executable, "-m", "convlab.cli", "summary", "lenet5"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "60"},
        timeout=120,
        check=True,
    )
    lines = completed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert "61,706" in completed.stdout and "416,520" in completed.stdout  # parameters, multiply-adds
    assert "Not shown at width 60:" in completed.stdout
