"""Which parameters train when a trained network is reused: the lectures' transfer scenarios as policies.

``feature-extract``: the backbone is a fixed function (frozen, its BatchNorm statistics too)
and only the new classifier trains. ``finetune``: the classifier and all or the top part of
the backbone train, optionally the backbone at a smaller learning rate (002, Transfer Learning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from convlab.choices import TRAINABLE_FORMS
from convlab.choices import TRANSFER_SCENARIOS as SCENARIOS
from convlab.errors import ConvlabError, closest_names
from convlab.transfer.adapt import find_classifier, is_auxiliary, model_name

# Containers opened into their children to find the stages; every other top-level child is one stage.
# (resnet's layer1..layer4 are stages as they are; vgg's `features` holds all its blocks.)
OPENED_CONTAINERS = ("features", "classifier", "layers", "encoder", "encoder.layers")
BLOCK_ENDS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout)
NORMALISATIONS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)

# Where each auxiliary classifier branches off (Szegedy et al. 2014, Fig. 3; 2015, Fig. 10): it trains
# only when that stage trains, since with the stage frozen its loss cannot change anything it feeds.
AUXILIARY_BRANCHES = {"aux1": "inception4a", "aux2": "inception4d", "AuxLogits": "Mixed_6e"}


@dataclass
class Stage:
    """One unit of the backbone for ``last:N``: a name, the modules it holds and their parameters."""

    name: str
    modules: list[str]
    parameters: list[str] = field(
        default_factory=list
    )  # the classifier's excluded where a stage holds it (NiN)

    def owns(self, parameter: str) -> bool:
        return parameter in self.parameters


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _flat_blocks(container_name: str, container: nn.Module) -> list[Stage]:
    """A container of single layers (vgg's features) cut into blocks that end at each pooling or
    dropout layer; each fully connected layer starts a block of its own."""
    children = list(container.named_children())
    blocks, start = [], 0
    for index, (_, child) in enumerate(children):
        if isinstance(child, nn.Linear) and index > start:
            blocks.append((start, index))
            start = index
        if isinstance(child, BLOCK_ENDS):
            blocks.append((start, index + 1))
            start = index + 1
    if start < len(children):
        blocks.append((start, len(children)))
    stages = []
    for first, stop in blocks:
        members = [
            f"{container_name}.{name}" for name, child in children[first:stop] if _has_parameters(child)
        ]
        if members:
            stages.append(Stage(f"{container_name}[{first}:{stop}]", members))
    return stages


def _units(prefix: str, module: nn.Module) -> list[Stage]:
    units = []
    for name, child in module.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if child is None or not _has_parameters(child) or is_auxiliary(full):
            continue
        if full in OPENED_CONTAINERS and any(True for _ in child.children()):
            if all(not any(True for _ in c.children()) for c in child.children()):
                units += _flat_blocks(full, child)
            else:
                units += _units(full, child)
        else:
            units.append(Stage(full, [full]))
    return units


def backbone_stages(model: nn.Module) -> list[Stage]:
    """The backbone's stages in module order, the classifier left out: what ``last:N`` counts.

    The top-level children that hold parameters (resnet: the stem, layer1 .. layer4); the
    containers in ``OPENED_CONTAINERS`` count by their children (mobilenet's and densenet's
    ``features``, vit's encoder layers), and a container of single layers by the blocks
    between its pooling layers (vgg: conv1_x .. conv5_x, then fc6, fc7). A normalisation
    layer on its own joins the stage before it (resnet's bn1 joins conv1), and loose
    parameters (vit's class token and position embedding) join the first stage.
    """
    classifier, _ = find_classifier(model)
    backbone = [
        n for n, _ in model.named_parameters() if not n.startswith(f"{classifier}.") and not is_auxiliary(n)
    ]
    stages: list[Stage] = []
    for unit in _units("", model):
        names = [n for n in unit.modules if n != classifier]
        owned = [n for n in backbone if any(n.startswith(f"{m}.") for m in names)]
        if not owned:
            continue
        only_norms = all(isinstance(model.get_submodule(n), NORMALISATIONS) for n in names)
        if only_norms and stages:
            joined = stages[-1]
            stages[-1] = Stage(
                f"{joined.name}+{unit.name}", joined.modules + names, joined.parameters + owned
            )
        else:
            stages.append(Stage(unit.name, names, owned))
    if stages:  # loose parameters (vit's class token, position embedding) belong to the input side
        taken = {n for s in stages for n in s.parameters}
        stages[0].parameters = [n for n in backbone if n not in taken] + stages[0].parameters
    return stages


def _parse_trainable(trainable: str, model: nn.Module, stages: list[Stage]) -> tuple[str, int | str | None]:
    text = str(trainable).strip()
    if text in ("all", "head"):
        return text, None
    kind, _, value = text.partition(":")
    if kind == "last":
        try:
            count = int(value)
        except ValueError:
            count = -1
        if not 0 <= count <= len(stages):
            raise ConvlabError(
                f"'{text}' asks for {value!r} stages but '{model_name(model)}' has {len(stages)} backbone "
                f"stages "
                f"({', '.join(s.name for s in stages)}); give last:N with N from 0 to {len(stages)}."
            )
        return kind, count
    if kind == "from":
        names = dict(model.named_modules())
        if value not in names or not value:
            close = closest_names(value, [n for n in names if n])
            hint = f"; did you mean {', '.join(close)}?" if close else "."
            raise ConvlabError(
                f"'{model_name(model)}' has no layer '{value}'{hint} from:LAYER takes a stage "
                f"({', '.join(m for s in stages for m in s.modules)}) or any module inside one, "
                f"e.g. {_example_inner(model, stages)}."
            )
        return kind, value
    raise ConvlabError(f"Unknown trainable setting '{text}'; accepted: {TRAINABLE_FORMS}.")


def _example_inner(model: nn.Module, stages: list[Stage]) -> str:
    last = stages[-1].modules[-1] if stages else ""
    inner = [n for n, _ in model.get_submodule(last).named_children()] if last else []
    return f"{last}.{inner[-1]}" if inner else last


def _trainable_backbone(model: nn.Module, stages: list[Stage], kind: str, value) -> set[str]:
    """Names of the backbone parameters (auxiliary classifiers aside) that train under ``kind:value``."""
    head = set(_head_names(model))
    backbone = [n for n, _ in model.named_parameters() if n not in head and not is_auxiliary(n)]
    if kind == "all":
        return set(backbone)
    if kind == "head":
        return set()
    if kind == "last":
        chosen = stages[len(stages) - value :] if value else []
        return {n for n in backbone if any(s.owns(n) for s in chosen)}
    # from:LAYER: every parameter whose module comes at or after LAYER in module order
    order = {name: index for index, (name, _) in enumerate(model.named_modules())}
    start = order[value]
    return {n for n in backbone if order[n.rpartition(".")[0]] >= start}


def _head_names(model: nn.Module) -> list[str]:
    classifier, _ = find_classifier(model)
    return [n for n, _ in model.named_parameters() if n.startswith(f"{classifier}.")]


def _auxiliary_names(model: nn.Module, backbone_trains: set[str]) -> list[str]:
    """Parameters of the auxiliary classifiers whose branch point trains."""
    names = []
    for child_name, child in model.named_children():
        if child is None or not is_auxiliary(child_name):
            continue
        branch = AUXILIARY_BRANCHES.get(child_name)
        if branch is None:  # a model not in the table: train it whenever any of the backbone does
            trains = bool(backbone_trains)
        else:
            trains = any(n.startswith(f"{branch}.") for n in backbone_trains)
        if trains:
            names += [f"{child_name}.{n}" for n, _ in child.named_parameters()]
    return names


def apply_transfer(
    model: nn.Module,
    scenario: str,
    trainable: str | None = None,
    *,
    backbone_lr_scale: float = 1.0,
    lr: float | None = None,
) -> list[dict]:
    """Freeze ``model``'s parameters for ``scenario`` and return the optimizer's parameter groups.

    ``scenario``: ``feature-extract`` (only the classifier trains; the backbone's BatchNorm
    layers also keep their statistics: call ``freeze_batchnorm(model)`` after every
    ``model.train()``) or ``finetune`` with ``trainable`` = ``all`` (the default), ``head``,
    ``last:N`` or ``from:LAYER``. Auxiliary classifiers train when the stage they branch from
    trains. Groups: ``{"name": "backbone", "params": [...], "lr_scale": backbone_lr_scale}``
    and ``{"name": "head", ..., "lr_scale": 1.0}`` (empty groups left out; with ``lr`` each
    also gets ``"lr": lr * lr_scale``). Auxiliary classifiers learn at the head's rate, since
    their output layers are as new as the head.
    """
    if scenario not in SCENARIOS:
        raise ConvlabError(f"Unknown transfer scenario '{scenario}'; accepted: {', '.join(SCENARIOS)}.")
    if not backbone_lr_scale > 0:
        raise ConvlabError(
            f"backbone_lr_scale must be above 0, got {backbone_lr_scale}; use trainable='head' "
            f"to freeze the backbone instead."
        )
    stages = backbone_stages(model)
    if scenario == "feature-extract":
        if trainable not in (None, "head"):
            raise ConvlabError(
                f"Scenario feature-extract trains the head only; trainable='{trainable}' "
                f"needs scenario finetune."
            )
        if backbone_lr_scale != 1.0:
            raise ConvlabError(
                "backbone_lr_scale applies to finetune; feature-extract trains no backbone parameter."
            )
        kind, value = "head", None
    else:
        kind, value = _parse_trainable(trainable or "all", model, stages)

    head = _head_names(model)
    backbone = _trainable_backbone(model, stages, kind, value)
    auxiliary = (
        set(_auxiliary_names(model, backbone))
        if kind != "all"
        else {n for n, _ in model.named_parameters() if is_auxiliary(n)}
    )
    trains = backbone | set(head) | auxiliary
    parameters = dict(model.named_parameters())
    for name, parameter in parameters.items():
        parameter.requires_grad_(name in trains)

    frozen_norms = []
    if scenario == "feature-extract":
        frozen_norms = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.convlab_transfer = {
        "scenario": scenario,
        "trainable": kind if value is None else f"{kind}:{value}",
        "backbone_lr_scale": backbone_lr_scale,
        "frozen_batchnorm": frozen_norms,
    }
    groups = [
        {
            "name": "backbone",
            "params": [parameters[n] for n in parameters if n in backbone],
            "lr_scale": float(backbone_lr_scale),
        },
        {
            "name": "head",
            "params": [parameters[n] for n in parameters if n in set(head) | auxiliary],
            "lr_scale": 1.0,
        },
    ]
    groups = [g for g in groups if g["params"]]
    if lr is not None:
        for group in groups:
            group["lr"] = float(lr) * group["lr_scale"]
    return groups


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Put the BatchNorm layers that ``apply_transfer`` froze back in eval mode (their running
    statistics stay as trained). Call it after every ``model.train()``; a no-op for a model
    with none frozen."""
    names = (getattr(model, "convlab_transfer", None) or {}).get("frozen_batchnorm", ())
    for name in names:
        model.get_submodule(name).eval()
    return model


def describe_trainable(model: nn.Module) -> list[dict]:
    """Trainable and frozen parameter counts per top-level module, in module order (and a row for
    parameters held by the model itself, such as vit's class token)."""
    rows: dict[str, dict] = {}
    for name, parameter in model.named_parameters():
        top = name.split(".")[0] if "." in name else "(model)"
        row = rows.setdefault(top, {"module": top, "trainable": 0, "frozen": 0})
        row["trainable" if parameter.requires_grad else "frozen"] += parameter.numel()
    return list(rows.values())
