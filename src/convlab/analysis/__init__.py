"""Architecture inspection: shapes, parameters, multiply-adds, receptive fields, input-size checks."""

from convlab.analysis.conv_arith import (
    ConvArithmetic,
    DoesNotFitError,
    conv_arithmetic,
    stacked_receptive_field,
)
from convlab.analysis.input_check import check_input_size, parse_input_size
from convlab.analysis.receptive_field import ReceptiveField, kernel_span
from convlab.analysis.summary import CONVENTIONS, Summary, Totals, summary
from convlab.analysis.trace import LayerRow
from convlab.analysis.zoo import zoo_table

__all__ = [
    "CONVENTIONS",
    "ConvArithmetic",
    "DoesNotFitError",
    "LayerRow",
    "ReceptiveField",
    "Summary",
    "Totals",
    "check_input_size",
    "conv_arithmetic",
    "kernel_span",
    "parse_input_size",
    "stacked_receptive_field",
    "summary",
    "zoo_table",
]
