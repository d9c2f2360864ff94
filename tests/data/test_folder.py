"""Folder data sets written by the tests with PIL: modes, sizes, bad files, layouts and errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from convlab.data import load_data
from convlab.data.folder import FolderBundle
from convlab.errors import ConvlabError

MODES = [("L", ".png"), ("RGB", ".jpg"), ("RGBA", ".png"), ("P", ".png"), ("CMYK", ".jpg"), ("I;16", ".png")]


def save(path, mode, size=(20, 24), value=None, seed=0):
    """An image of ``mode`` and ``size`` (H, W): random pixels, or a flat colour ``value`` in 0..255."""
    rng = np.random.default_rng(seed)
    height, width = size
    rgb = (
        np.full((height, width, 3), value, dtype=np.uint8)
        if value is not None
        else rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    )
    if mode == "I;16":
        image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    else:
        image = Image.fromarray(rgb).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_classes(root, classes=("cat", "dog", "owl"), per_class=6, size=(20, 24)):
    for label, name in enumerate(classes):
        for k in range(per_class):
            mode, suffix = MODES[(k + label) % len(MODES)]
            save(root / name / f"{k:03d}{suffix}", mode, size, seed=10 * label + k)
    return root


def corrupt_files(folder):
    """A truncated JPEG and a text file named .png."""
    save(folder / "whole.jpg", "RGB")
    data = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "notes.png").write_text("this is not a png")


@pytest.fixture(autouse=True)
def _no_workers(monkeypatch):
    monkeypatch.setenv("CONVLAB_NUM_WORKERS", "0")  # decode in the test process: fast to start


def test_class_folders_of_mixed_modes_and_sizes(tmp_path):
    root = write_classes(tmp_path / "pets", per_class=10)
    save(root / "owl" / "big.png", "RGB", size=(50, 30))  # another size: resized to the common one
    bundle = load_data(str(root), val_split=0.2, seed=1)
    assert isinstance(bundle, FolderBundle)
    assert bundle.classes == ["cat", "dog", "owl"]  # sorted folder names -> labels 0, 1, 2
    assert bundle.image_size == (20, 24)  # the most common size
    assert bundle.in_chans == 3  # some files are in colour
    assert bundle.splits() == ["train", "val"]
    assert bundle.size("train") + bundle.size("val") == 31
    assert torch.bincount(bundle.labels("val"), minlength=3).tolist() == [2, 2, 2]
    assert bundle.skipped == []
    images, labels = next(iter(bundle.loader("train", 64)))
    assert images.shape == (25, 3, 20, 24) and images.dtype == torch.float32
    assert torch.equal(labels, bundle.labels("train"))


def test_statistics_are_exact_for_flat_colours(tmp_path):
    root = tmp_path / "flat"
    for k in range(4):
        save(root / "dark" / f"{k}.png", "RGB", value=51)
        save(root / "light" / f"{k}.png", "RGB", value=204)
    bundle = load_data(str(root), val_split=0.5)
    # Training split: 2 dark (0.2) and 2 light (0.8) images -> mean 0.5, std 0.3 in every channel.
    assert bundle.mean == pytest.approx((0.5, 0.5, 0.5), abs=1e-6)
    assert bundle.std == pytest.approx((0.3, 0.3, 0.3), abs=1e-6)
    gray = bundle.with_channels(1)
    assert gray.mean == pytest.approx((0.5,), abs=1e-6) and gray.std == pytest.approx((0.3,), abs=1e-6)
    images, _ = next(iter(bundle.loader("train", 8)))
    assert images.unique().tolist() == pytest.approx([-1.0, 1.0], abs=1e-5)


def test_conversion_to_gray_and_another_size(tmp_path):
    root = write_classes(tmp_path / "pets")
    bundle = load_data(str(root), image_size=(16, 16), in_chans=1)
    images, _ = next(iter(bundle.loader("val", 4)))
    assert images.shape == (3, 1, 16, 16)
    bigger = bundle.resized((32, 40))
    assert next(iter(bigger.loader("val", 4)))[0].shape == (3, 1, 32, 40)


def test_bad_files_are_skipped_counted_and_reported(tmp_path):
    root = write_classes(tmp_path / "pets", per_class=20)
    corrupt_files(root / "dog")
    bundle = load_data(str(root), max_bad_fraction=0.05)
    skipped = {path.split("/")[-1]: reason for path, reason in bundle.skipped}
    assert set(skipped) == {"truncated.jpg", "notes.png"}
    assert "cannot identify image file" in skipped["notes.png"]
    assert "runcated" in skipped["truncated.jpg"]
    assert bundle.size("train") + bundle.size("val") == 60  # the two bad files are left out
    with pytest.raises(
        ConvlabError, match=r"2 of 62 image files .* cannot be read \(3.2%, more than max_bad_fraction=0.01\)"
    ):
        load_data(str(root), max_bad_fraction=0.01)


def test_train_val_test_folder_layout(tmp_path):
    write_classes(tmp_path / "set" / "train", per_class=4)
    write_classes(tmp_path / "set" / "val", per_class=2)
    write_classes(tmp_path / "set" / "test", per_class=3)
    bundle = load_data(str(tmp_path / "set"), val_split=0.5)  # val_split is not used: val/ exists
    assert bundle.classes == ["cat", "dog", "owl"]
    assert (bundle.size("train"), bundle.size("val"), bundle.size("test")) == (12, 6, 9)
    assert all("/set/test/" in path for path in bundle.files("test"))
    assert bundle.labels("test").tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_train_and_test_folders_get_a_validation_split(tmp_path):
    write_classes(tmp_path / "set" / "train", per_class=10)
    write_classes(tmp_path / "set" / "test", per_class=1)
    bundle = load_data(str(tmp_path / "set"), val_split=0.1)
    assert (bundle.size("train"), bundle.size("val"), bundle.size("test")) == (27, 3, 3)


def test_folder_loader_is_deterministic_and_augments_per_image(tmp_path):
    root = write_classes(tmp_path / "pets", per_class=8)
    bundle = load_data(str(root), val_split=0.25)
    augment = "random-resized-crop,flip,color-jitter,erase"
    first = list(bundle.loader("train", 6, shuffle=True, augment=augment, epoch=2, seed=4))
    again = list(bundle.loader("train", 6, shuffle=True, augment=augment, epoch=2, seed=4))
    other = list(bundle.loader("train", 6, shuffle=True, augment=augment, epoch=3, seed=4))
    assert len(first) == 3 and all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again)
    )
    assert not torch.equal(first[0][0], other[0][0])
    plain = torch.cat([x for x, _ in bundle.loader("train", 6, shuffle=True, epoch=2, seed=4)])
    assert not torch.allclose(torch.cat([x for x, _ in first]), plain)


def test_a_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "dog").mkdir(parents=True)
    (tmp_path / "empty" / "dog" / "readme.txt").write_text("no images here")
    with pytest.raises(ConvlabError, match="has class folders but no images in them"):
        load_data(str(tmp_path / "empty"))
    save(tmp_path / "flat" / "a.png", "RGB")
    with pytest.raises(ConvlabError, match=r"has no class sub-folders \(it holds 1 images directly\)"):
        load_data(str(tmp_path / "flat"))


def test_a_single_class_is_an_error(tmp_path):
    write_classes(tmp_path / "one", classes=("cat",))
    with pytest.raises(ConvlabError, match=r"has a single class \('cat'\); classification needs at least 2"):
        load_data(str(tmp_path / "one"))


def test_a_class_too_small_for_the_validation_split_is_named(tmp_path):
    root = write_classes(tmp_path / "pets", per_class=10)
    for extra in (root / "owl").iterdir():
        if not extra.name.startswith("000"):
            extra.unlink()
    with pytest.raises(
        ConvlabError, match="Class 'owl' has only 1 training image, so a validation split of 0.1"
    ):
        load_data(str(root), val_split=0.1)
    assert load_data(str(root), val_split=0).splits() == ["train"]


def test_an_empty_class_folder_and_an_unknown_val_class_are_errors(tmp_path):
    root = write_classes(tmp_path / "pets")
    (root / "yak").mkdir()
    with pytest.raises(ConvlabError, match="'yak' in .* have no images"):
        load_data(str(root))
    write_classes(tmp_path / "set" / "train")
    write_classes(tmp_path / "set" / "val", classes=("cat", "emu"))
    with pytest.raises(ConvlabError, match="'.*emu' is not among the training classes"):
        load_data(str(tmp_path / "set"))


def test_unknown_source_is_an_error_listing_the_accepted_forms(tmp_path):
    with pytest.raises(ConvlabError, match="neither a named set .*fashion-mnist.* nor an existing folder"):
        load_data(str(tmp_path / "nowhere"))


def test_worker_processes_give_the_same_batches_as_the_training_process(tmp_path, monkeypatch):
    root = write_classes(tmp_path / "pets", per_class=6)
    in_process = load_data(str(root))
    monkeypatch.setenv("CONVLAB_NUM_WORKERS", "2")
    with_workers = load_data(str(root))
    assert with_workers.num_workers == 2
    for epoch in (0, 1):  # the second epoch reuses the persistent workers
        a = list(in_process.loader("train", 5, shuffle=True, augment="crop,flip,translate", epoch=epoch))
        b = list(with_workers.loader("train", 5, shuffle=True, augment="crop,flip,translate", epoch=epoch))
        assert len(a) == len(b) == 3  # 15 training images: 1 of the 6 per class is validation
        assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_large_folders_find_bad_files_while_loading(tmp_path, monkeypatch):
    import convlab.data.folder as folder

    monkeypatch.setattr(folder, "FULL_DECODE_LIMIT", 10)  # pretend 18 files is a large folder
    monkeypatch.setattr(folder, "SAMPLE_SIZE", 6)
    root = write_classes(tmp_path / "pets", classes=("cat", "dog"), per_class=9)
    bundle = load_data(str(root), val_split=0, max_bad_fraction=0.1)
    assert "6 sampled, the rest checked when read" in bundle.source
    # A file that breaks after the scan is left out of its batch and reported.
    victim = root / "dog" / "008.png"
    victim.write_bytes(victim.read_bytes()[:100])
    seen = sum(len(labels) for _, labels in bundle.loader("train", 4))
    assert seen == 17
    assert [path.split("/")[-1] for path, _ in bundle.skipped] == ["008.png"]


def border_depth(image, black):
    """How many whole rows or columns of ``black`` pixels run in from the image's widest padded side."""
    rows = (image - black).abs().amax(dim=(0, 2)) < 1e-5  # per row: every pixel black
    columns = (image - black).abs().amax(dim=(0, 1)) < 1e-5

    def run(flags):
        count = 0
        for flag in flags:
            if not flag:
                break
            count += 1
        return count

    return max(run(rows), run(rows.flip(0)), run(columns), run(columns.flip(0)))


def test_folder_crops_take_the_runs_crop_padding(tmp_path):
    root = write_classes(tmp_path / "pets", per_class=6)  # 20x24 random pixels: no black row of its own
    bundle = load_data(str(root), val_split=0)
    black = (-torch.tensor(bundle.mean) / torch.tensor(bundle.std)).view(-1, 1, 1)
    depths = {}
    for padding in (None, 6):
        images = torch.cat(
            [x for x, _ in bundle.loader("train", 6, augment="crop", epoch=1, crop_padding=padding)]
        )
        depths[padding] = [border_depth(image, black) for image in images]
    assert max(depths[None]) <= 2  # 20 // 8: an eighth of the shorter side
    assert 2 < max(depths[6]) <= 6
