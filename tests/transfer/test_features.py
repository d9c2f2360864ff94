"""Features from the penultimate layer, and the linear probe on real Fashion-MNIST images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from convlab import ConvlabError, create_model
from convlab.checkpoint import load_checkpoint, save_checkpoint
from convlab.cli import main
from convlab.evaluation import evaluate, evaluate_model
from convlab.transfer import extract_features, linear_probe

FASHION_LIMIT = 1000  # as the fashion fixture
CIFAR_RECORD = {
    "classes": [f"class{i}" for i in range(10)],
    "input": {"channels": 3, "size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3},
}


@pytest.fixture(scope="module")
def cifar_checkpoint(tmp_path_factory):
    """A CIFAR ResNet-20 checkpoint (3 channels, 10 classes) to reuse on gray Fashion-MNIST."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("run") / "best.safetensors"
    save_checkpoint(path, create_model("resnet20", num_classes=10), CIFAR_RECORD)
    return path


def test_features_are_the_classifiers_input(fashion):
    model = create_model("resnet20", num_classes=10, in_chans=1)
    features, labels = extract_features(model, fashion, "val", batch_size=64)
    assert features.shape == (100, 64) and features.dtype == np.float32  # ResNet-20's last stage has 64 maps
    assert labels.tolist() == fashion.labels("val").tolist()
    images = torch.cat([x for x, _ in fashion.loader("val", 100)])
    with torch.no_grad():
        logits = model.eval()(images)
    torch.testing.assert_close(model.fc(torch.from_numpy(features)), logits, atol=1e-5, rtol=1e-5)


def test_a_1x1_convolution_classifier_gives_position_averaged_features(fashion):
    model = create_model("nin", num_classes=10, in_chans=1)
    features, _ = extract_features(model, fashion, "val")
    assert features.shape == (100, 192)  # NiN's last mlpconv reads 192 maps (Lin et al. 2013, CIFAR-10 net)


@pytest.mark.slow
def test_linear_probe_saves_a_normal_model_that_predicts_what_sklearn_predicts(
    fashion, cifar_checkpoint, tmp_path
):
    # what the bundle cannot say about itself, for `convlab eval` to rebuild the same val split
    split_options = {"data": {"val_split": 0.1, "seed": 0}, "config": {"limit": FASHION_LIMIT}}
    model, record = linear_probe(
        cifar_checkpoint,
        fashion,
        C=1.0,
        max_iter=500,
        out=tmp_path / "probe.safetensors",
        extra_record=split_options,
    )
    assert record.transfer["notes"] == [
        "first layer conv1: 3 -> 1 input channels (summed over the input channels)",
        "head fc: 10 classes, newly initialised",
    ]
    assert record.transfer["features"] == 64 and record.transfer["train_images"] == 900
    assert record.transfer["converged"]

    loaded, stored = load_checkpoint(tmp_path / "probe.safetensors")  # no scikit-learn needed from here on
    assert stored.classes == fashion.classes and stored.input.channels == 1
    # the same scikit-learn fit on the same features, outside convlab
    train_x, train_y = extract_features(loaded, fashion, "train")
    scaler = StandardScaler().fit(train_x)
    reference = LogisticRegression(C=1.0, max_iter=500).fit(scaler.transform(train_x), train_y)
    val_x, val_y = extract_features(loaded, fashion, "val")
    expected = reference.predict(scaler.transform(val_x))

    images = torch.cat([x for x, _ in fashion.loader("val", 100)])
    with torch.no_grad():
        predicted = loaded(images).argmax(dim=1).numpy()
    assert predicted.tolist() == expected.tolist()
    accuracy = float((expected == val_y).mean())
    assert (
        evaluate_model(loaded, fashion, "val").top1 == pytest.approx(accuracy) == record.metrics["val_top1"]
    )
    assert evaluate(tmp_path / "probe.safetensors", split="val", write=False).top1 == pytest.approx(accuracy)
    assert accuracy > 0.5  # random ResNet-20 features still separate Fashion-MNIST well above chance (0.1)


def test_a_network_that_transforms_its_class_scores_cannot_take_a_linear_probe(fashion):
    nin = create_model("nin", num_classes=10, in_chans=1)  # ReLU after its classifier convolution
    with pytest.raises(
        ConvlabError,
        match="Model 'nin' transforms its classifier's output .* so a linear probe "
        "cannot be written into it; fine-tune its head instead",
    ):
        linear_probe(nin, fashion, max_iter=20)


def test_convlab_features_writes_an_npz_per_split(fashion, cifar_checkpoint, tmp_path, capsys):
    out = tmp_path / "feats.npz"
    status = main(
        [
            "features",
            str(cifar_checkpoint),
            "--data",
            "fashion-mnist",
            "--split",
            "val",
            "--limit",
            "1000",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert status == 0
    with np.load(out) as saved:
        assert sorted(saved.files) == ["classes", "features_val", "labels_val"]
        assert saved["features_val"].shape == (100, 64) and saved["features_val"].dtype == np.float32
        assert saved["labels_val"].tolist() == fashion.labels("val").tolist()
        assert saved["classes"].tolist() == fashion.classes
    assert f"{out}: features val 100 x 64" in capsys.readouterr().out

    assert main(["features", str(tmp_path / "missing.pth"), "--data", "fashion-mnist"]) == 2
    assert "No weights at" in capsys.readouterr().err
