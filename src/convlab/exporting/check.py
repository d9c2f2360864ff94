"""The numerical check of an export: the same images through PyTorch and the exported file, logits compared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from convlab.data import normalize
from convlab.data.registry import is_named_set, locate
from convlab.errors import ConvlabError
from convlab.evaluation.evaluate import input_correction_for, load_data_for
from convlab.record import RunRecord
from convlab.runtime import logits_of

# Largest |logit difference| accepted, for logits within +-1; beyond, 1e-4 of the largest |logit|.
# Float32 rounding grows with the size of the numbers: ResNet-50 with logits up to 51 differs by 1.3e-4
# between two correct runtimes, ResNet-110 with logits up to 2,174 by 1e-3 (relative 5e-7). A wrong
# translation is off by far more: LeNet-5 1998's sum pooling exported as averaging is off by 3.0.
TOLERANCE = 1e-4
# After a single-image batch the images go in batches of this size: two batch sizes (1 and more)
# prove the batch axis is really dynamic, and neither is the size the exporter traced with (2).
CHECK_BATCH = 8
RANDOM_SEED = 0


@dataclass
class CheckResult:
    """Figures of one check; ``inputs`` says in words which images were used."""

    max_abs_diff: float
    mean_abs_diff: float
    samples: int
    batch_sizes: list[int]
    inputs: str
    largest_logit: float  # max |logit| of PyTorch's outputs
    tolerance: float = TOLERANCE  # the limit: TOLERANCE * max(1, largest_logit)

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def check_images(
    record: RunRecord, samples: int, data_root: str | Path | None = None
) -> tuple[torch.Tensor, str]:
    """``samples`` preprocessed images of the model's own data (test split, else val, else train) and
    a description; seeded random pixels normalised with the stored mean/std when that data is not
    on this machine. Named sets are never downloaded for a check."""
    try:
        bundle = _local_data(record, data_root)
    except ConvlabError as error:
        reason = str(error).split(";")[0].rstrip(".")
        return random_images(
            record, samples
        ), f"{samples} seeded random images normalised like the data ({reason})"
    split = next(s for s in ("test", "val", "train") if s in bundle.splits())
    images, _ = next(iter(bundle.loader(split, batch_size=samples, shuffle=False)))
    correction = input_correction_for(bundle, record.input)
    if (
        correction is not None
    ):  # the loader normalises with the bundle's statistics, the model expects its own
        scale, shift = (t.view(1, -1, 1, 1) for t in correction)
        images = images * scale + shift
    return images.float().cpu(), f"{len(images)} {split} images of {bundle.name}"


def _local_data(record: RunRecord, data_root: str | Path | None):
    name = record.data_name
    if not name:
        raise ConvlabError("the checkpoint names no data set")
    root = data_root if data_root is not None else (record.config or {}).get("data_root")
    if is_named_set(str(name)) and not Path(str(name)).is_dir() and locate(str(name), root) is None:
        raise ConvlabError(f"data set '{name}' is not on this machine")
    return load_data_for(record, None, root)


def random_images(record: RunRecord, samples: int) -> torch.Tensor:
    """Uniform random uint8 pixels at the stored size, normalised with the stored mean and std."""
    spec = record.require_input()
    generator = torch.Generator().manual_seed(RANDOM_SEED)
    pixels = torch.randint(0, 256, (samples, *spec.shape), generator=generator, dtype=torch.uint8)
    return normalize(pixels, spec.mean, spec.std)


def batch_sizes_for(samples: int) -> list[int]:
    """``[1, 8, 8, ..., rest]``: one single image, then batches of CHECK_BATCH."""
    sizes = [1]
    left = samples - 1
    while left > 0:
        sizes.append(min(CHECK_BATCH, left))
        left -= sizes[-1]
    return sizes


def compare(
    model: nn.Module,
    exported: Callable[[torch.Tensor], np.ndarray | torch.Tensor],
    images: torch.Tensor,
    inputs: str,
) -> CheckResult:
    """Run ``images`` through ``model`` (eval mode, CPU) and ``exported`` batch by batch; logit differences."""

    differences, largest, sizes, start = [], 0.0, batch_sizes_for(len(images)), 0
    with torch.inference_mode():
        for size in sizes:
            batch = images[start : start + size]
            start += size
            reference = logits_of(model, batch).float()
            produced = torch.as_tensor(np.asarray(exported(batch)), dtype=torch.float32)
            if produced.shape != reference.shape:
                raise ConvlabError(
                    f"The exported model returned logits of shape {tuple(produced.shape)} for a batch of {size}; "
                    f"PyTorch returns {tuple(reference.shape)}."
                )
            differences.append((produced - reference).abs().flatten())
            largest = max(largest, float(reference.abs().max()))
    every = torch.cat(differences)
    return CheckResult(
        max_abs_diff=float(every.max()),
        mean_abs_diff=float(every.mean()),
        samples=len(images),
        batch_sizes=sizes,
        inputs=inputs,
        largest_logit=largest,
        tolerance=TOLERANCE * max(1.0, largest),
    )
