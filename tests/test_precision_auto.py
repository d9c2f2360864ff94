"""`--amp auto` and `--channels-last auto`: the precision and layout that pay, chosen per model and device.

The CPU-flag reader is replaced in these tests, so that both branches (bf16 matrix units or none) run on any
machine; bf16 itself runs everywhere (oneDNN emulates it on CPUs without the units, only slower).

Tolerance of "the same predictions": bf16 keeps 8 bits of mantissa (a relative rounding of 2^-9, about
0.2%, on every operand), so float32 and bf16 logits differ by about a percent after a few layers; the top
class changes only where two classes are within that of each other. On 1,000 Fashion-MNIST test images a
briefly trained vgg_mini agrees on 99.9% of them with a largest probability difference of 0.003 (2 threads,
AMX); the bounds below leave room for other CPUs' summation orders, and are the bar tests/test_speed.py
sets for LeNet-5.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convlab
from convlab import runtime
from convlab.models import create_model
from convlab.prediction import choose_fast_path, inference_logits
from convlab.runtime import BF16_MIN_MACS, choose_precision, multiply_adds

TOP1_AGREEMENT = 0.98  # at least this fraction of images get the same top class in bf16 as in float32
PROBABILITY_BOUND = 0.05  # and no class probability moves by more than this


@pytest.fixture
def amx(monkeypatch):
    """A CPU reported as having AMX bf16 units (and oneDNN to use them)."""
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512f", "amx_tile", "amx_bf16"}))
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)


@pytest.fixture
def no_bf16_units(monkeypatch):
    """A CPU without bf16 matrix units (AVX2 only)."""
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"sse4_2", "avx2", "fma"}))


def test_a_wide_model_on_a_cpu_with_bf16_units_runs_in_bf16_and_channels_last(amx):
    model = create_model("resnet20", num_classes=10, in_chans=1)
    choice = choose_precision(model, (1, 28, 28), "cpu")
    assert (choice.amp, choice.channels_last) == ("bf16", True)
    assert choice.reason.startswith(
        "auto: this CPU has AMX bf16 units and resnet20 does 30.8 M multiply-adds"
    )
    assert str(choice).startswith("bf16 autocast, channels_last (auto: ")


def test_lenet5_stays_in_float32_where_bf16_does_not_pay(amx):
    model = create_model("lenet5", num_classes=10, in_chans=1)
    assert multiply_adds(model, (1, 32, 32)) == 416_520 < BF16_MIN_MACS  # the inspector's count too
    choice = choose_precision(model, (1, 32, 32), "cpu")
    assert (choice.amp, choice.channels_last) == ("off", True)
    assert "lenet5 does 0.417 M multiply-adds per 1x32x32 image, below the" in choice.reason


def test_a_cpu_without_bf16_units_gets_float32(no_bf16_units):
    model = create_model("resnet20", num_classes=10, in_chans=1)
    choice = choose_precision(model, (1, 28, 28), "cpu")
    assert choice.amp == "off" and choice.channels_last
    assert choice.reason == "auto: this CPU has no bf16 matrix units (AMX, AVX-512 BF16)"
    assert str(choice).startswith("float32, channels_last (auto: ")


def test_a_model_without_convolutions_keeps_its_layout(amx):
    choice = choose_precision(create_model("mlp", num_classes=10, in_chans=1), (1, 28, 28), "cpu")
    assert (choice.amp, choice.channels_last) == ("off", False)


def test_values_given_are_kept_as_they_are(no_bf16_units):
    model = create_model("resnet20", num_classes=10, in_chans=1)
    assert choose_precision(model, (1, 28, 28), "cpu", "bf16", True) == runtime.PrecisionChoice(
        "bf16", True, "as given"
    )
    off = choose_precision(model, (1, 28, 28), "cpu", "off", False)
    assert (off.amp, off.channels_last, off.reason) == ("off", False, "as given")
    explicit = choose_precision(model, (1, 28, 28), "cpu", "off")  # the layout still chosen
    assert (explicit.amp, explicit.channels_last) == ("off", True)
    assert explicit.reason.startswith("amp off as given; channels_last auto")
    assert choose_precision(model, (1, 28, 28), "cpu", "bf16").amp == "bf16"  # even without bf16 units


def test_on_cuda_bf16_follows_the_gpu(monkeypatch):
    model = create_model("resnet20", num_classes=10, in_chans=1)  # on the CPU: nothing runs on the GPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert choose_precision(model, (1, 28, 28), "cuda").amp == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    choice = choose_precision(model, (1, 28, 28), "cuda")
    assert (choice.amp, choice.channels_last) == ("off", True)


def test_counting_the_work_leaves_the_model_as_it_was(amx):
    model = create_model("resnet20", num_classes=10, in_chans=1).train()
    model.layer1[0].bn1.eval()  # a frozen BatchNorm (transfer learning) stays frozen
    before = copy.deepcopy(model.state_dict())
    choose_precision(model, (1, 28, 28), "cpu")
    assert model.training and not model.layer1[0].bn1.training
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


def test_the_cpu_flags_are_read_at_run_time():
    flags = runtime.cpu_flags()
    assert isinstance(flags, frozenset)
    assert runtime.cpu_bf16_units() in (None, "AMX bf16", "AVX-512 BF16")


@pytest.fixture(scope="module")
def trained_vgg(fashion_mnist):
    """vgg_mini after 20 Adam steps on Fashion-MNIST (about 40% test top-1: its classes are not yet ties)."""
    fashion = fashion_mnist(limit=2000)
    torch.manual_seed(0)
    model = create_model("vgg_mini", num_classes=10, in_chans=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step, (images, labels) in enumerate(fashion.loader("train", 64, shuffle=True, epoch=0, seed=0)):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 19:
            break
    images, _ = next(iter(fashion.loader("test", 1000)))
    return model.eval(), images


def test_auto_and_float32_give_the_same_predictions_within_the_tolerance(amx, trained_vgg):
    model, images = trained_vgg
    fast_model, choice = choose_fast_path(copy.deepcopy(model), "auto", "auto", (1, 28, 28))
    assert (choice.amp, choice.channels_last) == ("bf16", True)  # vgg_mini: 6.2 M multiply-adds per image
    # the copy for inference: BatchNorm folded into the convolutions, their weights in bf16 and NHWC
    convs = [m for m in fast_model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and not any(isinstance(m, nn.BatchNorm2d) for m in fast_model.modules())
    assert all(c.weight.dtype == torch.bfloat16 for c in convs)
    assert convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the model given is left as it was
    plain = inference_logits(model, images, amp="off").softmax(dim=-1)
    fast = inference_logits(fast_model, images, amp=choice.amp, channels_last=True).softmax(dim=-1)
    assert (plain.argmax(dim=-1) == fast.argmax(dim=-1)).float().mean() >= TOP1_AGREEMENT
    assert (plain - fast).abs().max() <= PROBABILITY_BOUND
    # "auto" given to inference_logits itself resolves to the same choice
    again = inference_logits(fast_model, images, amp="auto", channels_last="auto").softmax(dim=-1)
    assert torch.equal(again, fast)


def test_an_exported_model_stays_as_exported_under_auto():
    class Exported(nn.Module):  # parameterless, as convlab's ONNX Runtime wrapper is
        def forward(self, x):
            return x.flatten(1)[:, :10]

    model, choice = choose_fast_path(Exported(), "auto", "auto")
    assert (choice.amp, choice.channels_last) == ("off", False) and "exported" in choice.reason


def test_train_log_says_the_precision_and_off_trains_in_float32(amx, tmp_path, monkeypatch):
    from convlab.training import step as step_module
    from convlab.training import train

    seen = []
    step = step_module.train_step

    def watched(model, images, *args, **kwargs):  # the dtype of the logits each step computes
        loss, logits = step(model, images, *args, **kwargs)
        seen.append(logits.dtype)
        return loss, logits

    monkeypatch.setattr(step_module, "train_step", watched)
    quick = dict(model="vgg_mini", data="fashion-mnist", limit=128, batch_size=64, epochs=1, val_split=0.5)
    auto = train(**quick, out=tmp_path / "auto")
    log = (auto.run_dir / "train.log").read_text()
    assert "precision: bf16 autocast, channels_last (auto: this CPU has AMX bf16 units and vgg_mini" in log
    assert "fast layers (the same sums, see convlab.speed): 6 PatchGradConv2d, 6 BitwiseReLU" in log
    assert set(seen) == {torch.bfloat16}
    assert "| amp | auto: bf16 (this CPU has AMX bf16 units" in (auto.run_dir / "report.md").read_text()
    assert "amp: auto" in (auto.run_dir / "config.yaml").read_text()  # a resume decides again
    # convlab eval decides as training did, so it finds the figures the run reported
    evaluated = convlab.evaluate(auto.run_dir, split="val")
    assert evaluated.precision.startswith("bf16 autocast, channels_last (auto: this CPU has AMX bf16 units")
    assert evaluated.top1 == auto.best_val_top1

    seen.clear()
    off = train(**quick, amp="off", out=tmp_path / "off")
    log = (off.run_dir / "train.log").read_text()
    assert "precision: float32, channels_last (amp off as given; channels_last auto: " in log
    assert set(seen) == {torch.float32}
    assert "| amp | off |" in (off.run_dir / "report.md").read_text()
    evaluated = convlab.evaluate(off.run_dir, split="val")  # auto: as the run was trained
    assert evaluated.precision.startswith("float32, channels_last (amp off as the run was trained; ")
    assert evaluated.top1 == off.best_val_top1
