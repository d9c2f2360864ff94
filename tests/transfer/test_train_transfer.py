"""Transfer learning through ``convlab.train``: a ResNet-20 trained on Fashion-MNIST classes 0-4 reused on
classes 5-9 (50 images each) as a frozen feature extractor, fine-tuned, head first, and read by a linear probe."""

import csv

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import convlab
import convlab.training.engine as engine
from convlab.checkpoint import read_record
from convlab.errors import ConvlabError
from convlab.models import create_model
from convlab.training import Schedule, build_optimizer, train
from convlab.transfer import apply_transfer

# Small enough to keep every run about a second: 16x16 images, 100 training images per class.
SOURCE = dict(
    model="resnet20",
    data="fashion-mnist",
    classes=[0, 1, 2, 3, 4],
    limit_per_class=100,
    image_size=16,
    epochs=2,
    batch_size=32,
    optimizer="adam",
)
# The new task: the other five classes, 50 labelled images each (45 train, 5 val), tested on all 5,000.
TARGET = dict(
    data="fashion-mnist", classes="5,6,7,8,9", limit_per_class=50, batch_size=15, optimizer="adam", lr=0.01
)
HEAD = ("fc.bias", "fc.weight")  # sorted
CHANCE = 0.2  # five classes


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    return train(**SOURCE, out=tmp_path_factory.mktemp("source") / "run")


def weights(path):
    return load_file(str(path))


def test_feature_extract_trains_the_head_alone_and_keeps_batchnorm_statistics(source_run, tmp_path):
    result = train(
        **TARGET, pretrained=source_run.run_dir, transfer="feature-extract", epochs=3, out=tmp_path / "fe"
    )
    before, after = (
        weights(source_run.run_dir / "best.safetensors"),
        weights(result.run_dir / "last.safetensors"),
    )
    changed = sorted(key for key in after if key not in before or not torch.equal(after[key], before[key]))
    assert changed == list(HEAD)  # every convolution, BN scale/shift and BN running mean/var as trained
    assert before["bn1.running_mean"].abs().sum() > 0 and before["layer3.2.bn2.running_var"].ne(1).any()

    # the model and the data came from the source: ResNet-20 at 16x16, a new 5-class head for other classes
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert config["model"] == "resnet20" and config["image_size"] == [16, 16]
    assert result.test.n == 5000 and result.test.classes == [
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    assert result.test.top1 > 2 * CHANCE

    log = (result.run_dir / "train.log").read_text()
    assert "116 of 116 tensors loaded" in log
    assert "head fc: 5 classes, newly initialised (the source's classes are T-shirt/top, Trouser" in log
    assert "parameters: 325 trainable, 268,784 frozen" in log  # fc: 64 x 5 + 5
    report = (result.run_dir / "report.md").read_text()
    assert "| trainable | 325 |" in report and "| frozen | 268,784 |" in report
    assert "| layer3 | 0 | 203,520 |" in report and "| fc | 325 | 0 |" in report
    assert read_record(result.run_dir / "best.safetensors").transfer["method"] == "feature-extract"


def test_backbone_lr_scale_gives_two_groups_whose_ratio_every_schedule_keeps():
    for schedule in ("onecycle", "cosine", "step"):
        model = create_model("resnet20", num_classes=5, in_chans=1)
        groups = apply_transfer(model, "finetune", backbone_lr_scale=0.1)
        optimizer = build_optimizer(model, "momentum", lr=0.05, weight_decay=5e-4, groups=groups)
        # backbone kernels, backbone biases/BN (undecayed), head weight, head bias
        assert [(g["name"], g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [
            ("backbone", pytest.approx(0.005), 5e-4),
            ("backbone", pytest.approx(0.005), 0.0),
            ("head", 0.05, 5e-4),
            ("head", 0.05, 0.0),
        ]
        assert sum(p.numel() for g in optimizer.param_groups[2:] for p in g["params"]) == 325
        plan = Schedule(optimizer, schedule, epochs=3, steps_per_epoch=10)
        for _ in range(17):
            optimizer.step()
            plan.after_step()
        backbone, head = optimizer.param_groups[0]["lr"], optimizer.param_groups[2]["lr"]
        assert head != pytest.approx(0.05 if schedule != "onecycle" else 0.05 / 25)  # the schedule moved it
        assert backbone == pytest.approx(0.1 * head) and plan.lr == head  # the run's lr is the head's


def test_finetune_with_a_backbone_lr_scale_trains_everything_slower_below_the_head(source_run, tmp_path):
    result = train(
        **TARGET,
        pretrained=source_run.run_dir,
        backbone_lr_scale=0.1,
        schedule="onecycle",
        epochs=2,
        out=tmp_path / "ft",
    )
    state = torch.load(result.run_dir / "state.pt", weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert [g["name"] for g in groups] == ["backbone", "head"]  # no weight decay: one group each
    assert groups[0]["lr"] == pytest.approx(0.1 * groups[1]["lr"]) and groups[1]["lr"] < 0.01 / 25
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    assert float(rows[0]["lr"]) == pytest.approx(0.01 / 25)  # onecycle starts the head at lr / 25
    before, after = (
        weights(source_run.run_dir / "best.safetensors"),
        weights(result.run_dir / "last.safetensors"),
    )
    assert not torch.equal(before["conv1.weight"], after["conv1.weight"])  # the backbone trained too
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert config["transfer"] == "finetune"  # --pretrained alone means fine-tune everything
    assert "| conv1 | 144 | 0 |" in (result.run_dir / "report.md").read_text()
    assert result.test.top1 > 2 * CHANCE


def test_head_epochs_freeze_then_unfreeze_and_resume_across_the_switch(source_run, tmp_path, monkeypatch):
    settings = dict(
        TARGET, pretrained=str(source_run.run_dir), head_epochs=2, backbone_lr_scale=0.1, epochs=3
    )
    straight = train(**settings, out=tmp_path / "straight")
    log = (straight.run_dir / "train.log").read_text()
    assert "epochs 1-2: the new head trains alone (backbone frozen)" in log
    assert "epoch 3: unfreezing the backbone (trainable all, backbone lr x0.1)" in log
    assert "parameters: 269,109 trainable, 0 frozen" in log  # printed at the switch

    # Ctrl-C in epoch 2: the folder keeps epoch 1, where only the head had moved
    train_one_epoch = engine.train_one_epoch

    def interrupted_in_epoch_2(model, loader, *args):
        if loader.epoch == 2:
            raise KeyboardInterrupt
        return train_one_epoch(model, loader, *args)

    monkeypatch.setattr(engine, "train_one_epoch", interrupted_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(**settings, out=tmp_path / "resumed")
    monkeypatch.undo()
    source, epoch_1 = (
        weights(source_run.run_dir / "best.safetensors"),
        weights(tmp_path / "resumed/last.safetensors"),
    )
    assert sorted(k for k in epoch_1 if not torch.equal(epoch_1[k], source[k])) == list(HEAD)

    resumed = train(resume=tmp_path / "resumed")
    assert resumed.epochs_completed == 3
    final, reference = (
        weights(resumed.run_dir / "last.safetensors"),
        weights(straight.run_dir / "last.safetensors"),
    )
    assert all(torch.equal(final[k], reference[k]) for k in reference)  # the same run as without the stop
    assert not torch.equal(
        final["layer3.2.conv2.weight"], source["layer3.2.conv2.weight"]
    )  # unfrozen at epoch 3
    assert straight.test.top1 > 2 * CHANCE


def test_linear_probe_is_a_run_folder_that_eval_predict_and_export_accept(source_run, tmp_path):
    result = train(**TARGET, pretrained=source_run.run_dir, transfer="linear-probe", out=tmp_path / "lp")
    run_dir = result.run_dir
    for name in (
        "config.yaml",
        "metrics.csv",
        "best.safetensors",
        "last.safetensors",
        "report.md",
        "train.log",
    ):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "state.pt").exists()  # one fit: nothing to resume
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and rows[0]["lr"] == ""
    record = read_record(run_dir / "best.safetensors")
    assert record.transfer["method"] == "linear-probe" and record.transfer["features"] == 64
    assert record.transfer["converged"]

    assert result.test.top1 > 3 * CHANCE  # logistic regression on 64 pretrained features of 225 images
    tested = convlab.evaluate(run_dir, split="test")
    assert tested.n == 5000 and tested.top1 == pytest.approx(result.test.top1, abs=1e-9)
    validated = convlab.evaluate(run_dir, split="val")
    assert validated.n == 25 and validated.top1 == pytest.approx(record.metrics["val_top1"], abs=1e-9)

    exported = convlab.export(run_dir, "onnx")
    assert exported.path.is_file() and exported.max_abs_diff <= exported.tolerance

    pixels = np.zeros((28, 28), np.uint8)
    pixels[12:26, 2:26] = 200  # a low, wide shape: footwear, not a shirt
    Image.fromarray(pixels).save(tmp_path / "shoe.png")
    (prediction,) = convlab.predict(run_dir, tmp_path / "shoe.png")
    assert {p["label"] for p in prediction["predictions"]} == set(result.test.classes)

    report = (run_dir / "report.md").read_text()
    assert "linear-probe: logistic regression on the frozen backbone's penultimate features" in report
    assert "| fc | 325 | 0 |" in report


def test_transfer_settings_are_checked_before_anything_runs(source_run, tmp_path):
    with pytest.raises(
        ConvlabError, match=r"transfer \(--transfer\), head_epochs \(--head-epochs\) need pretrained"
    ):
        train(**TARGET, transfer="finetune", head_epochs=1, out=tmp_path / "a")
    with pytest.raises(
        ConvlabError, match=r"trainable \(--trainable\) applies to transfer \(--transfer\) finetune"
    ):
        train(
            **TARGET,
            pretrained=source_run.run_dir,
            transfer="feature-extract",
            trainable="last:1",
            out=tmp_path / "b",
        )
    with pytest.raises(ConvlabError, match=r"head_epochs \(--head-epochs\) = 2 leaves none of the 2 epochs"):
        train(**TARGET, pretrained=source_run.run_dir, head_epochs=2, epochs=2, out=tmp_path / "c")
    with pytest.raises(ConvlabError, match=r"Unknown transfer \(--transfer\) 'freeze'"):
        train(**TARGET, pretrained=source_run.run_dir, transfer="freeze", out=tmp_path / "d")
    with pytest.raises(ConvlabError, match="not weights for model 'lenet5'"):
        train(**TARGET, model="lenet5", pretrained=source_run.run_dir, out=tmp_path / "e")


def test_torchvision_imagenet_weights_from_the_hub_cache_on_a_folder_of_photos(tmp_path, monkeypatch):
    """The flow of docs/transfer.md for one's own photos, offline: the weights file where torch.hub keeps it
    (here torchvision's resnet18 with random weights under the ImageNet file's name), nothing downloaded."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch/hub/checkpoints"
    cache.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), cache / "resnet18-f37072fd.pth")
    rng = np.random.default_rng(0)
    for name, tint in (("cats", (200, 120, 60)), ("mugs", (60, 120, 200))):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for k in range(6):
            noise = rng.integers(0, 40, (40, 48, 3))
            Image.fromarray((np.array(tint) + noise).astype(np.uint8)).save(
                tmp_path / "photos" / name / f"{k}.jpg"
            )

    result = train(
        data=str(tmp_path / "photos"),
        pretrained="torchvision:resnet18.IMAGENET1K_V1",
        transfer="feature-extract",
        image_size=32,
        epochs=1,
        batch_size=4,
        val_split=0.34,
        out=tmp_path / "run",
    )  # --image-size 32 keeps the test fast; the default is the weights' 224
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert config["model"] == "resnet18" and config["image_size"] == [32, 32]
    log = (result.run_dir / "train.log").read_text()
    assert (
        "torchvision weights (resnet18) from torchvision:resnet18.IMAGENET1K_V1 -> resnet18: 120 of 122 tensors loaded"
        in log
    )
    assert "head fc: 1000 -> 2 classes, newly initialised" in log
    assert "parameters: 1,026 trainable, 11,176,512 frozen" in log  # fc: 512 x 2 + 2
    record = read_record(result.run_dir / "best.safetensors")
    assert record.input.mean == (0.485, 0.456, 0.406) and record.input.std == (0.229, 0.224, 0.225)
    assert record.classes == ["cats", "mugs"]
