"""OnnxClassifier: an exported .onnx file with its classes and preprocessing, run by onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from convlab.checkpoint import load_checkpoint
from convlab.data import normalize, read_image
from convlab.errors import ConvlabError
from convlab.exporting import OnnxClassifier, export, load_exported
from convlab.prediction import predict, predict_tensors

from .conftest import digits


def test_the_classifier_reads_classes_and_preprocessing_from_the_file(lenet_onnx):
    checkpoint, result = lenet_onnx
    classifier = OnnxClassifier(result.path)

    bundle = digits(1, 32)
    assert classifier.classes == [str(d) for d in range(10)]
    assert (classifier.channels, classifier.size) == (1, (32, 32))
    assert classifier.mean == bundle.mean and classifier.std == bundle.std
    assert (classifier.input_name, classifier.output_name) == ("input", "logits")
    assert classifier.record.model.name == "lenet5" and classifier.record.export["format"] == "onnx"
    assert "CPUExecutionProvider" in classifier.providers


def test_predict_logits_takes_numpy_torch_and_single_images(lenet_onnx):
    checkpoint, result = lenet_onnx
    classifier = OnnxClassifier(result.path)
    model, _ = load_checkpoint(checkpoint)
    images, _ = next(iter(digits(1, 32).loader("test", 5)))
    with torch.no_grad():
        expected = model(images).numpy()

    from_torch = classifier.predict_logits(images)
    from_numpy = classifier.predict_logits(images.numpy())
    single = classifier.predict_logits(images[0])

    assert from_torch.dtype == np.float32 and from_torch.shape == (5, 10)
    assert np.abs(from_torch - expected).max() <= 1e-4
    assert np.array_equal(from_numpy, from_torch)
    assert single.shape == (1, 10) and np.abs(single[0] - expected[0]).max() <= 1e-4


def test_a_thread_count_reaches_the_session_and_keeps_the_answers(lenet_onnx):
    path = lenet_onnx[1].path
    one = OnnxClassifier(path, threads=1)
    assert one.session.get_session_options().intra_op_num_threads == 1
    images, _ = next(iter(digits(1, 32).loader("test", 8)))
    assert np.allclose(one.predict_logits(images), OnnxClassifier(path).predict_logits(images), atol=1e-6)
    with pytest.raises(ConvlabError, match="threads must be at least 1"):
        OnnxClassifier(path, threads=0)


def test_a_batch_of_the_wrong_shape_is_refused(lenet_onnx):
    classifier = OnnxClassifier(lenet_onnx[1].path)
    with pytest.raises(ConvlabError, match=r"takes batches of N x 1 x 32 x 32 .*got shape 4 x 3 x 32 x 32"):
        classifier.predict_logits(np.zeros((4, 3, 32, 32), dtype=np.float32))


def test_files_that_are_not_convlab_onnx_exports(tmp_path):
    with pytest.raises(ConvlabError, match="No ONNX file at"):
        OnnxClassifier(tmp_path / "missing.onnx")
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(ConvlabError, match="is not an ONNX model onnxruntime can load"):
        OnnxClassifier(text)
    # a valid ONNX graph (y = x) written by someone else: no "convlab" metadata
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(foreign))
    with pytest.raises(ConvlabError, match="is an ONNX model but not one exported by convlab"):
        OnnxClassifier(foreign)


def test_an_image_file_gets_the_same_prediction_as_from_the_checkpoint(lenet_onnx, tmp_path):
    """What `convlab predict model.onnx digit.png` does: read, convert and normalise with the stored spec."""
    checkpoint, result = lenet_onnx
    bundle = digits(1, 32)
    image, _ = next(iter(bundle.loader("test", 1)))
    gray = ((image[0, 0] * bundle.std[0] + bundle.mean[0]) * 255).round().clamp(0, 255).to(torch.uint8)
    png = tmp_path / "digit.png"
    Image.fromarray(gray.numpy()).convert("RGB").resize((64, 64)).save(png)  # predict takes any mode and size

    classifier = OnnxClassifier(result.path)
    stored = classifier.record.input.to_dict()
    batch = normalize(
        read_image(png, stored["channels"], tuple(stored["size"]))[None], stored["mean"], stored["std"]
    )
    probabilities = torch.as_tensor(classifier.predict_logits(batch)).softmax(-1)[0]
    top = probabilities.topk(5)

    expected = predict(checkpoint, [png], topk=5, device="cpu")[0]["predictions"]
    assert [classifier.classes[i] for i in top.indices] == [p["label"] for p in expected]
    assert np.allclose(top.values.numpy(), [p["probability"] for p in expected], atol=1e-5)

    from_file = predict(result.path, [png], topk=5, device="cpu")[0][
        "predictions"
    ]  # `convlab predict model.onnx`
    assert [p["label"] for p in from_file] == [p["label"] for p in expected]
    assert np.allclose([p["probability"] for p in from_file], [p["probability"] for p in expected], atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_load_exported_gives_a_module_that_prediction_code_runs_like_a_checkpoint(lenet_onnx, fmt, tmp_path):
    checkpoint, result = lenet_onnx
    path = (
        result.path if fmt == "onnx" else export(checkpoint, format="torchscript", out=tmp_path / "m.pt").path
    )
    module, record = load_exported(path)
    model, _ = load_checkpoint(checkpoint)
    images, _ = next(iter(digits(1, 32).loader("test", 4)))

    exported = predict_tensors(module, images, record.classes, topk=3)
    expected = predict_tensors(model, images, record.classes, topk=3)

    assert [[p["label"] for p in row] for row in exported] == [[p["label"] for p in row] for row in expected]
    assert np.allclose(
        [[p["probability"] for p in row] for row in exported],
        [[p["probability"] for p in row] for row in expected],
        atol=1e-5,
    )
    with pytest.raises(ConvlabError, match=r"is not an exported model; accepted: \.onnx .* or \.pt/\.pth"):
        load_exported(checkpoint)
