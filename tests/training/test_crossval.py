"""K-fold cross-validation: every training image is validated exactly once, and the spread is reported."""

import json
import statistics

import pytest

import convlab
from convlab.checkpoint import read_record
from convlab.data import Holdout, load_data
from tests.photos import write_photo_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_photo_folder(tmp_path_factory.mktemp("photos"), per_class=12)


def test_three_folds_validate_every_image_once_and_report_mean_and_spread(folder, tmp_path):
    run = tmp_path / "cv"
    outcome = convlab.train(model="mlp", data=str(folder), epochs=2, folds=3, out=str(run))
    assert [result.run_dir.name for result in outcome.folds] == ["fold-1", "fold-2", "fold-3"]

    # each fold's record names its fold, and rebuilding the three validation splits covers the folder once
    held = []
    for k, result in enumerate(outcome.folds, start=1):
        data = read_record(result.run_dir).data
        assert (data.fold, data.folds) == (k, 3)
        bundle = load_data(str(folder), image_size=(28, 28), val_split=data.holdout(), seed=data.seed)
        held.append(set(bundle.files("val")))
    assert all(len(files) == 12 for files in held)  # 4 of each class's 12 images per fold
    assert not (held[0] & held[1]) and not (held[0] & held[2]) and not (held[1] & held[2])
    assert len(set().union(*held)) == 36

    summary = json.loads((run / "crossval.json").read_text())
    values = [result.best_val_top1 for result in outcome.folds]
    assert summary["val_top1"] == values
    assert summary["mean"] == pytest.approx(statistics.fmean(values))
    assert summary["std"] == pytest.approx(statistics.stdev(values))
    assert (
        f"Mean {outcome.mean:.4f}, standard deviation {outcome.std:.4f}" in (run / "crossval.md").read_text()
    )

    # a fold's run evaluates its own validation fold again to the figure it recorded
    again = convlab.evaluate(outcome.folds[1].run_dir, split="val", write=False)
    assert again.n == 12 and again.top1 == pytest.approx(outcome.folds[1].best_val_top1)


def test_a_validation_split_keeps_a_few_images_of_every_class(folder):
    # 12 images a class at 0.1 would hold out one each; a few are held out instead (3, keeping 9 to train)
    bundle = load_data(str(folder), image_size=(28, 28), val_split=Holdout(0.1, min_per_class=3), seed=0)
    assert bundle.size("val") == 9 and bundle.size("train") == 27
    assert load_data(str(folder), image_size=(28, 28), val_split=0.1, seed=0).size("val") == 3  # the old rule


def test_folds_refuse_settings_they_cannot_honour(folder, tmp_path):
    with pytest.raises(convlab.ConvlabError, match="cannot be combined with --val-split 0"):
        convlab.train(model="mlp", data=str(folder), folds=3, val_split=0, out=str(tmp_path / "a"))
    with pytest.raises(convlab.ConvlabError, match="fold 4 needs folds of at least 4"):
        convlab.train(model="mlp", data=str(folder), folds=3, fold=4, out=str(tmp_path / "b"))
