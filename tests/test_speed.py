"""Speed levers compute what the plain model computes: a convolution covering its input as one matrix product."""

import copy

import pytest
import torch
from torch import nn

from convlab.models import create_model
from convlab.speed import CoveringConv2d, covers, use_fast_layers


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "nhwc_input_only"])
def test_a_convolution_covering_its_input_is_computed_as_the_convolution(layout):
    """LeNet-5's C5 runs as one matrix product at 5x5 inputs: the convolution's outputs and gradients,
    with the gradients in the layout of what they are the gradients of (no NCHW gradient for NHWC maps)."""
    torch.manual_seed(0)
    covering = CoveringConv2d(16, 120, 5)
    plain = nn.Conv2d(16, 120, 5)
    plain.load_state_dict(covering.state_dict())
    x = torch.randn(64, 16, 5, 5)
    if layout == "channels_last":
        covering.to(memory_format=torch.channels_last)
        plain.to(memory_format=torch.channels_last)
    if layout != "nchw":  # nhwc_input_only: NHWC maps into a layer whose weights were left NCHW
        x = x.contiguous(memory_format=torch.channels_last)
    assert covers(covering, x)
    outputs = []
    for layer in (covering, plain):
        inputs = x.clone().requires_grad_()
        out = layer(inputs)
        loss = (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()
        # autograd.grad hands back the gradients as computed, before .grad's copy into the leaf's layout
        outputs.append((out, *torch.autograd.grad(loss, (inputs, layer.weight, layer.bias))))
    for fast, slow in zip(*outputs, strict=True):
        assert fast.shape == slow.shape and (fast - slow).abs().max() <= 1e-4
    _, input_grad, weight_grad, _ = outputs[0]
    assert input_grad.stride() == x.stride()  # what S4's backward receives: NHWC maps get an NHWC gradient
    if layout != "nhwc_input_only":  # mixed layouts: one side is copied either way
        assert weight_grad.stride() == covering.weight.stride()
    wider = torch.randn(2, 16, 9, 9)  # a larger input gives larger maps: a convolution again
    assert not covers(covering, wider) and covering(wider).shape == (2, 120, 5, 5)
    assert (covering(wider) - plain(wider)).abs().max() <= 1e-5


@pytest.mark.parametrize("name", ["lenet5", "lenet5_1998"])
def test_fast_layers_give_lenet5_its_outputs_and_gradients_with_the_same_parameters(name):
    """At 32x32 only C5's kernel covers its input; the swapped C5 holds the plain C5's own Parameters."""
    torch.manual_seed(0)
    plain = create_model(name)
    fast = copy.deepcopy(plain).eval()
    keys, parameters = list(fast.state_dict()), list(fast.parameters())

    assert use_fast_layers(fast, (1, 32, 32)) is fast
    swapped = [n for n, m in fast.named_modules() if type(m) is not type(plain.get_submodule(n))]
    assert swapped == ["features.c5"] and isinstance(fast.features.c5, CoveringConv2d)
    assert list(fast.state_dict()) == keys  # checkpoints load into either
    assert all(a is b for a, b in zip(fast.parameters(), parameters, strict=True))  # optimizer state stays
    assert not fast.training  # the shape pass leaves train/eval as it found it

    fast.train()
    images, labels = torch.randn(16, 1, 32, 32), torch.randint(0, 10, (16,))
    logits = []
    for model in (plain, fast):
        out = model(images)
        nn.functional.cross_entropy(out, labels).backward()
        logits.append(out)
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=1e-5)
    for (key, a), b in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-6, msg=key)
