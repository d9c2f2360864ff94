"""Layer-by-layer summary of a model from one forward pass: shapes, parameters, multiply-adds,
activations and receptive fields, with the counting conventions stated in the output.

The pass itself is ``trace.py``'s; this module adds up its rows and lays them out as a table.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import torch
from rich.console import Console
from torch import nn

from convlab.analysis.format import (
    Column,
    format_count,
    format_dims,
    format_geometry,
    format_si,
    left_out_note,
    print_table,
    terminal_console,
)
from convlab.analysis.input_check import trace_or_explain
from convlab.analysis.trace import ATOMIC_MODULES, LayerRow, Trace

CONVENTIONS = {
    "macs": (
        "multiply-adds per sample: convolution = output values x (in_channels/groups x kernel area); "
        "linear = in_features x out_features per token; matmul = output values x inner size; "
        "attention (nn.MultiheadAttention, scaled_dot_product_attention) = its projections + Q.K^T + A.V; "
        "biases, batch norm, activations, pooling and additions are not counted"
    ),
    "flops": "2 x macs (one multiply and one add)",
    "activation_bytes": (
        "per sample, forward only: the output values of every listed layer x bytes per value "
        "(4 for float32); layers that hand back their input (in-place activations, Identity, eval-mode "
        "Dropout) and tensors made outside layers (torch.cat, +) are not counted"
    ),
    "param_bytes": "parameter values x bytes per value (buffers such as batch-norm statistics not included)",
    "receptive_field": (
        "input pixels one output value sees, and jump = input pixels between neighbouring values; "
        "where branches meet the largest field over the paths; not clipped to the image"
    ),
    "output_shape": "per sample, without the batch dimension",
}


@dataclass
class Totals:
    """The whole model's figures, per sample (see CONVENTIONS)."""

    params: int
    trainable_params: int
    frozen_params: int
    macs: int
    flops: int
    activations: int
    activation_bytes: int
    param_bytes: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Summary:
    """What ``convlab.summary`` returns: rows in execution order, totals and the counting conventions."""

    model: str
    input_size: tuple[int, ...]
    layers: list[LayerRow]
    totals: Totals
    device: str  # where the forward pass ran ("meta": shapes only, no arithmetic)
    conventions: dict[str, str] = field(default_factory=lambda: dict(CONVENTIONS))

    def layer(self, name: str) -> LayerRow:
        """The row of layer ``name`` (its qualified module name, e.g. ``layer1.0.conv1``)."""
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"no layer named {name!r} in the summary of {self.model}")

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "input": list(self.input_size),
            "conventions": dict(self.conventions),
            "layers": [row.to_dict() for row in self.layers],
            "totals": self.totals.to_dict(),
        }

    def render(self, width: int = 160) -> str:
        """The table and totals as plain text, ``width`` characters wide."""
        return render_summary(self, width=width)

    def __str__(self) -> str:
        return self.render()

    def _repr_html_(self) -> str:
        """In a notebook: every column as an HTML table (nothing left out for width), then the totals."""
        from convlab.notebook import html_table, lines_html

        columns = summary_columns(self)
        table = html_table(
            [column.header for column in columns],
            list(zip(*(column.cells for column in columns))),
            footer=[column.footer for column in columns],
            caption=f"{self.model} at {'x'.join(map(str, self.input_size))}",
            right=[column.justify == "right" for column in columns],
        )
        return table + lines_html(totals_lines(self))


# --- the public door ------------------------------------------------------------------------------------


def summary(
    model_or_name: nn.Module | str,
    input_size=None,
    num_classes: int | None = None,
    device=None,
    **options,
) -> Summary:
    """Shapes, parameters, multiply-adds, activations and receptive fields of every layer.

    ``input_size`` is (C, H, W), (H, W), a single size S, or text such as ``"3x224x224"``; it defaults
    to the size the architecture was designed for. ``options`` go to ``create_model`` when the model
    is given by name (e.g. ``stride_in="1x1"`` for the paper's ResNet striding). An input too small
    for the architecture raises ConvlabError naming the layer and the smallest size that works
    (the same check as ``check_input_size``, made by this pass itself).

    Conventions (also in ``CONVENTIONS`` and ``to_dict()["conventions"]``), all per sample:
    MACs (multiply-adds): convolution = output values x (in_channels/groups x kernel area); linear =
    in_features x out_features per token; nn.MultiheadAttention = its q, k, v and output projections
    + Q.K^T + A.V; batch norm, activations, pooling, additions and biases are not counted. So
    torchvision's "GFLOPS" are MACs (resnet50: 4.09). FLOPs = 2 x MACs. activation_bytes = output
    values of every layer x bytes per value (4 for float32), in-place layers not counted again.
    Receptive fields are in input pixels, the largest over branching paths.
    """
    model, label, size, trace = trace_or_explain(model_or_name, input_size, num_classes, device, **options)
    return _assemble(model, label, size, trace)


def _assemble(model: nn.Module, label: str, size: tuple[int, ...], trace: Trace) -> Summary:
    """Each row's own parameters (a shared weight counted once), rows for what did not run, totals."""
    rows = trace.rows
    seen: set[int] = set()
    for row, module in zip(rows, trace.row_owner):
        if module is None:
            continue
        params = module.parameters(recurse=isinstance(module, ATOMIC_MODULES))
        row.params = _count_new(params, seen)
    rows.extend(_not_run_rows(model, "", trace.called, seen))

    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    macs = sum(row.macs for row in rows)
    activations = sum(row.activations for row in rows if not row.returns_input)
    dtype = next((p.dtype for p in params if p.is_floating_point()), torch.float32)
    bytes_per_value = torch.empty((), dtype=dtype).element_size()
    totals = Totals(
        params=total,
        trainable_params=trainable,
        frozen_params=total - trainable,
        macs=macs,
        flops=2 * macs,
        activations=activations,
        activation_bytes=activations * bytes_per_value,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
    )
    return Summary(model=label, input_size=tuple(size), layers=rows, totals=totals, device=trace.device)


def _count_new(params, seen: set[int]) -> int:
    """Parameters not counted yet (a weight shared by two layers counts once)."""
    count = 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            count += p.numel()
    return count


def _not_run_rows(module: nn.Module, prefix: str, called: set[int], seen: set[int]) -> list[LayerRow]:
    """One row per top-most module the forward pass skipped that holds parameters, so the params
    column still adds up to the total (GoogLeNet's auxiliary heads run only in training)."""
    rows = []
    for child_name, child in module.named_children():
        name = f"{prefix}.{child_name}" if prefix else child_name
        if id(child) in called:
            if not isinstance(child, ATOMIC_MODULES):
                rows.extend(_not_run_rows(child, name, called, seen))
            continue
        count = _count_new(child.parameters(), seen)
        if count:
            rows.append(LayerRow(name=name, type=type(child).__name__, params=count, ran=False))
    return rows


# --- the table ----------------------------------------------------------------------------------------


def summary_columns(result: Summary) -> list[Column]:
    """One column per figure, in table order. At a narrow width the layer's type goes first (its
    name usually says it), then the jump, the receptive field, the values and the kernel; the
    layer, its output, parameters and multiply-adds are always shown."""
    rows, totals = result.layers, result.totals
    return [
        Column("Layer", [row.name for row in rows], footer="Total", breaks="name"),
        Column("Type", [row.type for row in rows], drop=1),
        Column("Kernel", [format_geometry(row) for row in rows], breaks="words", drop=5),
        Column("Output", [_output(row) for row in rows], justify="right"),
        Column(
            "Values",
            [format_count(row.activations) if row.ran else "" for row in rows],
            footer=format_count(totals.activations),
            justify="right",
            drop=4,
        ),
        Column(
            "Params",
            [format_count(row.params) if row.params else "" for row in rows],
            footer=format_count(totals.params),
            justify="right",
        ),
        Column(
            "MACs",
            [format_count(row.macs) if row.macs else "" for row in rows],
            footer=format_count(totals.macs),
            justify="right",
        ),
        Column("RF", [format_dims(row.receptive_field) for row in rows], justify="right", drop=3),
        Column("Jump", [_jump(row) for row in rows], justify="right", drop=2),
    ]


def _output(row: LayerRow) -> str:
    return "x".join(map(str, row.output_shape)) if row.output_shape is not None else "(not run)"


def _jump(row: LayerRow) -> str:
    if row.jump is not None:
        return format_dims(row.jump)
    return "all" if row.receptive_field else ""


def totals_lines(result: Summary) -> list[str]:
    """The totals and the counting conventions, in words, under the table."""
    t = result.totals
    return [
        f"Parameters: {format_count(t.params)} (trainable {format_count(t.trainable_params)}, "
        f"frozen {format_count(t.frozen_params)}), {format_si(t.param_bytes, 'B')}",
        f"Multiply-adds: {format_si(t.macs)} ({format_count(t.macs)}); FLOPs = 2 x MACs = {format_si(t.flops)}",
        f"Activations: {format_count(t.activations)} values, {format_si(t.activation_bytes, 'B')} per sample "
        "(forward; in-place layers not counted twice)",
        "Per sample. RF: receptive field in input pixels (largest over branches); Jump: input pixels "
        "between neighbouring outputs ('all' once the spatial layout is gone).",
        f"MACs count {result.conventions['macs'].removeprefix('multiply-adds per sample: ')}.",
    ]


def print_summary(result: Summary, console: Console | None = None) -> None:
    """The table, as wide as ``console`` (columns left out when narrow, never a figure cut), and the totals."""
    console = console or terminal_console()
    left_out = print_table(
        console, summary_columns(result), title=f"{result.model} at {'x'.join(map(str, result.input_size))}"
    )
    note = left_out_note(left_out, console.width)
    console.print()
    for line in [*totals_lines(result), *([note] if note else [])]:
        console.print(line, highlight=False, markup=False)


def render_summary(result: Summary, width: int = 160) -> str:
    """The summary as plain text (what ``str(summary)`` gives)."""
    buffer = io.StringIO()
    print_summary(result, Console(file=buffer, width=width, color_system=None, force_terminal=False))
    return buffer.getvalue()
