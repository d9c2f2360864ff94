"""convlab: build, inspect, train, transfer and ship convolutional networks for image classification.

The public API is imported lazily (PEP 562), so `import convlab` and the `convlab` command
start without loading torch until a function that needs it is called.
"""

from __future__ import annotations

from convlab.lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "ConvlabError": "convlab.errors",
    "create_model": "convlab.models",
    "get_model_info": "convlab.models",
    "list_models": "convlab.models",
    "register_model": "convlab.models",
    "summary": "convlab.analysis",
    "check_input_size": "convlab.analysis",
    "conv_arithmetic": "convlab.analysis",
    "load_data": "convlab.data",
    "train": "convlab.training",
    "TrainConfig": "convlab.training",
    "sweep": "convlab.training",
    "lr_find": "convlab.training",
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
_API.update({name: f"convlab.{name}" for name in _SUBPACKAGES})

__all__ = ["__version__", *_API]
__getattr__, __dir__ = lazy_exports("convlab", _API, globals())
