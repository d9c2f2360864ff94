"""convlab.export: ONNX and TorchScript files with a dynamic batch axis and the checkpoint's record inside."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import convlab
from convlab.checkpoint import load_checkpoint
from convlab.exporting import OnnxClassifier, export, load_torchscript

from .conftest import digits

DIGITS = [str(d) for d in range(10)]


def test_onnx_export_of_a_run_folder_stores_the_record_and_passes_the_check(make_checkpoint):
    checkpoint = make_checkpoint("lenet5", 1, 32)
    run = checkpoint.parent

    result = export(run)

    assert result.path == run / "model.onnx" and result.path.is_file()
    assert (result.format, result.model, result.source) == ("onnx", "lenet5", str(checkpoint))
    # 16 real test images of the recorded data, a single image first, then batches of 8
    assert result.inputs == "16 test images of digits"
    assert (result.samples, result.batch_sizes) == (16, [1, 8, 7])
    assert result.max_abs_diff <= 1e-4 and result.mean_abs_diff <= result.max_abs_diff

    model = onnx.load(str(result.path))
    assert model.opset_import[0].version == result.opset >= 18
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 1, 32, 32]
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["classes"]) == DIGITS
    assert props["input_size"] == "1x32x32" and props["model"] == "lenet5"
    assert props["convlab_version"] == convlab.__version__
    bundle = digits(1, 32)
    assert json.loads(props["mean"]) == list(bundle.mean) and json.loads(props["std"]) == list(bundle.std)
    record = json.loads(props["convlab"])
    assert (
        record["model"]["name"] == "lenet5"
        and record["epoch"] == 1
        and record["metrics"] == {"val_top1": 0.1}
    )
    assert record["export"] == {
        "format": "onnx",
        "opset": result.opset,
        "source": str(checkpoint),
        "convlab_version": convlab.__version__,
    }
    assert "Checked against PyTorch on 16 test images of digits, in batches of 1, 8, 7" in result.describe()


def test_torchscript_export_keeps_the_record_as_an_extra_file(make_checkpoint):
    checkpoint = make_checkpoint("lenet5", 1, 32)

    result = export(checkpoint.parent, format="torchscript")

    assert result.path == checkpoint.parent / "model.torchscript.pt" and result.opset is None
    assert result.max_abs_diff <= 1e-4
    module, record = load_torchscript(result.path)
    assert record.classes == DIGITS and record.input.size == (32, 32)
    assert record.export["format"] == "torchscript"
    model, _ = load_checkpoint(checkpoint)
    for batch in (1, 5):  # the trace does not bake in the batch size it was traced with (2)
        images = torch.randn(batch, 1, 32, 32)
        with torch.no_grad():
            assert torch.allclose(module(images), model(images), atol=1e-5)


def test_a_loose_checkpoint_exports_next_to_itself_at_the_opset_asked_for(make_checkpoint):
    checkpoint = make_checkpoint("lenet5", 1, 32, folder="models", file="lenet.safetensors")

    result = export(checkpoint, opset=18)

    assert result.path == checkpoint.parent / "lenet.onnx"
    assert onnx.load(str(result.path)).opset_import[0].version == 18


def test_without_the_data_the_check_uses_seeded_random_images(make_checkpoint, tmp_path):
    missing = make_checkpoint("lenet5", 1, 32, folder="a", data={"name": "cifar10"})
    result = export(missing, format="torchscript", data_root=tmp_path / "empty", check_samples=4)
    assert (
        result.inputs
        == "4 seeded random images normalised like the data (data set 'cifar10' is not on this machine)"
    )
    assert result.batch_sizes == [1, 3] and result.max_abs_diff <= 1e-4

    unnamed = make_checkpoint("lenet5", 1, 32, folder="b", data={})
    result = export(unnamed, format="torchscript", check_samples=4)
    assert result.inputs.startswith("4 seeded random images") and "names no data set" in result.inputs


def test_convlab_export_stays_callable_after_its_submodules_are_imported(make_checkpoint):
    import convlab.exporting.runtime  # noqa: F401  (binds the package to the name convlab.export)

    checkpoint = make_checkpoint("lenet5", 1, 32)
    result = convlab.export(checkpoint, format="torchscript", check_samples=2)
    assert result.path.name == "best.torchscript.pt" and result.batch_sizes == [1, 1]


# The representative set of the zoo at small inputs: plain, very deep, residual, inception (with auxiliary
# heads in training) and inverted-residual networks, in both formats.
ZOO = [
    ("lenet5", 1, 32),
    ("vgg11", 3, 32),
    ("resnet18", 3, 32),
    ("googlenet", 3, 64),
    ("mobilenet_v2", 3, 32),
]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize(("name", "channels", "size"), ZOO, ids=[z[0] for z in ZOO])
def test_zoo_models_export_and_agree_with_pytorch(make_checkpoint, name, channels, size, fmt):
    checkpoint = make_checkpoint(name, channels, size)

    result = export(checkpoint.parent, format=fmt)

    assert result.inputs == "16 test images of digits" and result.max_abs_diff <= 1e-4
    model, record = load_checkpoint(checkpoint)
    if fmt == "onnx":
        exported = OnnxClassifier(result.path)
        run = exported.predict_logits
    else:
        module, _ = load_torchscript(result.path)
        run = module
    bundle = digits(channels, size)
    images, _ = next(iter(bundle.loader("test", 6)))
    for batch in (images[:1], images[1:6]):
        with torch.no_grad():
            expected = model(batch)  # eval mode: GoogLeNet's auxiliary heads are off, logits only
            produced = torch.as_tensor(np.asarray(run(batch)))
        assert produced.shape == (len(batch), 10)
        assert expected.abs().max() > 1.0  # logits of a trained network's size, so 1e-4 means something
        assert (produced - expected).abs().max() <= 1e-4
        assert torch.equal(produced.argmax(1), expected.argmax(1))


def test_export_model_ships_an_in_memory_model_and_leaves_it_as_it_was(make_checkpoint):
    from convlab.exporting import export_model

    checkpoint = make_checkpoint("lenet5", 1, 32)
    model, record = load_checkpoint(checkpoint)
    model.train()  # as at the end of a training loop

    result = export_model(model, record, "torchscript", checkpoint.parent / "lenet.pt", check_samples=3)

    assert model.training and result.path.is_file() and result.source is None
    assert (result.samples, result.batch_sizes, result.max_abs_diff) == (3, [1, 2], 0.0)
