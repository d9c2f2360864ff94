"""Packages whose public names load on first use (PEP 562), so that importing one stays cheap.

``convlab``, ``convlab.analysis``, ``convlab.training`` and ``convlab.serve`` name functions whose
modules import torch, FastAPI or uvicorn; the command-line parser imports these packages for their
torch-free parts (settings, limits, convolution arithmetic), and must not pay for the rest.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, api: Mapping[str, str], namespace: dict
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``api`` maps a public name to the module that
    defines it; ``namespace`` is the package's ``globals()``, where a loaded name is cached."""

    def __getattr__(name: str):
        if name not in api:
            raise AttributeError(f"module '{package}' has no attribute {name!r}")
        value = importlib.import_module(api[name])
        value = value if api[name] == f"{package}.{name}" else getattr(value, name)
        namespace[name] = value  # cache: the next access is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*api, *namespace.get("__all__", ())})

    return __getattr__, __dir__
