"""The real Fashion-MNIST, from Debian's dataset-fashion-mnist in /usr/share/datasets."""

import pytest
import torch

from convlab.data import DataBundle, load_data
from convlab.errors import ConvlabError


@pytest.fixture(scope="module")
def fashion(fashion_mnist, tmp_path_factory):
    # An empty data_root: the files must come from the system location, never from a download.
    return fashion_mnist(data_root=tmp_path_factory.mktemp("empty-root"))


def test_fashion_mnist_is_found_in_the_system_location(fashion):
    assert isinstance(fashion, DataBundle)
    assert "/usr/share/datasets/fashion-mnist" in fashion.source
    assert "dataset-fashion-mnist" in fashion.source


def test_fashion_mnist_sizes_classes_and_shape(fashion):
    # Xiao et al. 2017: 60,000 training and 10,000 test images, 28x28 gray, 10 classes.
    assert fashion.splits() == ["train", "val", "test"]
    assert fashion.size("train") + fashion.size("val") == 60000
    assert fashion.size("val") == 6000
    assert fashion.size("test") == 10000
    assert fashion.classes == [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    assert fashion.in_chans == 1 and fashion.image_size == (28, 28)


def test_fashion_mnist_statistics_are_those_of_the_training_split(fashion):
    # The commonly quoted Fashion-MNIST normalisation: mean 0.2860, std 0.3530 (full training set).
    assert fashion.mean[0] == pytest.approx(0.2860, abs=0.002)
    assert fashion.std[0] == pytest.approx(0.3530, abs=0.002)


def test_validation_split_is_stratified_and_disjoint(fashion):
    # 6,000 training images per class, 10% of each held out: exactly 600 per class.
    assert torch.bincount(fashion.labels("val"), minlength=10).tolist() == [600] * 10
    assert torch.bincount(fashion.labels("train"), minlength=10).tolist() == [5400] * 10
    assert torch.bincount(fashion.labels("test"), minlength=10).tolist() == [1000] * 10
    train_idx, val_idx = fashion._split_indices["train"], fashion._split_indices["val"]
    assert len(set(train_idx.tolist()) & set(val_idx.tolist())) == 0


def test_the_same_seed_gives_the_same_split_and_another_seed_another(fashion):
    again = load_data("fashion-mnist", seed=0, limit=2000)
    other = load_data("fashion-mnist", seed=1, limit=2000)
    same = load_data("fashion-mnist", seed=0, limit=2000)
    assert torch.equal(again._split_indices["val"], same._split_indices["val"])
    assert not torch.equal(again._split_indices["val"], other._split_indices["val"])


def test_loader_batches_are_normalised_and_follow_labels_order(fashion):
    loader = fashion.loader("test", 1000)
    assert len(loader) == 10
    images, labels = next(iter(loader))
    assert images.shape == (1000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert torch.equal(labels, fashion.labels("test")[:1000])
    # Normalised with the training mean/std: the test set is close to zero mean, unit std.
    assert images.mean().item() == pytest.approx(0.0, abs=0.05)
    assert images.std().item() == pytest.approx(1.0, abs=0.05)
    # The first test image of Fashion-MNIST is an ankle boot (label 9), the second a pullover (2).
    assert labels[:2].tolist() == [9, 2]


def test_shuffled_epochs_cover_every_image_once(fashion):
    loader = fashion.loader("val", 512, shuffle=True, epoch=3, seed=7)
    labels = torch.cat([y for _, y in loader])
    assert labels.numel() == 6000
    assert torch.equal(torch.sort(labels).values, torch.sort(fashion.labels("val")).values)
    assert not torch.equal(labels, fashion.labels("val"))  # shuffled
    dropped = fashion.loader("val", 512, drop_last=True)
    assert len(dropped) == 6000 // 512 and sum(len(y) for _, y in dropped) == 11 * 512


def test_limit_keeps_a_stratified_subset():
    small = load_data("fashion-mnist", limit=500, seed=3)
    assert small.size("train") + small.size("val") == 500
    assert torch.bincount(small.labels("val"), minlength=10).tolist() == [5] * 10
    assert small.size("test") == 10000  # the official test split is never cut


def test_resized_and_with_channels_convert_once(fashion_mnist):
    fashion = fashion_mnist(limit=1000)
    rgb32 = fashion.resized((32, 32)).with_channels(3)
    assert rgb32.image_size == (32, 32) and rgb32.in_chans == 3
    images, _ = next(iter(rgb32.loader("test", 4)))
    assert images.shape == (4, 3, 32, 32)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])
    assert rgb32.mean == (pytest.approx(fashion.mean[0], abs=0.003),) * 3
    assert rgb32.size("val") == fashion.size("val")


def test_unknown_split_is_a_clear_error(fashion):
    with pytest.raises(
        ConvlabError, match="Split 'validation' is not in fashion-mnist; it has train, val, test"
    ):
        fashion.loader("validation", 8)
