"""Architecture inspection: shapes, parameters, multiply-adds, receptive fields, input-size checks.

The names below are imported on first use (PEP 562), as ``convlab``'s are: ``convlab conv-arith``
works its arithmetic out without loading torch, which the forward-pass inspector needs.
"""

from __future__ import annotations

from convlab.lazy import lazy_exports

# public name -> module that defines it
_API = {
    "ConvArithmetic": "convlab.analysis.conv_arith",
    "DoesNotFitError": "convlab.analysis.conv_arith",
    "conv_arithmetic": "convlab.analysis.conv_arith",
    "stacked_receptive_field": "convlab.analysis.conv_arith",
    "check_input_size": "convlab.analysis.input_check",
    "parse_input_size": "convlab.analysis.input_check",
    "ReceptiveField": "convlab.analysis.receptive_field",
    "kernel_span": "convlab.analysis.receptive_field",
    "CONVENTIONS": "convlab.analysis.inspector",
    "Summary": "convlab.analysis.inspector",
    "Totals": "convlab.analysis.inspector",
    "summary": "convlab.analysis.inspector",
    "LayerRow": "convlab.analysis.trace",
    "zoo_table": "convlab.analysis.zoo",
}

__all__ = sorted(_API)
__getattr__, __dir__ = lazy_exports("convlab.analysis", _API, globals())
