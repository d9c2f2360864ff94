"""convlab: build, inspect, train, transfer and ship convolutional networks for image classification.

The public API is imported lazily (PEP 562), so `import convlab` and the `convlab` command
start without loading torch until a function that needs it is called.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "ConvlabError": "convlab.errors",
    "create_model": "convlab.models",
    "get_model_info": "convlab.models",
    "list_models": "convlab.models",
    "summary": "convlab.analysis",
    "check_input_size": "convlab.analysis",
    "conv_arithmetic": "convlab.analysis",
    "load_data": "convlab.data",
    "train": "convlab.training",
    "TrainConfig": "convlab.training",
    "evaluate": "convlab.evaluation",
    "predict": "convlab.prediction",
    "load": "convlab.prediction",
    "load_pretrained": "convlab.transfer",
    "export": "convlab.exporting",
}
_SUBPACKAGES = (
    "analysis",
    "data",
    "evaluation",
    "exporting",
    "layers",
    "models",
    "serve",
    "training",
    "transfer",
    "viz",
)

__all__ = ["__version__", *_API, *_SUBPACKAGES]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"convlab.{name}")
    else:
        raise AttributeError(f"module 'convlab' has no attribute {name!r}")
    globals()[name] = value  # cache: the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
