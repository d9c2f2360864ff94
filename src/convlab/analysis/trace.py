"""One forward pass with hooks: a record per layer of output shape, multiply-adds and receptive field.

Module hooks name the layers; a torch-function mode sees every op inside them. An op that costs
multiply-adds or slides a window has a small handler registered by name with ``@counts`` (the
pattern of ``torch.utils.flop_counter``'s ``@register_flop_formula``); an op that only moves the
spatial dims has one registered with ``@moves_field``; every other op passes the widest receptive
field of its inputs on.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from convlab.analysis.receptive_field import (
    ReceptiveField,
    input_field,
    through_adaptive_pool,
    through_permute,
    through_window,
    widest,
)

# Modules whose children are internal details: torch's MultiheadAttention calls its out_proj weight
# directly instead of running the out_proj module, so it is summarised as one layer.
ATOMIC_MODULES: tuple[type[nn.Module], ...] = (nn.MultiheadAttention,)

# Normalisations keep their input's shape. On the meta device torch runs them through Python
# decompositions, which made batch norm half the time of a zoo listing (docs/performance.md#smaller-measured-choices);
# their result there is just an empty tensor of the same shape, so the trace makes it directly.
SHAPE_PRESERVING_ON_META = frozenset(
    {"batch_norm", "layer_norm", "group_norm", "instance_norm", "local_response_norm"}
)


@dataclass
class LayerRow:
    """One layer (a leaf module, or a counted functional op such as F.max_pool2d inside a block)."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None = None
    params: int = 0
    macs: int = 0
    activations: int = 0  # output values per sample
    receptive_field: tuple[int, ...] | None = None
    jump: tuple[int, ...] | None = None  # None once the spatial layout is gone (after flatten / global mean)
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | str | None = None
    dilation: tuple[int, ...] | None = None
    groups: int | None = None
    features: tuple[int, int] | None = None  # (in, out) of a linear layer
    returns_input: bool = False  # in-place or pass-through: its output is not new memory
    ran: bool = True  # False for modules the eval-mode forward never calls (e.g. GoogLeNet's aux heads)

    def to_dict(self) -> dict:
        def listed(value):
            return list(value) if isinstance(value, tuple) else value

        return {
            "name": self.name,
            "type": self.type,
            "kernel": listed(self.kernel),
            "stride": listed(self.stride),
            "padding": listed(self.padding),
            "dilation": listed(self.dilation),
            "groups": self.groups,
            "features": listed(self.features),
            "output_shape": listed(self.output_shape),
            "params": self.params,
            "macs": self.macs,
            "activations": self.activations,
            "receptive_field": listed(self.receptive_field),
            "jump": listed(self.jump),
            "ran": self.ran,
        }


class LayerFailure(Exception):
    """The forward pass stopped in a layer because of the input size (read by input_check)."""

    def __init__(self, kind: str, layer: str, description: str, received, expected=None, detail: str = ""):
        super().__init__(f"{kind} in {layer!r}: {detail}")
        self.kind = kind  # "vanish", "features", "channels" or "error"
        self.layer = layer
        self.description = description
        self.received = received
        self.expected = expected
        self.detail = detail


# --- the op handlers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpCall:
    """One call of a torch function as the trace sees it; ``name`` is the function's name without
    leading or trailing underscores or ``_with_indices`` (``__rmatmul__`` -> ``rmatmul``)."""

    name: str
    func: Callable
    args: tuple
    kwargs: dict

    def arg(self, index: int, name: str, default=None):
        """The argument at position ``index``, or given as ``name=``."""
        if len(self.args) > index:
            return self.args[index]
        return self.kwargs.get(name, default)

    def run(self):
        return self.func(*self.args, **self.kwargs)


@dataclass
class OpCost:
    """What a counted op did: its output, its multiply-adds, the receptive field of its output (None:
    the widest field of its inputs goes on) and the geometry its row shows (kernel, stride, ...)."""

    output: object
    macs: int = 0
    receptive_field: ReceptiveField | None = None
    geometry: dict = field(default_factory=dict)


# name -> handler; an op found here gets a row (its layer's, or one of its own) and its MACs added to it
OP_COSTS: dict[str, Callable[[Trace, OpCall], OpCost]] = {}
# name -> handler giving the output's field from the input's; these ops get no row
FIELD_MOVES: dict[str, Callable[[ReceptiveField, OpCall, torch.Tensor], ReceptiveField | None]] = {}


def _register_in(table: dict, names: tuple[str, ...]):
    def register(handler):
        for name in names:
            table[name] = handler
        return handler

    return register


def counts(*names: str):
    """Registers the decorated ``handler(trace, call) -> OpCost`` for the ops ``names``."""
    return _register_in(OP_COSTS, names)


def moves_field(*names: str):
    """Registers the decorated ``handler(source, call, output) -> ReceptiveField | None`` for ``names``."""
    return _register_in(FIELD_MOVES, names)


@cache
def op_name(function_name: str) -> str:
    """``__rmatmul__`` -> ``rmatmul``, ``max_pool2d_with_indices`` -> ``max_pool2d``."""
    return function_name.strip("_").removesuffix("_with_indices")


def _as_tuple(value, d: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value) if len(value) == d else tuple(int(value[0]) for _ in range(d))
    return (int(value),) * d


def _tensors(value):
    """The tensors in an op's arguments or results (nested lists and tuples included)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _first_tensor(value) -> torch.Tensor | None:
    return next(_tensors(value), None)


def _describe(trace: Trace, call: OpCall, kernel: tuple[int, ...]) -> str:
    """``Conv2d 5x5``, ``max_pool2d 3x3``: the window op as an error message names it."""
    return f"{trace.layer_type(call.name)} {'x'.join(map(str, kernel))}"


def _run_window(trace: Trace, call: OpCall, x: torch.Tensor, d: int, description: str):
    """Run a convolution or pooling op; an input smaller than its window is a LayerFailure."""
    layer = trace.where()
    received = tuple(x.shape[-d:])
    try:
        output = call.run()
    except RuntimeError as error:
        raise LayerFailure(
            "vanish", layer, description, received, detail=str(error).splitlines()[0]
        ) from None
    result = _first_tensor(output)
    if result is not None and 0 in result.shape[-d:]:
        raise LayerFailure("vanish", layer, description, received, detail="output size 0")
    return output


def _convolution_geometry(call: OpCall, weight: torch.Tensor, dilation_index: int) -> dict:
    """Kernel, stride, padding, dilation and groups of a (transposed) convolution call; dilation sits
    at position 5 of ``conv2d`` but 7 of ``conv_transpose2d`` (after output_padding and groups)."""
    d = weight.ndim - 2
    padding = call.arg(4, "padding", 0)
    return {
        "kernel": tuple(weight.shape[2:]),
        "stride": _as_tuple(call.arg(3, "stride", 1), d),
        "dilation": _as_tuple(call.arg(dilation_index, "dilation", 1), d),
        "groups": int(call.arg(6, "groups", 1)),
        "padding": padding if isinstance(padding, str) else _as_tuple(padding, d),
    }


def _run_convolution(trace: Trace, call: OpCall, x: torch.Tensor, in_channels: int, kernel: tuple[int, ...]):
    """Run a convolution that takes ``in_channels``; the model's input with other channels is a
    LayerFailure ("channels"), and so is an input smaller than the kernel ("vanish")."""
    d = len(kernel)
    description = _describe(trace, call, kernel)
    if x.ndim > d and x.shape[-d - 1] != in_channels:
        if x is trace.input:
            raise LayerFailure("channels", trace.where(), description, int(x.shape[-d - 1]), in_channels)
        return call.run()  # a mismatch inside the model is the model's own bug: torch raises and says so
    return _run_window(trace, call, x, d, description)


@counts("conv1d", "conv2d", "conv3d")
def convolution(trace: Trace, call: OpCall) -> OpCost:
    """MACs = output values x (in_channels/groups x kernel area). The receptive field grows by
    (dilated kernel - 1) x jump and the jump by the stride (Araujo et al. 2019, "Computing Receptive
    Fields of Convolutional Neural Networks", Distill)."""
    x, weight = call.arg(0, "input"), call.arg(1, "weight")
    source = trace.field_of(x)
    geometry = _convolution_geometry(call, weight, dilation_index=5)
    output = _run_convolution(trace, call, x, weight.shape[1] * geometry["groups"], geometry["kernel"])
    out_shape = tuple(output.shape)
    field_out = (
        through_window(source, geometry["kernel"], geometry["stride"], geometry["dilation"], out_shape)
        if source
        else None
    )
    return OpCost(output, output.numel() * math.prod(weight.shape[1:]), field_out, geometry)


@counts("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def transposed_convolution(trace: Trace, call: OpCall) -> OpCost:
    """MACs = input values x (out_channels/groups x kernel area): each input value is spread over
    that many outputs (Dumoulin & Visin 2016, "A guide to convolution arithmetic", section 4)."""
    x, weight = call.arg(0, "input"), call.arg(1, "weight")
    source = trace.field_of(x)
    geometry = _convolution_geometry(call, weight, dilation_index=7)
    output = _run_convolution(trace, call, x, weight.shape[0], geometry["kernel"])
    field_out = widest([source], tuple(output.shape)) if source else None
    return OpCost(output, x.numel() * math.prod(weight.shape[1:]), field_out, geometry)


def _pooling(trace: Trace, call: OpCall, kernel, stride, padding, dilation) -> OpCost:
    """A pooling window: no MACs (see CONVENTIONS); the field grows as through a convolution."""
    x = call.arg(0, "input")
    source = trace.field_of(x)
    output = _run_window(trace, call, x, len(kernel), _describe(trace, call, kernel))
    result = _first_tensor(output)  # max pooling with return_indices gives (values, indices)
    field_out = through_window(source, kernel, stride, dilation, tuple(result.shape)) if source else None
    geometry = {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}
    return OpCost(output, 0, field_out, geometry)


@counts("max_pool1d", "max_pool2d", "max_pool3d")
def max_pooling(trace: Trace, call: OpCall) -> OpCost:
    """``max_pool2d(input, kernel_size, stride=kernel_size, padding=0, dilation=1)``."""
    d = int(call.name[-2])
    kernel = _as_tuple(call.arg(1, "kernel_size"), d)
    stride = _as_tuple(call.arg(2, "stride"), d) or kernel
    padding = _as_tuple(call.arg(3, "padding", 0), d)
    return _pooling(trace, call, kernel, stride, padding, _as_tuple(call.arg(4, "dilation", 1), d))


@counts("avg_pool1d", "avg_pool2d", "avg_pool3d")
def average_pooling(trace: Trace, call: OpCall) -> OpCost:
    """``avg_pool2d(input, kernel_size, stride=kernel_size, padding=0)``: no dilation."""
    d = int(call.name[-2])
    kernel = _as_tuple(call.arg(1, "kernel_size"), d)
    stride = _as_tuple(call.arg(2, "stride"), d) or kernel
    return _pooling(trace, call, kernel, stride, _as_tuple(call.arg(3, "padding", 0), d), (1,) * d)


@counts("lp_pool1d", "lp_pool2d", "lp_pool3d")
def power_average_pooling(trace: Trace, call: OpCall) -> OpCost:
    """``lp_pool2d(input, norm_type, kernel_size, stride=kernel_size)``: no padding, no dilation."""
    d = int(call.name[-2])
    kernel = _as_tuple(call.arg(2, "kernel_size"), d)
    stride = _as_tuple(call.arg(3, "stride"), d) or kernel
    return _pooling(trace, call, kernel, stride, (0,) * d, (1,) * d)


@counts(
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
)
def adaptive_pooling(trace: Trace, call: OpCall) -> OpCost:
    """No MACs; the field grows as through the widest of torch's windows (receptive_field.adaptive_window)."""
    x = call.arg(0, "input")
    source = trace.field_of(x)
    output = call.run()
    result = _first_tensor(output)
    field_out = through_adaptive_pool(source, tuple(result.shape), int(call.name[-2])) if source else None
    return OpCost(output, 0, field_out)


@counts("linear")
def linear(trace: Trace, call: OpCall) -> OpCost:
    """MACs = in_features x out_features per token; an input with other features is a LayerFailure
    ("features": the classifier of a network fed a size it was not built for)."""
    x, weight = call.arg(0, "input"), call.arg(1, "weight")
    in_features, out_features = weight.shape[-1], weight.shape[0]
    if x.shape[-1] != in_features:
        description = f"{trace.layer_type(call.name)} {in_features}->{out_features}"
        raise LayerFailure("features", trace.where(), description, int(x.shape[-1]), int(in_features))
    output = call.run()
    geometry = {"features": (int(in_features), int(out_features))}
    return OpCost(output, output.numel() * in_features, geometry=geometry)


def _matrix_product(call: OpCall, left: int) -> OpCost:
    """MACs = output values x inner size, the last dimension of the left operand ``call.args[left]``."""
    output = call.run()
    return OpCost(output, _first_tensor(output).numel() * call.args[left].shape[-1])


@counts("matmul", "mm", "bmm")
def matrix_product(trace: Trace, call: OpCall) -> OpCost:
    """``a @ b``, ``mm(a, b)``, ``bmm(a, b)``."""
    return _matrix_product(call, left=0)


@counts("rmatmul")
def reflected_matrix_product(trace: Trace, call: OpCall) -> OpCost:
    """``a @ b`` run as ``b.__rmatmul__(a)``: the left operand is the second argument."""
    return _matrix_product(call, left=1)


@counts("addmm", "baddbmm")
def matrix_product_added(trace: Trace, call: OpCall) -> OpCost:
    """``addmm(input, mat1, mat2)``: the MACs of ``mat1 @ mat2``; the addition is not counted."""
    return _matrix_product(call, left=1)


@counts("scaled_dot_product_attention")
def attention(trace: Trace, call: OpCall) -> OpCost:
    """MACs of Q.K^T and A.V (Vaswani et al. 2017, eq. 1): batch x L x S x (E + Ev); softmax not counted."""
    output = call.run()
    query, key, value = (call.arg(i, name) for i, name in enumerate(("query", "key", "value")))
    macs = math.prod(query.shape[:-2]) * query.shape[-2] * key.shape[-2] * (query.shape[-1] + value.shape[-1])
    return OpCost(output, macs)


@counts("multi_head_attention_forward")
def multihead_attention(trace: Trace, call: OpCall) -> OpCost:
    """nn.MultiheadAttention: q, k, v and output projections + Q.K^T + A.V, summed over heads
    (Vaswani et al. 2017, section 3.2.2); inputs are (L, N, E) or unbatched (L, E)."""
    output = call.run()
    query, key, value = call.args[:3]
    batch = query.shape[1] if query.ndim == 3 else 1
    q_len, embed = query.shape[0], query.shape[-1]
    k_len = key.shape[0]
    projections = q_len * embed * embed + k_len * key.shape[-1] * embed + k_len * value.shape[-1] * embed
    projections += q_len * embed * embed  # out_proj
    return OpCost(output, batch * (projections + 2 * q_len * k_len * embed))


@moves_field("pad")
def padded_field(source: ReceptiveField, call: OpCall, output: torch.Tensor) -> ReceptiveField | None:
    """Padding (F.pad, as Conv2d does for padding_mode="reflect") adds border, not field."""
    if source.is_global:
        return None
    extent = tuple(output.shape[d] for d in source.dims)
    return ReceptiveField(source.field, source.jump, source.dims, extent)


@moves_field("permute")
def permuted_field(source: ReceptiveField, call: OpCall, output: torch.Tensor) -> ReceptiveField:
    """The spatial dims follow ``x.permute(0, 2, 3, 1)`` (ConvNeXt's NCHW -> NHWC) or ``permute(x, dims)``."""
    args = call.args
    order = args[1:] if len(args) > 2 or (len(args) == 2 and isinstance(args[1], int)) else None
    order = tuple(order if order is not None else call.arg(1, "dims"))
    return through_permute(source, order, tuple(output.shape))


@moves_field("transpose", "swapaxes", "swapdims")
def transposed_field(source: ReceptiveField, call: OpCall, output: torch.Tensor) -> ReceptiveField:
    """The spatial dims follow ``x.transpose(dim0, dim1)``."""
    first, second = call.arg(1, "dim0"), call.arg(2, "dim1")
    order = list(range(output.ndim))
    order[first], order[second] = order[second], order[first]
    return through_permute(source, tuple(order), tuple(output.shape))


# --- the forward pass ---------------------------------------------------------------------------------


@dataclass
class _Frame:
    name: str
    module: nn.Module
    row: LayerRow | None


class Trace(TorchFunctionMode):
    """Runs one forward pass and records a row per layer.

    Module hooks give the layer names; a torch-function mode sees every op inside them, which is what
    lets MACs and receptive fields follow functional code too (F.max_pool2d in Inception blocks,
    torch.cat, residual additions, ConvNeXt's permutes). On the meta device the ops only compute shapes,
    so a ResNet-152 pass costs a fraction of a second.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.names: dict[int, str] = {}
        self.row_modules: set[int] = set()
        self.rows: list[LayerRow] = []
        self.row_owner: list[nn.Module | None] = []  # the module of each row (None for functional rows)
        self.called: set[int] = set()
        self.calls: dict[str, int] = {}
        self.stack: list[_Frame] = []
        self.fields = WeakIdKeyDictionary()  # tensor -> ReceptiveField
        self.input: torch.Tensor | None = None
        self.device = "meta"
        self.hooked: list[nn.Module] = []
        self._collect(model, "")

    # -- module bookkeeping --

    def _collect(self, module: nn.Module, name: str) -> None:
        if id(module) in self.names:  # one module registered under two names is hooked once
            return
        self.names[id(module)] = name
        self.hooked.append(module)
        children = list(module.named_children())
        atomic = isinstance(module, ATOMIC_MODULES)
        has_own_params = any(True for _ in module.parameters(recurse=False))
        # nn.Identity (an absent SE gate, a no-op shortcut) computes nothing: it is traced but gets no row.
        if (not children or atomic or has_own_params) and not isinstance(module, nn.Identity):
            self.row_modules.add(id(module))
        if atomic:
            return
        for child_name, child in children:
            self._collect(child, f"{name}.{child_name}" if name else child_name)

    def attach(self) -> list:
        handles = []
        for module in self.hooked:
            handles.append(module.register_forward_pre_hook(self._enter))
            handles.append(module.register_forward_hook(self._leave))
        return handles

    def _unique(self, name: str) -> str:
        count = self.calls.get(name, 0) + 1
        self.calls[name] = count
        return name if count == 1 else f"{name}[{count}]"  # a module run twice (a shared ReLU) gets two rows

    def _enter(self, module: nn.Module, args) -> None:
        self.called.add(id(module))
        row = None
        if id(module) in self.row_modules:
            row = LayerRow(
                name=self._unique(self.names[id(module)] or type(module).__name__), type=type(module).__name__
            )
            # a convolution with padding_mode="reflect" pads with F.pad, then convolves with padding 0
            if getattr(module, "padding_mode", "zeros") != "zeros":
                row.padding = module.padding
            self.rows.append(row)
            self.row_owner.append(module)
        self.stack.append(_Frame(self.names[id(module)], module, row))

    def _leave(self, module: nn.Module, args, output) -> None:
        frame = self.stack.pop()
        if frame.row is not None:
            self._fill_output(frame.row, output, args)

    def _fill_output(self, row: LayerRow, output, inputs) -> None:
        tensor = _first_tensor(output)
        if tensor is None:
            return
        row.output_shape = tuple(tensor.shape[1:])
        row.activations = math.prod(row.output_shape)
        row.returns_input = any(tensor is t for t in _tensors(inputs))
        found = self.fields.get(tensor)
        if found is not None:
            row.receptive_field = found.field
            row.jump = found.jump

    # -- ops --

    def start(self, x: torch.Tensor) -> None:
        self.input = x
        self.fields[x] = input_field(tuple(x.shape[2:]))

    def where(self) -> str:
        """Qualified name of the module running now (the failing one, after an exception)."""
        frame = self.stack[-1] if self.stack else None
        if frame is None:
            return ""
        return frame.name or type(frame.module).__name__

    def layer_type(self, op: str) -> str:
        """Type name for messages: the layer running the op, or the functional op's own name."""
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.row is not None:
            return type(frame.module).__name__
        return op

    def field_of(self, value) -> ReceptiveField | None:
        return self.fields.get(value) if isinstance(value, torch.Tensor) else None

    def _owner(self, op: str, output) -> LayerRow:
        """The row an op's MACs belong to: the layer running it, or a row of its own when a block runs
        it directly (F.max_pool2d in an Inception block, a matmul in a hand-written attention)."""
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.row is not None:
            return frame.row
        prefix = frame.name if frame is not None else ""
        row = LayerRow(name=self._unique(f"{prefix}.{op}" if prefix else op), type=op)
        self.rows.append(row)
        self.row_owner.append(None)
        self._fill_output(row, output, ())
        return row

    def _pass_fields(self, args, kwargs, output) -> None:
        sources = [f for t in _tensors((args, kwargs)) if (f := self.fields.get(t)) is not None]
        if not sources:
            return
        for tensor in _tensors(output):
            self.fields[tensor] = widest(sources, tuple(tensor.shape))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        function_name = getattr(func, "__name__", "")
        call = OpCall(op_name(function_name), func, args, kwargs)
        handler = OP_COSTS.get(call.name)
        if handler is not None:
            return self._count(call, handler(self, call))
        if function_name in SHAPE_PRESERVING_ON_META and args and getattr(args[0], "is_meta", False):
            output = torch.empty_like(args[0])
        else:
            output = call.run()
        move = FIELD_MOVES.get(call.name)
        if move is None:
            self._pass_fields(args, kwargs, output)
            return output
        source = self.field_of(args[0]) if args else None
        if source is not None and isinstance(output, torch.Tensor):
            moved = move(source, call, output)
            if moved is not None:
                self.fields[output] = moved
        return output

    def _count(self, call: OpCall, cost: OpCost):
        """Give a counted op's output its field and add its MACs and geometry to its row."""
        if cost.receptive_field is None:
            self._pass_fields(call.args, call.kwargs, cost.output)
        else:
            self.fields[_first_tensor(cost.output)] = cost.receptive_field
        row = self._owner(call.name, cost.output)
        row.macs += int(cost.macs)
        for key, value in cost.geometry.items():
            if getattr(row, key) is None:
                setattr(row, key, value)
        return cost.output


def trace_forward(model: nn.Module, input_size: tuple[int, ...], device: torch.device | str) -> Trace:
    """One batch-1 forward pass on ``device`` in eval mode with the tracing hooks in place.

    ``model`` is left as it was: hooks are removed and each module's train/eval flag restored. When
    its parameters live elsewhere (say, real weights on the CPU and a meta pass), the pass runs with
    stand-ins on ``device`` through ``torch.func.functional_call``, so nothing is moved or copied.
    """
    device = torch.device(device)
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    stand_ins = None
    if any(t.device != device for t in tensors.values()):
        stand_ins = {name: _stand_in(t, device) for name, t in tensors.items()}
    tracer = Trace(model)
    training = {module: module.training for module in model.modules()}
    handles = tracer.attach()
    x = torch.zeros((1, *input_size), dtype=dtype, device=device)
    try:
        model.eval()  # batch statistics of one sample are meaningless: BN uses its running averages
        with torch.no_grad(), tracer:
            tracer.start(x)
            if stand_ins is None:
                model(x)
            else:
                torch.func.functional_call(model, stand_ins, (x,))
    except Exception as error:
        if not isinstance(error, LayerFailure):
            with contextlib.suppress(AttributeError):
                error.convlab_layer = tracer.where()  # the innermost module still on the stack failed
        raise
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in training.items():
            module.training = flag
    tracer.device = device.type
    return tracer


def _stand_in(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A tensor like ``tensor`` on ``device``: shape only on meta; zeros for a meta-built model run
    on a real device (values do not matter to a summary); a copy otherwise."""
    if device.type == "meta":
        return torch.empty_like(tensor, device=device)
    if tensor.is_meta:
        return torch.zeros_like(tensor, device=device)
    return tensor.detach().to(device)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return torch.device("cpu") if tensor.device.type == "meta" else tensor.device
    return torch.device("cpu")


def run_trace(model: nn.Module, input_size: tuple[int, ...], device=None) -> Trace:
    """Trace on ``device``; by default on meta, then on the model's own device for a model that meta
    cannot run (an op without a meta kernel, or one that reads values, such as ``.item()``)."""
    if device is not None:
        return trace_forward(model, input_size, device)
    try:
        return trace_forward(model, input_size, "meta")
    except LayerFailure:
        raise
    except Exception:
        return trace_forward(model, input_size, _model_device(model))
