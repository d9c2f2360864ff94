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


def _require(document: dict, key: str, where: str) -> Any:
    if key not in document:
        raise ConvlabError(f"{where} has no '{key}'; it was not written by convlab.")
    return document[key]


def _resize_rule(document: dict[str, Any]) -> str:
    """The input's resize rule (RESIZE_RULES); a record written before the field existed means "squash",
    the only rule there was then."""
    rule = str(document.get("resize", "squash"))
    if rule not in RESIZE_RULES:
        raise ConvlabError(
            f"The record's input has resize rule '{rule}', which this convlab cannot apply; "
            f"it applies {', '.join(RESIZE_RULES)}."
        )
    return rule


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
    def from_dict(cls, document: dict[str, Any]) -> InputSpec:
        where = "The record's input"
        mean, std = document.get("mean"), document.get("std")
        return cls(
            channels=int(_require(document, "channels", where)),
            size=tuple(int(s) for s in _require(document, "size", where)),
            mean=None if mean is None else tuple(float(m) for m in mean),
            std=None if std is None else tuple(float(s) for s in std),
            resize=_resize_rule(document),
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
    def from_dict(cls, document: dict[str, Any]) -> DataSpec:
        val_split, seed = document.get("val_split"), document.get("seed")
        fold, folds = document.get("fold"), document.get("folds")
        return cls(
            name=str(_require(document, "name", "The record's data")),
            source=document.get("source"),
            val_split=None if val_split is None else float(val_split),
            seed=None if seed is None else int(seed),
            min_val_per_class=int(document.get("min_val_per_class", 1)),
            fold=None if fold is None else int(fold),
            folds=None if folds is None else int(folds),
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
        if not isinstance(document, dict):
            raise ConvlabError(f"{where} is not a JSON object; it was not written by convlab.")
        fmt = str(document.get("format", FORMAT))
        if fmt not in KNOWN_FORMATS:
            raise ConvlabError(
                f"{where} has format '{fmt}', which this convlab ({__version__}) cannot read; "
                f"it reads {', '.join(KNOWN_FORMATS)}."
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        stored_input, stored_data, epoch = document.get("input"), document.get("data"), document.get("epoch")
        return cls(
            model=ModelSpec.from_dict(_require(document, "model", where)),
            classes=None if document.get("classes") is None else [str(c) for c in document["classes"]],
            input=InputSpec.from_dict(stored_input) if stored_input else None,
            data=DataSpec.from_dict(stored_data) if stored_data else None,
            epoch=None if epoch is None else int(epoch),
            metrics=dict(document.get("metrics") or {}),
            config=document.get("config"),
            transfer=document.get("transfer"),
            export=document.get("export"),
            convlab_version=str(document.get("convlab_version", "")),
            format=fmt,
            extra={key: value for key, value in document.items() if key not in known},
        )

    @classmethod
    def from_json(cls, text: str, where: str = "The record") -> RunRecord:
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, TypeError) as error:
            raise ConvlabError(f"{where} is not valid JSON ({error}).") from None
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
