"""The model zoo: one module per family; importing them fills the registry."""

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
)

__all__ = ["ModelInfo", "ModelSpec", "create_model", "get_model_info", "list_models", "register_model"]
