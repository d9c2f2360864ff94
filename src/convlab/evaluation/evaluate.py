"""Evaluate a model on one split of a DataBundle: loss, top-1/top-5, confusion matrix, per-class scores.

``evaluate(run)`` rebuilds the run's own data (its test split, else the validation split it held out) or
reads a separate held-out folder whose class folders are matched to the model's classes by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from convlab.allocator import large_buffers_kept
from convlab.checkpoint import load_checkpoint, resolve_checkpoint
from convlab.choices import check_tta
from convlab.data import load_data
from convlab.data.bundle import Shard
from convlab.data.load import source_kind
from convlab.errors import ConvlabError
from convlab.evaluation.metrics import confusion_matrix, per_class_scores, top_k_hits
from convlab.evaluation.tta import tta_probabilities, untrained_views_note
from convlab.files import atomic_write
from convlab.record import DataSpec, InputSpec, RunRecord
from convlab.runtime import AUTO, autocast, check_device, logits_of, resolve_precision, run_folder_of
from convlab.speed import use_fast_layers
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
    notes: list[str] = field(default_factory=list)  # one line each, said before the figures
    files: list[str] = field(default_factory=list)  # what evaluate() wrote in the run folder
    precision: str = ""  # what evaluate() ran in, and why (convlab.runtime.PrecisionChoice)

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

    def _repr_html_(self) -> str:
        """In a notebook: the headline figures, then precision, recall and F1 of every class."""
        from convlab.notebook import html_table, lines_html

        views = f", test-time augmentation {self.tta}" if self.tta else ""
        headline = (
            f"{self.split} split of {self.data or 'the data'}: {self.n} images{views}; top-1 {self.top1:.2%}, "
            f"top-{self.top5_k} {self.top5:.2%}, loss {self.loss:.4f}"
        )
        rows = [
            [c["class"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", c["support"]]
            for c in self.per_class
        ]
        table = html_table(
            ["class", "precision", "recall", "F1", "images"], rows, right=[False, True, True, True, True]
        )
        return lines_html([*self.notes, headline]) + table


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
    classes: Sequence[str] | None = None,
    shard: Shard | None = None,
) -> EvalResult:
    """Run ``model`` over ``bundle``'s ``split`` once, without autograd, and measure it.

    The model is moved to ``device`` and put in eval mode; its previous train/eval mode is
    restored afterwards. ``tta`` is ``None``, ``"flip"``, ``"shift"`` or ``"tencrop"`` (softmax averaged
    over views). ``amp``: ``off`` (float32), ``bf16``, ``fp16``, or ``auto``, what pays for the model on the
    device (``convlab.runtime.choose_precision``). ``input_correction`` = (scale, shift), per channel,
    re-normalises the loader's images to the statistics the model was trained with (``x * scale + shift``).
    ``classes`` are the model's classes in its output order, for data that may list them in another order (a
    held-out folder's sorted sub-folders): labels are matched by name (``match_classes``) and the result is in
    the model's order.

    ``shard`` (a distributed run, every process calling with its own): each process evaluates every
    ``world``-th batch of ``batch_size``, the very batches a single process evaluates, and the sums (loss,
    hits, confusion, count) are added up over the processes (``torch.distributed.all_reduce``), so every
    process gets the figures one process would report.
    """
    tta = check_tta(tta)
    device = torch.device(device)
    if split not in bundle.splits():
        raise ConvlabError(
            f"Data '{bundle.name}' has no '{split}' split; it has: {', '.join(bundle.splits())}."
        )
    relabel = None if classes is None else match_classes(classes, bundle.classes, bundle.name)
    if relabel is not None:
        relabel = relabel.to(device)
    classes = list(bundle.classes if classes is None else classes)
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
        # A shard's part of batches of batch_size x world is one single-process batch of batch_size: the same
        # images in the same batches give the same logits, so the sums below add up to a single process's.
        batches = (
            bundle.loader(split, batch_size, shuffle=False, device=device)
            if shard is None
            else bundle.loader(split, batch_size * shard.world, shuffle=False, device=device, shard=shard)
        )
        with torch.inference_mode():
            for images, targets in batches:
                if input_correction is not None:
                    images = images * scale + shift
                if relabel is not None:
                    targets = relabel[targets]
                if amp == AUTO:  # what pays for this model on this device (convlab.runtime.choose_precision)
                    amp = resolve_precision(model, images.shape[1:], device, AUTO, False).amp
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
    if shard is not None:
        counted = torch.tensor(n, dtype=torch.int64, device=device)
        # float64 has 29 more bits than the float32 batch sums it adds: unless they differ in size by more than
        # 2^29, no addition rounds, so the order the processes add them in changes nothing
        for total in (total_loss, hits, confusion, counted):
            torch.distributed.all_reduce(total)
        n = int(counted)
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


def _as_trained(record: RunRecord, amp, channels_last) -> tuple[Any, Any, bool]:
    """``amp`` and ``channels_last`` with ``auto`` replaced by what the run's config set (not auto itself), and
    whether either was."""
    config = record.config or {}
    trained_amp = "off" if config.get("amp") is False else config.get("amp")
    trained_layout = config.get("channels_last")
    as_trained = False
    if amp == AUTO and trained_amp in ("off", "bf16"):
        amp, as_trained = trained_amp, True
    if channels_last == AUTO and isinstance(trained_layout, bool):
        channels_last, as_trained = trained_layout, True
    return amp, channels_last, as_trained


def match_classes(
    model_classes: Sequence[str], data_classes: Sequence[str], data_name: str
) -> torch.Tensor | None:
    """The model's label for each of the data's labels, matched by class name; None when both lists are equal.

    The same names in another order are relabelled; a class missing on either side is one ConvlabError that
    names it, since an image of a class the model never learned has no right answer.
    """
    model_classes, data_classes = [str(c) for c in model_classes], [str(c) for c in data_classes]
    if model_classes == data_classes:
        return None
    missing = [c for c in model_classes if c not in data_classes]
    extra = [c for c in data_classes if c not in model_classes]
    if missing or extra:
        problems = ([f"missing {_quoted(missing)}"] if missing else []) + (
            [f"extra {_quoted(extra)}, which the model does not predict"] if extra else []
        )
        raise ConvlabError(
            f"The classes of data '{data_name}' do not match the model's by name ({'; '.join(problems)}); "
            f"accepted: exactly the model's classes in any order, {_quoted(model_classes)}."
        )
    return torch.tensor([model_classes.index(c) for c in data_classes], dtype=torch.int64)


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


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


def is_own_data(record: RunRecord, data: str | None) -> bool:
    """Whether ``data`` names the data the checkpoint was trained on (None does; so does the same folder)."""
    trained_on = record.data_name
    if data is None or data == trained_on:
        return True
    if not trained_on:
        return False
    mine, theirs = Path(trained_on).expanduser(), Path(data).expanduser()
    return mine.is_dir() and theirs.is_dir() and mine.resolve() == theirs.resolve()


def is_held_out_folder(record: RunRecord, data: str | None) -> bool:
    """Whether ``data`` is a folder other than the training data: every image in it is evaluated."""
    if data is None or is_own_data(record, data):
        return False
    # as load_data reads it: "mnist" is the named set, "./mnist" a folder
    return source_kind(data) == "folder"


def load_data_for(record: RunRecord, data: str | None = None, data_root: str | Path | None = None):
    """Rebuild the data a checkpoint was trained on (same size, channels, resize rule, validation split and
    seed).

    ``data`` names another source to evaluate on; it is then converted to the model's input
    size and channels by its resize rule. A held-out folder (``is_held_out_folder``) keeps every image: no validation
    split is carved out of it.
    """
    spec = record.require_input()
    config = record.config or {}
    name = data if data is not None else record.data_name
    if not name:
        raise ConvlabError(
            "The checkpoint records no data set; pass one with --data (e.g. --data fashion-mnist)."
        )
    trained_on = record.data or DataSpec(name="")
    same_data = is_own_data(record, data)
    options = {}
    # `limit`/`limit_per_class` decide which images the validation split was carved from; `classes` which
    # classes the model predicts (relabelled 0..k-1)
    for key in ("limit", "limit_per_class", "classes"):
        if same_data and config.get(key):
            options[key] = config[key]
    val_split = trained_on.holdout(config.get("val_split", 0.1))  # the very split the run held out
    if is_held_out_folder(record, data):
        val_split = 0.0
    seed = trained_on.seed if trained_on.seed is not None else config.get("seed", 0)
    return load_data(
        name,
        data_root=data_root if data_root is not None else config.get("data_root"),
        image_size=spec.size,
        in_chans=spec.channels,
        val_split=val_split,
        seed=int(seed),
        resize=spec.resize,  # the rule the model was trained with, for its own data and any other
        **options,
    )


SPLITS = ("test", "val", "train")
WHOLE_FOLDER = "all"  # the split name of a held-out folder evaluated whole


def choose_split(bundle, split: str | None, held_out: bool) -> tuple[str, str, str | None]:
    """``(split to read, name to report, note)`` for the ``split`` asked for (None: the default).

    The default is the test split, else the validation split (a folder of photos split into train/val
    has no test split), which the note then says; a held-out folder of class folders is read whole.
    """
    available = bundle.splits()
    if held_out and available == ["train"]:  # class folders, no split folders: every image, as "all"
        if split not in (None, WHOLE_FOLDER):
            raise ConvlabError(
                f"--split {split} applies to data with train/val/test folders; the held-out folder "
                f"'{bundle.name}' holds class folders only, so all its {bundle.size('train')} images are evaluated "
                "(leave --split out)."
            )
        return "train", WHOLE_FOLDER, None
    if split is not None:
        if split not in SPLITS:
            raise ConvlabError(f"Unknown split '{split}'; accepted: {', '.join(SPLITS)}.")
        return split, split, None
    if "test" in available:
        return "test", "test", None
    if "val" in available:
        note = (
            f"Data '{bundle.name}' has no test split, so this is its validation split: the "
            f"{bundle.size('val')} images held out from training, as in the run's val figures."
        )
        return "val", "val", note
    raise ConvlabError(
        f"Data '{bundle.name}' has neither a test nor a validation split (it has: {', '.join(available)}); "
        "pass --split train, or a held-out folder with --data."
    )


def result_stem(split: str, tta: str | None, data: str | None = None) -> str:
    """``eval-<stem>.json`` / ``confusion-<stem>.png``: the split, the TTA mode and, for other data, its name,
    so that results of different modes and data sit side by side instead of overwriting each other."""
    parts = [split] if tta is None else [split, tta]
    if data is not None:
        label = Path(data.rstrip("/")).name if not data.startswith("idx:") else "idx"
        parts.insert(0, re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.") or "data")
    return "-".join(parts)


def evaluate(
    source: str | Path,
    *,
    data: str | None = None,
    split: str | None = None,
    tta: str | None = None,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    data_root: str | Path | None = None,
    json_out: bool = False,
    write: bool = True,
    amp: str = AUTO,
    channels_last: bool | str = AUTO,
) -> EvalResult:
    """Evaluate a checkpoint (or a run folder's best checkpoint) on ``split`` of its data.

    The data defaults to the one recorded in the checkpoint, rebuilt at the same image size
    and channels with the same validation fraction and seed, so ``split="val"`` is the very
    held-out split of training. ``split=None`` takes the test split, else the validation split
    (a folder of photos has no test split), and says so in ``result.notes``. ``data`` may name a
    separate held-out folder of class folders: every image in it is evaluated (split ``"all"``), its
    class folders matched to the model's classes by name, in any order.

    When ``source`` belongs to a run folder and ``write`` is true, ``eval-<stem>.json`` and
    ``confusion-<stem>.png`` are written there (``result_stem``: e.g. ``eval-test.json``,
    ``eval-test-flip.json``, ``eval-holdout-all.json``). ``json_out`` prints the result as one
    JSON document. A TTA mode whose views the training augmentations did not teach gets a note.

    ``amp`` and ``channels_last`` (``auto``: what pays for the model here, as training chose it;
    ``convlab.runtime.choose_precision``) say how the model runs; ``result.precision`` says what it ran in.
    """
    tta = check_tta(tta)
    if split is not None and split not in (*SPLITS, WHOLE_FOLDER):
        raise ConvlabError(f"Unknown split '{split}'; accepted: {', '.join(SPLITS)}.")
    if batch_size < 1:
        raise ConvlabError(f"Batch size must be a positive integer, got {batch_size}.")
    device = check_device(device)
    checkpoint = resolve_checkpoint(source)
    model, record = load_checkpoint(checkpoint, map_location="cpu")
    own_data = is_own_data(record, data)
    bundle = load_data_for(record, data, data_root)
    read_split, split_name, split_note = choose_split(bundle, split, is_held_out_folder(record, data))
    model_classes = record.model.num_classes
    by_name = record.classes if not own_data and record.classes else None
    if by_name is None and len(bundle.classes) != model_classes:
        raise ConvlabError(
            f"Data '{bundle.name}' has {len(bundle.classes)} classes but the model in '{checkpoint}' "
            f"predicts {model_classes}; evaluate it on data with {model_classes} classes."
        )
    augment = None if record.config is None else record.config.get("augment") or []
    notes = [note for note in (split_note, untrained_views_note(tta, augment)) if note]
    # the model as training ran it: the same fast layers, and (auto) the precision and layout the run set, or
    # the ones it chose (the same choice, made again), so that the figures are the ones its report gives
    size = (bundle.in_chans, *bundle.image_size)
    use_fast_layers(model.to(device), size)
    amp, channels_last, as_trained = _as_trained(record, amp, channels_last)
    precision = resolve_precision(model, size, device, amp, channels_last)
    if as_trained:
        precision = replace(precision, reason=precision.reason.replace("as given", "as the run was trained"))
    if precision.channels_last:
        model.to(memory_format=torch.channels_last)
    with large_buffers_kept():  # batches of ImageNet-sized maps: no fresh pages per batch (convlab.allocator)
        result = evaluate_model(
            model,
            bundle,
            read_split,
            batch_size=batch_size,
            device=device,
            tta=tta,
            amp=precision.amp,
            input_correction=input_correction_for(bundle, record.input),
            classes=by_name,
        )
    result.split, result.notes, result.checkpoint = split_name, notes, str(checkpoint)
    result.precision = str(precision)
    run_dir = run_folder_of(source)
    if write and run_dir is not None:
        stem = result_stem(split_name, tta, None if own_data else data)
        document_path, picture_path = run_dir / f"eval-{stem}.json", run_dir / f"confusion-{stem}.png"
        result.files = [str(document_path), str(picture_path)]
        document = result.to_json()
        atomic_write(document_path, lambda tmp: Path(tmp).write_text(document + "\n"))
        plot_confusion(result.confusion, result.classes, picture_path)
    if json_out:
        print(result.to_json())
    return result
