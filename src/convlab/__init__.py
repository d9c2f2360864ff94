"""convlab: build, inspect, train, transfer and ship convolutional networks for image classification."""

__version__ = "0.1.0"

from convlab.errors import ConvlabError
from convlab.models import create_model, get_model_info, list_models

__all__ = ["ConvlabError", "__version__", "create_model", "get_model_info", "list_models"]
