"""`convlab viz`: each --what writes its PNG; user mistakes are one line on stderr and exit status 2."""

import pytest

from convlab.cli import main
from tests.helpers import assert_png


@pytest.mark.parametrize(
    "what, expected",
    [
        ("filters", "filters-features.c1.png"),
        ("feature-maps", "feature-maps-features.c3-square.png"),
        ("gradcam", "gradcam-square-four.png"),
        ("saliency", "saliency-square-four.png"),
    ],
)
def test_each_visualisation_writes_its_png(lenet_checkpoint, image_file, tmp_path, capsys, what, expected):
    args = ["viz", str(lenet_checkpoint.parent), "--what", what, "--out", str(tmp_path / "out")]
    if what != "filters":
        args += ["--image", str(image_file)]
    if what == "feature-maps":
        args += ["--layer", "features.c3"]
    if what in ("gradcam", "saliency"):
        args += ["--target", "four", "--device", "cpu"]
    assert main(args) == 0
    assert_png(tmp_path / "out" / expected)
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {tmp_path / 'out' / expected}"


def test_default_folder_is_the_runs_viz(lenet_checkpoint, capsys):
    assert main(["viz", str(lenet_checkpoint.parent)]) == 0
    assert_png(lenet_checkpoint.parent / "viz" / "filters-features.c1.png")
    assert capsys.readouterr().out.startswith("lenet5 features.c1: 6 filters of 1x5x5")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--what", "gradcam"], "--what gradcam needs an image; give one with --image IMG."),
        (["--what", "gradcam", "--image", "IMAGE", "--layer", "features.c7"], "Unknown layer 'features.c7'"),
        (["--what", "saliency", "--image", "IMAGE", "--target", "eleven"], "Unknown target class 'eleven'"),
        (["--what", "saliency", "--image", "NOTES"], "Cannot read image '"),
    ],
)
def test_mistakes_are_one_line(lenet_checkpoint, image_file, tmp_path, capsys, extra, message):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    extra = [{"IMAGE": str(image_file), "NOTES": str(notes)}.get(arg, arg) for arg in extra]
    assert main(["viz", str(lenet_checkpoint), *extra]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith(f"convlab: error: {message}")
