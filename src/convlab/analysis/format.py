"""Tables for the terminal (rich): a model summary and the zoo listing."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table

from convlab.analysis.summary import LayerRow, Summary


def format_count(value: int) -> str:
    """61,706"""
    return f"{value:,}"


def format_si(value: float, unit: str = "") -> str:
    """1.81 G, 245.3 K: decimal prefixes (10^3), so MACs read as in papers."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:g} {unit}".rstrip()


def _dims(values) -> str:
    if values is None:
        return ""
    if isinstance(values, str):
        return values
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _geometry(row: LayerRow) -> str:
    """``5x5 s1 p2``, ``3x3 s1 p1 d2 g32``, ``9216->4096``."""
    if row.features is not None:
        return f"{row.features[0]}->{row.features[1]}"
    if row.kernel is None:
        return ""
    parts = ["x".join(map(str, row.kernel)), f"s{_dims(row.stride)}"]
    if row.padding is not None:
        parts.append(f"p{_dims(row.padding)}")
    if row.dilation is not None and any(d != 1 for d in row.dilation):
        parts.append(f"d{_dims(row.dilation)}")
    if row.groups not in (None, 1):
        parts.append(f"g{row.groups}")
    return " ".join(parts)


def summary_table(summary: Summary) -> Table:
    table = Table(
        title=f"{summary.model} at {'x'.join(map(str, summary.input_size))}",
        box=box.SIMPLE_HEAD,
        show_footer=True,
    )
    totals = summary.totals
    table.add_column("Layer", footer="Total", overflow="fold")
    table.add_column("Type", overflow="fold")
    table.add_column("Kernel", overflow="fold")
    table.add_column("Output", justify="right", overflow="fold")
    table.add_column("Values", justify="right", footer=format_count(totals.activations))
    table.add_column("Params", justify="right", footer=format_count(totals.params))
    table.add_column("MACs", justify="right", footer=format_count(totals.macs))
    table.add_column("RF", justify="right")
    table.add_column("Jump", justify="right")
    for row in summary.layers:
        output = "x".join(map(str, row.output_shape)) if row.output_shape is not None else "(not run)"
        table.add_row(
            row.name,
            row.type,
            _geometry(row),
            output,
            format_count(row.activations) if row.ran else "",
            format_count(row.params) if row.params else "",
            format_count(row.macs) if row.macs else "",
            _dims(row.receptive_field),
            _dims(row.jump) if row.jump is not None else ("all" if row.receptive_field else ""),
        )
    return table


def totals_lines(summary: Summary) -> list[str]:
    t = summary.totals
    return [
        f"Parameters: {format_count(t.params)} (trainable {format_count(t.trainable_params)}, "
        f"frozen {format_count(t.frozen_params)}), {format_si(t.param_bytes, 'B')}",
        f"Multiply-adds: {format_si(t.macs)} ({format_count(t.macs)}); FLOPs = 2 x MACs = {format_si(t.flops)}",
        f"Activations: {format_count(t.activations)} values, {format_si(t.activation_bytes, 'B')} per sample "
        "(forward; in-place layers not counted twice)",
        "Per sample. RF: receptive field in input pixels (largest over branches); Jump: input pixels "
        "between neighbouring outputs ('all' once the spatial layout is gone).",
        f"MACs count {summary.conventions['macs'].removeprefix('multiply-adds per sample: ')}.",
    ]


def _console() -> Console:
    """The terminal's console; when output goes to a file or pipe, a wide one so rows stay whole."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def print_summary(summary: Summary, console: Console | None = None) -> None:
    console = console or _console()
    console.print(summary_table(summary))
    for line in totals_lines(summary):
        console.print(line, highlight=False, markup=False)


def render_summary(summary: Summary, width: int = 160) -> str:
    """The summary as plain text (what ``str(summary)`` gives)."""
    buffer = io.StringIO()
    print_summary(summary, Console(file=buffer, width=width, color_system=None, force_terminal=False))
    return buffer.getvalue()


def print_zoo_table(rows: list[dict], console: Console | None = None) -> None:
    """``convlab models``: one line per registered model."""
    console = console or _console()
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
