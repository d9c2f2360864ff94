"""How the inspector's numbers read as text, and tables that fit the terminal without cutting a figure.

A terminal table here never truncates or ellipsises a number: when the terminal is narrow, text
(a dotted layer name, a paper's title) wraps, and whole columns are left out in a stated order
(the note under the table names them); ``--json`` always carries everything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.segment import Segments
from rich.table import Table

from convlab.analysis.trace import LayerRow

# Console width when output goes to a file or a pipe and COLUMNS does not say: wide enough for
# every table's natural width, so a saved summary has one line per layer.
PIPE_WIDTH = 200


def format_count(value: int) -> str:
    """61,706"""
    return f"{value:,}"


def format_si(value: float, unit: str = "") -> str:
    """1.81 G, 245.3 K: decimal prefixes (10^3), so MACs read as in papers."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:g} {unit}".rstrip()


def format_dims(values) -> str:
    """``3`` for (3, 3), ``1x7`` for (1, 7), a padding given as text (``same``) as it is."""
    if values is None:
        return ""
    if isinstance(values, str):
        return values
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def format_geometry(row: LayerRow) -> str:
    """``5x5 s1 p2``, ``3x3 s1 p1 d2 g32``, ``9216->4096``."""
    if row.features is not None:
        return f"{row.features[0]}->{row.features[1]}"
    if row.kernel is None:
        return ""
    parts = ["x".join(map(str, row.kernel)), f"s{format_dims(row.stride)}"]
    if row.padding is not None:
        parts.append(f"p{format_dims(row.padding)}")
    if row.dilation is not None and any(d != 1 for d in row.dilation):
        parts.append(f"d{format_dims(row.dilation)}")
    if row.groups not in (None, 1):
        parts.append(f"g{row.groups}")
    return " ".join(parts)


def terminal_console() -> Console:
    """The terminal's console, as wide as rich reads it (COLUMNS, else the terminal); when output goes
    to a file or pipe and COLUMNS is not set, a wide one so rows stay whole."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit():
        return console
    return Console(width=PIPE_WIDTH)


# --- tables that fit ---------------------------------------------------------------------------------


@dataclass
class Column:
    """One column of a terminal table and how it gives way when the terminal is narrow.

    ``breaks`` says where a cell may wrap: ``"never"`` (figures: shown whole or, with ``drop``, not
    at all), ``"words"`` (text, at spaces) or ``"name"`` (a dotted module name, at its dots, an index
    kept with its container: ``layer4.2.`` / ``downsample.0``). ``drop`` is None for a column always
    shown, else the order in which columns are left out (1 first). ``least`` is the narrowest a
    wrapping column is worth showing at (narrower, a title wraps to a word a line).
    """

    header: str
    cells: list[str]
    footer: str = ""
    justify: str = "left"
    breaks: str = "never"
    drop: int | None = None
    least: int = 0
    pieces: list[list[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        split = {"never": lambda text: [text], "words": str.split, "name": name_pieces}[self.breaks]
        self.pieces = [split(cell) or [""] for cell in self.cells]

    @property
    def natural_width(self) -> int:
        """The width that shows every cell on one line."""
        return max([len(self.header), len(self.footer), *(len(cell) for cell in self.cells)])

    @property
    def least_width(self) -> int:
        """The narrowest width that breaks no figure and no word (and reads, for wrapping columns)."""
        longest_piece = max((len(piece) for pieces in self.pieces for piece in pieces), default=0)
        return max(len(self.header), len(self.footer), longest_piece, min(self.least, self.natural_width))


def name_pieces(name: str) -> list[str]:
    """``"layer4.2.downsample.0"`` -> ``["layer4.2.", "downsample.0"]``: where a dotted name may wrap.

    A numeric segment stays with the one before it, so a wrapped name never leaves a bare index
    on a line of its own (it would read as a figure).
    """
    segments = name.split(".")
    pieces: list[str] = []
    for index, segment in enumerate(segments):
        text = segment + ("." if index < len(segments) - 1 else "")
        if pieces and segment.isdigit():
            pieces[-1] += text
        else:
            pieces.append(text)
    return pieces


def _join_pieces(pieces: list[str], width: int) -> str:
    """Pieces of a name joined into lines of at most ``width`` characters (a longer piece alone)."""
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(lines)


def table_width(widths: list[int]) -> int:
    """Characters a table of ``print_table`` takes for columns of these content widths: three
    between neighbouring columns (padding and rule), none at the edges."""
    return sum(widths) + 3 * max(len(widths) - 1, 0)


def fit_columns(columns: list[Column], width: int) -> list[tuple[Column, int]]:
    """The columns shown in ``width`` characters, each with its width.

    Columns are left out in their ``drop`` order until the rest fit at their least widths; the
    room left then goes to the wrapping columns, in table order, up to their natural widths. If
    even the columns always shown do not fit, they are kept at their least widths (the terminal
    wraps the lines; no figure is cut).
    """
    shown = list(columns)
    while table_width([c.least_width for c in shown]) > width:
        droppable = [c for c in shown if c.drop is not None]
        if not droppable:
            break
        shown.remove(min(droppable, key=lambda c: c.drop))
    widths = [c.natural_width if c.breaks == "never" else c.least_width for c in shown]
    spare = width - table_width(widths)
    for index, column in enumerate(shown):
        grow = max(0, min(spare, column.natural_width - widths[index]))
        widths[index] += grow
        spare -= grow
    return list(zip(shown, widths))


def print_table(console: Console, columns: list[Column], **table_options) -> list[str]:
    """Print ``columns`` as one table that fits ``console.width``; returns the headers left out."""
    fitted = fit_columns(columns, console.width)
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,  # the edges' padding would take four characters a narrow terminal needs
        show_footer=any(c.footer for c, _ in fitted),
        **table_options,
    )
    for column, width in fitted:
        table.add_column(
            column.header,
            footer=column.footer,
            justify=column.justify,
            width=width,
            no_wrap=column.breaks == "never",
            overflow="fold",
        )
    for index in range(len(columns[0].cells) if columns else 0):
        table.add_row(
            *(
                _join_pieces(column.pieces[index], width) if column.breaks == "name" else column.cells[index]
                for column, width in fitted
            )
        )
    needed = table_width([width for _, width in fitted])
    if needed <= console.width:
        console.print(table)
    else:  # too wide even at its least: printed whole, for the terminal to wrap (rich would cut the cells)
        lines = console.render_lines(table, console.options.update_width(needed), pad=False, new_lines=True)
        console.print(Segments([segment for line in lines for segment in line]), crop=False, soft_wrap=True)
    shown = {id(column) for column, _ in fitted}
    return [column.header for column in columns if id(column) not in shown]


def left_out_note(headers: list[str], width: int) -> str | None:
    """``Not shown at width 80: Type, Jump (a wider terminal or --json shows them).``"""
    if not headers:
        return None
    them = "it" if len(headers) == 1 else "them"
    return f"Not shown at width {width}: {', '.join(headers)} (a wider terminal or --json shows {them})."


def print_zoo_table(rows: list[dict], console: Console | None = None) -> None:
    """``convlab models``: one line per registered model; at a narrow width the paper's title goes
    first, then the family, then the year."""
    console = console or terminal_console()
    columns = [
        Column("Model", [row["name"] for row in rows]),
        Column("Family", [row["family"] for row in rows], drop=2),
        Column("Year", [str(row["year"]) for row in rows], justify="right", drop=3),
        Column("Paper", [row["paper"] for row in rows], breaks="words", drop=1, least=30),
        Column("Input", ["x".join(map(str, row["input_size"])) for row in rows], justify="right"),
        Column(
            "Params",
            [format_count(row["params"]) if row["params"] is not None else "" for row in rows],
            justify="right",
        ),
        Column(
            "MACs",
            [
                format_si(row["macs"]) if row["macs"] is not None else f"error: {row.get('error')}"
                for row in rows
            ],
            justify="right",
        ),
    ]
    left_out = print_table(
        console,
        columns,
        caption="MACs: multiply-adds per image at the default input size.",
        caption_justify="left",
    )
    note = left_out_note(left_out, console.width)
    if note:
        console.print(note, markup=False, highlight=False)
