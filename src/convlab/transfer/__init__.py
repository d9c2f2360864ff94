"""Transfer learning, the three ways the lectures teach: a trained network as a fixed feature extractor,
fine-tuned in whole or in part, or read by a linear classifier on its features (002, Transfer Learning)."""

from convlab.transfer.adapt import (
    adapt_input_channels,
    find_auxiliary_classifiers,
    find_classifier,
    find_first_layer,
    replace_head,
)
from convlab.transfer.features import extract_features, linear_probe, write_features
from convlab.transfer.freeze import (
    SCENARIOS,
    Stage,
    apply_transfer,
    backbone_stages,
    describe_trainable,
    freeze_batchnorm,
)
from convlab.transfer.pretrained import TransferReport, load_pretrained, pretrained_model

__all__ = [
    "SCENARIOS",
    "Stage",
    "TransferReport",
    "adapt_input_channels",
    "apply_transfer",
    "backbone_stages",
    "describe_trainable",
    "extract_features",
    "find_auxiliary_classifiers",
    "find_classifier",
    "find_first_layer",
    "freeze_batchnorm",
    "linear_probe",
    "load_pretrained",
    "pretrained_model",
    "replace_head",
    "write_features",
]
