"""Classification metrics from logits: top-k hits, the confusion matrix and per-class precision/recall/F1."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def top_k_correct(logits: Tensor, targets: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """How many rows have their target among the k highest logits, for each k in ``ks``.

    k is capped at the number of classes (top-5 of a 3-class problem is top-3, i.e. always
    right), so the result is keyed by the k asked for, not the capped one.
    """
    return dict(zip(ks, top_k_hits(logits, targets, ks).tolist(), strict=True))


def top_k_hits(logits: Tensor, targets: Tensor, ks: Sequence[int] = (1, 5)) -> Tensor:
    """``top_k_correct`` as an int64 tensor on the logits' device (one count per k): no host sync per batch."""
    num_classes = logits.shape[-1]
    largest = min(max(ks), num_classes)
    ranked = logits.topk(largest, dim=-1).indices  # N x largest, best first
    # cumsum along the rank axis: column j-1 says whether the target is among the first j
    hit_within = (ranked == targets.unsqueeze(-1)).cumsum(dim=-1).bool()
    columns = torch.tensor([min(k, num_classes) - 1 for k in ks], device=logits.device)
    return hit_within.index_select(-1, columns).sum(dim=0)


def confusion_matrix(predictions: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """int64 ``num_classes x num_classes`` counts, rows = true class, columns = predicted class."""
    # One bincount over the flattened (true, predicted) pair index: a single tensor op for any N.
    pairs = targets.long() * num_classes + predictions.long()
    return torch.bincount(pairs.flatten(), minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_scores(confusion: Tensor | Sequence[Sequence[int]], classes: Sequence[str]) -> list[dict]:
    """Precision, recall, F1 and support per class, read off a confusion matrix.

    A class never predicted has precision 0, and one never present recall 0 (scikit-learn's
    ``zero_division=0``), so a score is always a number and the table always has every class.
    """
    matrix = torch.as_tensor(confusion, dtype=torch.float64)
    true_positive = matrix.diagonal()
    predicted = matrix.sum(dim=0)
    support = matrix.sum(dim=1)
    precision = torch.where(predicted > 0, true_positive / predicted.clamp_min(1), 0.0)
    recall = torch.where(support > 0, true_positive / support.clamp_min(1), 0.0)
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp_min(1e-300), 0.0)
    return [
        {
            "class": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    ]
