"""Speed levers that change how fast a model runs, never what it computes.

The zoo builds every model as its paper draws it. ``use_fast_layers`` is the one place that swaps
some of a model's layers for faster ones computing the same sums (and, for training, the same
gradients); training and prediction call it where they prepare a model, so each lever is applied,
and tested for equality, once.
"""

from __future__ import annotations

import functools
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
        return _sharing(cls, conv)

    def forward(self, x: Tensor) -> Tensor:
        if not covers(self, x):
            return super().forward(x)
        # Flatten maps and kernels in the order the maps lie in memory. For channels_last (NHWC) maps,
        # (row, column, channel) order makes both flattenings views, where (channel, row, column) order
        # copies both every step, forward and backward, and hands the layer below an NCHW gradient.
        order = (0, 2, 3, 1) if _layout_of(x) is torch.channels_last else (0, 1, 2, 3)
        flat_x, flat_weight = x.permute(order).flatten(1), self.weight.permute(order).flatten(1)
        return F.linear(flat_x, flat_weight, self.bias).view(x.shape[0], -1, 1, 1)


def is_depthwise(conv: nn.Conv2d) -> bool:
    """One filter per map (groups = maps in = maps out), zero-padded by a number of pixels per side."""
    return (
        conv.groups > 1
        and conv.groups == conv.in_channels == conv.out_channels
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        # the input gradient below pads by dilation * (kernel - 1) - padding, which must not be negative
        and all(p <= d * (k - 1) for p, d, k in zip(conv.padding, conv.dilation, conv.kernel_size))
    )


class _DepthwiseConv(torch.autograd.Function):
    """A depthwise convolution whose input gradient is computed as a forward convolution.

    The gradient of ``x`` is the output gradient, spread out by the stride (zeros between), convolved
    with each map's kernel turned by 180 degrees: the same sums as the convolution's own backward.
    oneDNN's backward-data kernel for depthwise convolutions is slow on the CPU, at stride 2 above all
    (MobileNetV2's 96 maps at 112x112, batch 32, bf16: 116 ms, against 29 ms this way; 43 against 1.7 ms
    at 576 maps of 14x14; 2x at stride 1), where its forward kernel is fast
    (docs/performance.md#transfer-learning-on-a-folder-of-photos-serving-and-the-limits-issue-17).
    The weight gradient is aten's own.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding, dilation, bias is not None)
        return F.conv2d(x, weight, bias, stride, padding, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, has_bias = ctx.conv
        maps = weight.shape[0]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            spread = grad
            if stride != (1, 1):
                # the gradient of the stride-1 convolution's output: the strided one's at every stride-th place
                size = [
                    n + 2 * p - d * (k - 1)
                    for n, p, d, k in zip(x.shape[-2:], padding, dilation, weight.shape[-2:])
                ]
                shape = (*grad.shape[:2], *size)
                spread = torch.empty(
                    shape, dtype=grad.dtype, device=grad.device, memory_format=_layout_of(grad)
                ).zero_()
                spread[..., :: stride[0], :: stride[1]] = grad
            turned = weight.flip(-2, -1)
            pad = [d * (k - 1) - p for p, d, k in zip(padding, dilation, weight.shape[-2:])]
            grad_x = F.conv2d(spread, turned, None, 1, pad, dilation, maps)
        if ctx.needs_input_grad[1] or (has_bias and ctx.needs_input_grad[2]):
            _, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad,
                x,
                weight,
                [maps] if has_bias else None,
                stride,
                padding,
                dilation,
                False,
                [0, 0],
                maps,
                [False, ctx.needs_input_grad[1], has_bias and ctx.needs_input_grad[2]],
            )
        return grad_x, grad_weight, grad_bias, None, None, None


def _layout_of(t: Tensor) -> torch.memory_format:
    nhwc = t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    return torch.channels_last if nhwc else torch.contiguous_format


class _TrainingConv2d(nn.Conv2d):
    """An nn.Conv2d that computes part of its training step its own way on the CPU (the subclasses below),
    holding the Parameters of the nn.Conv2d it replaces; state_dict keys are nn.Conv2d's."""

    @classmethod
    def sharing(cls, conv: nn.Conv2d) -> nn.Conv2d:
        """One of ``cls`` holding ``conv``'s own Parameters, so gradients and optimizer state carry over."""
        return _sharing(cls, conv)

    def _training_on_cpu(self, x: Tensor) -> bool:
        """In training mode with gradients on, for a CPU batch: anything else (eval mode, inference, tracing
        for export, CUDA, whose kernels were not measured here) runs nn.Conv2d's own forward."""
        return self.training and torch.is_grad_enabled() and x.device.type == "cpu" and x.dim() == 4

    def _conv_inputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``x``, the weight and the bias in the dtype the convolution runs in: autocast's where it is on (the
        cast autocast makes for nn.Conv2d, made here, since the autograd Functions run with autocast off)."""
        weight, bias = self.weight, self.bias
        if torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        return x, weight, bias


class DepthwiseConv2d(_TrainingConv2d):
    """A depthwise convolution that trains faster on the CPU: the same outputs (oneDNN's forward kernel),
    the same weight gradient, and its input gradient as a forward convolution (``_DepthwiseConv``), in
    CPU training (``_training_on_cpu``); nn.Conv2d's own forward otherwise.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self._training_on_cpu(x):
            return super().forward(x)
        x, weight, bias = self._conv_inputs(x)
        with torch.autocast("cpu", enabled=False):
            return _DepthwiseConv.apply(x, weight, bias, self.stride, self.padding, self.dilation)


# Where a weight gradient as one matrix product over patches beat oneDNN's backward-weights kernel: bf16
# on the CPU, at most 7x7 output positions per map, at least 96 input maps (2 cores with AMX, batch 256 at
# 28x28 inputs and 32 at 224: docs/performance.md#levers-tried).
PATCH_GRAD_MAX_POSITIONS = 49
PATCH_GRAD_MIN_MAPS = 96


def is_plain_dense(conv: nn.Conv2d) -> bool:
    """Stride 1, no dilation, one group, zero padding by a number of pixels: a convolution whose weight
    gradient is the product of its output gradient with its input's patches (``_PatchGradConv``)."""
    return (
        conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
    )


class PatchGradConv2d(_TrainingConv2d):
    """A convolution that trains faster on small maps in bf16 on the CPU: the same outputs and input
    gradient (oneDNN's kernels), and its weight gradient as one matrix product (``_PatchGradConv``).

    Only in CPU training (``_training_on_cpu``) of a bf16 batch (autocast's or its own) whose maps are small
    enough to gain (``PATCH_GRAD_MAX_POSITIONS``, ``PATCH_GRAD_MIN_MAPS``); nn.Conv2d's own forward otherwise.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self._training_on_cpu(x):
            return super().forward(x)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        if dtype != torch.bfloat16 or self.in_channels < PATCH_GRAD_MIN_MAPS:
            return super().forward(x)
        rows, cols = (n + 2 * p - k + 1 for n, p, k in zip(x.shape[-2:], self.padding, self.kernel_size))
        if rows * cols > PATCH_GRAD_MAX_POSITIONS:
            return super().forward(x)
        x, weight, bias = self._conv_inputs(x)
        with torch.autocast("cpu", enabled=False):
            return _PatchGradConv.apply(x, weight, bias, self.padding)


class _PatchGradConv(torch.autograd.Function):
    """A stride-1 convolution whose weight gradient is computed as one matrix product over patches.

    The weight gradient sums, over every image and output position, the output gradient times the input
    patch under the kernel there: (maps out x positions) @ (positions x kernel-sized patches). oneDNN's
    backward-weights kernel runs far below the matrix units' rate where the maps are small and the batch
    supplies the positions: at batch 256, 192->384 maps at 3x3, 37-43 ms against 6.5-8.6 ms as patches
    and one product; 512->512 at 7x7, batch 32: 42 against 14.5 ms. On larger maps, or in float32, oneDNN's
    kernel wins, so ``PatchGradConv2d`` takes this path only where it measured faster. The input gradient
    and the forward pass are oneDNN's own.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return F.conv2d(x, weight, bias, 1, padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], ctx.padding, [1, 1], False, [0, 0], 1, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:
            grad_weight = patch_weight_gradient(grad, x, weight.shape[-2:], ctx.padding)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None


def patch_weight_gradient(
    grad: Tensor, x: Tensor, kernel_size: Sequence[int], padding: Sequence[int]
) -> Tensor:
    """The weight gradient of a stride-1 convolution of ``x`` whose output gradient is ``grad``: the product
    of the gradient, one row per output position, with the input patch under the kernel at each position."""
    (kernel_rows, kernel_cols), maps_out = kernel_size, grad.shape[1]
    rows, cols = grad.shape[-2:]
    # every output position's patch, in (kernel row, kernel column, map) order: for channels_last maps each
    # piece is a run of whole rows of memory, and the product is the weight gradient in the channels_last
    # order of an NHWC model's kernels
    padded = F.pad(x, (padding[1], padding[1], padding[0], padding[0])).permute(0, 2, 3, 1)
    pieces = [padded[:, i : i + rows, j : j + cols] for i in range(kernel_rows) for j in range(kernel_cols)]
    patches = torch.cat(pieces, dim=3).reshape(-1, kernel_rows * kernel_cols * x.shape[1])
    by_position = grad.permute(0, 2, 3, 1).reshape(-1, maps_out)
    return (by_position.t() @ patches).view(maps_out, kernel_rows, kernel_cols, -1).permute(0, 3, 1, 2)


class _ClampBits(torch.autograd.Function):
    """ReLU (``top`` None) or ReLU6 (``top`` 6) of a 16-bit float tensor, computed on its bit patterns.

    A bf16 or float16 number that is not negative orders like its bits read as an int16, and a negative
    one reads as a negative int16, so clamping the int16 view to [0, bits of ``top``] is the activation:
    exact for every finite number and for both infinities. The int16 clamp runs at memory speed, where
    ATen's bf16 clamp converts each number to float32 and back: 1.5 against 19 ms for 32 maps of
    96x112x112 in bf16 on 2 cores (docs/performance.md#levers-tried). Two more differences from
    nn.ReLU6(inplace=True): no copy of the input is kept for the gradient (autograd clones it before an
    in-place clamp; the mask is read from the output instead, which gives the same mask), and a NaN becomes
    0 or ``top`` instead of staying NaN, which is why training also checks its weights and statistics
    for non-finite numbers (``convlab.training.step``). The gradient is ATen's own.
    """

    @staticmethod
    def forward(ctx, x: Tensor, top: float | None, inplace: bool) -> Tensor:
        y = _clamp_bits(x, top, inplace)
        if inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(y)
        ctx.top = top
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (y,) = ctx.saved_tensors
        if ctx.top is None:
            return torch.ops.aten.threshold_backward(grad, y, 0), None, None
        return torch.ops.aten.hardtanh_backward(grad, y, 0.0, ctx.top), None, None


def _clamp_bits(x: Tensor, top: float | None, inplace: bool) -> Tensor:
    """The clamp of ``_ClampBits``, without autograd: ``x`` itself (``inplace``) or a new tensor."""
    top_bits = None if top is None else _bits_of(top, x.dtype)
    if inplace:
        x.view(torch.int16).clamp_(0, top_bits)
        return x
    return torch.clamp(x.view(torch.int16), 0, top_bits).view(x.dtype)


@functools.cache  # called on every forward pass
def _bits_of(value: float, dtype: torch.dtype) -> int:
    """The bit pattern of ``value`` in the 16-bit float ``dtype``, as an int16."""
    return int(torch.tensor(value, dtype=dtype).view(torch.int16))


def _clamps_by_bits(x: Tensor) -> bool:
    """Whether ``x`` is a batch that _ClampBits runs faster: 16-bit floats on the CPU, in eager mode (a
    compiler fuses the activation itself, and export traces nn.ReLU's own operators)."""
    return (
        x.dtype in (torch.bfloat16, torch.float16)
        and x.device.type == "cpu"
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.compiler.is_compiling()
    )


class BitwiseReLU(nn.ReLU):
    """nn.ReLU, computed on the bit patterns of bf16 and float16 batches on the CPU (``_ClampBits``)."""

    def forward(self, x: Tensor) -> Tensor:
        if not _clamps_by_bits(x):
            return super().forward(x)
        if not (x.requires_grad and torch.is_grad_enabled()):  # inference: no autograd node to make
            return _clamp_bits(x, None, self.inplace)
        return _ClampBits.apply(x, None, self.inplace)


class BitwiseReLU6(nn.ReLU6):
    """nn.ReLU6, computed on the bit patterns of bf16 and float16 batches on the CPU (``_ClampBits``)."""

    def forward(self, x: Tensor) -> Tensor:
        if not _clamps_by_bits(x):
            return super().forward(x)
        if not (x.requires_grad and torch.is_grad_enabled()):  # inference: no autograd node to make
            return _clamp_bits(x, 6.0, self.inplace)
        return _ClampBits.apply(x, 6.0, self.inplace)


# The activations use_fast_layers swaps for their bitwise forms, and for_inference back for fx's tracing
_BITWISE = {nn.ReLU: BitwiseReLU, nn.ReLU6: BitwiseReLU6}
_PLAIN = {bitwise: plain for plain, bitwise in _BITWISE.items()}


def _sharing(cls: type, conv: nn.Conv2d) -> nn.Conv2d:
    """A ``cls`` (an nn.Conv2d) with ``conv``'s settings, holding ``conv``'s own Parameters."""
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


def use_fast_layers(model: nn.Module, input_size: Sequence[int], training: bool = False) -> nn.Module:
    """Swap, in place, layers of ``model`` for faster ones holding the same Parameters (state_dict keys,
    optimizer state and checkpoints stay as they were), and return ``model``:

    - every plain nn.Conv2d whose kernel (larger than 1x1) covers its input when ``model`` reads
      ``input_size`` (C, H, W) images, for a CoveringConv2d (a matrix product);
    - with ``training``, every plain depthwise nn.Conv2d for a DepthwiseConv2d (its input gradient
      as a forward convolution), and every other plain stride-1 one for a PatchGradConv2d (its weight
      gradient as one matrix product where the maps are small); inference has no gradient to gain on,
      and keeps them plain;
    - every plain nn.ReLU and nn.ReLU6 for BitwiseReLU and BitwiseReLU6 (bf16 and float16 batches on the
      CPU clamped as int16; in training no copy is kept for the gradient); a NaN becomes 0 (or 6) there,
      and training checks its weights for non-finite numbers instead.

    Call it where a model is made ready to run (training, prediction), after any inspection: the
    inspector describes the layers the paper draws.
    """
    fast = {conv: CoveringConv2d.sharing(conv) for conv in _covering_convs(model, input_size)}
    for layer in model.modules() if training else ():
        if type(layer) is not nn.Conv2d or layer in fast:
            continue
        if is_depthwise(layer):
            fast[layer] = DepthwiseConv2d.sharing(layer)
        elif is_plain_dense(layer):
            fast[layer] = PatchGradConv2d.sharing(layer)
    fast.update(_bitwise_activations(model))
    return _swap(model, fast)


# The layers use_fast_layers swaps in, in the order fast_layers_note names them
_FAST_LAYERS = (CoveringConv2d, DepthwiseConv2d, PatchGradConv2d, BitwiseReLU, BitwiseReLU6)


def fast_layers_note(model: nn.Module) -> str | None:
    """One line naming how many of ``model``'s layers ``use_fast_layers`` swapped, by class; None if none.
    Training writes it beside the precision, so that train.log says why a step runs faster than the same
    network in a plain loop, and which classes' docstrings explain it."""
    counts = {kind: sum(type(m) is kind for m in model.modules()) for kind in _FAST_LAYERS}
    if not any(counts.values()):
        return None
    kinds = ", ".join(f"{n} {kind.__name__}" for kind, n in counts.items() if n)
    return f"fast layers (the same sums, see convlab.speed): {kinds}"


def _bitwise_activations(model: nn.Module) -> dict[nn.Module, nn.Module]:
    """Each plain nn.ReLU and nn.ReLU6 of ``model``, mapped to its bitwise form."""
    return {
        layer: _BITWISE[type(layer)](inplace=layer.inplace).train(layer.training)
        for layer in model.modules()
        if type(layer) in _BITWISE
    }


def plain_convolutions(model: nn.Module) -> nn.Module:
    """``model`` with each of training's convolutions (DepthwiseConv2d, PatchGradConv2d) swapped back, in
    place, for nn.Conv2d holding the same Parameters: what fx traces, and the side the benchmarks compare with."""
    return _swap(
        model, {m: _sharing(nn.Conv2d, m) for m in model.modules() if isinstance(m, _TrainingConv2d)}
    )


def plain_activations(model: nn.Module) -> nn.Module:
    """``model`` with each BitwiseReLU and BitwiseReLU6 swapped back, in place, for nn.ReLU and nn.ReLU6: what
    fx traces, and the side the benchmarks and tests compare the bitwise forms with."""
    return _swap(model, {m: _PLAIN[type(m)](inplace=m.inplace) for m in model.modules() if type(m) in _PLAIN})


def _swap(model: nn.Module, replacements: dict[nn.Module, nn.Module]) -> nn.Module:
    """``model`` with each of its layers that is a key of ``replacements`` replaced, in place, by its value."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if child in replacements:
                parent.register_module(name, replacements[child])
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
      layers it keeps: softmax, norms, losses), so the numbers are the bf16 path's as before;
    - every nn.ReLU and nn.ReLU6 left after the folding is a BitwiseReLU or BitwiseReLU6 (bf16 maps clamped
      as int16: the same numbers, but a NaN becomes 0 or 6).

    Measured on 2 cores with AMX, ResNet-18 at 224x224, batch 1: eager float32 21 ms, bf16 autocast
    10-11 ms, this copy under autocast 7 ms (docs/performance.md#inference-resnet-18-at-224x224). The copy
    shares nothing with ``model``: training it, or reading its layers by name, is not what it is for."""
    import copy

    from torch.fx.experimental.optimization import fuse

    fast = copy.deepcopy(model).eval()
    # training's layers (a model trained in this process) as plain ones, which fx traces and folds into
    plain_convolutions(fast)
    plain_activations(fast)
    try:
        fast = fuse(fast)
    except Exception:  # noqa: BLE001 - fx cannot trace every network (ViT's checks, networks of yours)
        pass
    # Swapped in after the tracing, which would have traced through them into their int16 operators: the
    # folded graph calls its activation modules by name, so the swapped ones are what run.
    _swap(fast, _bitwise_activations(fast))
    if amp == "bf16":
        for module in fast.modules():
            if isinstance(module, _MATRIX_LAYERS):
                module.to(torch.bfloat16)
    return fast
