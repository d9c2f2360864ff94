"""Layer-by-layer summary of a model from one forward pass: shapes, parameters, multiply-adds,
activations and receptive fields, with the counting conventions stated in the output.
"""

from __future__ import annotations

import contextlib
import math
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
from convlab.errors import ConvlabError

CONVENTIONS = {
    "macs": (
        "multiply-adds per sample: convolution = output values x (in_channels/groups x kernel area); "
        "linear = in_features x out_features per token; matmul = output values x inner size; "
        "attention (nn.MultiheadAttention, scaled_dot_product_attention) = its projections + Q.K^T + A.V; "
        "biases, batch norm, activations, pooling and additions are not counted"
    ),
    "flops": "2 x macs (one multiply and one add)",
    "activation_bytes": (
        "per sample, forward only: the output values of every listed layer x bytes per value "
        "(4 for float32); layers that hand back their input (in-place activations, Identity, eval-mode "
        "Dropout) and tensors made outside layers (torch.cat, +) are not counted"
    ),
    "param_bytes": "parameter values x bytes per value (buffers such as batch-norm statistics not included)",
    "receptive_field": (
        "input pixels one output value sees, and jump = input pixels between neighbouring values; "
        "where branches meet the largest field over the paths; not clipped to the image"
    ),
    "output_shape": "per sample, without the batch dimension",
}

# Modules whose children are internal details: torch's MultiheadAttention calls its out_proj weight
# directly instead of running the out_proj module, so it is summarised as one layer.
ATOMIC_MODULES: tuple[type[nn.Module], ...] = (nn.MultiheadAttention,)

# Normalisations keep their input's shape. On the meta device torch runs them through Python
# decompositions (about 2 ms per batch norm), which made batch norm half the time of a zoo listing;
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


@dataclass
class Totals:
    params: int
    trainable_params: int
    frozen_params: int
    macs: int
    flops: int
    activations: int
    activation_bytes: int
    param_bytes: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Summary:
    """What ``convlab.summary`` returns: rows in execution order, totals and the counting conventions."""

    model: str
    input_size: tuple[int, ...]
    layers: list[LayerRow]
    totals: Totals
    device: str  # where the forward pass ran ("meta": shapes only, no arithmetic)
    conventions: dict[str, str] = field(default_factory=lambda: dict(CONVENTIONS))

    def layer(self, name: str) -> LayerRow:
        """The row of layer ``name`` (its qualified module name, e.g. ``layer1.0.conv1``)."""
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"no layer named {name!r} in the summary of {self.model}")

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "input": list(self.input_size),
            "conventions": dict(self.conventions),
            "layers": [row.to_dict() for row in self.layers],
            "totals": self.totals.to_dict(),
        }

    def render(self, width: int = 160) -> str:
        """The table and totals as plain text, ``width`` characters wide."""
        from convlab.analysis.format import render_summary

        return render_summary(self, width=width)

    def __str__(self) -> str:
        return self.render()


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


# --- the forward pass ---------------------------------------------------------------------------------


@cache
def _op_kind(name: str) -> str | None:
    """Which ops the trace looks at, by the name torch gives the function; every other op only passes
    receptive fields on."""
    base = name.strip("_").removesuffix("_with_indices")
    if base in ("conv1d", "conv2d", "conv3d"):
        return "conv"
    if base.startswith("conv_transpose"):
        return "conv_transpose"
    if base.startswith("adaptive_") and "_pool" in base:
        return "adaptive_pool"
    if base[:-2] in ("max_pool", "avg_pool", "lp_pool") and base[-2:] in ("1d", "2d", "3d"):
        return "pool"
    return {
        "linear": "linear",
        "matmul": "matmul",
        "rmatmul": "matmul",
        "mm": "matmul",
        "bmm": "matmul",
        "addmm": "addmm",
        "baddbmm": "addmm",
        "scaled_dot_product_attention": "attention",
        "multi_head_attention_forward": "multihead_attention",
        "permute": "permute",
        "pad": "pad",
        "transpose": "transpose",
        "swapaxes": "transpose",
        "swapdims": "transpose",
    }.get(base)


def _arg(args, kwargs, index: int, name: str, default=None):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


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


@dataclass
class _Frame:
    name: str
    module: nn.Module
    row: LayerRow | None


class _Trace(TorchFunctionMode):
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
            if (
                getattr(module, "padding_mode", "zeros") != "zeros"
            ):  # it pads with F.pad, then convolves with 0
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

    def _owner(self, op_name: str, output) -> LayerRow:
        """The row an op's MACs belong to: the layer running it, or a row of its own when a block runs
        it directly (F.max_pool2d in an Inception block, a matmul in a hand-written attention)."""
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.row is not None:
            return frame.row
        prefix = frame.name if frame is not None else ""
        row = LayerRow(name=self._unique(f"{prefix}.{op_name}" if prefix else op_name), type=op_name)
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
        op_name = getattr(func, "__name__", "")
        kind = _op_kind(op_name)
        if kind is None or kind in ("permute", "transpose", "pad"):
            if op_name in SHAPE_PRESERVING_ON_META and args and getattr(args[0], "is_meta", False):
                output = torch.empty_like(args[0])
            else:
                output = func(*args, **kwargs)
            if kind is None:
                self._pass_fields(args, kwargs, output)
            elif kind == "pad":
                self._pad_fields(args, output)
            else:
                self._permute_fields(kind, args, kwargs, output)
            return output
        return self._counted(kind, op_name.strip("_").removesuffix("_with_indices"), func, args, kwargs)

    def _pad_fields(self, args, output) -> None:
        """Padding (F.pad, as Conv2d does for padding_mode="reflect") adds border, not field."""
        source = self.fields.get(args[0]) if args and isinstance(args[0], torch.Tensor) else None
        if source is None or source.is_global or not isinstance(output, torch.Tensor):
            return
        extent = tuple(output.shape[d] for d in source.dims)
        self.fields[output] = ReceptiveField(source.field, source.jump, source.dims, extent)

    def _permute_fields(self, kind, args, kwargs, output) -> None:
        source = self.fields.get(args[0]) if args and isinstance(args[0], torch.Tensor) else None
        if source is None or not isinstance(output, torch.Tensor):
            return
        ndim = output.ndim
        if kind == "permute":
            order = args[1:] if len(args) > 2 or (len(args) == 2 and isinstance(args[1], int)) else None
            order = tuple(order if order is not None else _arg(args, kwargs, 1, "dims"))
        else:
            first, second = _arg(args, kwargs, 1, "dim0"), _arg(args, kwargs, 2, "dim1")
            order = list(range(ndim))
            order[first], order[second] = order[second], order[first]
            order = tuple(order)
        self.fields[output] = through_permute(source, order, tuple(output.shape))

    def _call_window(self, func, args, kwargs, x: torch.Tensor, d: int, description: str):
        """Run a convolution or pooling op; an input smaller than its window is a LayerFailure."""
        layer = self.where()
        received = tuple(x.shape[-d:])
        try:
            output = func(*args, **kwargs)
        except RuntimeError as error:
            raise LayerFailure(
                "vanish", layer, description, received, detail=str(error).splitlines()[0]
            ) from None
        result = _first_tensor(output)
        if result is not None and 0 in result.shape[-d:]:
            raise LayerFailure("vanish", layer, description, received, detail="output size 0")
        return output

    def _counted(self, kind: str, op_name: str, func, args, kwargs):
        x = _arg(args, kwargs, 0, "input")
        if x is None:
            x = _arg(args, kwargs, 0, "query")
        source = self.fields.get(x) if isinstance(x, torch.Tensor) else None
        meta: dict = {}
        macs = 0

        if kind in ("conv", "conv_transpose"):
            weight = _arg(args, kwargs, 1, "weight")
            d = weight.ndim - 2
            transposed = kind == "conv_transpose"
            groups = int(_arg(args, kwargs, 6, "groups", 1))
            dilation = _as_tuple(_arg(args, kwargs, 7 if transposed else 5, "dilation", 1), d)
            stride = _as_tuple(_arg(args, kwargs, 3, "stride", 1), d)
            padding = _arg(args, kwargs, 4, "padding", 0)
            kernel = tuple(weight.shape[2:])
            meta = dict(
                kernel=kernel,
                stride=stride,
                dilation=dilation,
                groups=groups,
                padding=padding if isinstance(padding, str) else _as_tuple(padding, d),
            )
            description = f"{self._layer_type(op_name)} {'x'.join(map(str, kernel))}"
            in_channels = weight.shape[0] if transposed else weight.shape[1] * groups
            if x.ndim > d and x.shape[-d - 1] != in_channels:
                if x is self.input:
                    raise LayerFailure(
                        "channels", self.where(), description, int(x.shape[-d - 1]), in_channels
                    )
                return func(*args, **kwargs)  # a mismatch inside the model is its own bug: torch says so
            output = self._call_window(func, args, kwargs, x, d, description)
            if transposed:  # each input value is spread over out_channels/groups x kernel outputs
                macs = x.numel() * math.prod(weight.shape[1:])
                field_out = widest([source], tuple(output.shape)) if source else None
            else:
                macs = output.numel() * math.prod(weight.shape[1:])
                field_out = (
                    through_window(source, kernel, stride, dilation, tuple(output.shape)) if source else None
                )

        elif kind == "pool":
            d = int(op_name[-2])
            if op_name.startswith("lp_pool"):
                kernel = _as_tuple(_arg(args, kwargs, 2, "kernel_size"), d)
                stride = _as_tuple(_arg(args, kwargs, 3, "stride"), d) or kernel
                padding, dilation = (0,) * d, (1,) * d
            else:
                kernel = _as_tuple(_arg(args, kwargs, 1, "kernel_size"), d)
                stride = _as_tuple(_arg(args, kwargs, 2, "stride"), d) or kernel
                padding = _as_tuple(_arg(args, kwargs, 3, "padding", 0), d)
                is_max = op_name.startswith("max_pool")
                dilation = _as_tuple(_arg(args, kwargs, 4, "dilation", 1), d) if is_max else (1,) * d
            meta = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation)
            output = self._call_window(
                func, args, kwargs, x, d, f"{self._layer_type(op_name)} {'x'.join(map(str, kernel))}"
            )
            result = _first_tensor(output)
            field_out = (
                through_window(source, kernel, stride, dilation, tuple(result.shape)) if source else None
            )

        elif kind == "adaptive_pool":
            d = int(op_name[-2])
            output = func(*args, **kwargs)
            result = _first_tensor(output)
            field_out = through_adaptive_pool(source, tuple(result.shape), d) if source else None

        elif kind == "linear":
            weight = _arg(args, kwargs, 1, "weight")
            in_features, out_features = weight.shape[-1], weight.shape[0]
            meta = dict(features=(int(in_features), int(out_features)))
            if x.shape[-1] != in_features:
                description = f"{self._layer_type(op_name)} {in_features}->{out_features}"
                raise LayerFailure("features", self.where(), description, int(x.shape[-1]), int(in_features))
            output = func(*args, **kwargs)
            macs = output.numel() * in_features
            field_out = None

        else:
            output = func(*args, **kwargs)
            result = _first_tensor(output)
            if kind == "matmul":
                left = args[1] if op_name == "rmatmul" else args[0]
                macs = result.numel() * left.shape[-1]
            elif kind == "addmm":
                macs = result.numel() * args[1].shape[-1]
            elif kind == "attention":
                query, key, value = (
                    _arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value"))
                )
                macs = (
                    math.prod(query.shape[:-2])
                    * query.shape[-2]
                    * key.shape[-2]
                    * (query.shape[-1] + value.shape[-1])
                )
            elif kind == "multihead_attention":
                macs = _multihead_attention_macs(*args[:3])
            field_out = None

        if field_out is None:
            self._pass_fields(args, kwargs, output)
        else:
            self.fields[_first_tensor(output)] = field_out
        row = self._owner(op_name, output)
        row.macs += int(macs)
        for key, value in meta.items():
            if getattr(row, key) is None:
                setattr(row, key, value)
        return output

    def _layer_type(self, op_name: str) -> str:
        """Type name for messages: the layer running the op, or the functional op's own name."""
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.row is not None:
            return type(frame.module).__name__
        return op_name


def _multihead_attention_macs(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> int:
    """q, k, v and output projections + Q.K^T + A.V, summed over heads; inputs are (L, N, E) or (L, E)."""
    batch = query.shape[1] if query.ndim == 3 else 1
    q_len, embed = query.shape[0], query.shape[-1]
    k_len = key.shape[0]
    projections = q_len * embed * embed + k_len * key.shape[-1] * embed + k_len * value.shape[-1] * embed
    projections += q_len * embed * embed  # out_proj
    return batch * (projections + 2 * q_len * k_len * embed)


def trace_forward(model: nn.Module, input_size: tuple[int, ...], device: torch.device | str) -> _Trace:
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
    tracer = _Trace(model)
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


class _SkipInitOnMeta(TorchFunctionMode):
    """Builds a model on the meta device without running its weight initialisation.

    A meta tensor has no values, so filling it in place changes nothing, yet torch runs random
    fills there through Python decompositions (2 ms per ``normal_``): that was half the time of
    listing the zoo. This mode hands such in-place calls their tensor back unchanged.
    """

    IN_PLACE_FILLS = frozenset(
        {
            "normal_",
            "uniform_",
            "trunc_normal_",
            "fill_",
            "zero_",
            "erfinv_",
            "clamp_",
            "mul_",
            "add_",
            "sub_",
            "div_",
            "copy_",
            "exponential_",
            "bernoulli_",
            "random_",
            "log_normal_",
            "cauchy_",
            "geometric_",
        }
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if (
            getattr(func, "__name__", "") in self.IN_PLACE_FILLS
            and args
            and getattr(args[0], "is_meta", False)
        ):
            return args[0]
        return func(*args, **(kwargs or {}))


# --- the public door --------------------------------------------------------------------------------------


def model_label(model: nn.Module) -> str:
    spec = getattr(model, "convlab_spec", None)
    return spec["name"] if spec else type(model).__name__


def resolve_model(
    model_or_name: nn.Module | str,
    input_size=None,
    num_classes: int | None = None,
    device=None,
    **options,
) -> tuple[nn.Module, tuple[int, ...]]:
    """The model to inspect and the (C, H, W) to feed it.

    A name is built by ``create_model`` with ``in_chans`` taken from ``input_size`` (so 1x28x28 gives
    a one-channel network), on the meta device unless ``device`` says otherwise: no weights are
    allocated, which is what makes a ResNet-152 summary take a fraction of a second.
    """
    from convlab.analysis.input_check import parse_input_size
    from convlab.models import create_model, get_model_info

    if isinstance(model_or_name, str):
        info = get_model_info(model_or_name)
        size = parse_input_size(input_size, info.input_size[0]) if input_size is not None else info.input_size
        build_device = torch.device("meta" if device is None else device)
        try:
            with build_device, _SkipInitOnMeta() if build_device.type == "meta" else contextlib.nullcontext():
                model = create_model(model_or_name, num_classes=num_classes, in_chans=size[0], **options)
        except ConvlabError:
            raise
        except Exception:
            if build_device.type != "meta":
                raise
            model = create_model(model_or_name, num_classes=num_classes, in_chans=size[0], **options)
        return model, tuple(size)
    if not isinstance(model_or_name, nn.Module):
        raise ConvlabError(f"summary takes a model name or an nn.Module, got {type(model_or_name).__name__}.")
    if num_classes is not None or options:
        raise ConvlabError("num_classes and model options apply only when the model is given by name.")
    spec = getattr(model_or_name, "convlab_spec", None)
    if (
        spec is None
        and isinstance(input_size, (tuple, list))
        and all(isinstance(n, int) and n > 0 for n in input_size)
    ):
        return model_or_name, tuple(input_size)  # a plain module: the exact per-sample shape, any rank
    if input_size is None:
        if spec is None:
            raise ConvlabError(
                f"input_size is required for a {type(model_or_name).__name__}, e.g. input_size=(3, 224, 224)."
            )
        return model_or_name, tuple(spec["input_size"])
    channels = spec["in_chans"] if spec else None
    return model_or_name, parse_input_size(input_size, channels)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return torch.device("cpu") if tensor.device.type == "meta" else tensor.device
    return torch.device("cpu")


def run_trace(model: nn.Module, input_size: tuple[int, ...], device=None) -> _Trace:
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


def summary(
    model_or_name: nn.Module | str,
    input_size=None,
    num_classes: int | None = None,
    device=None,
    **options,
) -> Summary:
    """Shapes, parameters, multiply-adds, activations and receptive fields of every layer.

    ``input_size`` is (C, H, W), (H, W), a single size S, or text such as ``"3x224x224"``; it defaults
    to the size the architecture was designed for. ``options`` go to ``create_model`` when the model
    is given by name (e.g. ``stride_in="1x1"`` for the paper's ResNet striding). An input too small
    for the architecture raises ConvlabError naming the layer and the smallest size that works
    (the same check as ``check_input_size``, made by this pass itself).

    Conventions (also in ``CONVENTIONS`` and ``to_dict()["conventions"]``), all per sample:
    MACs (multiply-adds): convolution = output values x (in_channels/groups x kernel area); linear =
    in_features x out_features per token; nn.MultiheadAttention = its q, k, v and output projections
    + Q.K^T + A.V; batch norm, activations, pooling, additions and biases are not counted. So
    torchvision's "GFLOPS" are MACs (resnet50: 4.09). FLOPs = 2 x MACs. activation_bytes = output
    values of every layer x bytes per value (4 for float32), in-place layers not counted again.
    Receptive fields are in input pixels, the largest over branching paths.
    """
    from convlab.analysis.input_check import explain_failure

    model, size = resolve_model(model_or_name, input_size, num_classes, device, **options)
    label = model_or_name if isinstance(model_or_name, str) else model_label(model)
    try:
        tracer = run_trace(model, size, device)
    except LayerFailure as failure:
        raise explain_failure(model, label, size, failure, device) from None
    except ConvlabError:
        raise
    except Exception as error:
        raise run_error(label, size, error) from error
    return _assemble(model, label, size, tracer, tracer.device)


def run_error(label: str, size: tuple[int, ...], error: Exception) -> ConvlabError:
    """A forward pass that failed for a reason the trace does not recognise, as one sentence."""
    layer = getattr(error, "convlab_layer", "")
    where = f" in layer '{layer}'" if layer else ""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConvlabError(f"{label} cannot run on a {'x'.join(map(str, size))} input{where}: {reason}")


def _assemble(model: nn.Module, label: str, size: tuple[int, ...], tracer: _Trace, device: str) -> Summary:
    rows = tracer.rows
    seen: set[int] = set()
    for row, module in zip(rows, tracer.row_owner):
        if module is None:
            continue
        params = module.parameters(recurse=isinstance(module, ATOMIC_MODULES))
        row.params = _count_new(params, seen)
    rows.extend(_not_run_rows(model, "", tracer.called, seen))

    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    macs = sum(row.macs for row in rows)
    activations = sum(row.activations for row in rows if not row.returns_input)
    dtype = next((p.dtype for p in params if p.is_floating_point()), torch.float32)
    bytes_per_value = torch.empty((), dtype=dtype).element_size()
    totals = Totals(
        params=total,
        trainable_params=trainable,
        frozen_params=total - trainable,
        macs=macs,
        flops=2 * macs,
        activations=activations,
        activation_bytes=activations * bytes_per_value,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
    )
    return Summary(model=label, input_size=tuple(size), layers=rows, totals=totals, device=device)


def _count_new(params, seen: set[int]) -> int:
    """Parameters not counted yet (a weight shared by two layers counts once)."""
    count = 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            count += p.numel()
    return count


def _not_run_rows(module: nn.Module, prefix: str, called: set[int], seen: set[int]) -> list[LayerRow]:
    """One row per top-most module the forward pass skipped that holds parameters, so the params
    column still adds up to the total (GoogLeNet's auxiliary heads run only in training)."""
    rows = []
    for child_name, child in module.named_children():
        name = f"{prefix}.{child_name}" if prefix else child_name
        if id(child) in called:
            if not isinstance(child, ATOMIC_MODULES):
                rows.extend(_not_run_rows(child, name, called, seen))
            continue
        count = _count_new(child.parameters(), seen)
        if count:
            rows.append(LayerRow(name=name, type=type(child).__name__, params=count, ran=False))
    return rows
