"""Weights in: load a trained network's weights into a zoo model, from any of the forms they come in.

A source is a convlab run folder or checkpoint, a state-dict file (.pth/.pt read with
``weights_only=True``, or .safetensors, in torchvision's or timm's key layout), a state dict
in memory, or torchvision weights by name (``torchvision:resnet18.IMAGENET1K_V1``).
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import urllib.error
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from convlab.checkpoint import load_checkpoint, read_record, resolve_checkpoint
from convlab.errors import ConvlabError, closest_names
from convlab.models import create_model, get_model_info, list_models
from convlab.record import InputSpec
from convlab.transfer.adapt import (
    adapt_channels,
    find_auxiliary_classifiers,
    find_classifier,
    find_first_layer,
    in_chans_of,
    input_channels,
    is_auxiliary,
    model_name,
)

TORCHVISION_PREFIX = "torchvision:"
ACCEPTED_FORMS = (
    "a convlab run folder or .safetensors checkpoint, a state-dict file (.pth or .pt, or .safetensors in "
    "torchvision's or timm's key layout), or torchvision weights by name such as "
    "torchvision:resnet18.IMAGENET1K_V1 (torchvision:resnet18 for its default weights)"
)

# Training scripts in the wild save {"state_dict": ...} or {"model": ...} next to optimizer state.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")

# timm's ViT key layout -> torchvision's, which convlab's vit_b_16 shares (timm's ResNets already use
# torchvision's keys). The qkv projection is stacked q, k, v in both, so it maps as it is.
TIMM_VIT_SIGNATURE = "patch_embed.proj.weight"
TIMM_VIT_KEYS = [
    (r"^cls_token$", "class_token"),
    (r"^pos_embed$", "encoder.pos_embedding"),
    (r"^patch_embed\.proj\.", "conv_proj."),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.encoder_layer_\1.ln_1."),
    (r"^blocks\.(\d+)\.attn\.qkv\.weight$", r"encoder.layers.encoder_layer_\1.self_attention.in_proj_weight"),
    (r"^blocks\.(\d+)\.attn\.qkv\.bias$", r"encoder.layers.encoder_layer_\1.self_attention.in_proj_bias"),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.encoder_layer_\1.self_attention.out_proj."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.encoder_layer_\1.ln_2."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"encoder.layers.encoder_layer_\1.mlp.0."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"encoder.layers.encoder_layer_\1.mlp.3."),
    (r"^norm\.", "encoder.ln."),
    (r"^head\.", "heads.head."),
]

# torchvision builds these with transform_input=True when it loads their ImageNet weights: the
# weights were trained on input scaled to [-1, 1] (Google's preprocessing), which that option recreates.
TORCHVISION_BUILD_OPTIONS = {
    "googlenet": {"transform_input": True},
    "inception_v3": {"transform_input": True},
}

FIRST_KEYS_SHOWN = 3
MIN_FITTING_FRACTION = 0.5  # below this share of the model's tensors, the file is for another architecture


@dataclass
class TransferReport:
    """What ``load_pretrained`` did: which tensors came in, what was replaced or adapted, and what the
    weights expect as input."""

    source: str
    kind: str  # convlab checkpoint, state dict, safetensors state dict, timm state dict, torchvision weights
    architecture: str | None  # what the weights were made for, where the source says it
    model: str  # the zoo model they were loaded into
    loaded: int = 0  # tensors copied into the model
    total: int = 0  # tensors in the model's state dict
    head: list[str] = field(default_factory=list)  # output layers left newly initialised for other classes
    adapted: list[str] = field(default_factory=list)  # first layer adapted to other input channels
    missing: list[str] = field(default_factory=list)  # kept as initialised (allow_partial only)
    unexpected: list[str] = field(default_factory=list)  # ignored (allow_partial only)
    mismatched: list[str] = field(
        default_factory=list
    )  # "key: file (a, b), model (c, d)" (allow_partial only)
    dropped: list[str] = field(
        default_factory=list
    )  # auxiliary-classifier tensors for a model built without them
    preprocessing: InputSpec | None = None  # channels, size, mean, std the weights were trained with
    classes: list[str] | None = None  # the classes the weights were trained on
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        what = f" ({self.architecture})" if self.architecture else ""
        lines = [
            f"pretrained: {self.kind}{what} from {self.source} -> {self.model}: "
            f"{self.loaded} of {self.total} tensors loaded"
        ]
        lines += self.head + self.adapted
        for label, keys in (
            ("missing, kept as initialised", self.missing),
            ("unexpected, ignored", self.unexpected),
            ("shape mismatch, kept as initialised", self.mismatched),
            ("auxiliary classifier not in the model, dropped", self.dropped),
        ):
            if keys:
                lines.append(f"{label}: {_first(keys, 5)}")
        return lines + self.notes

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SourceWeights:
    """A source read into memory: its state dict and what it says about itself."""

    state: dict[str, torch.Tensor]
    label: str
    kind: str
    architecture: str | None = None
    preprocessing: InputSpec | None = None
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def _first(keys, n: int = FIRST_KEYS_SHOWN) -> str:
    keys = list(keys)
    more = f" ... ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# ---- reading sources -------------------------------------------------------------------------------------


def read_torch_file(path: Path) -> dict[str, torch.Tensor]:
    """A .pth/.pt state dict, read without ever running pickled code (``weights_only=True``)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        names = list(dict.fromkeys(re.findall(r"GLOBAL ([\w.]+)", str(error))))
        if not names:
            raise ConvlabError(
                f"'{path}' is not a readable PyTorch weights file (not a pickle weights_only can read)."
            ) from None
        raise ConvlabError(
            f"'{path}' is not a plain state dict (it pickles objects such as {', '.join(names)}); "
            f"convlab never unpickles code."
        ) from None
    except Exception as error:  # torch.load raises many kinds on a file that is not its format
        raise ConvlabError(
            f"'{path}' is not a readable PyTorch weights file ({type(error).__name__}: {error})."
        ) from None
    return state_dict_from(payload, str(path))


def state_dict_from(payload, label: str) -> dict[str, torch.Tensor]:
    """The state dict inside ``payload``: itself, or under one of the usual wrapper keys."""
    if isinstance(payload, Mapping):
        for key in WRAPPER_KEYS:
            if key in payload and isinstance(payload[key], Mapping):
                payload = payload[key]
                break
    if not isinstance(payload, Mapping) or not payload:
        raise ConvlabError(f"'{label}' holds {type(payload).__name__}, not a state dict (names -> tensors).")
    bad = [str(k) for k, v in payload.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConvlabError(
            f"'{label}' is not a state dict: entries {_first(bad)} are not tensors "
            f"(a dict with a {', '.join(WRAPPER_KEYS)} entry holding the state dict is also accepted)."
        )
    state = dict(payload)
    if all(k.startswith("module.") for k in state):  # saved from nn.DataParallel / DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def map_timm_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """timm's ViT keys renamed to torchvision's layout, and whether anything was renamed."""
    if TIMM_VIT_SIGNATURE not in state:
        return state, False
    renamed = {}
    for key, tensor in state.items():
        for pattern, replacement in TIMM_VIT_KEYS:
            if re.search(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        renamed[key] = tensor
    return renamed, True


def read_safetensors(path: Path) -> SourceWeights:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise ConvlabError(f"'{path}' is not a readable safetensors file ({error}).") from None
    if "convlab" in metadata:
        return read_convlab_checkpoint(path)
    state, from_timm = map_timm_keys(state_dict_from(load_file(str(path)), str(path)))
    kind = "timm state dict (ViT keys mapped to torchvision's)" if from_timm else "safetensors state dict"
    return SourceWeights(state, str(path), kind)


def read_convlab_checkpoint(path: Path) -> SourceWeights:
    record = read_record(path)
    if record.model.code is not None and record.model.code.form == "unrecorded":
        # A network given as an object: nothing here can rebuild it, so its tensors are read as they are
        # and the network they go into (the same code, given again) is what checks that they fit.
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        model, record = load_checkpoint(
            path
        )  # the one door for convlab checkpoints: it checks the weights fit
        state = model.state_dict()
    return SourceWeights(
        state,
        str(path),
        "convlab checkpoint",
        architecture=record.model.name,
        preprocessing=record.input,
        classes=record.classes,
    )


def torchvision_input(weights) -> InputSpec:
    """The input torchvision's weights were trained on: RGB at the crop size, normalised with their mean/std.

    (torchvision resizes the shorter side to ``resize_size`` and centre-crops; convlab brings images to the
    crop size by the run's own rule: crop for folders, squash for the named sets.)
    """
    transform = weights.transforms()
    crop = int(transform.crop_size[0])
    return InputSpec(channels=3, size=(crop, crop), mean=tuple(transform.mean), std=tuple(transform.std))


@dataclass
class SourceDescription:
    """What a pretrained source implies before any weight is read: the model, its options, its input."""

    model: str | None = None  # a zoo name, or the reference that rebuilds a network of the user's
    options: dict = field(default_factory=dict)
    input: InputSpec | None = None


def describe_source(source) -> SourceDescription:
    """The model and input of a convlab run/checkpoint (its record) or of torchvision weights (their
    transforms), read without loading any weights or downloading anything; nothing for a plain state dict."""
    text = str(source)
    if text.startswith(TORCHVISION_PREFIX):
        arch, weights = resolve_torchvision_weights(text)
        zoo = zoo_torchvision_names()
        if arch not in zoo:
            raise ConvlabError(
                f"convlab's zoo has no model with torchvision's {arch} keys; it has {', '.join(sorted(zoo))}."
            )
        return SourceDescription(
            zoo[arch], dict(TORCHVISION_BUILD_OPTIONS.get(arch, {})), torchvision_input(weights)
        )
    path = Path(text).expanduser()
    if not (path.is_dir() or path.suffix == ".safetensors"):
        return SourceDescription()
    try:
        record = read_record(resolve_checkpoint(path))
    except ConvlabError:
        if path.is_dir():
            raise
        return SourceDescription()  # a plain safetensors state dict: load_pretrained reads it
    # reference: the zoo name, or where a network of the user's is built (the copy in its run folder)
    return SourceDescription(record.model.reference, dict(record.model.options), record.input)


def zoo_torchvision_names() -> dict[str, str]:
    """torchvision architecture -> the zoo model with its state-dict keys."""
    return {info.torchvision: info.name for info in list_models() if info.torchvision}


def resolve_torchvision_weights(text: str):
    """``torchvision:resnet18.IMAGENET1K_V1`` (``torchvision:resnet18``: DEFAULT) -> (arch, weights)."""
    import torchvision

    name = text[len(TORCHVISION_PREFIX) :]
    arch, _, tag = name.partition(".")
    accepted = sorted(zoo_torchvision_names())
    try:
        weights_enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        close = closest_names(arch, accepted)
        hint = f"; did you mean {', '.join(close)}?" if close else "."
        raise ConvlabError(
            f"Unknown torchvision weights '{name}'{hint} Accepted: torchvision:ARCH or torchvision:ARCH.TAG "
            f"with ARCH one of {', '.join(accepted)}; or {ACCEPTED_FORMS}."
        ) from None
    tag = tag or "DEFAULT"
    try:
        weights = weights_enum[tag]
    except KeyError:
        raise ConvlabError(
            f"torchvision's {arch} has no weights '{tag}'; it has {', '.join(weights_enum.__members__)}."
        ) from None
    return arch, weights


def torchvision_cache_path(url: str) -> Path:
    """Where torch.hub keeps the file at ``url``: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urllib.parse.urlparse(url).path)


def read_torchvision_weights(text: str, *, download: bool = True) -> SourceWeights:
    arch, weights = resolve_torchvision_weights(text)
    label = f"{TORCHVISION_PREFIX}{arch}.{weights.name}"
    path = torchvision_cache_path(weights.url)
    if path.is_file():
        state = read_torch_file(path)
    elif not download:
        raise _not_cached(label, weights.url, path, "downloading is off")
    else:
        try:
            payload = torch.hub.load_state_dict_from_url(
                weights.url,
                map_location="cpu",
                progress=sys.stderr.isatty(),
                check_hash=True,
                weights_only=True,
            )
        except (urllib.error.URLError, OSError, RuntimeError) as error:  # offline, refused, or a bad hash
            raise _not_cached(label, weights.url, path, f"the download failed ({error})") from None
        state = state_dict_from(payload, weights.url)
    preprocessing = torchvision_input(weights)
    return SourceWeights(
        state,
        label,
        "torchvision weights",
        architecture=arch,
        preprocessing=preprocessing,
        classes=list(weights.meta.get("categories") or []) or None,
    )


def _not_cached(label: str, url: str, path: Path, reason: str) -> ConvlabError:
    return ConvlabError(
        f"Weights {label} are not in torch.hub's cache and {reason}: download {url} and save it as {path}."
    )


def read_source(source, *, download: bool = True) -> SourceWeights:
    """Read any accepted source into memory (see ``ACCEPTED_FORMS``)."""
    if isinstance(source, Mapping):
        state, from_timm = map_timm_keys(state_dict_from(source, "the state dict given"))
        return SourceWeights(
            state, "a state dict in memory", "timm state dict" if from_timm else "state dict"
        )
    text = str(source)
    if text.startswith(TORCHVISION_PREFIX):
        return read_torchvision_weights(text, download=download)
    path = Path(text).expanduser()
    if path.is_dir():
        return read_convlab_checkpoint(resolve_checkpoint(path))
    if not path.is_file():
        raise ConvlabError(f"No weights at '{text}'; give {ACCEPTED_FORMS}.")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    state, from_timm = map_timm_keys(read_torch_file(path))
    return SourceWeights(state, str(path), "timm state dict" if from_timm else "state dict")


# ---- fitting a state dict to a model ----------------------------------------------------------------------


def _describe_source(weights: SourceWeights) -> str:
    if weights.architecture:
        return f"weights for '{weights.architecture}' ({weights.kind})"
    return f"a state dict whose first keys are {_first(weights.state)}"


def _torchvision_notes(model: nn.Module, arch: str) -> list[str]:
    spec = getattr(model, "convlab_spec", None)
    options = spec.options if spec else {}
    notes = []
    for option, value in TORCHVISION_BUILD_OPTIONS.get(arch, {}).items():
        if options.get(option) != value:
            notes.append(
                f"note: torchvision uses {arch}'s weights with {option}={value}; build the model with "
                f"create_model('{model_name(model)}', {option}={value}) to feed it images as torchvision "
                f"does."
            )
    return notes


def _check_torchvision_architecture(model: nn.Module, arch: str) -> None:
    spec = getattr(model, "convlab_spec", None)
    if spec is None:
        return
    counterpart = get_model_info(spec.name).torchvision if spec.code is None else None
    if counterpart != arch:
        fits = f"torchvision:{counterpart}" if counterpart else "no torchvision weights"
        raise ConvlabError(
            f"torchvision's {arch} weights do not fit model '{spec.name}' (another architecture); "
            f"'{spec.name}' takes {fits}."
        )


def transfer_state(
    model: nn.Module, weights: SourceWeights, *, allow_partial: bool = False
) -> TransferReport:
    """Copy ``weights`` into ``model``: the tensors that fit, the classifier left new for other classes,
    the first layer adapted to other input channels; anything else refused unless ``allow_partial``."""
    state = weights.state
    target = model.state_dict()
    heads = {find_classifier(model)[0]: "head"}
    heads.update({name: "auxiliary head" for name, _ in find_auxiliary_classifiers(model)})
    first_name, first_layer = find_first_layer(model)
    first_key = f"{first_name}.weight"
    model_chans = in_chans_of(model) or getattr(first_layer, "in_channels", 1)

    fitting: dict[str, torch.Tensor] = {}
    report = TransferReport(
        source=weights.label,
        kind=weights.kind,
        architecture=weights.architecture,
        model=model_name(model),
        total=len(target),
        preprocessing=weights.preprocessing,
        classes=weights.classes,
        notes=list(weights.notes),
    )
    for key, tensor in target.items():
        if key not in state:
            if not key.endswith("num_batches_tracked"):  # torchvision's older files predate BN's step counter
                report.missing.append(key)
            continue
        given = state[key]
        owner = key.rpartition(".")[0]
        if given.shape == tensor.shape:
            fitting[key] = given
        elif owner in heads and given.shape[1:] == tensor.shape[1:]:
            line = f"{heads[owner]} {owner}: {given.shape[0]} -> {tensor.shape[0]} classes, newly initialised"
            if line not in report.head:
                report.head.append(line)
        elif (
            key == first_key
            and (chans := input_channels(first_layer, given.shape, model_chans))
            and (chans == 1 or model_chans == 1)
        ):
            fitting[key], how = adapt_channels(given, chans, model_chans)
            report.adapted.append(
                f"first layer {first_name}: {chans} -> {model_chans} input channels ({how})"
            )
        else:
            report.mismatched.append(f"{key}: file {tuple(given.shape)}, model {tuple(tensor.shape)}")
    model_has_aux = any(is_auxiliary(k) for k in target)
    for key in state:
        if key not in target:
            (report.dropped if is_auxiliary(key) and not model_has_aux else report.unexpected).append(key)

    report.head.sort(
        key=lambda line: not line.startswith("head ")
    )  # the classifier first, then auxiliary ones
    _refuse_misfits(report, weights, len(fitting), allow_partial)
    with torch.no_grad():
        for key, tensor in fitting.items():
            target[key].copy_(
                tensor
            )  # state_dict() tensors share storage with the model's; copy_ casts dtype
    report.loaded = len(fitting)
    if weights.kind == "torchvision weights":
        report.notes += _torchvision_notes(model, weights.architecture)
    return report


def _refuse_misfits(
    report: TransferReport, weights: SourceWeights, fitting: int, allow_partial: bool
) -> None:
    problems = report.missing + [m.split(":")[0] for m in report.mismatched] + report.unexpected
    if not problems:
        return
    other_name = weights.architecture not in (None, report.model) and weights.kind == "convlab checkpoint"
    too_few = fitting < MIN_FITTING_FRACTION * report.total
    if fitting == 0 or (not allow_partial and (too_few or other_name)):
        firsts = (
            report.mismatched[:FIRST_KEYS_SHOWN]
            or [
                *[f"{k} (missing)" for k in report.missing[:FIRST_KEYS_SHOWN]],
                *[f"{k} (unexpected)" for k in report.unexpected[:FIRST_KEYS_SHOWN]],
            ][:FIRST_KEYS_SHOWN]
        )
        raise ConvlabError(
            f"'{weights.label}' holds {_describe_source(weights)}, not weights for model '{report.model}': "
            f"{fitting} of {report.total} tensors fit; first mismatches: {'; '.join(firsts)}."
        )
    if not allow_partial:
        parts = []
        if report.missing:
            parts.append(f"missing {_first(report.missing)}")
        if report.mismatched:
            parts.append(f"other shapes {_first(report.mismatched)}")
        if report.unexpected:
            parts.append(f"unexpected {_first(report.unexpected)}")
        raise ConvlabError(
            f"'{weights.label}' covers model '{report.model}' only in part ({'; '.join(parts)}); pass "
            f"allow_partial=True to load the {fitting} tensors that fit and keep the rest as initialised."
        )


def load_pretrained(
    model: nn.Module, source, *, allow_partial: bool = False, download: bool = True
) -> TransferReport:
    """Load the weights of ``source`` into the zoo model ``model`` (in place) and say what was done.

    ``source``: a convlab run folder or checkpoint; a .pth/.pt state dict (read with
    ``weights_only=True``: a file that pickles objects is refused), also wrapped as
    ``{"state_dict": ...}`` or ``{"model": ...}``; a .safetensors state dict in torchvision's
    layout or timm's (timm's ResNet keys are torchvision's; timm's ViT-B/16 keys are mapped);
    a state dict in memory; or ``torchvision:ARCH[.TAG]``, read from torch.hub's cache and
    downloaded into it when missing and ``download`` is true.

    A different number of classes leaves the classifier (and auxiliary classifiers) newly
    initialised; a different number of input channels adapts the first layer (3 -> 1 sums,
    1 -> 3 repeats / 3). Any other missing, unexpected or reshaped tensor is refused unless
    ``allow_partial``; weights for another architecture are always refused when nothing fits.
    """
    text = source if isinstance(source, Mapping) else str(source)
    if isinstance(text, str) and text.startswith(TORCHVISION_PREFIX):
        arch, _ = resolve_torchvision_weights(text)
        _check_torchvision_architecture(model, arch)  # before any download
    return transfer_state(model, read_source(source, download=download), allow_partial=allow_partial)


def pretrained_model(
    source, *, arch: str | None = None, download: bool = True, **options
) -> tuple[nn.Module, TransferReport]:
    """Build the zoo model a source describes and load it: ``(model, report)``.

    A convlab checkpoint names its model; ``torchvision:ARCH`` maps to the zoo model with
    torchvision's keys for ARCH; a plain state dict needs ``arch`` (a zoo model name).
    ``options`` go to ``create_model`` (e.g. ``num_classes``, ``in_chans``).
    """
    text = str(source)
    if arch is None and text.startswith(TORCHVISION_PREFIX):
        described = describe_source(text)
        arch, options = described.model, {**described.options, **options}
    if arch is None:
        path = Path(text)
        if path.is_dir() or path.suffix == ".safetensors":
            checkpoint = resolve_checkpoint(path)
            if not options:
                model, record = load_checkpoint(checkpoint)
                report = TransferReport(
                    source=str(checkpoint),
                    kind="convlab checkpoint",
                    architecture=record.model.name,
                    model=model_name(model),
                    loaded=len(model.state_dict()),
                    total=len(model.state_dict()),
                    preprocessing=record.input,
                    classes=record.classes,
                )
                return model, report
            spec = read_record(checkpoint).model
            recorded = {"num_classes": spec.num_classes, "in_chans": spec.in_chans, **spec.options}
            arch, options = spec.reference, {**recorded, **options}
        elif not path.exists():
            raise ConvlabError(f"No weights at '{text}'; give {ACCEPTED_FORMS}.")
        else:
            raise ConvlabError(
                f"'{text}' does not say which architecture it holds; name the zoo model "
                f"(e.g. arch='resnet18')."
            )
    model = create_model(arch, **options)
    return model, load_pretrained(model, source, download=download)
