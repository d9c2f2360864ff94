"""evaluate_model and convlab.evaluate on a small MLP trained on Fashion-MNIST, and test-time augmentation."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convlab
from convlab.checkpoint import save_checkpoint
from convlab.evaluation import evaluate, evaluate_model, tta_probabilities
from convlab.evaluation.evaluate import input_correction_for
from convlab.evaluation.tta import shift_views, ten_crop_views
from convlab.record import InputSpec
from tests.helpers import PNG_SIGNATURE


def test_evaluate_model_measures_a_trained_mlp_on_the_test_split(trained_mlp, fashion):
    result = evaluate_model(trained_mlp, fashion, "test", batch_size=1000)

    # the same figures by hand, one batch at a time
    with torch.no_grad():
        batches = [(trained_mlp(x), y) for x, y in fashion.loader("test", 1000)]
    logits = torch.cat([b[0] for b in batches])
    targets = torch.cat([b[1] for b in batches])
    assert result.n == len(targets) == 10_000
    assert result.top1 == (logits.argmax(1) == targets).sum().item() / 10_000
    assert result.loss == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-5)
    assert 0.72 < result.top1 < 0.95  # chance is 0.10; 300 steps on 1,800 images reach about 0.80
    assert result.top5 > 0.97 and result.top5 >= result.top1
    assert result.top5_k == 5
    assert sum(map(sum, result.confusion)) == 10_000
    assert [row["support"] for row in result.per_class] == torch.bincount(targets, minlength=10).tolist()
    assert sum(result.confusion[i][i] for i in range(10)) == round(result.top1 * 10_000)
    document = result.to_dict()
    assert document["error"] == pytest.approx(1 - result.top1)
    assert {"top1", "top5", "loss", "n", "per_class", "confusion", "top5_error"} <= set(document)


def test_evaluate_model_restores_the_previous_mode(trained_mlp, fashion):
    model = convlab.create_model("mlp", num_classes=10, in_chans=1, dropout=0.5)
    model.train()
    first = evaluate_model(model, fashion, "val")
    assert model.training
    second = evaluate_model(model, fashion, "val")  # dropout off during evaluation: identical figures
    assert (first.top1, first.loss) == (second.top1, second.loss)
    trained_mlp.eval()
    evaluate_model(trained_mlp, fashion, "val")
    assert not trained_mlp.training


def test_evaluate_model_rejects_a_model_with_another_number_of_classes(fashion):
    model = convlab.create_model("mlp", num_classes=5, in_chans=1)
    with pytest.raises(
        convlab.ConvlabError, match="predicts 5 classes but data 'fashion-mnist' has 10"
    ) as error:
        evaluate_model(model, fashion, "val")
    assert "\n" not in str(error.value)


def test_unknown_split_and_tta_are_one_line_errors(trained_mlp, fashion, tensor_bundle):
    bundle = tensor_bundle(
        torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.int64), ["a"] * 10, split="val"
    )
    with pytest.raises(convlab.ConvlabError, match="has no 'test' split; it has: val"):
        evaluate_model(trained_mlp, bundle, "test")
    with pytest.raises(
        convlab.ConvlabError, match="Unknown test-time augmentation 'mirror'; accepted: none, flip"
    ):
        evaluate_model(trained_mlp, bundle, "val", tta="mirror")


class MirrorSymmetric(nn.Module):
    """A classifier that sees x + mirror(x): its output for an image and its mirror is bit-identical."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x):
        return self.linear((x + x.flip(-1)).flatten(1))


def test_flip_tta_of_a_mirror_symmetric_model_equals_no_tta(tensor_bundle):
    images, labels = torch.randn(40, 3, 8, 8), torch.randint(0, 4, (40,))
    bundle = tensor_bundle(images, labels, ["a", "b", "c", "d"])
    model = MirrorSymmetric()
    plain = evaluate_model(model, bundle, "val", batch_size=16)
    flipped = evaluate_model(model, bundle, "val", batch_size=16, tta="flip")
    assert flipped.tta == "flip"
    assert flipped.confusion == plain.confusion and flipped.top1 == plain.top1 and flipped.top5 == plain.top5
    assert flipped.loss == pytest.approx(plain.loss, rel=1e-5)
    assert plain.top5_k == 4  # top-5 of four classes is top-4: always right
    assert plain.top5 == 1.0


def test_flip_tta_averages_the_softmax_of_the_image_and_its_mirror():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))  # not symmetric
    images = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        expected = (model(images).softmax(1) + model(images.flip(-1)).softmax(1)) / 2
        assert torch.allclose(tta_probabilities(model, images, "flip"), expected, atol=1e-6)


def test_ten_crop_views_are_corner_and_centre_crops_of_the_enlarged_image_and_their_mirrors():
    images = torch.randn(4, 1, 28, 28)
    views = list(ten_crop_views(images))
    assert len(views) == 10 and all(view.shape == (4, 1, 28, 28) for view in views)
    enlarged = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)  # 28 / 0.875 = 32
    assert torch.equal(views[0], enlarged[..., :28, :28])
    assert torch.equal(views[3], enlarged[..., 4:, 4:])
    assert torch.equal(views[4], enlarged[..., 2:30, 2:30])  # centre
    for crop, mirror in zip(views[:5], views[5:], strict=True):
        assert torch.equal(mirror, crop.flip(-1))


def test_shift_views_are_the_image_and_its_mirror_moved_one_pixel_each_way():
    images = torch.randn(3, 2, 6, 7)
    views = list(shift_views(images))
    assert len(views) == 10 and all(view.shape == images.shape for view in views)
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")  # an uncovered border repeats the edge pixels
    # view[i, j] = image[i + dy, j + dx]: at rest, then (dy, dx) = (-1, 0), (1, 0), (0, -1), (0, 1)
    for (dy, dx), view, mirror in zip(
        [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], views[::2], views[1::2], strict=True
    ):
        assert torch.equal(view, padded[..., 1 + dy : 7 + dy, 1 + dx : 8 + dx])
        assert torch.equal(mirror, view.flip(-1))
    assert torch.equal(views[0], images)


@pytest.mark.parametrize("tta, views_of", [("tencrop", ten_crop_views), ("shift", shift_views)])
def test_multi_view_tta_averages_the_softmax_of_its_views(trained_mlp, fashion, tta, views_of):
    images, _ = next(iter(fashion.loader("val", 8)))
    probabilities = tta_probabilities(trained_mlp, images, tta)
    assert probabilities.shape == (8, 10)
    assert torch.allclose(probabilities.sum(1), torch.ones(8), atol=1e-5)
    result = evaluate_model(trained_mlp, fashion, "val", tta=tta)
    images, labels = next(iter(fashion.loader("val", 200)))
    with torch.no_grad():
        by_hand = torch.stack([trained_mlp(view).softmax(1) for view in views_of(images)]).mean(0)
    assert result.n == 200 and result.tta == tta
    assert result.top1 == (by_hand.argmax(1) == labels).sum().item() / 200
    assert result.loss == pytest.approx(F.nll_loss(by_hand.log(), labels).item(), rel=1e-5)
    # an MLP is not translation invariant: views shifted by up to 4 px and enlarged 8/7 cost it accuracy,
    # yet it stays far above chance (0.10); shifts of one pixel cost it little
    assert result.top1 > (0.3 if tta == "tencrop" else 0.6)


def test_bf16_autocast_gives_nearly_the_same_accuracy(trained_mlp, fashion):
    plain = evaluate_model(trained_mlp, fashion, "val")
    mixed = evaluate_model(trained_mlp, fashion, "val", amp="bf16")
    assert abs(mixed.top1 - plain.top1) <= 0.02
    assert mixed.loss == pytest.approx(plain.loss, rel=0.05)


def test_input_correction_renormalises_to_the_checkpoint_statistics(tensor_bundle):
    bundle = tensor_bundle(torch.zeros(1, 3, 2, 2), torch.zeros(1, dtype=torch.int64), ["a"])
    bundle.mean, bundle.std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    stored = InputSpec(channels=3, size=(2, 2), mean=(0.4, 0.4, 0.4), std=(0.25, 0.25, 0.25))
    scale, shift = input_correction_for(bundle, stored)
    raw = torch.rand(3)
    from_bundle = (raw - torch.tensor(bundle.mean)) / torch.tensor(bundle.std)
    assert torch.allclose(from_bundle * scale + shift, (raw - 0.4) / 0.25, atol=1e-6)
    assert (
        input_correction_for(bundle, InputSpec(channels=3, size=(2, 2), mean=bundle.mean, std=bundle.std))
        is None
    )


def test_evaluate_rebuilds_the_training_validation_split_and_writes_its_files(
    run_folder, trained_mlp, fashion
):
    result = evaluate(run_folder, split="val", device="cpu")
    direct = evaluate_model(trained_mlp, fashion, "val")
    assert result.n == 200  # 10% of the 2,000 images kept for training
    assert (result.top1, result.confusion) == (direct.top1, direct.confusion)
    assert result.checkpoint.endswith("best.safetensors")
    written = json.loads((run_folder / "eval-val.json").read_text())
    assert written["top1"] == result.top1 and written["confusion"] == result.confusion
    assert (run_folder / "confusion-val.png").read_bytes().startswith(PNG_SIGNATURE)


def test_evaluate_a_checkpoint_file_outside_a_run_folder_writes_nothing(tmp_path, trained_mlp, record):
    checkpoint = save_checkpoint(tmp_path / "mlp.safetensors", trained_mlp, record)
    result = evaluate(checkpoint, split="val", device="cpu", tta="flip")
    assert result.n == 200 and result.top1 > 0.6 and result.tta == "flip"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.safetensors"]


def test_evaluate_rejects_data_with_another_number_of_classes(tmp_path, record):
    model = convlab.create_model("mlp", num_classes=5, in_chans=1)
    checkpoint = save_checkpoint(tmp_path / "five.safetensors", model, {**record, "classes": list("abcde")})
    with pytest.raises(convlab.ConvlabError, match="has 10 classes but the model in .* predicts 5") as error:
        evaluate(checkpoint, device="cpu")
    assert "\n" not in str(error.value)


def test_evaluate_a_missing_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(convlab.ConvlabError, match="No checkpoint at") as error:
        evaluate(tmp_path / "nothing.safetensors")
    assert "\n" not in str(error.value)


def test_evaluating_a_training_run_reproduces_its_validation_figures(tmp_path):
    run = tmp_path / "run"
    trained = convlab.train(
        model="mlp", data="fashion-mnist", epochs=1, limit=500, optimizer="adam", out=str(run), device="cpu"
    )
    result = evaluate(run, split="val", device="cpu")
    history = trained.history[-1]
    assert result.n == 50  # 10% of the 500 images the run kept
    assert result.top1 == history["val_top1"]
    assert result.loss == pytest.approx(history["val_loss"], rel=1e-5)
    assert "Best epoch: **1**" in (run / "report.md").read_text()
    assert json.loads((run / "eval-val.json").read_text())["n"] == 50
