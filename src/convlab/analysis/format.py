"""How the inspector's numbers read as text, and the zoo listing as a terminal table (rich)."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from convlab.analysis.trace import LayerRow


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
    """The terminal's console; when output goes to a file or pipe, a wide one so rows stay whole."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def print_zoo_table(rows: list[dict], console: Console | None = None) -> None:
    """``convlab models``: one line per registered model."""
    console = console or terminal_console()
    table = Table(
        box=box.SIMPLE_HEAD,
        caption="MACs: multiply-adds per image at the default input size.",
        caption_justify="left",
    )
    table.add_column("Model", no_wrap=True)
    table.add_column("Family")
    table.add_column("Year", justify="right")
    table.add_column("Paper")
    table.add_column("Input", justify="right", no_wrap=True)
    table.add_column("Params", justify="right")
    table.add_column("MACs", justify="right")
    for row in rows:
        failed = row.get("error")
        table.add_row(
            row["name"],
            row["family"],
            str(row["year"]),
            row["paper"],
            "x".join(map(str, row["input_size"])),
            format_count(row["params"]) if row["params"] is not None else "",
            format_si(row["macs"]) if row["macs"] is not None else f"error: {failed}",
        )
    console.print(table)
