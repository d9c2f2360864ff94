"""The numerical check: batch sizes that prove a dynamic batch axis, and a limit that scales with big logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convlab.exporting.check import batch_sizes_for, compare, random_images
from convlab.models import ModelSpec
from convlab.record import InputSpec, RunRecord


def test_a_single_image_comes_first_then_batches_of_eight():
    assert batch_sizes_for(2) == [1, 1]
    assert batch_sizes_for(9) == [1, 8]
    assert batch_sizes_for(16) == [1, 8, 7]
    assert batch_sizes_for(32) == [1, 8, 8, 8, 7]


class ScaledLinear(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.linear, self.scale = nn.Linear(4, 3), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.scale


@pytest.mark.parametrize(
    ("scale", "error", "passes"),
    [
        (0.5, 9e-5, True),  # logits within +-1: the limit is 1e-4 itself
        (0.5, 2e-4, False),
        (50.0, 2e-3, True),  # logits up to ~50: the limit is 1e-4 of the largest
        (50.0, 2e-2, False),
    ],
)
def test_the_limit_is_1e_4_or_1e_4_of_the_largest_logit(scale, error, passes):
    torch.manual_seed(0)
    model = ScaledLinear(scale).eval()
    images = torch.randn(6, 4)
    with torch.no_grad():
        largest = model(images).abs().max().item()

    result = compare(model, lambda batch: model(batch) + error, images, "6 test vectors")

    assert result.largest_logit == pytest.approx(largest)
    assert result.tolerance == pytest.approx(1e-4 * max(1.0, largest))
    assert result.max_abs_diff == pytest.approx(error, rel=1e-2) and result.passed is passes
    assert (result.samples, result.batch_sizes) == (6, [1, 5])


def test_random_images_are_seeded_and_normalised_with_the_stored_statistics():
    stored = InputSpec(channels=3, size=(8, 6), mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.1))
    record = RunRecord(
        model=ModelSpec("lenet5", num_classes=10, in_chans=3, input_size=(3, 8, 6)), input=stored
    )
    images = random_images(record, 4)
    assert images.shape == (4, 3, 8, 6) and images.dtype == torch.float32
    assert torch.equal(images, random_images(record, 4))
    # uniform 0..255 pixels: (x/255 - mean) / std spans [-mean/std, (1 - mean)/std] per channel
    assert images[:, 0].min() >= -2.0 and images[:, 0].max() <= 2.0
    assert images[:, 2].min() >= -3.0 and images[:, 2].max() <= 7.0
