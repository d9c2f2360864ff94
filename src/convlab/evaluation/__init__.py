"""Evaluation: metrics, evaluate a model or a checkpoint, and test-time augmentation."""

from convlab.choices import TTA_MODES
from convlab.evaluation.evaluate import EvalResult, evaluate, evaluate_model
from convlab.evaluation.metrics import confusion_matrix, per_class_scores, top_k_correct
from convlab.evaluation.tta import predict_probabilities, tta_probabilities

__all__ = [
    "TTA_MODES",
    "EvalResult",
    "confusion_matrix",
    "evaluate",
    "evaluate_model",
    "per_class_scores",
    "predict_probabilities",
    "top_k_correct",
    "tta_probabilities",
]
