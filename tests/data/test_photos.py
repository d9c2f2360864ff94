"""Your own photos: EXIF orientation, the resize rule, the training size of a folder, and the folders refused.

Every photo is written by the test with PIL: JPEGs of phone proportions (640x480 and 480x640), a portrait
stored as landscape pixels plus an EXIF Orientation tag as a phone stores it, corrupt files, hidden files
and notes beside the images.
"""

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import convlab
from convlab.checkpoint import read_record, save_checkpoint
from convlab.cli import main as cli_main
from convlab.data import load_data, read_image
from convlab.data.cache import CachedFolderBundle, cache_folder
from convlab.data.images import crop_box, image_header, resize_image
from convlab.errors import ConvlabError
from convlab.models import create_model
from convlab.record import record_for
from convlab.serve.limits import decode_upload
from convlab.training.config import TrainConfig, resolve_config
from convlab.training.inputs import folder_image_size
from convlab.viz.inputs import Subject, prepare_image

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)
ROTATE_CLOCKWISE = 6  # EXIF Orientation 6: the stored pixels are shown turned 90 degrees clockwise


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLAB_NUM_WORKERS", "0")  # decode in the test process: fast to start
    monkeypatch.setenv("CONVLAB_FOLDER_CACHE", str(tmp_path / "cache-home"))


def upright_portrait(width=48, height=64):
    """A portrait picture as a person sees it: the top half red, the bottom half blue."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[: height // 2] = RED
    pixels[height // 2 :] = BLUE
    return Image.fromarray(pixels)


def save_as_a_phone_does(path, upright):
    """Landscape pixels (the upright picture turned a quarter anticlockwise) plus Orientation 6."""
    exif = Image.Exif()
    exif[0x0112] = ROTATE_CLOCKWISE
    path.parent.mkdir(parents=True, exist_ok=True)
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes(), quality=95)
    with Image.open(path) as stored:  # the file really is sideways until its tag is applied
        assert stored.size == (upright.height, upright.width)
        assert ImageOps.exif_transpose(stored).size == upright.size
    return path


def is_upright(pixels):
    """uint8 (3, H, W) with the red half on top and the blue half below (JPEG blurs only the border)."""
    red, blue = pixels[0].float(), pixels[2].float()
    return bool(red[0].mean() > 200 and blue[0].mean() < 60 and red[-1].mean() < 60 and blue[-1].mean() > 200)


def photo(path, size, seed=0):
    """A JPEG of ``size`` (H, W) with smooth random colours, as a camera's picture compresses."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(small).resize((size[1], size[0]), Image.BILINEAR).save(path, quality=90)
    return path


def photo_folder(root, per_class=4):
    """Two classes of phone-proportioned JPEGs, half landscape (480x640) and half portrait (640x480)."""
    for label, name in enumerate(("cat", "dog")):
        for k in range(per_class):
            photo(root / name / f"{k:02d}.jpg", (480, 640) if k % 2 else (640, 480), seed=10 * label + k)
    return root


# -- EXIF orientation: one decoder, every reader ------------------------------------------------------------
def test_a_portrait_stored_sideways_is_read_upright_as_jpeg_and_png(tmp_path):
    jpeg = save_as_a_phone_does(tmp_path / "portrait.jpg", upright_portrait())
    exif = Image.Exif()
    exif[0x0112] = ROTATE_CLOCKWISE
    png = tmp_path / "portrait.png"
    upright_portrait().transpose(Image.Transpose.ROTATE_90).save(png, exif=exif.tobytes())

    for path in (jpeg, png):
        pixels = read_image(path)
        assert pixels.shape == (3, 64, 48) and is_upright(pixels)
        assert image_header(path) == ((64, 48), 3)  # the header reports the upright size too
    assert torch.equal(read_image(png), torch.from_numpy(np.array(upright_portrait())).permute(2, 0, 1))


def test_the_folder_loader_and_its_cache_see_photos_upright(tmp_path):
    root = tmp_path / "photos"
    save_as_a_phone_does(root / "portraits" / "phone.jpg", upright_portrait())
    upright_portrait().save(root / "portraits" / "plain.png")
    (root / "others").mkdir()
    upright_portrait().save(root / "others" / "a.png")
    upright_portrait().save(root / "others" / "b.png")
    options = dict(image_size=(32, 24), val_split=0, resize="squash")

    decoded = load_data(str(root), **options)
    assert decoded.file_sizes == {(64, 48): 4}  # every file upright, the phone's too
    images, _ = next(iter(decoded.loader("train", 4)))
    mean, std = torch.tensor(decoded.mean).view(3, 1, 1), torch.tensor(decoded.std).view(3, 1, 1)
    phone = decoded.files("train").index(str(root / "portraits" / "phone.jpg"))
    pixels = ((images[phone] * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    assert pixels.shape == (3, 32, 24) and is_upright(pixels)

    cache_folder(root, image_size=(32, 24), resize="squash")
    cached = load_data(str(root), **options)
    assert isinstance(cached, CachedFolderBundle)
    row = cached.files("train").index(str(root / "portraits" / "phone.jpg"))
    assert is_upright(cached._images[cached._split_indices["train"][row]])


def test_predict_serve_and_viz_see_photos_upright(tmp_path):
    """A linear classifier that answers "upright" for red over blue and "sideways" for red beside blue."""
    model = create_model("mlp", num_classes=2, in_chans=3, hidden=(), input_size=16)
    with torch.no_grad():
        weights = torch.zeros(2, 3, 16, 16)
        weights[0, 0, :8], weights[0, 0, 8:] = 1.0, -1.0  # red on top
        weights[1, 0, :, :8], weights[1, 0, :, 8:] = 1.0, -1.0  # red on the left
        model.layers.output.weight.copy_(weights.flatten(1))
        model.layers.output.bias.zero_()
    spec = {"channels": 3, "size": [16, 16], "mean": [0.5] * 3, "std": [0.25] * 3, "resize": "crop"}
    checkpoint = save_checkpoint(
        tmp_path / "orientation.safetensors",
        model,
        record_for(model, {"classes": ["upright", "sideways"], "input": spec}),
    )
    phone = save_as_a_phone_does(tmp_path / "phone.jpg", upright_portrait())
    sideways = tmp_path / "untagged.jpg"  # the same stored pixels without the tag: a landscape picture
    upright_portrait().transpose(Image.Transpose.ROTATE_90).save(sideways, quality=95)

    answers = convlab.predict(checkpoint, [phone, sideways], topk=1, device="cpu")
    assert [a["predictions"][0]["label"] for a in answers] == ["upright", "sideways"]
    with Image.open(phone) as opened:  # a PIL image of the file is turned upright as the file is
        assert (
            convlab.predict(checkpoint, [opened], topk=1, device="cpu")[0]["predictions"][0]["label"]
            == "upright"
        )

    uploaded = decode_upload(phone.read_bytes(), "phone.jpg", 3, (16, 16), resize="crop")
    assert uploaded.shape == (3, 16, 16) and is_upright(uploaded)

    model, record = convlab.load(checkpoint)
    prepared = prepare_image(phone, Subject(model, record, None), torch.device("cpu"))
    display = torch.from_numpy(prepared.display).permute(2, 0, 1).mul(255).round().to(torch.uint8)
    assert prepared.input.shape == (1, 3, 16, 16) and is_upright(display)


# -- the resize rule ---------------------------------------------------------------------------------------
def stripes():
    """20 x 40 (H x W): a green quarter on the left, a red half in the middle, a blue quarter on the right."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :10], pixels[:, 10:30], pixels[:, 30:] = GREEN, RED, BLUE
    return Image.fromarray(pixels)


def test_crop_keeps_the_centre_where_squash_keeps_everything_out_of_proportion(tmp_path):
    path = tmp_path / "wide.png"
    stripes().save(path)
    assert crop_box(20, 40, (10, 10)) == (0, 10, 20, 20)  # the centred square of a 2:1 picture
    assert crop_box(40, 20, (10, 10)) == (10, 0, 20, 20)  # and of a 1:2 one
    assert crop_box(480, 640, (224, 224)) == (0, 80, 480, 480)

    cropped = read_image(path, 3, (10, 10), resize="crop")
    assert torch.equal(cropped, torch.tensor(RED, dtype=torch.uint8).view(3, 1, 1).expand(3, 10, 10))
    squashed = read_image(path, 3, (10, 10), resize="squash")
    assert squashed[:, :, 0].tolist() == [[0] * 10, [255] * 10, [0] * 10]  # green survives on the left
    assert squashed[:, :, -1].tolist() == [[0] * 10, [0] * 10, [255] * 10]  # and blue on the right
    # Crop then resize is the shorter side scaled to the size and the centre kept (torchvision's rule)
    wide = torch.from_numpy(np.array(stripes())).permute(2, 0, 1).contiguous()
    assert torch.equal(resize_image(wide, (20, 20), "crop"), wide[:, :, 10:30])

    with pytest.raises(ConvlabError, match="Unknown resize rule 'stretch'.*Accepted: crop, squash"):
        read_image(path, 3, (10, 10), resize="stretch")
    with pytest.raises(ConvlabError, match="Unknown resize rule 'crp'; did you mean crop"):
        load_data(str(tmp_path), resize="crp")


def test_the_folder_loader_applies_the_rule_asked_and_crops_by_default(tmp_path):
    root = tmp_path / "wide"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for k in range(2):
            stripes().save(root / name / f"{k}.png")

    def pixels(bundle):
        images, _ = next(iter(bundle.loader("train", 4)))
        mean, std = torch.tensor(bundle.mean).view(3, 1, 1), torch.tensor(bundle.std).view(3, 1, 1)
        return ((images * std + mean) * 255).round().to(torch.uint8)

    cropped = load_data(str(root), image_size=(10, 10), val_split=0)
    assert cropped.resize == "crop" and (pixels(cropped) == torch.tensor(RED).view(3, 1, 1)).all()
    squashed = load_data(str(root), image_size=(10, 10), val_split=0, resize="squash")
    assert (
        squashed.resize == "squash" and pixels(squashed)[:, 1, :, 0].eq(255).all()
    )  # green at the left edge
    assert load_data("digits").resize == "squash"  # a named set keeps its own size and today's rule


# -- the size a folder trains at ---------------------------------------------------------------------------
def test_a_folder_of_photos_trains_at_the_models_size_by_crop_and_says_why(tmp_path):
    root = photo_folder(tmp_path / "photos")
    result = convlab.train(model="lenet5", data=str(root), epochs=1, device="cpu", out=str(tmp_path / "run"))

    record = read_record(result.run_dir)
    assert record.input.size == (32, 32) and record.input.resize == "crop"  # not 640x480, not 480x640
    log = (result.run_dir / "train.log").read_text()
    assert (
        "images resized to 32x32 (lenet5's declared input size) by crop (the default for folders): scale the "
        "shorter side to the size, then keep the centre (proportions kept, edges cut)" in log
    )
    assert (
        "warning: 8 of 8 images are at least 4x larger than 32x32 on both sides (most often 640x480)" in log
    )
    assert f"`convlab data cache {root} --image-size 32x32 --resize crop`" in log


def test_the_folder_size_is_the_one_asked_else_the_models_else_224():
    assert folder_image_size(TrainConfig(model="resnet20")) == ((32, 32), "resnet20's declared input size")
    assert folder_image_size(TrainConfig(model="inception_v3"))[0] == (299, 299)
    assert folder_image_size(TrainConfig(model="resnet18", image_size=[96, 128])) == (
        (96, 128),
        "--image-size",
    )
    own = folder_image_size(TrainConfig(model="my_model.py:tiny_cnn"))  # declares no size
    assert own == ((224, 224), "convlab's size for a network that declares none")
    with pytest.raises(ConvlabError, match="Unknown resize rule 'fill'. Accepted: crop, squash."):
        resolve_config(resize="fill")


def test_a_warning_when_most_images_are_much_larger_or_smaller(tmp_path):
    big = tmp_path / "big"
    for name in ("a", "b"):
        photo(big / name / "0.jpg", (128, 160))  # 4x 32 on both sides: much larger
        photo(big / name / "1.jpg", (120, 160))  # 3.75x on one side: not
        photo(big / name / "2.jpg", (200, 130))
    warning = load_data(str(big), image_size=(32, 32), val_split=0).size_warning()
    assert warning.startswith("warning: 4 of 6 images are at least 4x larger than 32x32 on both sides")
    assert "`convlab data cache" in warning  # decoding them every epoch is slow: the cache decodes them once
    assert load_data(str(big), image_size=(40, 40), val_split=0).size_warning() is None  # 3.2x at most
    cache_folder(big, image_size=(32, 32))
    cached = load_data(str(big), image_size=(32, 32), val_split=0)
    assert isinstance(cached, CachedFolderBundle) and cached.size_warning().startswith(
        "warning: 4 of 6 images"
    )
    assert "data cache" not in cached.size_warning()  # cached already: only the loss of detail is said

    small = tmp_path / "small"
    for name in ("a", "b"):
        photo(small / name / "0.jpg", (16, 16))
        photo(small / name / "1.jpg", (60, 14))  # one side 4.6x too short
    warning = load_data(str(small), image_size=(64, 64), val_split=0).size_warning()
    assert warning.startswith("warning: 4 of 4 images are at least 4x smaller than 64x64 on a side")
    assert load_data(str(small), image_size=(32, 32), val_split=0).size_warning() is None
    assert load_data("digits", image_size=(64, 64)).size_warning() is None  # a named set has no files


# -- folders refused, files ignored ------------------------------------------------------------------------
def test_a_class_whose_every_file_is_unreadable_is_refused_like_an_empty_one(tmp_path):
    root = photo_folder(tmp_path / "photos")
    (root / "owl").mkdir()
    (root / "owl" / "a.jpg").write_bytes(b"not a jpeg")
    whole = photo(tmp_path / "whole.jpg", (48, 64)).read_bytes()
    (root / "owl" / "b.jpg").write_bytes(whole[: len(whole) // 3])  # truncated
    message = (
        f"Class 'owl' in '{root}' has no readable images: none of its 2 files can be decoded "
        f"\\(e.g. '{root / 'owl' / 'a.jpg'}': cannot identify image file .*\\); replace them or remove its folder."
    )
    with pytest.raises(ConvlabError, match=message):
        load_data(str(root), image_size=(32, 32), max_bad_fraction=0.5)
    with pytest.raises(ConvlabError, match="Class 'owl' .* has no readable images"):
        cache_folder(root, image_size=(32, 32), max_bad_fraction=0.5)


def test_class_folders_mixed_with_split_folders_are_refused_with_both_layouts(tmp_path):
    root = photo_folder(tmp_path / "photos", per_class=2)
    photo(root / "train" / "cat" / "x.jpg", (48, 64))
    with pytest.raises(
        ConvlabError,
        match=r"Data folder '.*photos' mixes class folders \(cat, dog\) with split folders \(train\); use one of "
        r"the two layouts: class folders '.*photos/<class>/<image>' .*, or split folders "
        r"'.*photos/train/<class>/<image>' with '.*photos/val/<class>/<image>'",
    ):
        load_data(str(root))
    # A "train" class (of pictures of trains, beside cars) holds images, not class folders: it is a class.
    vehicles = tmp_path / "vehicles"
    photo(vehicles / "train" / "1.jpg", (48, 64))
    photo(vehicles / "car" / "1.jpg", (48, 64))
    assert load_data(str(vehicles), val_split=0).classes == ["car", "train"]


def test_data_info_names_the_files_it_did_not_consider(tmp_path, capsys):
    root = tmp_path / "photos"
    save_as_a_phone_does(root / "cat" / "phone.jpg", upright_portrait())
    photo(root / "cat" / "1.jpg", (64, 48))
    photo(root / "dog" / "1.jpg", (48, 64))
    photo(root / "dog" / "2.jpg", (48, 64))
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "notes.txt").write_text("cats on the left")
    (root / "cat" / ".hidden.jpg").write_bytes(b"")
    (root / "dog" / "IMG_0001.HEIC").write_bytes(b"")  # not an extension convlab reads
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("")

    assert load_data(str(root), val_split=0).ignored == [
        ".DS_Store",
        ".git/",
        "notes.txt",
        "cat/.hidden.jpg",
        "dog/IMG_0001.HEIC",
    ]
    assert cli_main(["data", "info", str(root), "--val-split", "0"]) == 0
    out = capsys.readouterr().out
    assert "images: 64x48 (crop), 3 channel(s)" in out  # the most common size, the phone's upright
    assert "file sizes: 64x48 (2), 48x64 (2)" in out
    assert (
        "ignored 5 files: .DS_Store, .git/, notes.txt, cat/.hidden.jpg, dog/IMG_0001.HEIC (hidden, links back "
        "into folders already read, or not images: accepted extensions are .jpg, .jpeg, .png" in out
    )
