"""Top-k hits, the confusion matrix and per-class scores on hand-made logits with known answers."""

import pytest
import torch
from sklearn.metrics import confusion_matrix as sklearn_confusion
from sklearn.metrics import precision_recall_fscore_support

from convlab.evaluation import confusion_matrix, per_class_scores, top_k_correct

# 4 samples, 3 classes. Rankings: [0,1,2], [1,2,0], [2,1,0], [0,2,1]; targets 0, 2, 1, 1.
LOGITS = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
TARGETS = torch.tensor([0, 2, 1, 1])


def test_top_k_correct_counts_hits_within_the_first_k():
    # top-1 only sample 0; top-2 adds samples 1 and 2; sample 3's target is ranked last
    assert top_k_correct(LOGITS, TARGETS, ks=(1, 2, 3)) == {1: 1, 2: 3, 3: 4}


def test_top_5_is_capped_at_the_number_of_classes():
    # with 3 classes every target is among the "top 5", and the answer is keyed by the k asked for
    assert top_k_correct(LOGITS, TARGETS) == {1: 1, 5: 4}


def test_confusion_matrix_rows_are_true_columns_predicted():
    predictions = LOGITS.argmax(dim=1)  # 0, 1, 2, 0
    matrix = confusion_matrix(predictions, TARGETS, 3)
    assert matrix.dtype == torch.int64
    assert matrix.tolist() == [[1, 0, 0], [1, 0, 1], [0, 1, 0]]


def test_confusion_matrix_agrees_with_scikit_learn_on_many_samples():
    targets = torch.randint(0, 10, (1000,))
    predictions = torch.where(torch.rand(1000) < 0.6, targets, torch.randint(0, 10, (1000,)))
    expected = sklearn_confusion(targets.numpy(), predictions.numpy(), labels=list(range(10)))
    assert confusion_matrix(predictions, targets, 10).tolist() == expected.tolist()


def test_per_class_scores_match_scikit_learn_including_empty_classes():
    targets = torch.randint(0, 5, (500,))  # class 5 never occurs
    predictions = torch.where(torch.rand(500) < 0.5, targets, torch.randint(0, 6, (500,)))
    predictions[predictions == 6] = 0  # class 6 is never predicted (randint < 6), class 5 sometimes is
    classes = [f"c{i}" for i in range(7)]
    scores = per_class_scores(confusion_matrix(predictions, targets, 7), classes)

    precision, recall, f1, support = precision_recall_fscore_support(
        targets.numpy(), predictions.numpy(), labels=list(range(7)), zero_division=0
    )
    assert [row["class"] for row in scores] == classes
    assert [row["support"] for row in scores] == support.tolist()
    assert support[5] == 0 and support[6] == 0
    for row, p, r, f in zip(scores, precision, recall, f1, strict=True):
        assert row["precision"] == pytest.approx(p, abs=1e-12)
        assert row["recall"] == pytest.approx(r, abs=1e-12)
        assert row["f1"] == pytest.approx(f, abs=1e-12)
    assert scores[6]["precision"] == 0.0 and scores[5]["recall"] == 0.0


def test_per_class_scores_of_the_hand_made_example():
    scores = per_class_scores([[1, 0, 0], [1, 0, 1], [0, 1, 0]], ["a", "b", "c"])
    # class a: predicted twice, right once; every a found. b and c are never right.
    assert scores[0] == {
        "class": "a",
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }
    assert [row["precision"] for row in scores[1:]] == [0.0, 0.0]
    assert [row["support"] for row in scores] == [1, 2, 1]
