"""Speed levers that change how fast a model runs, never what it computes.

The zoo builds every model as its paper draws it. ``use_fast_layers`` is the one place that swaps
some of a model's layers for faster ones computing the same sums; training and prediction call it
where they prepare a model, so each lever is applied, and tested for equality, once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def covers(conv: nn.Conv2d, x: Tensor) -> bool:
    """Whether ``conv``'s kernel lies exactly over the maps of the batch ``x``: one output position per map."""
    return (
        x.dim() == 4
        and x.shape[-2:] == conv.kernel_size
        and conv.padding in ((0, 0), "valid")
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )


class CoveringConv2d(nn.Conv2d):
    """A convolution whose kernel covers its whole input, computed then as one matrix product.

    LeNet-5's C5 has 5x5 kernels on S4's 5x5 maps: "this amounts to a full connection", yet it is a
    convolution because a larger input would give it larger maps (LeCun et al. 1998, II.B). At one
    output position per map the layer is ``linear(flatten(x), flatten(weight))``: the same sums, to
    float rounding, which a matrix product computes faster than oneDNN's convolution at that shape
    (docs/performance.md#levers-tried). Parameters and state_dict keys are nn.Conv2d's; any other
    input convolves as usual.
    """

    @classmethod
    def sharing(cls, conv: nn.Conv2d) -> CoveringConv2d:
        """A CoveringConv2d holding ``conv``'s own Parameters, so gradients and optimizer state carry over."""
        fast = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            device="meta",  # no weights of its own to allocate: conv's take their place
        )
        fast.weight, fast.bias = conv.weight, conv.bias
        return fast.train(conv.training)

    def forward(self, x: Tensor) -> Tensor:
        if not covers(self, x):
            return super().forward(x)
        # Flatten maps and kernels in the order the maps lie in memory. For channels_last (NHWC) maps,
        # (row, column, channel) order makes both flattenings views, where (channel, row, column) order
        # copies both every step, forward and backward, and hands the layer below an NCHW gradient.
        nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        order = (0, 2, 3, 1) if nhwc else (0, 1, 2, 3)
        flat_x, flat_weight = x.permute(order).flatten(1), self.weight.permute(order).flatten(1)
        return F.linear(flat_x, flat_weight, self.bias).view(x.shape[0], -1, 1, 1)


def use_fast_layers(model: nn.Module, input_size: Sequence[int]) -> nn.Module:
    """Swap, in place, every plain nn.Conv2d whose kernel (larger than 1x1) covers its input when
    ``model`` reads ``input_size`` (C, H, W) images for a CoveringConv2d holding the same Parameters: state_dict
    keys, optimizer state and checkpoints stay as they were. Returns ``model``.

    Call it where a model is made ready to run (training, prediction), after any inspection: the
    inspector describes the layers the paper draws, and a swapped layer runs as a matrix product.
    """
    fast = {conv: CoveringConv2d.sharing(conv) for conv in _covering_convs(model, input_size)}
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if child in fast:
                parent.register_module(name, fast[child])
    return model


def _covering_convs(model: nn.Module, input_size: Sequence[int]) -> list[nn.Conv2d]:
    """The plain nn.Conv2d layers whose kernel covers their input, found by one forward pass on the
    meta device (shapes only: the model's own tensors are neither read, moved nor copied)."""
    found: list[nn.Conv2d] = []

    def check(conv: nn.Conv2d, args: tuple) -> None:
        # 1x1 kernels on 1x1 maps (SE gates, late stages at small inputs) would qualify too; they are left
        # as they are until measured, so that every model but those with a covering kernel (LeNet-5's C5)
        # trains exactly as it did.
        if covers(conv, args[0]) and conv.kernel_size != (1, 1) and conv not in found:
            found.append(conv)

    handles = [m.register_forward_pre_hook(check) for m in model.modules() if type(m) is nn.Conv2d]
    if not handles:
        return found
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    stand_ins = {name: torch.empty_like(tensor, device="meta") for name, tensor in tensors.items()}
    dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    images = torch.zeros(2, *input_size, dtype=dtype, device="meta")
    training = {module: module.training for module in model.modules()}
    try:
        # Training mode runs every layer training runs (auxiliary heads too); two images give batch
        # norm more than one value per channel even where the maps are 1x1.
        model.train()
        with torch.no_grad():
            torch.func.functional_call(model, stand_ins, (images,))
    except Exception:
        # A network the meta device cannot run (one of yours that reads a value, say) keeps its layers:
        # the substitution is a speed lever, never a reason for a run to fail.
        return []
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in training.items():
            module.training = flag
    return found


# The layers whose weights a bf16 forward pass casts on every call under autocast: held in bf16 once instead.
_MATRIX_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def for_inference(model: nn.Module, amp: str) -> nn.Module:
    """A copy of ``model`` for inference alone (eval mode, no training afterwards), faster at the same sums:

    - every BatchNorm that directly follows a convolution is folded into that convolution's weights and bias
      (torch.fx's ``fuse``: y = (conv(x) - mean) * gamma / std + beta is one convolution), where the model
      can be traced; a model fx cannot trace keeps its BatchNorm layers;
    - with ``amp == "bf16"``, the weights of the convolutions and linear layers are stored in bf16 once.
      Autocast casts each of them on every call otherwise: ResNet-18's 11.7 M weights, 47 MB read and 23 MB
      written per image at batch 1. Autocast still runs the forward pass (the input's cast, and the float32
      layers it keeps: softmax, norms, losses), so the numbers are the bf16 path's as before.

    Measured on 2 cores with AMX, ResNet-18 at 224x224, batch 1: eager float32 21 ms, bf16 autocast
    10-11 ms, this copy under autocast 7 ms (docs/performance.md#inference-resnet-18-at-224x224). The copy
    shares nothing with ``model``: training it, or reading its layers by name, is not what it is for."""
    import copy

    from torch.fx.experimental.optimization import fuse

    fast = copy.deepcopy(model).eval()
    try:
        fast = fuse(fast)
    except Exception:  # noqa: BLE001 - fx cannot trace every network (ViT's checks, networks of yours)
        pass
    if amp == "bf16":
        for module in fast.modules():
            if isinstance(module, _MATRIX_LAYERS):
                module.to(torch.bfloat16)
    return fast
