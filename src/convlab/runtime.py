"""What every command needs to run a model: the device, the precision, the logits, the run folder.

These sit below evaluation, prediction, export, serving, visualisation and training, which all use
them; none of them needs anything but torch.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from convlab.choices import PRECISIONS
from convlab.errors import ConvlabError

OFF = (None, False, "off", "none", "")  # the ways of saying "float32, no autocast"
AUTO = "auto"  # the precision and layout that pay on the device for the model: choose_precision

# The CPU flags (Linux's /proc/cpuinfo) of bf16 matrix units, and their names for a user: oneDNN runs bf16
# convolutions and matrix products on them; a CPU without them has oneDNN emulate bf16 with float32
# instructions, slower than float32 itself (docs/performance.md#inference-resnet-18-at-224x224).
BF16_UNITS = {"amx_bf16": "AMX bf16", "avx512_bf16": "AVX-512 BF16"}
# bf16 autocast pays on a CPU with bf16 units from this many multiply-adds per image: below it the casts
# around every layer cost as much as the faster products save. Training steps measured on this project's
# machine (2 Xeon cores with AMX and AVX-512 BF16, torch 2.14.1, batch 64, SGD momentum, channels_last; the
# sides alternated in one process, best of 7 rounds, other work sharing the cores), images/s of bf16 against
# float32 channels_last, 1 thread (2 threads):
# (3-conv CNN: 3x3 convolutions of c, 2c and 4c maps with batch norm at 28x28, c = 8, 12, 16, 24)
#   mlp          0.24 M  0.88x            lenet5 (32x32) 0.42 M  0.97x (0.97x); batch 128: 1.03x
#   3-conv CNN   0.51 M  1.05x (1.10x)    3-conv CNN     1.10 M  1.10x (1.06x)
#   3-conv CNN   1.92 M  1.45x (1.43x)    3-conv CNN     4.23 M  1.68x
#   vgg_mini     6.20 M  1.70x (1.61x)    resnet20 (28x28) 30.8 M  1.85x
#   resnet18 (224x224, batch 8) 1.81 G  2.34x
# so bf16 from 1 M: LeNet-5 stays float32, vgg_mini (the recipes' bf16) and wider gain 1.1x to 2.3x.
BF16_MIN_MACS = 1_000_000


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when present, else CPU; an unknown or absent device -> ConvlabError."""
    if device is None:
        return torch.device(default_device())
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConvlabError(f"Unknown device '{device}'; accepted: cpu, cuda, cuda:N, mps.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConvlabError(
            f"Device '{device}' was asked for but CUDA is not available here; use --device cpu."
        )
    return resolved


def model_device(model: nn.Module) -> torch.device:
    """Where a model's parameters are (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def is_reduced(amp: str | bool | None) -> bool:
    """Whether ``amp`` asks for a reduced precision (anything but float32)."""
    return amp not in OFF


def check_amp(amp: str | bool | None) -> None:
    """An unknown amp mode is a ConvlabError listing the known ones."""
    if amp not in PRECISIONS and amp not in OFF and amp not in (True, "on"):
        raise ConvlabError(f"Unknown amp mode '{amp}'; accepted: {', '.join(PRECISIONS)}.")


def autocast(amp: str | bool | None, device: torch.device):
    """Mixed precision for the forward pass: ``off``, ``bf16`` or ``fp16`` (``True``/``on`` = the device's best).
    ``auto`` depends on the model: resolve it first (``choose_precision``, ``resolve_precision``)."""
    check_amp(amp)
    if amp == AUTO:
        raise ConvlabError(
            "amp 'auto' depends on the model: resolve it with convlab.runtime.choose_precision."
        )
    if not is_reduced(amp):
        return contextlib.nullcontext()
    if amp in (True, "on"):
        amp = "fp16" if device.type == "cuda" else "bf16"
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# ---- the precision and memory layout that pay: what `auto` resolves to


@dataclass(frozen=True)
class PrecisionChoice:
    """How a model runs: autocast ``amp`` (``off`` = float32, ``bf16``, ``fp16``), weights and batches in
    ``channels_last`` (NHWC) or not, and ``reason``, one line saying why (``auto: ...``, or ``as given``)."""

    amp: str
    channels_last: bool
    reason: str

    @property
    def setting(self) -> str:
        """``bf16 autocast, channels_last``, ``float32``: the choice in a few words."""
        precision = "float32" if self.amp in OFF else f"{self.amp} autocast"
        return f"{precision}{', channels_last' if self.channels_last else ''}"

    def __str__(self) -> str:
        """``bf16 autocast, channels_last (auto: ...)``: what train.log, predict and serve's card say."""
        return f"{self.setting} ({self.reason})"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (/proc/cpuinfo); none where there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_bf16_units() -> str | None:
    """The bf16 matrix units of this CPU by name (``AMX bf16``), read at run time; None without them, or
    without oneDNN, which is what runs bf16 on them."""
    if not torch.backends.mkldnn.is_available():
        return None
    return next((name for flag, name in BF16_UNITS.items() if flag in cpu_flags()), None)


def has_convolutions(model: nn.Module) -> bool:
    """Whether ``model`` has 2-d convolutions: the layers a channels_last (NHWC) layout is for."""
    return any(isinstance(module, nn.Conv2d) for module in model.modules())


def multiply_adds(
    model: nn.Module, input_size: Sequence[int], device: torch.device | None = None
) -> int | None:
    """Multiply-adds of one (C, H, W) image through ``model`` (torch's FLOP counter: convolutions and matrix
    products, halved), in eval mode without autograd, every module's mode put back; None if the pass fails."""
    from torch.utils.flop_counter import FlopCounterMode

    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: count the model itself
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    device = model_device(model) if device is None else torch.device(device)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_size, device=device, dtype=dtype))
    except Exception:  # a network that cannot run one image of this size: no count, no bf16
        return None
    finally:
        for module, training in modes:
            module.training = training
    return counter.get_total_flops() // 2


def _amount(macs: float) -> str:
    """``0.417 M``, ``30.8 M``, ``1.81 G``: millions below a billion, so that small models compare at a glance."""
    return f"{macs / 1e9:.3g} G" if macs >= 1e9 else f"{macs / 1e6:.3g} M"


def _model_name(model: nn.Module) -> str:
    spec = getattr(model, "convlab_spec", None)
    return str(getattr(spec, "name", None) or type(model).__name__)


def _auto_amp(model: nn.Module, input_size: Sequence[int] | None, device: torch.device) -> tuple[str, str]:
    """``(amp, why)`` for ``auto``: bf16 where the device has bf16 units and the model is wide enough to gain."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "this GPU computes in bf16"
        return "off", "this GPU has no bf16"
    if device.type != "cpu":
        return "off", f"bf16 is chosen on CPUs and CUDA GPUs, not on {device.type}"
    units = cpu_bf16_units()
    if units is None:
        return "off", "this CPU has no bf16 matrix units (AMX, AVX-512 BF16)"
    if input_size is None:
        return "off", f"this CPU has {units} units, but the size of the images is not known to count the work"
    name, image = _model_name(model), "x".join(str(side) for side in input_size)
    macs = multiply_adds(model, input_size, device)
    if macs is None:
        return (
            "off",
            f"this CPU has {units} units, but {name} could not be run on one {image} image to count its work",
        )
    amount = f"{name} does {_amount(macs)} multiply-adds per {image} image"
    if macs >= BF16_MIN_MACS:
        return (
            "bf16",
            f"this CPU has {units} units and {amount}, at least the {_amount(BF16_MIN_MACS)} where bf16 pays",
        )
    return "off", f"{amount}, below the {_amount(BF16_MIN_MACS)} where bf16 pays on this CPU's {units} units"


def choose_precision(
    model: nn.Module,
    input_size: Sequence[int] | None,
    device: str | torch.device | None = None,
    amp: str | bool | None = AUTO,
    channels_last: bool | str = AUTO,
) -> PrecisionChoice:
    """The precision and memory layout ``model`` runs in on ``device`` for (C, H, W) images of ``input_size``.

    ``amp="auto"``: on CUDA bf16 where the GPU has it; on a CPU bf16 where it has bf16 matrix units (AMX,
    AVX-512 BF16: /proc/cpuinfo) and the model does at least BF16_MIN_MACS multiply-adds per image, else
    float32 (``off``). ``channels_last="auto"``: NHWC for a model with 2-d convolutions on a CPU or a CUDA GPU,
    else contiguous. A value given (``off``, ``bf16``, ``fp16``; True, False) is kept as it is."""
    check_amp(amp)
    device = model_device(model) if device is None else torch.device(device)
    amp = "off" if amp in OFF else amp
    if amp in (True, "on"):  # the device's best
        amp = "fp16" if device.type == "cuda" else "bf16"
    amp_auto, layout_auto = amp == AUTO, channels_last == AUTO
    reasons = []
    if amp_auto:
        amp, why = _auto_amp(model, input_size, device)
        reasons.append(f"auto: {why}")
    if layout_auto:
        # NHWC in float32 too: in the runs measured for BF16_MIN_MACS, float32 channels_last against NCHW took
        # lenet5 1.19x (1 thread; 1.71x at 2), vgg_mini 1.29x (1.24x), resnet20 1.15x, resnet18 1.14x; only
        # the 3-conv CNNs of 8 and 12 maps lost at 2 threads (0.99x, 0.84x; 1.42x, 1.40x at 1 thread)
        channels_last = device.type in ("cpu", "cuda") and has_convolutions(model)
        if not amp_auto:
            layout = "its 2-d convolutions run fastest in NHWC" if channels_last else "no 2-d convolutions"
            reasons += [f"amp {amp} as given", f"channels_last auto: {layout}"]
    elif amp_auto:
        reasons.append("channels_last as given")
    return PrecisionChoice(str(amp), bool(channels_last), "; ".join(reasons or ["as given"]))


# model -> {(input size, device, amp, layout): choice}
_CHOSEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def resolve_precision(
    model: nn.Module,
    input_size: Sequence[int] | None,
    device: str | torch.device | None = None,
    amp: str | bool | None = AUTO,
    channels_last: bool | str = AUTO,
) -> PrecisionChoice:
    """``choose_precision``, remembered per model, input size and device: for what resolves ``auto`` batch
    after batch (``train_step``, ``inference_logits``, ``evaluate_model`` called with ``auto``)."""
    if AUTO not in (amp, channels_last):
        return choose_precision(model, input_size, device, amp, channels_last)  # nothing to count
    device = model_device(model) if device is None else torch.device(device)
    key = (None if input_size is None else tuple(input_size), str(device), str(amp), str(channels_last))
    remembered = _CHOSEN.setdefault(model, {})
    if key not in remembered:
        remembered[key] = choose_precision(model, input_size, device, amp, channels_last)
    return remembered[key]


def logits_of(model: nn.Module, images: Tensor) -> Tensor:
    """The main logits of ``model`` (models with auxiliary heads return a tuple; the first is the main one)."""
    output = model(images)
    return output[0] if isinstance(output, (tuple, list)) else output


def run_folder_of(source: str | Path) -> Path | None:
    """The run folder a source belongs to: itself if a folder, else the checkpoint's folder if it is a run."""
    path = Path(source)
    if path.is_dir():
        return path
    if (path.parent / "config.yaml").is_file() or (path.parent / "metrics.csv").is_file():
        return path.parent
    return None
