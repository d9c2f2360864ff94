"""The model registry: one ``@register_model`` per architecture and one door, ``create_model``.

Each family declares its options once, as a table of ``Option(default, help)`` given to
``register_model``; ``create_model`` checks the names against it and calls the builder as
``builder(num_classes, in_chans, **options)`` with every option of the table, defaults filled in.
Every model it returns carries ``model.convlab_spec``: the name, classes, input size and the
options it was given, which checkpoints store and export/serving read back.

The same door takes your own network (convlab.models.user): a builder registered with
``@register_model`` from your code, or a reference ``path/to/file.py:function`` /
``package.module:function``; its spec then records where the code is (``ModelSpec.code``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from convlab.choices import INIT_SCHEMES
from convlab.errors import ConvlabError, unknown_name_error
from convlab.layers.init import init_weights
from convlab.models.user import (
    REFERENCE_FORMS,
    UserCode,
    call_builder,
    code_of,
    is_reference,
    load_builder,
    option_defaults,
    parse_reference,
    same_architecture,
    signature_default,
)

# A network built on the meta device costs no tensor memory, but each module, parameter and buffer is still a
# Python object (a module about a kilobyte): a record asking for depth 10^6 would exhaust memory without a
# single weight. The zoo's largest, DenseNet-201, registers 715 modules and 1,207 tensors.
MAX_META_REGISTRATIONS = 20_000


class NetworkTooLarge(ConvlabError):
    """A network being built registered more modules and tensors than its caller allowed."""

    def __init__(self, limit: int):
        super().__init__(
            f"The network registers more than {limit:,} modules, parameters and buffers, the most its build allows."
        )
        self.limit = limit


@contextlib.contextmanager
def registration_budget(limit: int):
    """Stop any network being built inside the block with NetworkTooLarge once ``limit`` modules, parameters and
    buffers were registered (torch's global registration hooks; a module built by another thread meanwhile
    counts too, which can only stop a build early, never let one through)."""
    count = 0

    def hook(*_) -> None:
        nonlocal count
        count += 1
        if count > limit:
            raise NetworkTooLarge(limit)

    registry = torch.nn.modules.module
    handles = [
        registry.register_module_module_registration_hook(hook),
        registry.register_module_parameter_registration_hook(hook),
        registry.register_module_buffer_registration_hook(hook),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class Option(NamedTuple):
    """One model option: its value when not given, and what it changes."""

    default: Any
    help: str


def activation_option(default: str) -> Option:
    """The ``activation`` option every family takes, with the family's own default."""
    return Option(
        default, "the nonlinearity in every activation slot (a name in convlab.choices.ACTIVATIONS)"
    )


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    year: int
    paper: str
    input_size: tuple[int, int, int]  # (C, H, W) the architecture was designed for
    num_classes: int  # the paper's number of classes (1000 for ImageNet nets, 10 for MNIST/CIFAR ones)
    builder: Callable[..., nn.Module] = field(repr=False, compare=False)
    torchvision: str | None = None  # torchvision builder with the same state_dict keys, if any
    description: str = ""
    option_table: Mapping[str, Option] = field(default_factory=dict, repr=False, compare=False)

    @property
    def options(self) -> list[str]:
        """Keyword options the model takes besides num_classes and in_chans, in its table's order."""
        return list(self.option_table)


# Filled by the families' decorators; importing this module imports the package first, and the
# package's __init__ imports every family, so the registry is complete before anyone reads it.
_REGISTRY: dict[str, ModelInfo] = {}
ZOO_PACKAGE = "convlab.models."  # builders defined here are the zoo; any other registered builder is a user's


def is_zoo_builder(builder: Callable[..., nn.Module]) -> bool:
    return str(getattr(builder, "__module__", "")).startswith(ZOO_PACKAGE)


def register_model(
    builder: Callable[..., nn.Module] | None = None,
    *,
    family: str = "user",
    year: int | None = None,
    paper: str = "",
    input_size: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    torchvision: str | None = None,
    options: Mapping[str, Option] | None = None,
):
    """Register a builder function under its own name; its docstring's first line describes it and
    ``options`` is its family's table of keyword options.

    The zoo gives every field. For your own builder, ``@register_model`` alone will do: family "user",
    this year, no paper; the classes and channels default to the builder's own defaults for
    ``num_classes`` and ``in_chans`` (else 1000 and 3) at 224x224, and its options are its keyword
    parameters with defaults. Registering a name again replaces your earlier builder (a notebook cell run
    twice); a zoo name cannot be taken.
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        previous = _REGISTRY.get(name)
        if previous is not None and (is_zoo_builder(previous.builder) or is_zoo_builder(builder)):
            raise ConvlabError(
                f"Model '{name}' is registered already (a {previous.family} model from the zoo); "
                f"register your builder under another name."
            )
        doc = (builder.__doc__ or "").strip().splitlines()
        classes = num_classes or signature_default(builder, "num_classes") or 1000
        size = input_size or (signature_default(builder, "in_chans") or 3, 224, 224)
        table = (
            options
            if options is not None
            else {option: Option(default, "") for option, default in option_defaults(builder).items()}
        )
        _REGISTRY[name] = ModelInfo(
            name=name,
            family=family,
            year=datetime.date.today().year if year is None else year,
            paper=paper,
            input_size=tuple(size),
            num_classes=classes,
            builder=builder,
            torchvision=torchvision,
            description=doc[0] if doc else "",
            option_table=dict(table),
        )
        return builder

    return decorate if builder is None else decorate(builder)


def list_models() -> list[ModelInfo]:
    """Every registered model, in registration order (roughly chronological by family)."""
    return list(_REGISTRY.values())


def get_model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        error = unknown_name_error("model", name, _REGISTRY)
        raise ConvlabError(f"{error} Your own network: {REFERENCE_FORMS}.") from None


def create_model(
    name: str,
    num_classes: int | None = None,
    in_chans: int | None = None,
    init: str = "default",
    **options,
) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes and ``in_chans`` input channels.

    ``options`` go to the family's builder (e.g. ``activation="tanh"``, ``pool="max"``,
    ``hidden=(300,)``, ``aux_logits=False``); an option the family does not take is an
    error that lists the ones it does. ``init`` re-initialises weights (default, kaiming,
    xavier, lecun).

    ``name`` may also be your own builder: ``"path/to/model.py:function"`` or
    ``"package.module:function"`` (this runs that code), called as
    ``function(num_classes=..., in_chans=..., **options)`` with each of the two passed only if it
    takes them (convlab.models.user).
    """
    if is_reference(name):
        return _create_from_reference(name, num_classes, in_chans, init, options)
    info = get_model_info(name)
    num_classes = info.num_classes if num_classes is None else int(num_classes)
    in_chans = info.input_size[0] if in_chans is None else int(in_chans)
    if num_classes < 1 or in_chans < 1:
        raise ConvlabError(f"num_classes and in_chans must be positive, got {num_classes} and {in_chans}.")
    if init not in INIT_SCHEMES:
        raise unknown_name_error("init scheme", init, INIT_SCHEMES)
    accepted = info.options
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ConvlabError(
            f"Model '{name}' does not take option(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted) or 'no options'}."
        )
    defaults = {option: entry.default for option, entry in info.option_table.items()}
    if is_zoo_builder(info.builder):
        model, code = info.builder(num_classes, in_chans, **(defaults | options)), None
    else:  # a user's builder takes what its signature says, and its spec says where its code is
        model = call_builder(info.builder, name, num_classes, in_chans, defaults | options)
        code = code_of(info.builder)
    init_weights(model, init)
    # Families whose input side is an option (mlp's input_size, ViT's image_size) record that size.
    side = options.get("input_size", options.get("image_size"))
    spatial = (int(side), int(side)) if isinstance(side, (int, float)) else tuple(info.input_size[1:])
    model.convlab_spec = ModelSpec(
        name, num_classes, in_chans, (in_chans, *spatial), init, dict(options), code=code
    )
    return model


def _create_from_reference(
    reference: str, num_classes: int | None, in_chans: int | None, init: str, options: dict
) -> nn.Module:
    """``create_model("model.py:tinycnn", ...)``: load the builder (running its file or module) and call it.

    Without ``num_classes`` or ``in_chans`` the builder's own defaults apply; the spec then records the
    builder's declared default, else what the network's first convolution and last linear layer say.
    """
    if init not in INIT_SCHEMES:
        raise unknown_name_error("init scheme", init, INIT_SCHEMES)
    parsed = parse_reference(reference)
    builder, code = load_builder(parsed)
    model = call_builder(builder, parsed.function, num_classes, in_chans, options)
    init_weights(model, init)
    if num_classes is None:
        num_classes = signature_default(builder, "num_classes") or _last_linear_outputs(model)
    if in_chans is None:
        in_chans = signature_default(builder, "in_chans") or _first_conv_inputs(model)
    name = parsed.function.rsplit(".", 1)[-1]
    # The spatial size is the data's to say: training records it (ModelSpec.sized); 0 means not yet known.
    model.convlab_spec = ModelSpec(
        name, num_classes, in_chans, (in_chans, 0, 0), init, dict(options), code=code
    )
    return model


def _last_linear_outputs(model: nn.Module) -> int:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else 0


def _first_conv_inputs(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return module.in_channels
    return 3


def spec_for_network(
    model: nn.Module,
    num_classes: int,
    in_chans: int,
    input_size: tuple[int, int, int],
    arguments: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """The spec of a network you built yourself (``convlab.train(model=MyNet(...))``).

    Its class is recorded as the builder with ``arguments`` as its options (the constructor's arguments:
    none when not given) when building the class that way, with ``num_classes`` and ``in_chans`` where it
    takes them, gives the same architecture (checked on the meta device, no weights drawn). Otherwise,
    or for a class that cannot be imported again (defined in a script or notebook), the spec says so:
    such a run needs the same code loaded (``convlab.load(run, model=MyNet(...))``).
    """
    existing = getattr(model, "convlab_spec", None)
    if isinstance(existing, ModelSpec):
        return existing  # made by create_model or loaded from a run: it knows how to rebuild itself
    arguments = dict(arguments or {})
    cls = type(model)
    code = code_of(cls)
    if code.form != "unrecorded":
        try:
            with torch.device("meta"):
                rebuilt = call_builder(cls, cls.__name__, num_classes, in_chans, arguments)
            if not same_architecture(model, rebuilt):
                code = dataclasses.replace(code, form="unrecorded")
        except ConvlabError:
            code = dataclasses.replace(code, form="unrecorded")
    if code.form == "unrecorded":
        code = dataclasses.replace(code, file=None, sha256=None, module=cls.__module__)
    return ModelSpec(
        cls.__name__, int(num_classes), int(in_chans), tuple(input_size), "default", arguments, code=code
    )


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild the network: ``create_model(name, num_classes, in_chans, **options)`` for the zoo;
    for your own network, ``code`` says where its builder is (a file copied beside the checkpoint, an
    importable module, or code convlab cannot reach) and ``options`` are the builder's arguments."""

    name: str
    num_classes: int
    in_chans: int
    input_size: tuple[int, int, int]  # (C, H, W) the network was built for
    init: str = "default"
    options: dict[str, Any] = field(default_factory=dict)
    code: UserCode | None = None  # None: a zoo model (a record without it is one, as every record before it)

    @classmethod
    def of(cls, model: nn.Module) -> ModelSpec:
        """The spec ``create_model`` attached to ``model`` (``model.convlab_spec``)."""
        spec = getattr(model, "convlab_spec", None)
        if spec is None:
            raise ConvlabError(
                f"This {type(model).__name__} carries no record of how to rebuild it (model.convlab_spec); "
                f"build it with convlab.create_model (a zoo name or {REFERENCE_FORMS}), or train it with "
                f"convlab.train(model=...), which records it."
            )
        return spec

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ModelSpec:
        where = "The record's model"
        for key in ("name", "num_classes", "in_chans"):
            if key not in document:
                raise ConvlabError(f"{where} has no '{key}'; it was not written by convlab.")
        in_chans = int(document["in_chans"])
        code = document.get("code")
        return cls(
            name=str(document["name"]),
            num_classes=int(document["num_classes"]),
            in_chans=in_chans,
            input_size=tuple(int(s) for s in document.get("input_size") or (in_chans, 0, 0)),
            init=str(document.get("init", "default")),
            options=dict(document.get("options") or {}),
            code=None if code is None else UserCode.from_dict(code),
        )

    def to_dict(self) -> dict[str, Any]:
        document = {
            "name": self.name,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "input_size": list(self.input_size),
            "init": self.init,
            "options": dict(self.options),
        }
        if self.code is not None:
            document["code"] = self.code.to_dict()
        return document

    @property
    def reference(self) -> str:
        """What ``create_model`` and ``--model`` take to build this architecture: the zoo name, or your
        builder as ``path/to/model.py:function`` / ``package.module:function``."""
        return self.name if self.code is None else self.code.reference

    def located(self, folder: str | Path) -> ModelSpec:
        """The spec as read from a checkpoint in ``folder``: a recorded file is looked for there."""
        return self if self.code is None else dataclasses.replace(self, code=self.code.located(folder))

    def saved_beside(self, folder: str | Path) -> ModelSpec:
        """The spec to record in a checkpoint written to ``folder``: a file model's source copied there."""
        return self if self.code is None else dataclasses.replace(self, code=self.code.saved_beside(folder))

    def sized(self, input_size: tuple[int, int, int]) -> ModelSpec:
        """The spec of a network of yours once the data has said its input size (C, H, W)."""
        return dataclasses.replace(self, input_size=tuple(int(s) for s in input_size))

    def with_head(self, num_classes: int) -> ModelSpec:
        """The spec after the classifier was replaced for ``num_classes`` classes."""
        return dataclasses.replace(self, num_classes=int(num_classes))

    def with_input_channels(self, in_chans: int) -> ModelSpec:
        """The spec after the first layer was adapted to ``in_chans`` channels."""
        return dataclasses.replace(
            self, in_chans=int(in_chans), input_size=(int(in_chans), *self.input_size[1:])
        )

    def build(self) -> nn.Module:
        """A new network of this architecture (weights as ``create_model`` initialises them).

        A zoo spec builds from the registry alone; a spec with ``code`` loads your builder from the
        recorded file (the copy beside the checkpoint) or module, which runs that code.
        """
        if self.code is None:
            if is_reference(self.name):  # only a record that says it holds user code may run code
                raise ConvlabError(
                    f"The record names model '{self.name}' without saying it is a network of your own "
                    f"(no 'code'); convlab runs no code for it. It builds zoo names only."
                )
            model = create_model(
                self.name, num_classes=self.num_classes, in_chans=self.in_chans, **self.options
            )
        else:
            builder = self.code.load()
            model = call_builder(builder, self.name, self.num_classes, self.in_chans, self.options)
        model.convlab_spec = self  # init: what the recorded weights started from, not what build drew
        return model

    def build_on_meta(self, max_registrations: int = MAX_META_REGISTRATIONS) -> nn.Module:
        """The network ``build`` would make, on the meta device: its shapes without its memory, stopped with
        NetworkTooLarge past ``max_registrations`` modules, parameters and buffers. A network of yours runs
        its builder here too, which may not work on the meta device (it raises what ``build`` raises)."""
        with torch.device("meta"), registration_budget(max_registrations):
            return self.build()
