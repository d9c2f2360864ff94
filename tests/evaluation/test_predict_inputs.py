"""Prediction on new images: `convlab predict RUN FOLDER` with --csv and --json, and `convlab.predict` on the
in-memory forms of an image (PIL, numpy, torch) giving the answer the file gives."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import convlab
from convlab.checkpoint import read_record
from convlab.cli import main
from convlab.data import normalize, read_image
from tests.photos import pattern_pixels, write_photo_folder


@pytest.fixture
def new_photos(tmp_path):
    """New pictures in class folders, plus what a folder of photos also holds: a nested folder, a hidden file,
    a text file and a folder of hidden thumbnails, none of which is a photo to predict but the nested one."""
    folder = write_photo_folder(tmp_path / "new", per_class=4, seed=11)
    (folder / "stripes" / "more").mkdir()
    shutil.copy(folder / "stripes" / "stripes-000.png", folder / "stripes" / "more" / "copy.png")
    shutil.copy(folder / "dots" / "dots-000.png", folder / "dots" / ".hidden.png")
    (folder / ".thumbnails").mkdir()
    shutil.copy(folder / "dots" / "dots-000.png", folder / ".thumbnails" / "t.png")
    (folder / "notes.txt").write_text("taken on Tuesday")
    return folder


def test_predict_a_folder_writes_one_csv_row_per_image_and_prints_json(
    photo_run, new_photos, tmp_path, capsys
):
    table = tmp_path / "predictions.csv"
    argv = ["predict", str(photo_run), str(new_photos), "--csv", str(table), "--json", "--topk", "2"]
    assert main([*argv, "--device", "cpu"]) == 0
    results = json.loads(capsys.readouterr().out)

    expected = [
        new_photos / name / f"{name}-{i:03d}.png" for name in ("dots", "plain", "stripes") for i in range(4)
    ]
    expected.append(
        new_photos / "stripes" / "more" / "copy.png"
    )  # a folder's own files, then its sub-folders'
    assert [r["image"] for r in results] == [
        str(p) for p in expected
    ]  # sorted; hidden and non-images skipped

    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["image", "label", "probability", "label_2", "probability_2", "error"]
    assert [row["image"] for row in rows] == [r["image"] for r in results]
    for row, result in zip(rows, results, strict=True):
        best, second = result["predictions"]
        assert (row["label"], row["label_2"]) == (best["label"], second["label"])
        assert float(row["probability"]) == pytest.approx(best["probability"], abs=1e-6)
        assert float(row["probability_2"]) == pytest.approx(second["probability"], abs=1e-6)
        assert row["error"] == ""
    # the run learned the patterns: the folder each photo sits in is its top-1 class
    truth = [p.relative_to(new_photos).parts[0] for p in expected]
    assert [row["label"] for row in rows] == truth


def test_predict_csv_alone_says_what_it_wrote_and_keeps_unreadable_files_as_rows(
    photo_run, new_photos, tmp_path, capsys
):
    (new_photos / "plain" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    table = tmp_path / "out.csv"
    assert (
        main(["predict", str(photo_run), str(new_photos / "plain"), "--csv", str(table), "--device", "cpu"])
        == 1
    )
    captured = capsys.readouterr()
    assert captured.out == f"Predicted 4 of 5 images; wrote {table}\n"
    assert captured.err.count("\n") == 1 and "broken.png" in captured.err
    rows = list(csv.DictReader(table.open(newline="")))
    broken = next(row for row in rows if row["image"].endswith("broken.png"))
    assert broken["label"] == "" and "broken.png" in broken["error"]
    assert len(rows[0]) == 2 * 3 + 2  # image, error and three (label, probability) pairs: top-5 capped at 3


def test_an_empty_folder_is_one_error_naming_it(photo_run, tmp_path):
    (tmp_path / "empty" / ".cache").mkdir(parents=True)
    (tmp_path / "empty" / "readme.md").write_text("no photos yet")
    with pytest.raises(convlab.ConvlabError, match="Folder '.*empty' holds no image files") as error:
        convlab.predict(photo_run, tmp_path / "empty")
    assert "\n" not in str(error.value)


@pytest.fixture
def picture(tmp_path):
    """One new 'dots' photo as an RGB PNG file, 30 x 20 (not the run's input size), and its pixels."""
    pixels = np.concatenate(
        [pattern_pixels("dots", np.random.default_rng(5)), np.zeros((6, 24, 3), np.uint8)]
    )
    pixels = pixels[:, :20]
    path = tmp_path / "dots.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


def test_pil_numpy_and_tensor_inputs_give_the_files_answer(photo_run, picture):
    path, pixels = picture
    spec = read_record(photo_run).input
    model_input = normalize(
        read_image(path, spec.channels, spec.size, resize=spec.resize), spec.mean, spec.std
    )
    with Image.open(path) as opened:
        inputs = [
            path,
            str(path),
            opened,
            opened.convert("RGBA"),  # alpha is dropped, as for a file
            pixels,  # H x W x C uint8
            np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)]),  # H x W x 4
            torch.from_numpy(pixels).permute(2, 0, 1),  # uint8 C x H x W pixels
            model_input,  # float C x H x W, already the model's input
            model_input.unsqueeze(0),  # a batch of one
        ]
        results = convlab.predict(photo_run, inputs, device="cpu", topk=3)

    assert [r["image"] for r in results] == [
        str(path),
        str(path),
        "<PIL image 2>",
        "<PIL image 3>",
        "<numpy array 4>",
        "<numpy array 5>",
        "<tensor 6>",
        "<tensor 7>",
        "<tensor 8>",
    ]
    file_answer = results[0]["predictions"]
    assert file_answer[0]["label"] == "dots"
    for result in results[1:]:
        assert [p["label"] for p in result["predictions"]] == [p["label"] for p in file_answer]
        assert [p["probability"] for p in result["predictions"]] == pytest.approx(
            [p["probability"] for p in file_answer], abs=1e-6
        )


def test_a_gray_array_is_a_gray_picture(photo_run, tmp_path):
    gray = pattern_pixels("stripes", np.random.default_rng(3))[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    from_file, from_array = convlab.predict(photo_run, [tmp_path / "gray.png", gray], device="cpu")
    assert from_array["predictions"] == from_file["predictions"]  # the same pixels: the very same numbers
    assert from_file["predictions"][0]["label"] == "stripes"


def wrong_inputs(spec):
    """(input, words of its error) for inputs predict refuses, given the run's input spec."""
    channels, height, width = spec.shape
    return [
        (
            {"image": "a.png"},
            "Cannot predict an object of type dict; accepted: image files, folders of them, PIL images",
        ),
        (
            np.zeros((9, 9), np.float32),
            "must be uint8 pixels, H x W or H x W x C with C of 1 to 4; got float32 9 x 9",
        ),
        (np.zeros((2, 9, 9, 3), np.uint8), "got uint8 2 x 9 x 9 x 3"),
        (
            torch.rand(channels, height + 1, width),
            f"float model input of shape {channels} x {height} x {width}; got float32 {channels} x {height + 1} x {width}",
        ),
        (
            torch.zeros(channels, height, width, dtype=torch.int64),
            f"got int64 {channels} x {height} x {width}",
        ),
    ]


def test_anything_else_is_one_error_naming_what_is_accepted(photo_run):
    for item, words in wrong_inputs(read_record(photo_run).input):
        with pytest.raises(convlab.ConvlabError) as error:
            convlab.predict(photo_run, item, device="cpu")
        assert words in str(error.value) and "\n" not in str(error.value)


def test_a_photo_stored_sideways_is_predicted_upright_from_the_file_and_from_pil(photo_run, tmp_path):
    upright = pattern_pixels("stripes", np.random.default_rng(4))  # vertical stripes
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright)))  # as a phone stores a portrait shot
    exif = stored.getexif()
    exif[0x0112] = 6  # EXIF orientation: turn 90 degrees clockwise to show
    stored.save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "portrait.jpg") as opened:
        shown = np.asarray(ImageOps.exif_transpose(opened))  # what a photo viewer shows
        assert shown.shape == upright.shape
        from_file, from_pil, from_shown, from_stored = convlab.predict(
            photo_run, [tmp_path / "portrait.jpg", opened, shown, np.asarray(opened)], device="cpu"
        )
    assert from_file["predictions"][0]["label"] == "stripes"
    assert from_pil["predictions"] == from_file["predictions"] == from_shown["predictions"]
    assert from_stored["predictions"] != from_file["predictions"]  # the sideways pixels are another picture
