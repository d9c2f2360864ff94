"""Convolution arithmetic worked out as in the notes: output size, receptive field, parameters."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from convlab.analysis.receptive_field import kernel_span
from convlab.errors import ConvlabError


@dataclass(frozen=True)
class ConvArithmetic:
    """One convolution (or pooling window) over a square ``size`` x ``size`` input."""

    size: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    output_size: int  # floored, as PyTorch does, when the windows do not fit exactly
    fits: bool  # (W - K_eff + 2P) divisible by S: every window lands inside the padded input
    exact_output: Fraction  # (W - K_eff + 2P)/S + 1 before flooring
    in_channels: int | None = None
    out_channels: int | None = None

    @property
    def kernel_span(self) -> int:
        """Input pixels the (dilated) kernel covers: D*(K-1)+1."""
        return kernel_span(self.kernel, self.dilation)

    @property
    def receptive_field(self) -> int:
        """For a single layer the receptive field of one output value is the kernel's span."""
        return self.kernel_span

    @property
    def weights_per_filter(self) -> int | None:
        return None if self.in_channels is None else self.kernel * self.kernel * self.in_channels

    @property
    def params(self) -> int | None:
        """(K*K*C_in + 1) * C_out: every filter spans the whole input depth, plus one bias."""
        if self.in_channels is None or self.out_channels is None:
            return None
        return (self.weights_per_filter + 1) * self.out_channels

    @property
    def formula(self) -> str:
        """``(7 - 3 + 2*0)/1 + 1 = 5``: the notes' arithmetic with this layer's numbers."""
        return worked_formula(self.size, self.kernel_span, self.padding, self.stride)

    def explain(self) -> list[str]:
        """The arithmetic, line by line, as ``convlab conv-arith`` prints it."""
        lines = [
            f"input {self.size}x{self.size}, kernel {self.kernel}x{self.kernel}, stride {self.stride}, "
            f"padding {self.padding}, dilation {self.dilation}"
        ]
        if self.dilation > 1:
            lines.append(
                f"kernel span with dilation {self.dilation}: {self.dilation}*({self.kernel} - 1) + 1 = "
                f"{self.kernel_span} ({self.kernel * self.kernel} weights see a {self.kernel_span}x{self.kernel_span} region)"
            )
        lines.append("output size = (W - K + 2P)/S + 1")
        if self.fits:
            lines.append(f"{self.formula} -> {self.output_size}x{self.output_size}")
        else:
            lines.append(f"{self.formula}: does not fit; PyTorch floors it to {self.output_size}")
        lines.append(f"receptive field of one output value: {self.receptive_field}x{self.receptive_field}")
        same = (self.kernel_span - 1) // 2  # layers.conv.same_padding, worked out as the line says
        if self.stride == 1 and self.kernel_span % 2 == 1 and self.padding != same:
            lines.append(f"same-size padding at stride 1: ({self.kernel_span} - 1)/2 = {same}")
        if self.params is not None:
            c_in, c_out, k = self.in_channels, self.out_channels, self.kernel
            lines.append(f"parameters: ({k}*{k}*{c_in} + 1)*{c_out} = {self.params:,}")
            lines.append(f"output volume: {self.output_size}x{self.output_size}x{c_out}")
        return lines


class DoesNotFitError(ConvlabError):
    """The windows do not tile the padded input exactly; carries the paddings and strides that would."""

    def __init__(self, result: ConvArithmetic, suggestions: list[str]) -> None:
        self.result = result
        self.suggestions = suggestions
        hint = "; ".join(suggestions)
        super().__init__(f"{result.formula}: does not fit" + (f"; {hint}" if hint else "") + ".")


def worked_formula(size: int, span: int, padding: int, stride: int) -> str:
    value = Fraction(size - span + 2 * padding, stride) + 1
    shown = str(value.numerator) if value.denominator == 1 else f"{float(value):.2f}"
    return f"({size} - {span} + 2*{padding})/{stride} + 1 = {shown}"


def conv_arithmetic(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    in_channels: int | None = None,
    out_channels: int | None = None,
    exact: bool = True,
) -> ConvArithmetic:
    """Output size ``(W - K_eff + 2P)/S + 1`` with ``K_eff = D*(K-1)+1``, and the parameter count.

    With ``exact=True`` a stride that does not tile the padded input raises DoesNotFitError
    (``(7 - 3 + 2*0)/3 + 1 = 2.33: does not fit``) listing the nearest paddings and strides that
    fit; with ``exact=False`` the size is floored as PyTorch does and ``fits`` says so.
    """
    for name, value, least in (
        ("size", size, 1),
        ("kernel", kernel, 1),
        ("stride", stride, 1),
        ("padding", padding, 0),
        ("dilation", dilation, 1),
    ):
        if not isinstance(value, int) or value < least:
            raise ConvlabError(f"{name} must be an integer >= {least}, got {value!r}.")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConvlabError(f"{name} must be a positive integer, got {value!r}.")
    span = kernel_span(kernel, dilation)
    if size + 2 * padding < span:
        raise ConvlabError(
            f"A {kernel}x{kernel} kernel spanning {span} pixels does not fit in a {size}x{size} input "
            f"padded by {padding}: the padded input must be at least {span} wide."
        )
    numerator = size - span + 2 * padding
    exact_output = Fraction(numerator, stride) + 1
    result = ConvArithmetic(
        size=size,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_size=numerator // stride + 1,
        fits=numerator % stride == 0,
        exact_output=exact_output,
        in_channels=in_channels,
        out_channels=out_channels,
    )
    if exact and not result.fits:
        raise DoesNotFitError(result, _fitting_alternatives(size, span, padding, stride))
    return result


def _fitting_alternatives(size: int, span: int, padding: int, stride: int) -> list[str]:
    """The nearest padding (above, and below if any) and strides (below and above) that fit."""
    suggestions = []
    fitting_paddings = [
        p
        for p in range(0, padding + stride + 1)
        if (size - span + 2 * p) % stride == 0 and size + 2 * p >= span
    ]
    below = [p for p in fitting_paddings if p < padding]
    above = [p for p in fitting_paddings if p > padding]
    for p in ([below[-1]] if below else []) + ([above[0]] if above else []):
        suggestions.append(f"padding {p} gives {worked_formula(size, span, p, stride)}")
    numerator = size - span + 2 * padding
    fitting_strides = [s for s in range(1, max(numerator, 1) + 1) if numerator % s == 0]
    below = [s for s in fitting_strides if s < stride]
    above = [s for s in fitting_strides if s > stride]
    for s in ([below[-1]] if below else []) + ([above[0]] if above else []):
        suggestions.append(f"stride {s} gives {worked_formula(size, span, padding, s)}")
    return suggestions


def stacked_receptive_field(layers: int, kernel: int) -> int:
    """Receptive field of ``layers`` stacked KxK stride-1 convolutions: 1 + L*(K-1) (two 3x3 see 5x5)."""
    if layers < 0 or kernel < 1:
        raise ConvlabError(f"layers must be >= 0 and kernel >= 1, got {layers} and {kernel}.")
    return 1 + layers * (kernel - 1)
