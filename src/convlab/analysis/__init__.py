"""Architecture inspection: shapes, parameters, multiply-adds, receptive fields, input-size checks.

The names below are imported on first use (PEP 562), as ``convlab``'s are: ``convlab conv-arith``
works its arithmetic out without loading torch, which the forward-pass inspector needs.
"""

from __future__ import annotations

import sys
from types import ModuleType

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
    "CONVENTIONS": "convlab.analysis.summary",
    "Summary": "convlab.analysis.summary",
    "Totals": "convlab.analysis.summary",
    "summary": "convlab.analysis.summary",
    "LayerRow": "convlab.analysis.trace",
    "zoo_table": "convlab.analysis.zoo",
}

__all__ = sorted(_API)
_load, __dir__ = lazy_exports("convlab.analysis", _API, globals())


def __getattr__(name: str) -> object:
    value = _load(name)
    if isinstance(value, ModuleType):  # `summary` names a submodule and the function in it: the function
        value = globals()[name] = getattr(value, name)
    return value


class _Package(ModuleType):
    """Keeps ``convlab.analysis.summary`` the function when the submodule of that name is imported
    first: the import system then sets the package's attribute to the module."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, ModuleType) and _API.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
