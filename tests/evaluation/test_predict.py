"""convlab.predict: image files of any mode and size through the preprocessing stored in the checkpoint."""

import pytest
import torch
from PIL import Image

import convlab
from convlab.checkpoint import save_checkpoint
from convlab.data import normalize, read_image
from convlab.prediction import load, predict


@pytest.fixture
def checkpoint(tmp_path, trained_mlp, record):
    return save_checkpoint(tmp_path / "mlp.safetensors", trained_mlp, record)


def _test_images(fashion, count):
    """The first ``count`` test images as uint8 H x W arrays, undoing the loader's normalisation."""
    images, labels = next(iter(fashion.loader("test", count)))
    pixels = (images[:, 0] * fashion.std[0] + fashion.mean[0]) * 255
    return pixels.round().clamp(0, 255).to(torch.uint8).numpy(), images, labels


def test_predicting_files_of_any_mode_and_size_matches_the_model(tmp_path, checkpoint, trained_mlp, fashion):
    pixels, tensors, _ = _test_images(fashion, 5)
    gray = Image.fromarray(pixels[0], mode="L")
    files = [
        tmp_path / "gray.png",
        tmp_path / "rgb-56.png",
        tmp_path / "rgba.png",
        tmp_path / "gray.jpg",
        tmp_path / "rgb-40x20.jpg",
    ]
    gray.save(files[0])
    Image.fromarray(pixels[1], mode="L").convert("RGB").resize((56, 56)).save(files[1])
    Image.fromarray(pixels[2], mode="L").convert("RGBA").save(files[2])
    Image.fromarray(pixels[3], mode="L").save(files[3], quality=95)
    Image.fromarray(pixels[4], mode="L").convert("RGB").resize((20, 40)).save(files[4], quality=95)

    results = predict(checkpoint, files, topk=3, device="cpu")

    # what the model says about the very tensors the stored preprocessing makes of these files
    batch = normalize(torch.stack([read_image(f, 1, (28, 28)) for f in files]), fashion.mean, fashion.std)
    with torch.no_grad():
        expected = trained_mlp(batch).softmax(1)
    assert [r["image"] for r in results] == [str(f) for f in files]
    for result, probabilities in zip(results, expected, strict=True):
        top = probabilities.topk(3)
        assert [p["index"] for p in result["predictions"]] == top.indices.tolist()
        assert [p["label"] for p in result["predictions"]] == [fashion.classes[i] for i in top.indices]
        assert [p["probability"] for p in result["predictions"]] == pytest.approx(
            top.values.tolist(), abs=1e-6
        )
    # a lossless gray PNG at the native size is exactly the test tensor the loader gives
    with torch.no_grad():
        assert results[0]["predictions"][0]["index"] == trained_mlp(tensors[:1]).argmax().item()
    assert torch.allclose(batch[0], tensors[0], atol=1e-5)


def test_topk_is_capped_at_the_classes_and_probabilities_sum_to_one(tmp_path, checkpoint, fashion):
    pixels, _, _ = _test_images(fashion, 1)
    Image.fromarray(pixels[0], mode="L").save(tmp_path / "one.png")
    [result] = predict(checkpoint, tmp_path / "one.png", topk=50)
    probabilities = [p["probability"] for p in result["predictions"]]
    assert len(probabilities) == 10
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert probabilities == sorted(probabilities, reverse=True)
    with pytest.raises(convlab.ConvlabError, match="--topk must be a positive integer, got 0"):
        predict(checkpoint, tmp_path / "one.png", topk=0)


def test_an_unreadable_file_is_named_in_a_one_line_error(tmp_path, checkpoint, fashion):
    pixels, _, _ = _test_images(fashion, 1)
    Image.fromarray(pixels[0], mode="L").save(tmp_path / "shoe.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(convlab.ConvlabError, match="notes.png") as error:
        predict(checkpoint, [tmp_path / "shoe.png", tmp_path / "notes.png"])
    assert "\n" not in str(error.value)

    good, bad = predict(checkpoint, [tmp_path / "shoe.png", tmp_path / "notes.png"], skip_unreadable=True)
    assert len(good["predictions"]) == 5 and "error" not in good
    assert "notes.png" in bad["error"] and "predictions" not in bad


def test_load_rebuilds_the_model_and_its_record(checkpoint, trained_mlp, record):
    model, loaded = convlab.load(checkpoint)
    assert loaded.classes == record["classes"] and loaded.input.to_dict() == {
        **record["input"],
        "resize": "squash",
    }
    assert load is convlab.load
    for name, tensor in trained_mlp.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor)
