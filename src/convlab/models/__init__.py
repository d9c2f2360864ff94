"""The model zoo: one module per family; importing them fills the registry. Your own networks go through
the same door (``create_model``, ``register_model``): convlab.models.user loads and records them."""

from convlab.models import (  # noqa: F401  (imported for their @register_model side effect)
    alexnet,
    allcnn,
    convnext,
    densenet,
    googlenet,
    inception_v3,
    lenet,
    mlp,
    mobilenet,
    nin,
    resnet,
    senet,
    squeezenet,
    vgg,
    vit,
    xception,
)
from convlab.models._registry import (
    ModelInfo,
    ModelSpec,
    create_model,
    get_model_info,
    list_models,
    register_model,
    spec_for_network,
)
from convlab.models.user import UserCode, is_reference

__all__ = [
    "ModelInfo",
    "ModelSpec",
    "UserCode",
    "create_model",
    "get_model_info",
    "is_reference",
    "list_models",
    "register_model",
    "spec_for_network",
]
