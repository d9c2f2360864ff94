"""Evaluation: metrics, evaluate a model or a checkpoint, test-time augmentation and the run report."""

from convlab.evaluation.evaluate import EvalResult, evaluate, evaluate_model
from convlab.evaluation.metrics import confusion_matrix, per_class_scores, top_k_correct
from convlab.evaluation.report import parameter_counts, plot_confusion, plot_curves, write_report
from convlab.evaluation.tta import TTA_MODES, predict_probabilities, tta_probabilities

__all__ = [
    "TTA_MODES",
    "EvalResult",
    "confusion_matrix",
    "evaluate",
    "evaluate_model",
    "parameter_counts",
    "per_class_scores",
    "plot_confusion",
    "plot_curves",
    "predict_probabilities",
    "top_k_correct",
    "tta_probabilities",
    "write_report",
]
