"""Evaluate a model on one split of a DataBundle: loss, top-1/top-5, confusion matrix, per-class scores."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from convlab.checkpoint import load_checkpoint, resolve_checkpoint
from convlab.choices import check_tta
from convlab.data import load_data
from convlab.errors import ConvlabError
from convlab.evaluation.metrics import confusion_matrix, per_class_scores, top_k_hits
from convlab.evaluation.tta import tta_probabilities
from convlab.files import atomic_write
from convlab.record import DataSpec, InputSpec, RunRecord
from convlab.runtime import autocast, check_device, logits_of, run_folder_of
from convlab.viz.confusion import plot_confusion


@dataclass
class EvalResult:
    """One split's figures. Accuracies are fractions in 0..1; ``confusion`` rows are true classes."""

    split: str
    n: int
    loss: float  # mean cross-entropy over the split, no label smoothing
    top1: float
    top5: float  # top-min(5, classes): with fewer than 5 classes top5_k says which k it is
    confusion: list[list[int]]
    classes: list[str]
    per_class: list[dict]  # {"class", "precision", "recall", "f1", "support"}
    top5_k: int = 5
    tta: str | None = None
    data: str = ""
    checkpoint: str = ""

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1

    @property
    def top5_error(self) -> float:
        return 1.0 - self.top5

    def to_dict(self) -> dict:
        """JSON-ready: every field plus the errors (1 - accuracy)."""
        document = asdict(self)
        document.update(error=self.top1_error, top1_error=self.top1_error, top5_error=self.top5_error)
        return document

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def evaluate_model(
    model: nn.Module,
    bundle,
    split: str = "val",
    *,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    tta: str | None = None,
    amp: str | bool = "off",
    input_correction: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> EvalResult:
    """Run ``model`` over ``bundle``'s ``split`` once, without autograd, and measure it.

    The model is moved to ``device`` and put in eval mode; its previous train/eval mode is
    restored afterwards. ``tta`` is ``None``, ``"flip"``, ``"shift"`` or ``"tencrop"`` (softmax averaged
    over views). ``input_correction`` = (scale, shift), per channel, re-normalises the loader's images
    to the statistics the model was trained with (``x * scale + shift``).
    """
    tta = check_tta(tta)
    device = torch.device(device)
    if split not in bundle.splits():
        raise ConvlabError(
            f"Data '{bundle.name}' has no '{split}' split; it has: {', '.join(bundle.splits())}."
        )
    classes = list(bundle.classes)
    num_classes = len(classes)
    ks = (1, 5)
    # float64 keeps a 1M-image sum exact to ~1e-10; MPS has no float64
    total_loss = torch.zeros(
        (), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device
    )
    hits = torch.zeros(len(ks), dtype=torch.int64, device=device)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    n = 0
    was_training = model.training
    if input_correction is not None:
        scale, shift = (t.to(device).view(1, -1, 1, 1) for t in input_correction)
    model.to(device)
    model.eval()
    try:
        with torch.inference_mode():
            for images, targets in bundle.loader(split, batch_size, shuffle=False, device=device):
                if input_correction is not None:
                    images = images * scale + shift
                with autocast(amp, device):
                    if tta is None:
                        scores = logits_of(model, images).float()
                        log_probabilities = scores.log_softmax(dim=-1)
                    else:
                        scores = tta_probabilities(model, images, tta)
                        # the averaged probabilities are the prediction, so the loss is their NLL
                        log_probabilities = scores.clamp_min(torch.finfo(scores.dtype).tiny).log()
                if scores.shape[-1] != num_classes:
                    raise ConvlabError(
                        f"The model predicts {scores.shape[-1]} classes but data '{bundle.name}' has "
                        f"{num_classes}; evaluate it on data with the classes it was trained on."
                    )
                total_loss += F.nll_loss(log_probabilities, targets, reduction="sum").to(total_loss.dtype)
                hits += top_k_hits(scores, targets, ks)
                confusion += confusion_matrix(scores.argmax(dim=-1), targets, num_classes)
                n += targets.shape[0]
    finally:
        model.train(was_training)
    if n == 0:
        raise ConvlabError(f"The '{split}' split of data '{bundle.name}' is empty: nothing to evaluate.")
    matrix = confusion.cpu()
    top1_hits, top5_hits = hits.tolist()
    return EvalResult(
        split=split,
        n=n,
        loss=float(total_loss) / n,
        top1=top1_hits / n,
        top5=top5_hits / n,
        confusion=matrix.tolist(),
        classes=classes,
        per_class=per_class_scores(matrix, classes),
        top5_k=min(5, num_classes),
        tta=tta,
        data=str(bundle.name),
    )


def input_correction_for(bundle, spec: InputSpec | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-channel (scale, shift) that turns the bundle's normalisation into the checkpoint's, or None if equal.

    A loader gives ``(x - m_b) / s_b``; the model was trained on ``(x - m_c) / s_c``, which is
    ``(x - m_b) / s_b * (s_b / s_c) + (m_b - m_c) / s_c``.
    """
    if spec is None or not spec.normalised:
        return None
    mean_c = torch.tensor(spec.mean, dtype=torch.float32)
    std_c = torch.tensor(spec.std, dtype=torch.float32)
    mean_b = torch.tensor(bundle.mean, dtype=torch.float32)
    std_b = torch.tensor(bundle.std, dtype=torch.float32)
    if mean_b.shape != mean_c.shape or (torch.allclose(mean_b, mean_c) and torch.allclose(std_b, std_c)):
        return None
    return std_b / std_c, (mean_b - mean_c) / std_c


def load_data_for(record: RunRecord, data: str | None = None, data_root: str | Path | None = None):
    """Rebuild the data a checkpoint was trained on (same size, channels, validation split and seed).

    ``data`` names another source to evaluate on; it is then converted to the model's input
    size and channels.
    """
    spec = record.require_input()
    config = record.config or {}
    name = data if data is not None else record.data_name
    if not name:
        raise ConvlabError(
            "The checkpoint records no data set; pass one with --data (e.g. --data fashion-mnist)."
        )
    trained_on = record.data or DataSpec(name="")
    same_data = data is None or data == trained_on.name
    options = {}
    # `limit`/`limit_per_class` decide which images the validation split was carved from; `classes` which
    # classes the model predicts (relabelled 0..k-1)
    for key in ("limit", "limit_per_class", "classes"):
        if same_data and config.get(key):
            options[key] = config[key]
    val_split = trained_on.val_split if trained_on.val_split is not None else config.get("val_split", 0.1)
    seed = trained_on.seed if trained_on.seed is not None else config.get("seed", 0)
    return load_data(
        name,
        data_root=data_root if data_root is not None else config.get("data_root"),
        image_size=spec.size,
        in_chans=spec.channels,
        val_split=float(val_split),
        seed=int(seed),
        **options,
    )


def evaluate(
    source: str | Path,
    *,
    data: str | None = None,
    split: str = "test",
    tta: str | None = None,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    data_root: str | Path | None = None,
    json_out: bool = False,
    write: bool = True,
) -> EvalResult:
    """Evaluate a checkpoint (or a run folder's best checkpoint) on ``split`` of its data.

    The data defaults to the one recorded in the checkpoint, rebuilt at the same image size
    and channels with the same validation fraction and seed, so ``split="val"`` is the very
    held-out split of training. When ``source`` belongs to a run folder and ``write`` is true,
    ``eval-<split>.json`` and ``confusion-<split>.png`` are written there. ``json_out`` prints
    the result as one JSON document.
    """
    tta = check_tta(tta)
    if split not in ("train", "val", "test"):
        raise ConvlabError(f"Unknown split '{split}'; accepted: test, val, train.")
    if batch_size < 1:
        raise ConvlabError(f"Batch size must be a positive integer, got {batch_size}.")
    device = check_device(device)
    checkpoint = resolve_checkpoint(source)
    model, record = load_checkpoint(checkpoint, map_location="cpu")
    bundle = load_data_for(record, data, data_root)
    model_classes = record.model.num_classes
    if len(bundle.classes) != model_classes:
        raise ConvlabError(
            f"Data '{bundle.name}' has {len(bundle.classes)} classes but the model in '{checkpoint}' "
            f"predicts {model_classes}; evaluate it on data with {model_classes} classes."
        )
    result = evaluate_model(
        model,
        bundle,
        split,
        batch_size=batch_size,
        device=device,
        tta=tta,
        input_correction=input_correction_for(bundle, record.input),
    )
    result.checkpoint = str(checkpoint)
    run_dir = run_folder_of(source)
    if write and run_dir is not None:
        document = result.to_json()
        atomic_write(run_dir / f"eval-{split}.json", lambda tmp: Path(tmp).write_text(document + "\n"))
        plot_confusion(result.confusion, result.classes, run_dir / f"confusion-{split}.png")
    if json_out:
        print(result.to_json())
    return result
