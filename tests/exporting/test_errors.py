"""Bad input to export: each is one ConvlabError sentence that names the problem, and no file is left behind."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from convlab.checkpoint import load_checkpoint
from convlab.errors import ConvlabError
from convlab.exporting import export, export_model


def test_a_missing_checkpoint(tmp_path):
    with pytest.raises(ConvlabError, match=r"No checkpoint at '.*nothing\.safetensors'"):
        export(tmp_path / "nothing.safetensors")
    with pytest.raises(ConvlabError, match=r"Run folder '.*' holds no checkpoint"):
        export(tmp_path)


def test_a_file_that_is_not_a_convlab_checkpoint(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("not a checkpoint")
    with pytest.raises(ConvlabError, match="is not a readable safetensors checkpoint"):
        export(text)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign))
    with pytest.raises(ConvlabError, match="is a safetensors file but not a convlab checkpoint"):
        export(foreign)


def test_an_untrained_checkpoint_is_refused_unless_allowed(make_checkpoint):
    checkpoint = make_checkpoint("lenet5", 1, 32, trained=False)
    with pytest.raises(
        ConvlabError, match=r"records no training \(no epoch and metrics\).*--allow-untrained"
    ):
        export(checkpoint)
    assert not (checkpoint.parent / "best.onnx").exists()

    result = export(checkpoint, format="torchscript", allow_untrained=True)
    assert result.path.is_file() and result.max_abs_diff <= 1e-4


def test_an_unknown_format_lists_the_accepted_ones(make_checkpoint):
    checkpoint = make_checkpoint()
    with pytest.raises(ConvlabError, match=r"Unknown export format 'tflite'\. Accepted: onnx, torchscript\."):
        export(checkpoint, format="tflite")
    with pytest.raises(ConvlabError, match=r"Unknown export format 'onnxx'; did you mean onnx\?"):
        export(checkpoint, format="onnxx")


def test_options_that_do_not_fit(make_checkpoint):
    checkpoint = make_checkpoint()
    with pytest.raises(ConvlabError, match=r"ONNX opset 9 is not supported; accepted: 18 to \d+\."):
        export(checkpoint, opset=9)
    with pytest.raises(ConvlabError, match="--opset applies to ONNX only"):
        export(checkpoint, format="torchscript", opset=18)
    with pytest.raises(ConvlabError, match=r"'.*model\.pt' does not end in \.onnx"):
        export(checkpoint, out=checkpoint.parent / "model.pt")
    with pytest.raises(ConvlabError, match="--check-samples must be an integer of at least 2"):
        export(checkpoint, check_samples=1)


def test_a_record_without_preprocessing_cannot_be_exported(make_checkpoint):
    checkpoint = make_checkpoint()
    model, record = load_checkpoint(checkpoint)
    record.input = None
    with pytest.raises(ConvlabError, match=r"records no input channels, size, mean, std"):
        export_model(model, record, "onnx", checkpoint.parent / "model.onnx")


def test_an_operator_onnx_cannot_express_names_the_operator_and_the_model(make_checkpoint):
    checkpoint = make_checkpoint()
    model, record = load_checkpoint(checkpoint)
    model.register_forward_hook(lambda module, inputs, logits: torch.special.bessel_j0(logits))
    out = checkpoint.parent / "model.onnx"
    with pytest.raises(
        ConvlabError,
        match=r"Model 'lenet5' cannot be exported to ONNX: operator prims\.bessel_j0 "
        r"has no ONNX translation in torch .* at the default opset; try --format torchscript instead\.",
    ):
        export_model(model, record, "onnx", out)
    assert list(out.parent.iterdir()) == [checkpoint]


@pytest.mark.parametrize(("fmt", "name"), [("onnx", "model.onnx"), ("torchscript", "model.torchscript.pt")])
def test_an_export_that_disagrees_with_pytorch_is_never_moved_into_place(make_checkpoint, fmt, name):
    checkpoint = make_checkpoint()
    model, record = load_checkpoint(checkpoint)
    # noise drawn at run time: the exported file draws other numbers than PyTorch, as a broken translation would
    model.register_forward_hook(lambda module, inputs, logits: logits + torch.rand_like(logits))
    out = checkpoint.parent / name

    with pytest.raises(ConvlabError, match=rf"The {fmt} export of 'lenet5' disagrees with PyTorch") as caught:
        export_model(model, record, fmt, out)

    figure, limit = re.search(r"max \|logit difference\| (\S+) > (\S+)", str(caught.value)).groups()
    assert 1e-2 < float(figure) <= 1.0  # |difference of two uniform [0, 1) draws| < 1, printed to 3 digits
    assert 1e-4 <= float(limit) < 1e-2
    assert "on 16 test images of digits" in str(caught.value)
    assert list(out.parent.iterdir()) == [checkpoint]  # neither the file nor its temporary survives
