"""The record a checkpoint carries: which network, which input, which classes, and how it was trained.

Every checkpoint (safetensors header), ONNX file (metadata_props) and TorchScript file (an extra
file) holds one record as JSON. This module is the only one that reads or writes that JSON, so
the rest of convlab works with typed fields (``record.input.size``) instead of string keys.

- ``ModelSpec`` (from convlab.models): the zoo name and options the weights fit, with one ``build()``;
  for a network of the user's, also where its code is (``code``; absent in every older record).
- ``InputSpec``: convlab's preprocessing contract (as Keras' ``preprocess_input``): channels,
  size, the resize rule and the mean/std the network was trained with.
- ``DataSpec``: the data set it was trained on, and how its validation split was drawn.
- ``RunRecord``: the specs, the class names, and what training, transfer or export added.

Format history: ``convlab-checkpoint/1`` (0.1.0) is the only format so far; records read from
older files go through ``RunRecord.from_dict``, which is where an upgrade of an old format goes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from convlab import __version__
from convlab.choices import RESIZE_RULES
from convlab.data.bundle import Holdout
from convlab.errors import ConvlabError
from convlab.models import ModelSpec

FORMAT = "convlab-checkpoint/1"
KNOWN_FORMATS = (FORMAT,)

# ---- limits: what a record may say
#
# A record comes from a file that may come from anyone (a downloaded checkpoint, an uploaded export), and
# its numbers size what convlab allocates: the network (classes, channels, options) when it is rebuilt,
# every served image (the input size) on every request. Each limit is far above what a real run records
# and far below what would exhaust a machine; a record outside one is refused before anything is built.
#
# The JSON text: ImageNet-21k's 21,843 class names take under 1 MB; json.loads builds a few times the text
# in Python objects, so this bounds the parse at tens of MB.
MAX_RECORD_CHARS = 8 * 2**20
# Nesting: a record nests 4 deep (config -> options -> hidden -> number); deeper is not a record, and a
# deep one (1,000 brackets) would exhaust Python's recursion in json or in a later copy.
MAX_DEPTH = 32
# Pixels a side: the zoo's largest input is 299 (Inception-v3, Xception), EfficientNet-B7's 600. One image
# of 4 x 4096 x 4096 float32 is 256 MiB, the size of the largest upload serve decodes (89.5 Mpx RGB,
# serve.limits), where the 60000 x 60000 of issue 16 was 14.4 GB per channel.
MAX_SIDE = 4096
# Channels: convlab's data delivers gray (1) or RGB (3); 4 leaves room for RGBA or RGB + depth.
MAX_CHANNELS = 4
# Classes: ImageNet-21k has 21,843. 10^8 classes asked LeNet-5's head for 33.6 GB.
MAX_CLASSES = 100_000
# Characters of one name (a class, the model, the data set, a path in words): PATH_MAX on Linux.
MAX_TEXT = 4096
# Cross-validation folds: rebuilding a split makes one view per fold and class.
MAX_FOLDS = 1000
# Epochs and seeds are counters: any 64-bit value (torch seeds are 64-bit).
MAX_COUNT = 2**64 - 1


def _shown(value: Any) -> str:
    """A value as a refusal quotes it: short, whatever the record held."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text):,} characters)"


def _integer(value: Any, name: str, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ConvlabError(
            f"{where} gives {name} {_shown(value)}; convlab accepts a whole number from {low:,} to {high:,}."
        )
    return int(value)


def _optional_integer(value: Any, name: str, where: str, low: int, high: int) -> int | None:
    return None if value is None else _integer(value, name, where, low, high)


def _number(value: Any, name: str, where: str, low: float = -math.inf, high: float = math.inf) -> float:
    """A finite number in [low, high] (NaN and infinities are JSON's extensions, not measurements)."""
    finite = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if not finite or not low <= value <= high:
        bounds = f" from {low:g} to {high:g}" if math.isfinite(low) and math.isfinite(high) else ""
        raise ConvlabError(f"{where} gives {name} {_shown(value)}; convlab accepts a finite number{bounds}.")
    return float(value)


def _text(value: Any, name: str, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ConvlabError(
            f"{where} gives {name} {_shown(value)}; convlab accepts a string of at most {MAX_TEXT:,} characters."
        )
    return value


def _optional_text(value: Any, name: str, where: str) -> str | None:
    return None if value is None else _text(value, name, where)


def _sequence(value: Any, name: str, where: str, lengths: tuple[int, int] | int) -> list | tuple:
    """A JSON array (a list, or a tuple from Python) whose length is ``lengths`` or in ``(low, high)``."""
    low, high = (lengths, lengths) if isinstance(lengths, int) else lengths
    if not isinstance(value, (list, tuple)) or not low <= len(value) <= high:
        count = f"{low:,}" if low == high else f"{low:,} to {high:,}"
        got = f"{len(value):,} values" if isinstance(value, (list, tuple)) else _shown(value)
        unit = "value" if high == 1 else "values"
        raise ConvlabError(f"{where} gives {name} as {got}; convlab accepts a list of {count} {unit}.")
    return value


def _object(value: Any, name: str, where: str) -> dict[str, Any] | None:
    """A JSON object or nothing (null, or absent)."""
    if value is not None and not isinstance(value, dict):
        raise ConvlabError(f"{where} gives {name} {_shown(value)}; convlab accepts a JSON object.")
    return value


def _check_nesting(document: Any, where: str) -> None:
    """Refuse a document nested deeper than MAX_DEPTH, walked without recursion (depth is the attack)."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConvlabError(f"{where} nests deeper than {MAX_DEPTH} levels; a convlab record nests a few.")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)


def _require(document: dict, key: str, where: str) -> Any:
    if key not in document:
        raise ConvlabError(f"{where} has no '{key}'; it was not written by convlab.")
    return document[key]


def _resize_rule(document: dict[str, Any], where: str = "The record") -> str:
    """The input's resize rule (RESIZE_RULES); a record written before the field existed means "squash",
    the only rule there was then."""
    rule = document.get("resize", "squash")
    if rule not in RESIZE_RULES:
        raise ConvlabError(
            f"{where} gives input.resize {_shown(rule)}, which this convlab cannot apply; "
            f"it applies {', '.join(RESIZE_RULES)}."
        )
    return rule


def _model_spec(document: Any, where: str) -> ModelSpec:
    """The record's model, its numbers checked before ModelSpec reads them (it converts, it does not judge)."""
    if not isinstance(document, dict):
        raise ConvlabError(f"{where} gives model {_shown(document)}; convlab accepts a JSON object.")
    for key in ("name", "num_classes", "in_chans"):
        if key not in document:
            raise ConvlabError(f"{where} has no 'model.{key}'; it was not written by convlab.")
    _text(document["name"], "model.name", where)
    # 0: a network of yours whose head convlab could not read (no Linear layer); the weights then say
    _integer(document["num_classes"], "model.num_classes", where, 0, MAX_CLASSES)
    _integer(document["in_chans"], "model.in_chans", where, 1, MAX_CHANNELS)
    if document.get("input_size") is not None:
        size = _sequence(document["input_size"], "model.input_size", where, 3)
        _integer(size[0], "model.input_size's channels", where, 1, MAX_CHANNELS)
        for side in size[1:]:  # 0 x 0: a network of yours before the data said its size
            _integer(side, "model.input_size's side", where, 0, MAX_SIDE)
    _text(document.get("init", "default"), "model.init", where)
    if not isinstance(document.get("options") or {}, dict):
        raise ConvlabError(
            f"{where} gives model.options {_shown(document['options'])}; convlab accepts a JSON object."
        )
    code = _object(document.get("code"), "model.code", where)
    for key in ("form", "function", "file", "module", "sha256"):
        _optional_text((code or {}).get(key), f"model.code.{key}", where)
    return ModelSpec.from_dict(document)


def _classes(value: Any, model: ModelSpec, where: str) -> list[str] | None:
    """One name per class the weights output; an empty list records no names (a checkpoint saved without)."""
    if value is None:
        return None
    names = _sequence(value, "classes", where, (0, MAX_CLASSES))
    for name in names:
        _text(name, "a class name", where)
    if names and model.num_classes and len(names) != model.num_classes:
        raise ConvlabError(
            f"{where} names {len(names):,} classes but its model has {model.num_classes:,} outputs; "
            "convlab accepts one name per output."
        )
    return list(names)


@dataclass(frozen=True)
class InputSpec:
    """What an image must become before the network sees it: ``channels`` x ``size``, normalised."""

    channels: int
    size: tuple[int, int]  # (H, W)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: str = "squash"

    @classmethod
    def of(cls, bundle) -> InputSpec:
        """The input a data bundle gives its loaders."""
        return cls(
            channels=int(bundle.in_chans),
            size=tuple(int(s) for s in bundle.image_size),
            mean=tuple(float(m) for m in bundle.mean),
            std=tuple(float(s) for s in bundle.std),
            resize=bundle.resize,
        )

    @classmethod
    def from_dict(cls, document: dict[str, Any], where: str = "The record") -> InputSpec:
        """The input a record gives, refused unless it is one a network can be fed (the limits at the top of this module)."""
        if not isinstance(document, dict):
            raise ConvlabError(f"{where} gives input {_shown(document)}; convlab accepts a JSON object.")
        for key in ("channels", "size"):
            if key not in document:
                raise ConvlabError(f"{where} has no 'input.{key}'; it was not written by convlab.")
        channels = _integer(document["channels"], "input.channels", where, 1, MAX_CHANNELS)
        size = _sequence(document["size"], "input.size", where, 2)
        if not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and 1 <= s <= MAX_SIDE for s in size
        ):
            raise ConvlabError(
                f"{where} gives input.size {_shown(list(size))}; convlab accepts height and width from 1 to "
                f"{MAX_SIDE:,} pixels."
            )
        mean, std = document.get("mean"), document.get("std")
        if mean is not None:
            mean = tuple(
                _number(m, "input.mean", where) for m in _sequence(mean, "input.mean", where, channels)
            )
        if std is not None:
            # std divides every pixel: zero, negative or NaN would turn every image into infinities or NaN
            std = tuple(_number(s, "input.std", where) for s in _sequence(std, "input.std", where, channels))
            if min(std) <= 0:
                raise ConvlabError(
                    f"{where} gives input.std {_shown(list(std))}; convlab accepts positive numbers."
                )
        return cls(
            channels=channels,
            size=(int(size[0]), int(size[1])),
            mean=mean,
            std=std,
            resize=_resize_rule(document, where),
        )

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"channels": self.channels, "size": list(self.size)}
        if self.mean is not None:
            document["mean"] = list(self.mean)
        if self.std is not None:
            document["std"] = list(self.std)
        document["resize"] = self.resize
        return document

    @property
    def normalised(self) -> bool:
        """Whether the spec says how to normalise (mean and std recorded)."""
        return self.mean is not None and self.std is not None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    def describe(self) -> str:
        return f"{self.channels}x{self.size[0]}x{self.size[1]}"


@dataclass(frozen=True)
class DataSpec:
    """The data a network was trained on, enough to rebuild the very same splits."""

    name: str
    source: str | None = None  # where the files were read from, in words
    val_split: float | None = None
    seed: int | None = None
    # The least a class gives to validation; records from before it was written held out at least 1.
    min_val_per_class: int = 1
    fold: int | None = None  # cross-validation: this run held out fold ``fold`` of ``folds``
    folds: int | None = None

    @classmethod
    def from_dict(cls, document: dict[str, Any], where: str = "The record") -> DataSpec:
        if not isinstance(document, dict):
            raise ConvlabError(f"{where} gives data {_shown(document)}; convlab accepts a JSON object.")
        if "name" not in document:
            raise ConvlabError(f"{where} has no 'data.name'; it was not written by convlab.")
        val_split = document.get("val_split")
        return cls(
            name=_text(document["name"], "data.name", where),
            source=_optional_text(document.get("source"), "data.source", where),
            val_split=None if val_split is None else _number(val_split, "data.val_split", where, 0.0, 1.0),
            seed=_optional_integer(document.get("seed"), "data.seed", where, -MAX_COUNT, MAX_COUNT),
            min_val_per_class=_integer(
                document.get("min_val_per_class", 1), "data.min_val_per_class", where, 0, MAX_COUNT
            ),
            fold=_optional_integer(document.get("fold"), "data.fold", where, 1, MAX_FOLDS),
            folds=_optional_integer(document.get("folds"), "data.folds", where, 2, MAX_FOLDS),
        )

    def holdout(self, fallback_fraction: float = 0.1) -> Holdout:
        """The validation split the run held out, to rebuild it exactly."""
        fraction = self.val_split if self.val_split is not None else float(fallback_fraction)
        return Holdout(
            fraction=fraction, min_per_class=self.min_val_per_class, fold=self.fold, folds=self.folds
        )

    def to_dict(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        return {key: value for key, value in document.items() if value is not None}


@dataclass
class RunRecord:
    """Everything a checkpoint says about itself besides its weights."""

    model: ModelSpec
    classes: list[str] | None = None
    input: InputSpec | None = None
    data: DataSpec | None = None
    epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None  # the resolved TrainConfig
    transfer: dict[str, Any] | None = None  # how a pretrained source was reused (the report reads it)
    export: dict[str, Any] | None = None  # format, source and convlab version of an exported file
    convlab_version: str = __version__
    format: str = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)  # keys a newer convlab wrote: kept, not read

    # ---- reading and writing: the only place that knows the JSON's keys

    @classmethod
    def from_dict(cls, document: dict[str, Any], where: str = "The record") -> RunRecord:
        """The record in ``document``, every field checked against the limits above (``where`` names the file in
        a refusal): a record outside them is one ConvlabError, before anything it describes is built."""
        if not isinstance(document, dict):
            raise ConvlabError(f"{where} is not a JSON object; it was not written by convlab.")
        _check_nesting(document, where)
        fmt = document.get("format", FORMAT)
        if fmt not in KNOWN_FORMATS:
            raise ConvlabError(
                f"{where} has format {_shown(fmt)}, which this convlab ({__version__}) cannot read; "
                f"it reads {', '.join(KNOWN_FORMATS)}."
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        model = _model_spec(_require(document, "model", where), where)
        stored_input, stored_data = document.get("input"), document.get("data")
        return cls(
            model=model,
            classes=_classes(document.get("classes"), model, where),
            input=InputSpec.from_dict(stored_input, where) if stored_input else None,
            data=DataSpec.from_dict(stored_data, where) if stored_data else None,
            epoch=_optional_integer(document.get("epoch"), "epoch", where, 0, MAX_COUNT),
            metrics=dict(_object(document.get("metrics"), "metrics", where) or {}),
            # an empty object is written as none (to_dict leaves it out), so it reads as none
            config=_object(document.get("config"), "config", where) or None,
            transfer=_object(document.get("transfer"), "transfer", where) or None,
            export=_object(document.get("export"), "export", where) or None,
            convlab_version=_text(document.get("convlab_version", ""), "convlab_version", where),
            format=fmt,
            extra={key: value for key, value in document.items() if key not in known},
        )

    @classmethod
    def from_json(cls, text: str, where: str = "The record") -> RunRecord:
        """The record in JSON ``text``; anything but a record within the limits above is one ConvlabError."""
        if isinstance(text, (bytes, bytearray)):  # a TorchScript archive's extra file comes back as bytes
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as error:
                raise ConvlabError(
                    f"{where} is not UTF-8 text ({error.reason} at byte {error.start})."
                ) from None
        if not isinstance(text, str):
            raise ConvlabError(f"{where} is a {type(text).__name__}, not JSON text.")
        if len(text) > MAX_RECORD_CHARS:
            raise ConvlabError(
                f"{where} is {len(text):,} characters of JSON; convlab accepts records of up to "
                f"{MAX_RECORD_CHARS:,} (a run's record takes a few thousand)."
            )
        try:
            document = json.loads(text)
        except ValueError as error:  # JSONDecodeError, and an integer of more than 4,300 digits
            raise ConvlabError(f"{where} is not valid JSON ({error}).") from None
        except RecursionError:
            raise ConvlabError(
                f"{where} nests deeper than {MAX_DEPTH} levels; a convlab record nests a few."
            ) from None
        return cls.from_dict(document, where)

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "format": self.format,
            "convlab_version": self.convlab_version,
            "model": self.model.to_dict(),
        }
        if self.classes is not None:
            document["classes"] = list(self.classes)
        for key in ("input", "data"):
            spec = getattr(self, key)
            if spec is not None:
                document[key] = spec.to_dict()
        for key in ("epoch", "metrics", "config", "transfer", "export"):
            value = getattr(self, key)
            if value is not None and value != {}:
                document[key] = value
        return {**self.extra, **document}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    # ---- what the commands ask of a record

    @property
    def trained(self) -> bool:
        """A record from training has an epoch and metrics; ``save_checkpoint`` alone writes neither."""
        return self.epoch is not None and bool(self.metrics)

    @property
    def data_name(self) -> str | None:
        """The data set it was trained on, by name (the data record, else the configuration's)."""
        return (self.data.name if self.data else None) or (self.config or {}).get("data")

    def require_input(self) -> InputSpec:
        """The input spec, or one clear error for a record that has none (a checkpoint not from training)."""
        if self.input is None:
            raise ConvlabError(
                "The checkpoint records no input preprocessing (channels, size, mean, std); "
                "it was not written by convlab's training."
            )
        return self.input

    def replace(self, **changes: Any) -> RunRecord:
        return dataclasses.replace(self, **changes)


def record_for(model: nn.Module, fields: RunRecord | dict[str, Any] | None = None) -> RunRecord:
    """The record of ``model``'s weights: ``fields`` given as a RunRecord, or as the record's JSON keys
    (``{"classes": [...], "input": {"channels": 1, "size": [28, 28], "mean": [...], "std": [...]}}``).

    The model spec is always the model's own (``model.convlab_spec``): it describes the weights.
    """
    spec = ModelSpec.of(model)
    if fields is None:
        return RunRecord(model=spec)
    if isinstance(fields, RunRecord):
        return fields.replace(model=spec)
    if not isinstance(fields, dict):
        raise ConvlabError(f"A record is a RunRecord or a dict of its fields, got a {type(fields).__name__}.")
    return RunRecord.from_dict({**fields, "model": spec.to_dict()})
