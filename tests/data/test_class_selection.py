"""Choosing classes and a number of labelled images per class: Fashion-MNIST 5-9 as a task of its own."""

import pytest
import torch

from convlab.data import load_data
from convlab.data.registry import FASHION_MNIST_CLASSES
from convlab.errors import ConvlabError
from convlab.training.config import resolve_config

FASHION = list(FASHION_MNIST_CLASSES)


def pixels(bundle, split):
    """The split's images back on the 0-255 scale, in loader order."""
    images, _ = next(iter(bundle.loader(split, bundle.size(split))))
    return (
        images * torch.tensor(bundle.std).view(1, -1, 1, 1) + torch.tensor(bundle.mean).view(1, -1, 1, 1)
    ) * 255


def test_classes_5_to_9_are_a_five_class_set_with_the_full_test_split(fashion_mnist):
    shoes = load_data("fashion-mnist", classes="5,6,7,8,9", download=False)
    assert shoes.classes == FASHION[5:]
    # 6,000 training images per class, 10% of each held out; the official test split keeps its 1,000 per class
    assert torch.bincount(shoes.labels("train")).tolist() == [5400] * 5
    assert torch.bincount(shoes.labels("val")).tolist() == [600] * 5
    assert shoes.size("test") == 5000 and torch.bincount(shoes.labels("test")).tolist() == [1000] * 5

    everything = fashion_mnist()
    original = everything.labels("test")
    kept = (original >= 5).nonzero().flatten()
    assert torch.equal(shoes.labels("test"), original[kept] - 5)  # relabelled, in the original order
    assert torch.allclose(pixels(shoes, "test")[:50], pixels(everything, "test")[kept[:50]], atol=1e-3)


def test_classes_by_name_keep_the_order_given():
    two = load_data("fashion-mnist", classes=["Bag", "Sandal"], limit_per_class=20, download=False)
    assert two.classes == ["Bag", "Sandal"]
    assert torch.bincount(two.labels("test")).tolist() == [1000, 1000]
    assert torch.bincount(two.labels("train")).tolist() == [18, 18] and two.size("val") == 4


def test_limit_per_class_is_the_number_of_labelled_images_of_each_class():
    for per_class in (10, 50, 500):
        subset = load_data(
            "fashion-mnist", classes="5,6,7,8,9", limit_per_class=per_class, val_split=0, download=False
        )
        assert torch.bincount(subset.labels("train")).tolist() == [per_class] * 5
        assert subset.splits() == ["train", "test"]  # val_split 0: every labelled image trains
    again = load_data("fashion-mnist", classes="5,6,7,8,9", limit_per_class=10, val_split=0, download=False)
    other = load_data(
        "fashion-mnist", classes="5,6,7,8,9", limit_per_class=10, val_split=0, seed=1, download=False
    )
    first = load_data("fashion-mnist", classes="5,6,7,8,9", limit_per_class=10, val_split=0, download=False)
    assert torch.equal(pixels(again, "train"), pixels(first, "train"))
    assert not torch.equal(pixels(other, "train"), pixels(first, "train"))


def test_bad_class_choices_name_what_is_accepted():
    with pytest.raises(
        ConvlabError,
        match=r"Class 'Boots' is not in fashion-mnist; give numbers 0-9 or names "
        r"\(0 T-shirt/top, .*9 Ankle boot\)",
    ):
        load_data("fashion-mnist", classes="Boots", download=False)
    with pytest.raises(ConvlabError, match="Class '12' is not in fashion-mnist"):
        load_data("fashion-mnist", classes=[5, 12], download=False)
    with pytest.raises(ConvlabError, match=r"Class 'Bag' \(Bag\) is chosen twice"):
        load_data("fashion-mnist", classes="8,Bag", download=False)
    with pytest.raises(ConvlabError, match="limit_per_class=1 keeps too few images per class"):
        load_data("fashion-mnist", classes="5,6", limit_per_class=1, download=False)
    with pytest.raises(ConvlabError, match=r"Give limit \(100 images in all\) or limit_per_class"):
        load_data("fashion-mnist", limit=100, limit_per_class=10, download=False)


def test_a_folder_set_reads_only_the_chosen_class_folders(tmp_path):
    from PIL import Image

    for label, name in enumerate(["cat", "dog", "owl"]):
        (tmp_path / name).mkdir()
        for k in range(6):
            Image.new("L", (8, 8), 40 * label + k).save(tmp_path / name / f"{k}.png")
    folder = load_data(str(tmp_path), classes="owl,cat", limit_per_class=4, val_split=0.25)
    assert folder.classes == ["owl", "cat"]
    assert torch.bincount(folder.labels("train")).tolist() == [3, 3]
    assert torch.bincount(folder.labels("val")).tolist() == [1, 1]
    owl_pixels = pixels(folder, "train")[folder.labels("train") == 0]
    assert owl_pixels.round().unique().min() >= 80  # owl images are 80..85, cats 0..5


def test_training_settings_read_classes_and_refuse_two_limits():
    assert resolve_config(classes="5,6,Bag").classes == [5, 6, "Bag"]
    assert resolve_config({"classes": [5, 6], "limit-per-class": 50}).limit_per_class == 50
    with pytest.raises(
        ConvlabError,
        match=r"limit \(--limit\) keeps 1000 images in all and limit_per_class \(--limit-per-class\) 10",
    ):
        resolve_config(limit=1000, limit_per_class=10)
