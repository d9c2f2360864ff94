"""`convlab serve --amp bf16 --channels-last`: the fast CPU path behind the same API, for checkpoints only."""

from __future__ import annotations

import pytest
import torch

from convlab.errors import ConvlabError
from convlab.serve.model import ServedModel


def test_a_bf16_channels_last_server_answers_like_the_plain_one(checkpoint, samples, fashion):
    plain = ServedModel(checkpoint, "cpu")
    fast = ServedModel(checkpoint, "cpu", amp="bf16", channels_last=True)
    card = fast.card()
    assert (card["amp"], card["channels_last"]) == ("bf16", True) and plain.card()["amp"] == "off"
    images, _ = next(iter(fashion.loader("test", 64)))
    pixels = ((images * fashion.std[0] + fashion.mean[0]) * 255).round().clamp(0, 255).to(torch.uint8)
    expected = [row[0]["index"] for row in plain.predict(list(pixels), topk=1)]
    found = [row[0]["index"] for row in fast.predict(list(pixels), topk=1)]
    assert sum(a == b for a, b in zip(expected, found, strict=True)) >= 62  # bf16 flips only near-ties
    assert fast.gradcam(pixels[0])["predicted"]["index"] in range(10)  # Grad-CAM still runs on NHWC weights


def test_the_fast_path_on_an_onnx_file_is_one_clear_error(onnx_file):
    with pytest.raises(ConvlabError, match="apply to convlab checkpoints"):
        ServedModel(onnx_file, amp="bf16")
