"""load_pretrained: every form weights come in, what is adapted, and what is refused (no network)."""

from __future__ import annotations

import torch
import torchvision
from pytest import raises
from safetensors.torch import save_file

from convlab import ConvlabError, create_model, load_pretrained
from convlab.checkpoint import save_checkpoint
from convlab.record import InputSpec
from convlab.transfer.pretrained import pretrained_model, torchvision_cache_path

RESNET18_TENSORS = 122  # 62 parameters + 60 BN buffers (mean, var, step counter for 20 BN layers)
IMAGE = torch.randn(2, 3, 64, 64)


def test_a_torchvision_pth_state_dict_loads_exactly(tmp_path, torchvision_resnet18, outputs_equal):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_resnet18.state_dict(), path)
    model = create_model("resnet18", num_classes=10)
    report = load_pretrained(model, path)
    assert (report.loaded, report.total) == (RESNET18_TENSORS, RESNET18_TENSORS)
    assert report.kind == "state dict" and not (report.head or report.adapted or report.missing)
    outputs_equal(model, torchvision_resnet18, IMAGE)


def test_a_safetensors_file_without_convlab_metadata_loads_exactly(
    tmp_path, torchvision_resnet18, outputs_equal
):
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in torchvision_resnet18.state_dict().items()}, str(path))
    model = create_model("resnet18", num_classes=10)
    assert load_pretrained(model, path).loaded == RESNET18_TENSORS
    outputs_equal(model, torchvision_resnet18, IMAGE)


def test_wrapped_state_dicts_and_files_without_bn_step_counters_load(
    tmp_path, torchvision_resnet18, outputs_equal
):
    state = torchvision_resnet18.state_dict()
    old_style = {
        k: v for k, v in state.items() if not k.endswith("num_batches_tracked")
    }  # pre-2018 torchvision
    for payload in (
        {"state_dict": state, "epoch": 90},
        {"model": old_style},
        {f"module.{k}": v for k, v in state.items()},
    ):
        path = tmp_path / "wrapped.pt"
        torch.save(payload, path)
        model = create_model("resnet18", num_classes=10)
        report = load_pretrained(model, path)
        assert report.missing == [] and report.loaded in (RESNET18_TENSORS, RESNET18_TENSORS - 20)
        outputs_equal(model, torchvision_resnet18, IMAGE)


def test_a_convlab_checkpoint_and_run_folder_carry_their_classes_and_preprocessing(tmp_path, outputs_equal):
    trained = create_model("resnet20", num_classes=3)
    record = {
        "classes": ["cat", "dog", "owl"],
        "input": {"channels": 3, "size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3},
    }
    save_checkpoint(tmp_path / "run" / "best.safetensors", trained, record)
    for source in (tmp_path / "run", tmp_path / "run" / "best.safetensors"):
        model = create_model("resnet20", num_classes=3)
        report = load_pretrained(model, source)
        assert report.kind == "convlab checkpoint" and report.architecture == "resnet20"
        assert report.classes == ["cat", "dog", "owl"] and report.preprocessing.mean == (0.5,) * 3
        outputs_equal(model, trained, torch.randn(2, 3, 32, 32))


def test_torchvision_weights_by_name_load_from_the_hub_cache_offline(
    tmp_path, monkeypatch, torchvision_resnet18, outputs_equal
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    imagenet = torchvision.models.resnet18(weights=None)  # 1000 classes, as torchvision's file
    cache = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"  # the name in torchvision's URL
    cache.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), cache)
    assert torchvision_cache_path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url) == cache

    model = create_model("resnet18")
    report = load_pretrained(model, "torchvision:resnet18.IMAGENET1K_V1", download=False)
    outputs_equal(model, imagenet, IMAGE)
    assert report.preprocessing == InputSpec(
        channels=3, size=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    assert len(report.classes) == 1000 and report.classes[0] == "tench"

    # the default weights, into a 10-class gray model: the head is new, conv1 is summed over RGB
    model, report = pretrained_model("torchvision:resnet18", num_classes=10, in_chans=1, download=False)
    assert report.head == ["head fc: 1000 -> 10 classes, newly initialised"]
    assert report.adapted == ["first layer conv1: 3 -> 1 input channels (summed over the input channels)"]
    torch.testing.assert_close(model.conv1.weight, imagenet.conv1.weight.sum(dim=1, keepdim=True))
    assert report.loaded == RESNET18_TENSORS - 2


def test_torchvision_weights_missing_offline_say_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with raises(ConvlabError) as error:
        load_pretrained(create_model("resnet18"), "torchvision:resnet18.IMAGENET1K_V1", download=False)
    assert str(error.value) == (
        "Weights torchvision:resnet18.IMAGENET1K_V1 are not in torch.hub's cache and downloading is off: "
        "download "
        f"https://download.pytorch.org/models/resnet18-f37072fd.pth and save it as {expected}."
    )


def test_timm_vit_keys_are_mapped_to_torchvisions_layout(tmp_path, outputs_equal):
    torch.manual_seed(0)
    reference = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
    ).eval()
    torch.nn.init.normal_(reference.heads.head.weight, std=0.02)  # torchvision zeroes the head
    ours = reference.state_dict()
    timm = {
        "cls_token": ours["class_token"],
        "pos_embed": ours["encoder.pos_embedding"],
        "patch_embed.proj.weight": ours["conv_proj.weight"],
        "patch_embed.proj.bias": ours["conv_proj.bias"],
        "norm.weight": ours["encoder.ln.weight"],
        "norm.bias": ours["encoder.ln.bias"],
        "head.weight": ours["heads.head.weight"],
        "head.bias": ours["heads.head.bias"],
    }
    for n in range(2):  # timm's names for a transformer block
        layer = f"encoder.layers.encoder_layer_{n}"
        for timm_name, name in [
            ("norm1", "ln_1"),
            ("norm2", "ln_2"),
            ("attn.proj", "self_attention.out_proj"),
            ("mlp.fc1", "mlp.0"),
            ("mlp.fc2", "mlp.3"),
        ]:
            for tensor in ("weight", "bias"):
                timm[f"blocks.{n}.{timm_name}.{tensor}"] = ours[f"{layer}.{name}.{tensor}"]
        timm[f"blocks.{n}.attn.qkv.weight"] = ours[f"{layer}.self_attention.in_proj_weight"]
        timm[f"blocks.{n}.attn.qkv.bias"] = ours[f"{layer}.self_attention.in_proj_bias"]
    save_file({k: v.contiguous() for k, v in timm.items()}, str(tmp_path / "vit_timm.safetensors"))

    model = create_model(
        "vit_b_16", num_classes=10, image_size=32, patch_size=8, depth=2, width=32, heads=4, mlp_dim=64
    )
    report = load_pretrained(model, tmp_path / "vit_timm.safetensors")
    assert report.kind.startswith("timm state dict") and report.loaded == len(timm) == 8 + 2 * 12
    outputs_equal(model, reference, torch.randn(2, 3, 32, 32))


def test_googlenets_auxiliary_heads_are_replaced_or_dropped():
    imagenet = create_model("googlenet").state_dict()  # with aux1 and aux2, as torchvision's file
    model = create_model("googlenet", num_classes=10)
    report = load_pretrained(model, imagenet)
    assert report.head == [
        "head fc: 1000 -> 10 classes, newly initialised",
        "auxiliary head aux1.fc2: 1000 -> 10 classes, newly initialised",
        "auxiliary head aux2.fc2: 1000 -> 10 classes, newly initialised",
    ]
    without_aux = create_model("googlenet", num_classes=1000, aux_logits=False)
    report = load_pretrained(without_aux, imagenet)
    assert (
        report.loaded == report.total and len(report.dropped) == 2 * 10
    )  # each: conv, BN (5), fc1 and fc2 (2 each)
    assert report.dropped[0] == "aux1.conv.conv.weight"


# ---- refusals ----------------------------------------------------------------------------------------------


def test_a_file_for_another_architecture_names_both(tmp_path):
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), tmp_path / "squeezenet.pth")
    with raises(
        ConvlabError,
        match=r"holds a state dict whose first keys are features\.0\.weight, features\.0\.bias, "
        r"features\.3\.squeeze\.weight .*, not weights for model 'resnet18': 0 of 122 "
        r"tensors fit; first mismatches: conv1\.weight \(missing\)",
    ):
        load_pretrained(create_model("resnet18"), tmp_path / "squeezenet.pth")

    save_checkpoint(tmp_path / "resnet20.safetensors", create_model("resnet20"), {"classes": []})
    with raises(
        ConvlabError,
        match=r"holds weights for 'resnet20' \(convlab checkpoint\), not weights for model 'resnet18': "
        r".*first mismatches: conv1\.weight: file \(16, 3, 3, 3\), model \(64, 3, 7, 7\)",
    ):
        load_pretrained(create_model("resnet18"), tmp_path / "resnet20.safetensors", allow_partial=False)

    with raises(
        ConvlabError,
        match="torchvision's resnet50 weights do not fit model 'resnet18'.*takes torchvision:resnet18",
    ):
        load_pretrained(create_model("resnet18"), "torchvision:resnet50", download=False)


def test_a_pickled_module_is_refused_without_running_it(tmp_path, torchvision_resnet18):
    torch.save(torchvision_resnet18, tmp_path / "whole_model.pth")
    with raises(ConvlabError) as error:
        load_pretrained(create_model("resnet18", num_classes=10), tmp_path / "whole_model.pth")
    assert str(error.value) == (
        f"'{tmp_path / 'whole_model.pth'}' is not a plain state dict (it pickles objects such as "
        "torchvision.models.resnet.ResNet); convlab never unpickles code."
    )
    (tmp_path / "noise.pth").write_bytes(b"not a torch file")
    with raises(ConvlabError, match="is not a readable PyTorch weights file"):
        load_pretrained(create_model("resnet18"), tmp_path / "noise.pth")


def test_unknown_names_and_missing_files_list_the_accepted_forms(tmp_path):
    model = create_model("resnet18")
    with raises(
        ConvlabError,
        match=r"Unknown torchvision weights 'resnt18'; did you mean resnet18.*Accepted: "
        r"torchvision:ARCH or torchvision:ARCH\.TAG with ARCH one of alexnet, .*vit_b_16",
    ):
        load_pretrained(model, "torchvision:resnt18")
    with raises(
        ConvlabError,
        match="torchvision's resnet18 has no weights 'IMAGENET1K_V9'; it has IMAGENET1K_V1, DEFAULT",
    ):
        load_pretrained(model, "torchvision:resnet18.IMAGENET1K_V9")
    with raises(
        ConvlabError,
        match=r"No weights at '.*nowhere\.pth'; give a convlab run folder or \.safetensors "
        r"checkpoint, a state-dict file .* torchvision:resnet18\.IMAGENET1K_V1",
    ):
        load_pretrained(model, tmp_path / "nowhere.pth")


def test_a_partial_state_dict_needs_allow_partial(tmp_path, torchvision_resnet18):
    state = {k: v for k, v in torchvision_resnet18.state_dict().items() if not k.startswith("layer4.1.")}
    model = create_model("resnet18", num_classes=10)
    with raises(
        ConvlabError,
        match=r"covers model 'resnet18' only in part \(missing layer4\.1\.conv1\.weight, "
        r".*\(10 in all\)\); pass allow_partial=True to load the 110 tensors",
    ):
        load_pretrained(model, state)
    before = model.layer4[1].conv1.weight.clone()
    report = load_pretrained(model, state, allow_partial=True)
    # 2 convs and 2 BNs x (weight, bias, mean, var); a BN step counter is never required (old files lack it)
    assert report.loaded == 110 and len(report.missing) == 10
    torch.testing.assert_close(model.layer4[1].conv1.weight, before)  # kept as initialised
    torch.testing.assert_close(model.layer3[1].conv1.weight, torchvision_resnet18.layer3[1].conv1.weight)
