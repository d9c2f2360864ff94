"""The transfer scenarios as trainable-parameter sets: exact counts, parameter groups, frozen BatchNorm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convlab import ConvlabError, create_model
from convlab.transfer import apply_transfer, backbone_stages, describe_trainable, freeze_batchnorm

RESNET18_10_CLASSES = 11_689_512 - (512 * 1000 + 1000) + (512 * 10 + 10)  # torchvision's count, head for 10
RESNET18_HEAD = 512 * 10 + 10  # 5,130
RESNET18_LAYER3 = 2_099_712  # torchvision's resnet18.layer3 / layer4 parameter counts
RESNET18_LAYER4 = 8_393_728
BASIC_BLOCK_512 = 2 * (3 * 3 * 512 * 512) + 2 * (2 * 512)  # two 3x3 convs without bias, two BNs


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def resnet18():
    with torch.device("meta"):
        return create_model("resnet18", num_classes=10)


def group_sizes(groups) -> dict[str, int]:
    return {g["name"]: sum(p.numel() for p in g["params"]) for g in groups}


def test_feature_extract_trains_only_the_head():
    model = resnet18()
    groups = apply_transfer(model, "feature-extract")
    assert trainable(model) == RESNET18_HEAD == 5_130
    assert group_sizes(groups) == {"head": 5_130}
    rows = {row["module"]: row for row in describe_trainable(model)}
    assert rows["fc"] == {"module": "fc", "trainable": 5_130, "frozen": 0}
    assert rows["layer4"] == {"module": "layer4", "trainable": 0, "frozen": RESNET18_LAYER4}
    assert sum(row["frozen"] for row in rows.values()) == RESNET18_10_CLASSES - 5_130 == 11_176_512
    assert len(model.convlab_transfer["frozen_batchnorm"]) == 20  # every BN of the backbone


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("all", RESNET18_10_CLASSES),
        ("head", RESNET18_HEAD),
        ("last:1", RESNET18_LAYER4 + RESNET18_HEAD),  # 8,398,858
        ("last:2", RESNET18_LAYER3 + RESNET18_LAYER4 + RESNET18_HEAD),
        ("from:layer3", RESNET18_LAYER3 + RESNET18_LAYER4 + RESNET18_HEAD),  # 10,498,570
        ("from:layer4.1", BASIC_BLOCK_512 + RESNET18_HEAD),  # 4,725,770
        ("last:5", RESNET18_10_CLASSES),
    ],
)
def test_finetune_settings_train_exactly_these_parameters(setting, expected):
    model = resnet18()
    apply_transfer(model, "finetune", setting)
    assert trainable(model) == expected
    assert model.convlab_transfer["frozen_batchnorm"] == []  # fine-tuning lets BN statistics adapt


def test_stages_are_the_backbones_top_level_blocks():
    assert [s.name for s in backbone_stages(resnet18())] == [
        "conv1+bn1",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    ]
    with torch.device("meta"):
        vgg16 = create_model("vgg16", num_classes=10)
    # Simonyan & Zisserman 2014, Table 1 (D): five conv blocks between max-pools, then FC-4096 twice
    assert [s.name for s in backbone_stages(vgg16)] == [
        "features[0:5]",
        "features[5:10]",
        "features[10:17]",
        "features[17:24]",
        "features[24:31]",
        "classifier[0:3]",
        "classifier[3:6]",
    ]
    apply_transfer(vgg16, "finetune", "last:2")
    fc6, fc7, fc8 = 25_088 * 4_096 + 4_096, 4_096 * 4_096 + 4_096, 4_096 * 10 + 10
    assert trainable(vgg16) == fc6 + fc7 + fc8 == 119_586_826


def test_googlenets_auxiliary_classifiers_train_with_the_stage_they_branch_from():
    with torch.device("meta"):
        model = create_model("googlenet", num_classes=10)
    head = 1024 * 10 + 10
    aux1 = (
        (512 * 128 + 2 * 128) + (2048 * 1024 + 1024) + (1024 * 10 + 10)
    )  # Szegedy et al. 2014: 1x1 conv 128,
    aux2 = (528 * 128 + 2 * 128) + (2048 * 1024 + 1024) + (1024 * 10 + 10)  # FC 1024, FC classes
    inception = {
        n: sum(p.numel() for p in getattr(model, n).parameters())
        for n in ("inception4d", "inception4e", "inception5a", "inception5b")
    }
    apply_transfer(model, "feature-extract")
    assert trainable(model) == head
    apply_transfer(model, "finetune", "last:2")  # inception5a, 5b: both aux classifiers branch off earlier
    assert trainable(model) == inception["inception5a"] + inception["inception5b"] + head
    apply_transfer(model, "finetune", "last:4")  # from inception4d: aux2 branches there
    assert trainable(model) == sum(inception.values()) + head + aux2
    apply_transfer(model, "finetune", "all")
    assert trainable(model) == 6_624_904 - 1024 * 990 - 990 + aux1 + aux2  # torchvision's count has no aux


def test_a_smaller_backbone_learning_rate_gives_two_parameter_groups():
    model = resnet18()
    groups = apply_transfer(model, "finetune", "all", backbone_lr_scale=0.1, lr=0.01)
    assert [(g["name"], g["lr_scale"]) for g in groups] == [("backbone", 0.1), ("head", 1.0)]
    assert [g["lr"] for g in groups] == pytest.approx([0.001, 0.01])
    assert group_sizes(groups) == {"backbone": RESNET18_10_CLASSES - 5_130, "head": 5_130}
    optimizer = torch.optim.SGD(groups, lr=0.01)  # the groups go to torch.optim as they are
    assert [g["lr_scale"] for g in optimizer.param_groups] == [0.1, 1.0]


def test_batchnorm_statistics_stay_put_when_extracting_features():
    model = create_model("resnet20", num_classes=10)
    groups = apply_transfer(model, "feature-extract")
    optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    freeze_batchnorm(model)  # what the engine calls after every model.train()
    images, labels = torch.randn(8, 3, 32, 32) * 3 + 1, torch.arange(8)
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()
    after = model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["fc.bias", "fc.weight"]  # BN running mean/var/step counter and the backbone unchanged

    apply_transfer(model, "finetune", "head")  # the head alone trains, but BN statistics follow the new data
    model.train()
    freeze_batchnorm(model)
    model(images)
    assert not torch.equal(model.bn1.running_mean, before["bn1.running_mean"])


def test_bad_settings_say_what_is_accepted():
    model = resnet18()
    with pytest.raises(
        ConvlabError, match="Unknown transfer scenario 'fine-tune'; accepted: feature-extract, finetune"
    ):
        apply_transfer(model, "fine-tune")
    with pytest.raises(
        ConvlabError,
        match=r"'last:6' asks for '6' stages but 'resnet18' has 5 backbone stages "
        r"\(conv1\+bn1, layer1, layer2, layer3, layer4\); give last:N with N from 0 to 5",
    ):
        apply_transfer(model, "finetune", "last:6")
    with pytest.raises(
        ConvlabError,
        match=r"'resnet18' has no layer 'layer5'; did you mean layer4, layer3, layer2\? from:LAYER takes "
        r"a stage \(conv1, bn1, layer1, layer2, layer3, layer4\) or any module inside "
        r"one, e\.g\. layer4\.1",
    ):
        apply_transfer(model, "finetune", "from:layer5")
    with pytest.raises(ConvlabError, match="Unknown trainable setting 'top:3'; accepted: all, head, last:N"):
        apply_transfer(model, "finetune", "top:3")
    with pytest.raises(
        ConvlabError, match="feature-extract trains the head only; trainable='last:1' needs scenario finetune"
    ):
        apply_transfer(model, "feature-extract", "last:1")
