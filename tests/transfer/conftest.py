"""Fixtures for the transfer tests: torchvision reference networks saved as weight files, and a real
Fashion-MNIST subset."""

from __future__ import annotations

import pytest
import torch
import torchvision

FASHION_LIMIT = 1000  # training images kept (stratified); val is 10% of them


def _outputs_equal(model_a, model_b, x, y=None) -> None:
    """Both models in eval mode give the same logits (``y`` is model_b's input when it differs)."""
    with torch.no_grad():
        expected = model_b.eval()(x if y is None else y)
        torch.testing.assert_close(model_a.eval()(x), expected, atol=1e-5, rtol=1e-4)
    assert expected.abs().max() > 1e-3  # real logits, not a zeroed head


@pytest.fixture
def outputs_equal():
    return _outputs_equal


@pytest.fixture(scope="session")
def torchvision_resnet18():
    """torchvision's resnet18 for 10 classes, randomly initialised, with non-trivial BN statistics."""
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="session")
def fashion(fashion_mnist):
    return fashion_mnist(limit=FASHION_LIMIT)
