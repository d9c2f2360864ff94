"""The model registry: one ``@register_model`` per architecture and one door, ``create_model``.

Each family declares its options once, as a table of ``Option(default, help)`` given to
``register_model``; ``create_model`` checks the names against it and calls the builder as
``builder(num_classes, in_chans, **options)`` with every option of the table, defaults filled in.
Every model it returns carries ``model.convlab_spec``: the name, classes, input size and the
options it was given, which checkpoints store and export/serving read back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from torch import nn

from convlab.choices import INIT_SCHEMES
from convlab.errors import ConvlabError, unknown_name_error
from convlab.layers.init import init_weights


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


def register_model(
    *,
    family: str,
    year: int,
    paper: str,
    input_size: tuple[int, int, int] = (3, 224, 224),
    num_classes: int = 1000,
    torchvision: str | None = None,
    options: Mapping[str, Option] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder function under its own name; its docstring's first line describes it and
    ``options`` is its family's table of keyword options."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _REGISTRY:
            raise RuntimeError(f"model {name!r} registered twice")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelInfo(
            name=name,
            family=family,
            year=year,
            paper=paper,
            input_size=tuple(input_size),
            num_classes=num_classes,
            builder=builder,
            torchvision=torchvision,
            description=doc[0] if doc else "",
            option_table=dict(options or {}),
        )
        return builder

    return decorate


def list_models() -> list[ModelInfo]:
    """Every registered model, in registration order (roughly chronological by family)."""
    return list(_REGISTRY.values())


def get_model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_name_error("model", name, _REGISTRY) from None


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
    """
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
    model = info.builder(num_classes, in_chans, **(defaults | options))
    init_weights(model, init)
    # Families whose input side is an option (mlp's input_size, ViT's image_size) record that size.
    side = options.get("input_size", options.get("image_size"))
    spatial = (int(side), int(side)) if isinstance(side, (int, float)) else tuple(info.input_size[1:])
    model.convlab_spec = ModelSpec(name, num_classes, in_chans, (in_chans, *spatial), init, dict(options))
    return model


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild the network: ``create_model(name, num_classes, in_chans, **options)``."""

    name: str
    num_classes: int
    in_chans: int
    input_size: tuple[int, int, int]  # (C, H, W) the network was built for
    init: str = "default"
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, model: nn.Module) -> ModelSpec:
        """The spec ``create_model`` attached to ``model`` (``model.convlab_spec``)."""
        spec = getattr(model, "convlab_spec", None)
        if spec is None:
            raise ConvlabError(
                "Only models made by convlab.create_model can be saved as convlab checkpoints."
            )
        return spec

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ModelSpec:
        where = "The record's model"
        for key in ("name", "num_classes", "in_chans"):
            if key not in document:
                raise ConvlabError(f"{where} has no '{key}'; it was not written by convlab.")
        in_chans = int(document["in_chans"])
        return cls(
            name=str(document["name"]),
            num_classes=int(document["num_classes"]),
            in_chans=in_chans,
            input_size=tuple(int(s) for s in document.get("input_size") or (in_chans, 0, 0)),
            init=str(document.get("init", "default")),
            options=dict(document.get("options") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "input_size": list(self.input_size),
            "init": self.init,
            "options": dict(self.options),
        }

    def with_head(self, num_classes: int) -> ModelSpec:
        """The spec after the classifier was replaced for ``num_classes`` classes."""
        return dataclasses.replace(self, num_classes=int(num_classes))

    def with_input_channels(self, in_chans: int) -> ModelSpec:
        """The spec after the first layer was adapted to ``in_chans`` channels."""
        return dataclasses.replace(
            self, in_chans=int(in_chans), input_size=(int(in_chans), *self.input_size[1:])
        )

    def build(self) -> nn.Module:
        """A new network of this architecture (weights as ``create_model`` initialises them)."""
        model = create_model(self.name, num_classes=self.num_classes, in_chans=self.in_chans, **self.options)
        model.convlab_spec = self  # init: what the recorded weights started from, not what build drew
        return model
