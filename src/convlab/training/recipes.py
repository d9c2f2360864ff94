"""Named recipes: tried sets of TrainConfig values for a goal, applied with ``convlab train --recipe NAME``.

A recipe sits between TrainConfig's defaults and what the caller gives (YAML file, flags), so
``--recipe fast --epochs 12`` is the fast recipe run longer. docs/performance.md shows the same
table (``recipe_markdown()``) with what each recipe measured on the project's 2-core machine.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from convlab.errors import unknown_name_error


@dataclass(frozen=True)
class Recipe:
    goal: str  # what the recipe is for, as a target that can be checked
    settings: dict[str, Any]  # TrainConfig field -> value


RECIPES: dict[str, Recipe] = {
    "lenet5-fast": Recipe(
        goal="LeNet-5 past 90% Fashion-MNIST test top-1 in as few seconds as it takes (benchmarks: time to 90%)",
        settings={
            "model": "lenet5",
            "options": {"pool": "max"},  # max pooling keeps the strongest response: ~1 point over averaging
            "activation": "relu",  # no saturation: trains faster than LeNet's tanh at the same lr
            "data": "fashion-mnist",
            "epochs": 5,  # measured: 4 epochs end at 89.4-90.0%, 5 at 90.2-90.4% (docs/performance.md)
            "batch_size": 128,  # half the steps of the tutorials' 64; 256 lost 0.2 points at 5 epochs
            "optimizer": "adamw",  # per-weight step sizes: past 90% an epoch sooner than momentum here
            "lr": 0.004,  # peak of the one-cycle curve; 0.002-0.006 land within 0.2 points
            "schedule": "onecycle",  # Smith & Topin 2018: warm up, then anneal to ~0 by the last step
            "label_smoothing": 0.1,  # Szegedy et al. 2016: softer targets; +0.2 points at 5 epochs here
            # bf16 pays for LeNet-5 from batch 128 (+16% images/s on an AMX Xeon); at batch 64 float32 is 5-7%
            # faster, autocast's per-step casts outweighing what it saves (docs/performance.md, "Levers tried")
            "amp": "bf16",
            "channels_last": True,  # NHWC: oneDNN's fast layout, +10% images/s on LeNet-5 here
        },
    ),
    "fast": Recipe(
        goal="Fashion-MNIST >= 93% test top-1 within 3 minutes on 2 CPU cores",
        settings={
            # 6.2M multiply-adds at 28x28, 5x fewer than ResNet-20 (31M, 93.3% in 8 epochs but 701 s here):
            # the budget buys more epochs of a small net than a few of a deep one (docs/performance.md)
            "model": "vgg_mini",
            "data": "fashion-mnist",  # at its own 28x28: the network ends in global pooling
            # 10 epochs fit 3 minutes on both 2-core machines measured: 93.21% test top-1 in 152 s (seed 1:
            # 93.21% in 138 s) where 15 took 253 s; 15 epochs gave 93.38% in 154 s on the faster one
            "epochs": 10,
            "batch_size": 256,  # larger steps amortise per-step overhead; one-cycle keeps the lr safe
            "optimizer": "nesterov",  # momentum 0.9 with look-ahead: steadier at a high peak lr
            "lr": 0.2,  # 0.1 per 128 images (He et al. 2015), scaled linearly to batch 256 (Goyal et al. 2017)
            "weight_decay": 0.0005,  # 1-D parameters (biases, batch norm) are left undecayed
            "schedule": "onecycle",  # the whole budget in one warm-up and anneal
            "label_smoothing": 0.1,  # Szegedy et al. 2016
            "augment": [
                "flip"
            ],  # clothes are left-right symmetric; adding random erasing: 93.19% at 15 epochs
            "amp": "bf16",  # bf16 convolutions on AVX-512 BF16 / AMX CPUs and on CUDA
            "channels_last": True,  # the layout oneDNN's bf16 convolutions run fastest in
            # the mirror as a second test view: +0.21 and +0.31 points on two earlier runs (93.21 -> 93.42%,
            # 93.18 -> 93.49%) for ~1 s; shift's 10 views gave no more (93.38%, 93.51%) for 8 s
            "test_tta": "flip",
        },
    ),
    "best": Recipe(
        goal="Fashion-MNIST >= 95% test top-1 within 30 minutes on 2 CPU cores",
        settings={
            # vgg_mini at twice the width (32-256 maps): 576K parameters, 24.6M multiply-adds at 28x28, ~1,800
            # images/s on 2 bf16 cores; ResNet-20 (41M) trains at half that rate, so half the epochs
            "model": "vgg_mini",
            "options": {"width": 2},
            "data": "fashion-mnist",
            # 50 epochs fill the half hour at the machine's usual ~1,900 images/s: 28.6 and 29.8 minutes end to
            # end, test top-1 94.19% both times before test_tta (docs/performance.md says why 95% is not met);
            # 37.1 minutes in an hour when it ran at 913-2,030 images/s
            "epochs": 50,
            "batch_size": 256,
            "optimizer": "nesterov",
            "lr": 0.2,  # 0.1 per 128 images (He et al. 2015), scaled linearly to batch 256 (Goyal et al. 2017)
            "weight_decay": 0.0005,
            "schedule": "onecycle",
            "label_smoothing": 0.1,  # Szegedy et al. 2016
            # crop (4 px at 32x32, scaled: 3 px at 28x28) and flip as He et al.; random erasing (Zhong et al.
            # 2017), with which their WRN-28-10 reaches ~96.3% on Fashion-MNIST. Without it: the same 94.19%
            "augment": ["crop", "flip", "erase"],
            "amp": "bf16",  # oneDNN's bf16 convolutions (AVX-512 BF16, AMX): 1.5-2x float32 at these widths
            "channels_last": True,
            # the test split seen as 10 views (mirror x 1-pixel shifts): +0.28-0.47 points on three earlier runs of
            # this recipe (with and without erasing, on all 60k), in ~20 s (docs/performance.md, "Test-time augmentation")
            "test_tta": "shift",
        },
    ),
}


def recipe_settings(name: str) -> dict[str, Any]:
    """The TrainConfig values of recipe ``name`` (a copy); an unknown name is a ConvlabError listing them."""
    if name not in RECIPES:
        raise unknown_name_error("recipe", str(name), RECIPES)
    return copy.deepcopy(RECIPES[name].settings)


def _format(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={_format(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(_format(item) for item in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def recipe_markdown() -> str:
    """One Markdown table of every recipe's settings (rows: TrainConfig fields; columns: recipes)."""
    from convlab.training.config import FIELDS

    names = list(RECIPES)
    used = [field for field in FIELDS if any(field in RECIPES[name].settings for name in names)]
    lines = ["| setting | " + " | ".join(f"`{name}`" for name in names) + " |", "|---|" + "---|" * len(names)]
    for field in used:
        cells = [
            _format(RECIPES[name].settings[field]) if field in RECIPES[name].settings else "(default)"
            for name in names
        ]
        lines.append(f"| {field} | " + " | ".join(cells) + " |")
    lines.append("| goal | " + " | ".join(RECIPES[name].goal for name in names) + " |")
    return "\n".join(lines) + "\n"
