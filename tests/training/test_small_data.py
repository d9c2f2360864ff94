"""A folder of a few dozen photos: the defaults adapt (and say so) and the report answers the assignment."""

import re

import pytest

import convlab
from tests.photos import write_photo_folder


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """3 classes x 30 small pictures of learnable patterns (tests/photos.py)."""
    return write_photo_folder(tmp_path_factory.mktemp("photos"), per_class=30)


def test_a_small_folder_trains_in_small_batches_and_the_report_covers_validation(shapes, tmp_path):
    run = tmp_path / "run"
    result = convlab.train(model="mlp", data=str(shapes), epochs=3, out=str(run))
    log = (run / "train.log").read_text()
    # 90 images, 9 held out: 81 train in batches of 8 (a tenth), the rate scaled with the batch
    assert "batch 8: about a tenth of the 81 training images" in log
    assert "lr 0.0125 (momentum's 0.1 at batch 64, scaled in proportion to batch 8)" in log
    assert result.config.batch_size == 8 and "batch_size: 8" in (run / "config.yaml").read_text()
    assert result.best_val_top1 >= 0.8

    report = (run / "report.md").read_text()
    # no test split: the final evaluation is the validation split's, per class, with its confusion matrix
    assert "## Final evaluation (val, 9 images)" in report and "no test split" in report
    assert "| stripes |" in report and (run / "confusion.png").is_file()
    # the mistakes, by file, or a sentence that there are none
    assert "## Mistakes" in report
    if "classify every val image right" not in report:
        assert (run / "mistakes.png").is_file() and re.search(r"\| `.*\.png` \|", report)
    # the configuration as resolved: no unset value where the run chose one
    rows = dict(re.findall(r"^\| (\w[\w ]*) \| (.+) \|$", report, re.M))
    assert rows["lr"].startswith("0.0125") and rows["momentum"] == "0.9" and rows["weight_decay"] == "0"
    assert rows["image_size"] == "28x28" and rows["normalisation"].startswith("mean (")
    assert rows["device"] == "auto: cpu" and rows["threads"].startswith("auto: ")
    assert rows["total time"].endswith("3 epoch(s)")
