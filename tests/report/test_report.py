"""write_report: curves.png, confusion.png and report.md of a run folder."""

import pytest
import yaml

import convlab
from convlab.checkpoint import save_checkpoint
from convlab.evaluation import EvalResult, per_class_scores
from convlab.report import write_report
from convlab.viz import plot_confusion
from tests.helpers import PNG_SIGNATURE

METRICS = """epoch,train_loss,train_top1,val_loss,val_top1,val_top5,lr,seconds,images_per_s
1,1.20,0.61,0.90,0.70,0.97,0.1,2.0,900
2,0.70,0.76,0.62,0.79,0.99,0.05,2.1,880
3,0.55,0.81,0.66,0.77,0.99,0.0,2.0,905
"""
CLASSES = ["shirt", "shoe", "bag"]
CONFUSION = [[8, 1, 1], [0, 9, 1], [2, 0, 8]]


def _result(confusion=CONFUSION):
    n = sum(map(sum, confusion))
    correct = sum(confusion[i][i] for i in range(3))
    return EvalResult(
        split="test",
        n=n,
        loss=0.6321,
        top1=correct / n,
        top5=1.0,
        confusion=confusion,
        classes=CLASSES,
        per_class=per_class_scores(confusion, CLASSES),
        top5_k=3,
    )


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "run"
    model = convlab.create_model("mlp", num_classes=3, in_chans=1)  # 784*300+300 + 300*3+3 = 236,403
    save_checkpoint(
        run / "best.safetensors", model, {"classes": CLASSES, "epoch": 2, "data": {"name": "toy"}}
    )
    (run / "config.yaml").write_text(
        yaml.safe_dump({"model": "mlp", "data": "toy", "epochs": 3, "lr": 0.1, "augment": ["flip", "crop"]})
    )
    (run / "metrics.csv").write_text(METRICS)
    (run / "skipped.txt").write_text("toy/shoe/broken.jpg\tcannot identify image file\n")
    return run


def test_write_report_writes_the_markdown_and_both_images(run):
    report = write_report(run, _result())
    text = report.read_text()
    assert report == run / "report.md"
    assert text.startswith("# mlp on toy")
    assert "Best epoch: **2** (validation top-1 0.7900, loss 0.6200)." in text
    assert "| top-1 accuracy | 0.8333 |" in text  # 25 of 30 right
    assert "| top-3 accuracy | 1.0000 |" in text and "only 3 classes" in text
    assert (
        "| shoe | 0.9000 | 0.9000 | 0.9000 | 10 |" in text
    )  # 9 of 10 predicted shoes are shoes, 9 of 10 found
    assert '| augment | ["flip", "crop"] |' in text
    assert "| total | 236,403 |" in text and "| frozen | 0 |" in text
    assert "toy/shoe/broken.jpg" in text
    assert "![Confusion matrix](confusion.png)" in text and "(curves.png)" in text
    assert text.count("\n| 3 | ") == 1  # one metrics row per epoch
    assert "| 2 | 0.7000 | 0.7600 | 0.6200 | 0.7900 | 0.9900 | 0.05 | 2.1 | 880 |" in text
    for name in ("curves.png", "confusion.png"):
        data = (run / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000


def test_the_report_counts_frozen_parameters_of_the_model_it_is_given(run):
    model = convlab.create_model("mlp", num_classes=3, in_chans=1)
    model.layers.fc1.requires_grad_(False)  # 784*300 + 300 frozen
    text = write_report(run, _result(), model=model).read_text()
    assert "| trainable | 903 |" in text and "| frozen | 235,500 |" in text


def test_confusion_png_changes_with_the_matrix(tmp_path):
    first = plot_confusion(CONFUSION, CLASSES, tmp_path / "a.png").read_bytes()
    again = plot_confusion(CONFUSION, CLASSES, tmp_path / "b.png").read_bytes()
    other = plot_confusion([[10, 0, 0], [0, 10, 0], [0, 3, 7]], CLASSES, tmp_path / "c.png").read_bytes()
    assert first == again
    assert other != first and other.startswith(PNG_SIGNATURE)


def test_a_report_without_a_result_uses_a_stored_evaluation(run):
    (run / "eval-test.json").write_text(_result().to_json())
    text = write_report(run).read_text()
    assert "## Final evaluation (test, 30 images)" in text
    assert (run / "confusion.png").read_bytes().startswith(PNG_SIGNATURE)


def test_a_confusion_matrix_must_be_square_with_a_row_per_class(tmp_path):
    with pytest.raises(convlab.ConvlabError, match="one row per class"):
        plot_confusion([[1, 2], [3, 4]], CLASSES, tmp_path / "bad.png")
