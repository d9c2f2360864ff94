"""`convlab eval` on a run trained on a folder of photos: its validation split when there is no test split, a
separate held-out folder matched by class name, and test-time augmentation results kept side by side."""

from __future__ import annotations

import json

import pytest

import convlab
from convlab.checkpoint import read_record
from convlab.cli import main
from convlab.evaluation.tta import untrained_views_note
from tests.helpers import assert_png
from tests.photos import RUN_CLASSES, write_photo_folder


def test_a_run_without_a_test_split_is_evaluated_on_its_validation_split_and_says_so(photo_run, capsys):
    assert main(["eval", str(photo_run), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # the note comes first, on one line, before the figures
    document = json.loads((photo_run / "eval-val.json").read_text())
    held_out = document["n"]
    assert lines[0] == (
        f"Data '{photo_run.parent / 'photos'}' has no test split, so this is its validation split: the "
        f"{held_out} images held out from training, as in the run's val figures."
    )
    assert document["split"] == "val" and document["notes"] == [lines[0]]
    # the very split and figures of training's best epoch: stratified, the same share of each class
    record = read_record(photo_run)
    assert document["top1"] == record.metrics["val_top1"]
    assert document["loss"] == pytest.approx(record.metrics["val_loss"], rel=1e-5)
    assert [row["support"] for row in document["per_class"]] == [held_out // 3] * 3 and 3 <= held_out < 60
    assert document["classes"] == RUN_CLASSES
    assert_png(photo_run / "confusion-val.png")

    assert main(["eval", str(photo_run), "--json", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)  # the note rides in the one JSON document
    assert printed["notes"] == document["notes"] and printed["n"] == held_out


def test_a_held_out_folder_is_evaluated_whole_with_its_classes_matched_by_name(photo_run, tmp_path, capsys):
    held_out = write_photo_folder(tmp_path / "holdout", per_class=8, seed=7)  # new pictures, folders sorted
    assert main(["eval", str(photo_run), "--data", str(held_out), "--json", "--device", "cpu"]) == 0
    document = json.loads(capsys.readouterr().out)

    assert document["split"] == "all" and document["n"] == 24  # every image, no validation split carved out
    assert document["classes"] == RUN_CLASSES  # the run's order, not the folder's sorted dots, plain, stripes
    # each true class in the run's order: a relabelling mistake would put the counts off the diagonal
    predictions = convlab.predict(photo_run, held_out, device="cpu", topk=1)
    confusion = [[0] * 3 for _ in RUN_CLASSES]
    for result in predictions:
        true = RUN_CLASSES.index(result["image"].split("/")[-2])
        confusion[true][result["predictions"][0]["index"]] += 1
    assert document["confusion"] == confusion
    assert document["top1"] == sum(confusion[i][i] for i in range(3)) / 24 >= 0.9
    # kept beside the run's own results, named after the folder
    assert json.loads((photo_run / "eval-holdout-all.json").read_text())["n"] == 24
    assert_png(photo_run / "confusion-holdout-all.png")


def test_a_held_out_folder_with_other_classes_is_one_error_naming_them(photo_run, tmp_path, capsys):
    other = write_photo_folder(tmp_path / "other", per_class=3, classes=("dots", "plain", "checks"))
    assert main(["eval", str(photo_run), "--data", str(other), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "missing 'stripes'" in error and "extra 'checks'" in error
    assert "'stripes', 'plain', 'dots'" in error  # what is accepted

    with pytest.raises(convlab.ConvlabError, match="--split val applies to data with train/val/test folders"):
        convlab.evaluate(
            photo_run, data=str(write_photo_folder(tmp_path / "same")), split="val", device="cpu"
        )


def test_tta_results_sit_beside_the_plain_ones_and_a_mode_the_run_never_trained_for_is_named(
    photo_run, capsys
):
    figures = {}
    for mode in ("none", "flip", "shift"):
        assert main(["eval", str(photo_run), "--split", "val", "--tta", mode, "--device", "cpu"]) == 0
        lines = capsys.readouterr().out.splitlines()
        if mode == "none":
            assert not lines[0].startswith("TTA")
        else:  # trained with no augmentation: the mirror (and shift's translations) were never seen
            assert lines[0].startswith(f"TTA {mode} averages over mirror images")
            assert "trained without them (augment: none)" in lines[0] and "--augment flip" in lines[0]
        stem = "val" if mode == "none" else f"val-{mode}"
        figures[mode] = json.loads((photo_run / f"eval-{stem}.json").read_text())
        assert_png(photo_run / f"confusion-{stem}.png")
    assert [figures[mode]["tta"] for mode in figures] == [None, "flip", "shift"]
    # each mode averages other views, so each keeps its own loss: none was overwritten by the next
    assert len({figures[mode]["loss"] for mode in figures}) == 3


@pytest.mark.parametrize(
    ("tta", "augment", "missing"),
    [
        ("flip", ["flip"], None),
        ("flip", ["crop"], "mirror images"),
        ("shift", ["flip", "crop"], None),
        ("shift", ["flip"], "translations"),
        ("shift", [], "mirror images and translations"),
        ("tencrop", ["flip", "random-resized-crop"], None),
        ("tencrop", ["flip"], "crops"),
    ],
)
def test_the_note_names_exactly_the_views_training_did_not_teach(tta, augment, missing):
    note = untrained_views_note(tta, augment)
    if missing is None:
        assert note is None
    else:
        assert note.startswith(f"TTA {tta} averages over {missing}, but the model was trained without them")
    assert untrained_views_note(tta, None) is None  # no recorded configuration: nothing is claimed
