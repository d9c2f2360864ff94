"""The run report's figures on a LeNet-5 trained for one epoch on the real digits set."""

import time

import pytest
import torch
import torch.nn.functional as F

import convlab
from convlab.record import InputSpec, record_for
from convlab.report.figures import _examples, report_figures
from tests.helpers import assert_png


@pytest.fixture(scope="module")
def digits():
    from convlab.data import load_data

    return load_data("digits", image_size=(32, 32))


@pytest.fixture(scope="module")
def trained(digits):
    """LeNet-5 after one epoch (21 Adam steps) on the 1,293 digits training images: right on most, not all."""
    torch.manual_seed(0)
    model = convlab.create_model("lenet5")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for images, labels in digits.loader("train", 64, shuffle=True, seed=0):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, record_for(model, {"classes": digits.classes, "input": InputSpec.of(digits).to_dict()})


def test_examples_are_half_right_half_wrong(trained, digits):
    model, _ = trained
    examples = _examples(model.eval(), digits, "val", 4, torch.device("cpu"))
    assert len(examples) == 4
    assert [label == predicted for _, label, predicted in examples] == [True, True, False, False]
    assert examples[0][0].shape == (1, 32, 32)


def test_report_figures_writes_filters_and_grad_cam_grid(trained, digits, tmp_path):
    model, record = trained
    model.train()
    start = time.perf_counter()
    paths = report_figures(model, record, digits, tmp_path, n=4)
    seconds = time.perf_counter() - start
    assert paths == [tmp_path / "filters.png", tmp_path / "gradcam.png"]
    assert_png(paths[0])
    width, height = assert_png(paths[1])
    assert width > 2 * height  # four panels in one row
    assert model.training  # the caller's mode is restored
    print(f"report_figures: {seconds:.2f} s")  # under 3 s on an idle CPU
