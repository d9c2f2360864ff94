"""The feature cache of ``--transfer feature-extract``: the frozen backbone runs once, the epochs train the head
alone on its outputs, and the run ends where the plain path (``feature_cache=False``) ends."""

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import convlab
import convlab.training.engine as engine
import convlab.training.step as step
from convlab.checkpoint import load_checkpoint
from convlab.models import create_model
from convlab.training import train
from convlab.transfer import apply_transfer, feature_cache
from tests.photos import RUN_CLASSES, write_photo_folder

# A ResNet-20 trained for one epoch on Fashion-MNIST classes 0-4 at 16x16, reused on classes 5-9.
SOURCE = dict(
    model="resnet20",
    data="fashion-mnist",
    classes=[0, 1, 2, 3, 4],
    limit_per_class=100,
    image_size=16,
    epochs=1,
    batch_size=32,
    optimizer="adam",
    amp="off",
)
# 45 training and 5 validation images per class, batches of 15 (15 steps an epoch), tested on all 5,000.
TARGET = dict(
    data="fashion-mnist",
    classes="5,6,7,8,9",
    limit_per_class=50,
    batch_size=15,
    optimizer="adam",
    lr=0.01,
    transfer="feature-extract",
    amp="off",  # float32, whose rounding the tolerances below are for
)
TRAIN_IMAGES, VAL_IMAGES = 225, 25

# Cached and plain runs compute the same numbers in another grouping: the backbone over batches of 256 in the
# split's order instead of the epoch's shuffled batches, so a feature may differ in its last float32 bits. Over
# a few epochs of Adam on the head that stays far below these bounds (on this machine the two runs are equal
# bit for bit); anything from a different batch, view or schedule is orders of magnitude above them.
HEAD_TOLERANCE = 1e-5  # max |weight difference| of the trained head
LOSS_TOLERANCE = 1e-5  # max |difference| of each epoch's train and val loss
PROBABILITY_TOLERANCE = 1e-4  # max |softmax difference| on any test image
TOP1_AGREEMENT = 0.999  # the fraction of test images both predict alike (a near-tie may flip)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return train(**SOURCE, out=tmp_path_factory.mktemp("source") / "run").run_dir


def cache_lines(run_dir) -> list[str]:
    return [line for line in (run_dir / "train.log").read_text().splitlines() if "feature cache" in line]


def head_gap(a, b) -> float:
    first, second = load_file(str(a / "last.safetensors")), load_file(str(b / "last.safetensors"))
    assert first.keys() == second.keys()
    return max(float((first[key] - second[key]).abs().max()) for key in first)


def assert_same_run(cached, plain) -> None:
    """The same head, the same metrics rows and the same test predictions within the tolerances."""
    assert head_gap(cached.run_dir, plain.run_dir) <= HEAD_TOLERANCE
    for mine, theirs in zip(cached.history, plain.history, strict=True):
        assert mine["train_top1"] == theirs["train_top1"] and mine["val_top1"] == theirs["val_top1"]
        for key in ("train_loss", "val_loss", "lr"):
            assert mine[key] == pytest.approx(theirs[key], abs=LOSS_TOLERANCE)
    bundle = convlab.load_data("fashion-mnist", classes=[5, 6, 7, 8, 9], image_size=(16, 16), download=False)
    probabilities = []
    for run in (cached, plain):
        model, record = load_checkpoint(run.run_dir)
        bundle.mean, bundle.std = record.input.mean, record.input.std  # the source's, as the run normalised
        with torch.no_grad():
            images, _ = next(iter(bundle.loader("test", 1000)))  # the first 1,000 of the 5,000
            probabilities.append(model(images).softmax(1))
    assert float((probabilities[0] - probabilities[1]).abs().max()) <= PROBABILITY_TOLERANCE
    agreement = (probabilities[0].argmax(1) == probabilities[1].argmax(1)).double().mean()
    assert agreement >= TOP1_AGREEMENT
    assert cached.test.top1 == pytest.approx(plain.test.top1, abs=1 - TOP1_AGREEMENT)


def test_without_augmentation_the_cache_trains_the_head_the_plain_path_trains(source, tmp_path):
    cached = train(**TARGET, pretrained=source, epochs=3, out=tmp_path / "cached")
    plain = train(**TARGET, pretrained=source, epochs=3, feature_cache=False, out=tmp_path / "plain")
    assert_same_run(cached, plain)
    (line,) = cache_lines(cached.run_dir)
    assert line.startswith(
        f"feature cache: the frozen backbone ran once over the {TRAIN_IMAGES} training images and the "
        f"{VAL_IMAGES} validation images (64 features each, "
    ) and line.endswith(
        "the epochs train the head fc alone on them (--no-feature-cache: the whole network every step)"
    )
    assert cache_lines(plain.run_dir) == [
        "feature cache: off (--no-feature-cache); every step runs the whole network"
    ]

    # a run folder like any other: eval reads it and finds the reported test figure
    tested = convlab.evaluate(cached.run_dir, split="test")
    assert tested.n == 5000 and tested.top1 == pytest.approx(cached.test.top1, abs=1e-9)
    rows = (cached.run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 3
    for name in ("best.safetensors", "last.safetensors", "state.pt", "report.md", "config.yaml"):
        assert (cached.run_dir / name).is_file(), name
    assert any((cached.run_dir / "tb").iterdir())


def test_flip_is_cached_as_the_image_and_its_mirror_and_draws_the_plain_paths_flips(source, tmp_path):
    cached = train(**TARGET, pretrained=source, epochs=3, augment="flip", out=tmp_path / "cached")
    (line,) = cache_lines(cached.run_dir)
    assert f"ran once over the {TRAIN_IMAGES} training images and their mirrors" in line
    assert "flip: every epoch takes each image or its mirror, drawn as the plain path draws the flip" in line
    # an in-memory set: the very flips of the plain path, so the very run
    plain = train(
        **TARGET, pretrained=source, epochs=3, augment="flip", feature_cache=False, out=tmp_path / "plain"
    )
    assert_same_run(cached, plain)


def test_a_random_crop_is_cached_as_four_views_drawn_once(source, tmp_path):
    result = train(**TARGET, pretrained=source, epochs=5, augment="crop", val_split=0, out=tmp_path / "crop")
    (line,) = cache_lines(result.run_dir)
    assert f"ran over 4 views of each of the {TRAIN_IMAGES + VAL_IMAGES} training images (" in line
    assert (
        "crop drawn once per view with the run's seed: epochs 1-4 take one view each, later epochs one of the "
        "4 per image at random, where the plain path draws afresh every epoch"
    ) in line
    assert len(result.history) == 5 and result.test.top1 > 0.4  # five classes: chance is 0.2

    # fewer epochs than views: one view per epoch, each a fresh draw, as the plain path's
    short = train(**TARGET, pretrained=source, epochs=2, augment="crop,flip", out=tmp_path / "short")
    (line,) = cache_lines(short.run_dir)
    assert "ran over 2 views of each" in line and "crop, flip drawn once per view" in line
    assert "epochs 1-2 take one view each, where" in line


def test_epochs_after_the_first_do_not_run_the_backbone(source, tmp_path, monkeypatch):
    images = [0]  # through the backbone's last stage
    per_epoch = []

    def counted(run):
        run.model.layer3.register_forward_hook(
            lambda module, args, output: images.__setitem__(0, images[0] + len(output))
        )
        return feature_cache.head_on_cached_features(run)

    train_and_validate = engine._train_and_validate

    def each_epoch(*args, **kwargs):
        before = images[0]
        row = train_and_validate(*args, **kwargs)
        per_epoch.append(images[0] - before)
        return row

    monkeypatch.setattr(engine, "head_on_cached_features", counted)
    monkeypatch.setattr(engine, "_train_and_validate", each_epoch)
    train(**TARGET, pretrained=source, epochs=3, augment="flip", out=tmp_path / "cached")
    assert per_epoch == [2 * TRAIN_IMAGES + VAL_IMAGES, 0, 0]  # the images, their mirrors, validation

    per_epoch.clear()
    train(**TARGET, pretrained=source, epochs=2, feature_cache=False, out=tmp_path / "plain")
    assert per_epoch == [TRAIN_IMAGES + VAL_IMAGES] * 2


def test_lr_auto_runs_its_range_test_on_the_cache_and_picks_the_plain_paths_rate(
    source, tmp_path, monkeypatch
):
    images = [0]  # through the backbone's last stage, after the cache's plan checked the network
    by_epoch_end = []

    def counted(run):
        cached = feature_cache.head_on_cached_features(run)
        run.model.layer3.register_forward_hook(
            lambda module, args, output: images.__setitem__(0, images[0] + len(output))
        )
        return cached

    train_and_validate = engine._train_and_validate

    def each_epoch(*args, **kwargs):
        row = train_and_validate(*args, **kwargs)
        by_epoch_end.append(images[0])
        return row

    monkeypatch.setattr(engine, "head_on_cached_features", counted)
    monkeypatch.setattr(engine, "_train_and_validate", each_epoch)
    auto = {**TARGET, "lr": "auto"}
    cached = train(**auto, pretrained=source, epochs=2, out=tmp_path / "cached")
    # the backbone's one pass built the cache for the range test, and the epochs read it
    assert by_epoch_end == [TRAIN_IMAGES + VAL_IMAGES] * 2
    log = (cached.run_dir / "train.log").read_text()
    assert log.index("feature cache: the frozen backbone ran once") < log.index("suggested lr")

    images[0] = 0
    by_epoch_end.clear()
    plain = train(**auto, pretrained=source, epochs=2, feature_cache=False, out=tmp_path / "plain")
    # every range-test step ran the whole network (about 100 batches of 15), then epoch 1 ran it again
    assert by_epoch_end[0] > 4 * (TRAIN_IMAGES + VAL_IMAGES)
    assert cached.config.lr == plain.config.lr != "auto"
    assert_same_run(cached, plain)


def test_a_cached_run_resumes_from_inside_an_epoch_to_the_run_never_stopped(source, tmp_path, monkeypatch):
    settings = dict(TARGET, pretrained=str(source), epochs=3, augment="crop", checkpoint_every=4)
    unbroken = train(**settings, out=tmp_path / "unbroken")

    steps, train_step = [0], step.train_step

    def ctrl_c_at_epoch_2_step_7(*args, **kwargs):
        steps[0] += 1
        if steps[0] == 15 + 7:
            raise KeyboardInterrupt
        return train_step(*args, **kwargs)

    monkeypatch.setattr(step, "train_step", ctrl_c_at_epoch_2_step_7)
    with pytest.raises(KeyboardInterrupt):
        train(**settings, out=tmp_path / "stopped")
    monkeypatch.undo()
    resumed = train(resume=tmp_path / "stopped")
    assert resumed.epochs_completed == 3
    # the cache built again holds the same views (they depend on the seed alone): the same head
    assert head_gap(resumed.run_dir, unbroken.run_dir) <= HEAD_TOLERANCE
    assert len(cache_lines(resumed.run_dir)) == 2  # built by the run, and again by the resume
    assert "resuming" in (resumed.run_dir / "train.log").read_text()


def test_a_folder_of_photos_is_cached_too(tmp_path):
    folder = write_photo_folder(tmp_path / "photos", per_class=10)
    common = dict(data=str(folder), classes=RUN_CLASSES, image_size=16, batch_size=8, optimizer="adam")
    source = train(model="resnet20", epochs=1, **common, out=tmp_path / "source")
    result = train(
        pretrained=str(source.run_dir),
        transfer="feature-extract",
        epochs=3,
        augment="flip",
        lr=0.01,
        **common,
        out=tmp_path / "fe",
    )
    (line,) = cache_lines(result.run_dir)
    # 21 training and 9 validation images: the validation split keeps 3 of each class
    assert "ran once over the 21 training images and their mirrors and the 9 validation images" in line
    assert len(result.history) == 3 and (result.run_dir / "report.md").is_file()


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, text: str, echo: bool = True) -> None:
        self.lines.append(text)


def fallback(model, fashion, **changes) -> str:
    """train.log's line for ``model`` (feature-extract applied) on ``fashion``: the reason the run is not cached."""
    apply_transfer(model, "feature-extract")
    config = dict(
        transfer="feature-extract",
        feature_cache=True,
        log_gradients=None,
        augment=[],
        epochs=3,
        amp="off",
        seed=0,
    )
    run = SimpleNamespace(
        config=SimpleNamespace(**{**config, **changes.pop("config", {})}),
        model=model,
        bundle=fashion,
        device=torch.device("cpu"),
        group=SimpleNamespace(distributed=changes.pop("distributed", False)),
        progress=Notes(),
    )
    assert feature_cache.head_on_cached_features(run) is None
    (line,) = run.progress.lines
    return line


def test_what_a_cache_cannot_reproduce_keeps_the_run_on_the_plain_path(fashion_mnist):
    fashion = fashion_mnist(limit=200, image_size=(28, 28))
    deeper = create_model("mlp", num_classes=10, in_chans=1, hidden=[64, 32], dropout=0.3)
    assert fallback(deeper, fashion) == (
        "feature cache: off, layers.drop1 draws at random in training mode inside the frozen part (dropout, "
        "stochastic depth), which fixed features cannot reproduce; every step runs the whole network (as with "
        "--no-feature-cache)"
    )
    allcnn = create_model("allcnn_a", num_classes=10, in_chans=1, dropout=False)
    assert "the network transforms its classifier's output" in fallback(allcnn, fashion.resized((16, 16)))
    mlp = create_model("mlp", num_classes=10, in_chans=1)
    assert "in a distributed run" in fallback(mlp, fashion, distributed=True)
    assert "--log-gradients" in fallback(mlp, fashion, config={"log_gradients": 10})
    assert fallback(mlp, fashion, config={"feature_cache": False}).startswith(
        "feature cache: off (--no-feature-cache)"
    )
