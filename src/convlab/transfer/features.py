"""A trained network as a fixed feature extractor, and a linear classifier on its features (the linear probe).

The features are the classifier's input (the penultimate layer), caught by a forward hook;
the probe is scikit-learn's multinomial logistic regression, written back into the
network's classifier so that the result is an ordinary convlab model.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from convlab.analysis import check_input_size
from convlab.checkpoint import save_checkpoint
from convlab.data import load_data
from convlab.errors import ConvlabError
from convlab.files import atomic_write
from convlab.models import ModelSpec
from convlab.record import InputSpec, RunRecord
from convlab.runtime import autocast, check_device
from convlab.transfer.adapt import (
    adapt_input_channels,
    find_classifier,
    in_chans_of,
    model_name,
    replace_head,
)
from convlab.transfer.pretrained import pretrained_model

# The probe's logits must equal scikit-learn's decision function on the same features up to float32
# rounding; a larger gap means the network transforms its classifier's output (SqueezeNet's ReLU).
PROBE_TOLERANCE = 1e-3
CHECKED_IMAGES = 16


def _pooled(features: torch.Tensor) -> torch.Tensor:
    """A (N, D) matrix from the classifier's input: a 1x1-convolution classifier reads a (N, C, H, W) map,
    and with the global average pooling after it, its class scores are those of the averaged map."""
    if features.ndim == 4:
        return features.mean(dim=(2, 3))
    return features.flatten(1)


def _progress(iterable, total: int, description: str):
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        return iterable
    from rich.progress import track

    return track(iterable, total=total, description=description, console=console, transient=True)


def classifier_inputs(
    model: nn.Module,
    loader,
    description: str,
    *,
    amp: str = "off",
    device: str | torch.device = "cpu",
    channels_last: bool = False,
    mirror: bool = False,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """What the classifier receives (``_pooled``, float32) for every image ``loader`` gives, in its order, and
    the labels: ``([features], labels)``, or with ``mirror`` ``([features, features of the mirrored images],
    labels)``. Eval mode without autograd (``no_grad``: the feature cache trains a head on them), under
    ``amp`` autocast and in channels_last when asked; the model's mode is restored after. The one pass
    behind the linear probe (``extract_features``) and the feature cache (``transfer.feature_cache``)."""
    _, classifier = find_classifier(model)
    caught: list[torch.Tensor] = []
    hook = classifier.register_forward_pre_hook(lambda _module, args: caught.append(_pooled(args[0]).float()))
    was_training = model.training
    model.eval()
    labels: list[torch.Tensor] = []
    try:
        with torch.no_grad(), autocast(amp, torch.device(device)):
            for images, targets in _progress(loader, len(loader), description):
                if channels_last:  # as the steps give a channels_last model its batches
                    images = images.contiguous(memory_format=torch.channels_last)
                model(images)
                if mirror:  # the flip mirrors the width: normalising first or after gives the same pixels
                    model(images.flip(3))
                labels.append(targets)
    finally:
        hook.remove()
        model.train(was_training)
    if not caught:
        return [], torch.empty(0, dtype=torch.int64)
    found = [torch.cat(caught[0::2]), torch.cat(caught[1::2])] if mirror else [torch.cat(caught)]
    return found, torch.cat(labels)


def extract_features(
    model: nn.Module, bundle, split: str = "train", batch_size: int = 256, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """``(features float32 N x D, labels int64 N)`` of ``bundle``'s ``split``, in loader order.

    The features are what the classifier receives (averaged over positions when it is a 1x1
    convolution), computed in eval mode without autograd on ``device`` (the model moves there);
    the model's mode is restored after.
    """
    bundle.check_split(split)
    model.to(device)
    loader = bundle.loader(split, batch_size, device=device)
    found, labels = classifier_inputs(model, loader, f"features {split}", device=device)
    if not found:
        raise ConvlabError(f"Split '{split}' of {bundle.name} holds no images.")
    return found[0].cpu().numpy().astype(np.float32, copy=False), labels.cpu().numpy().astype(np.int64)


def write_head(model: nn.Module, weight: np.ndarray, bias: np.ndarray) -> None:
    """Set the classifier to ``logits = weight @ features + bias`` (a 1x1 convolution: the same matrix)."""
    _, classifier = find_classifier(model)
    target = classifier.weight
    values = torch.as_tensor(weight, dtype=target.dtype, device=target.device).reshape(target.shape)
    with torch.no_grad():
        target.copy_(values)
        classifier.bias.copy_(torch.as_tensor(bias, dtype=target.dtype, device=target.device))


def fold_standardisation(scaler, classifier, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The logistic regression on standardised features, as one linear map of the raw features.

    With z = (x - mean) / scale, W z + b = (W / scale) x + (b - (W / scale) mean); a binary
    problem's single score s becomes the two scores (0, s), which give the same softmax.
    """
    weight = np.asarray(classifier.coef_, dtype=np.float64) / scaler.scale_
    bias = np.asarray(classifier.intercept_, dtype=np.float64) - weight @ scaler.mean_
    if weight.shape[0] == 1:
        weight, bias = np.vstack([np.zeros_like(weight), weight]), np.concatenate([[0.0], bias])
    full_weight = np.zeros((num_classes, weight.shape[1]))
    full_bias = np.zeros(num_classes)
    full_weight[classifier.classes_], full_bias[classifier.classes_] = weight, bias
    return full_weight, full_bias


def _open_model(source) -> tuple[nn.Module, str]:
    if isinstance(source, nn.Module):
        if getattr(source, "convlab_spec", None) is None:
            raise ConvlabError(
                "The linear probe needs a model made by convlab.create_model (it is saved as one)."
            )
        return copy.deepcopy(source), model_name(source)

    model, _ = pretrained_model(source)
    return model, str(source)


def check_linear_head(model: nn.Module, bundle, device) -> None:
    """The model's logits on the first training images must be its classifier's linear map of their
    features: true of a Linear head, and of a 1x1-convolution head that only global pooling follows."""
    _, classifier = find_classifier(model)
    images, _ = next(iter(bundle.loader("train", CHECKED_IMAGES, device=device)))
    caught: list[torch.Tensor] = []
    hook = classifier.register_forward_pre_hook(lambda _module, args: caught.append(_pooled(args[0])))
    try:
        with torch.inference_mode():
            logits = model.eval()(images).double()
    finally:
        hook.remove()
    weight = classifier.weight.detach().reshape(classifier.weight.shape[0], -1).double()
    linear = caught[0].double() @ weight.T + classifier.bias.detach().double()
    gap = float((logits - linear).abs().max())
    if not gap <= PROBE_TOLERANCE * max(1.0, float(linear.abs().max())):
        raise ConvlabError(
            f"Model '{model_name(model)}' transforms its classifier's output (its logits differ from the "
            f"linear classifier's by {gap:.3g}), so a linear probe cannot be written into it; "
            f"fine-tune its head instead."
        )


def linear_probe(
    model_source,
    bundle,
    C: float = 1.0,
    max_iter: int = 1000,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    out: str | Path | None = None,
    extra_record: dict | None = None,
) -> tuple[nn.Module, RunRecord]:
    """Train a linear classifier on a trained network's features and return it as a convlab model.

    ``model_source``: a zoo model, a convlab run folder or checkpoint, or ``torchvision:ARCH``.
    The network's first layer is adapted to ``bundle``'s channels and its classifier replaced
    for ``bundle``'s classes; scikit-learn's LogisticRegression (multinomial, lbfgs, inverse
    regularisation ``C``) is fitted on the standardised train-split features, and the
    standardisation is folded into the weights written into the classifier, so the model
    needs no scikit-learn to run. Returns ``(model, record)``; ``out`` saves it with
    save_checkpoint. ``extra_record`` is merged into the record, for what the bundle does not
    know about itself but ``convlab eval`` needs to rebuild the same splits, e.g.
    ``{"data": {"val_split": 0.1, "seed": 0}, "config": {"limit": 1000}}``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if not C > 0 or int(max_iter) < 1:
        raise ConvlabError(f"C must be above 0 and max_iter at least 1, got C={C} and max_iter={max_iter}.")
    device = check_device(device)  # None: CUDA when present
    model, source_label = _open_model(model_source)
    notes = []
    if in_chans_of(model) != bundle.in_chans:
        notes.append(adapt_input_channels(model, bundle.in_chans))
    notes += replace_head(model, len(bundle.classes))
    check_input_size(model, (bundle.in_chans, *bundle.image_size))
    model.to(device)
    check_linear_head(model, bundle, device)  # with the new head's random weights, before the costly part

    train_x, train_y = extract_features(model, bundle, "train", batch_size, device)
    missing = sorted(set(range(len(bundle.classes))) - set(train_y.tolist()))
    if missing:
        raise ConvlabError(
            f"The train split of {bundle.name} has no images of class(es) "
            f"{', '.join(bundle.classes[i] for i in missing)}; the probe needs every class."
        )
    scaler = StandardScaler().fit(train_x)
    probe = LogisticRegression(C=C, max_iter=int(max_iter))  # lbfgs, multinomial for more than two classes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe.fit(scaler.transform(train_x), train_y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    weight, bias = fold_standardisation(scaler, probe, len(bundle.classes))
    write_head(model, weight, bias)
    check_linear_head(model, bundle, device)  # and with the probe's weights

    metrics = {"train_top1": float(probe.score(scaler.transform(train_x), train_y))}
    if "val" in bundle.splits():
        val_x, val_y = extract_features(model, bundle, "val", batch_size, device)
        metrics["val_top1"] = float(probe.score(scaler.transform(val_x), val_y))
    document = {
        "model": ModelSpec.of(model).to_dict(),
        "classes": list(bundle.classes),
        "input": InputSpec.of(bundle).to_dict(),
        "data": {"name": bundle.name, "source": bundle.source},
        "epoch": 0,
        "metrics": metrics,
        "transfer": {
            "method": "linear-probe",
            "source": source_label,
            "C": float(C),
            "max_iter": int(max_iter),
            "iterations": int(np.max(probe.n_iter_)),
            "converged": converged,
            "features": int(train_x.shape[1]),
            "train_images": int(len(train_y)),
            "notes": notes,
        },
    }
    for key, value in (extra_record or {}).items():
        document[key] = {**document[key], **value} if isinstance(document.get(key), dict) else value
    record = RunRecord.from_dict(document)
    model.eval()
    if out is not None:
        save_checkpoint(out, model, record)
    return model, record


def write_features(
    source,
    data: str,
    *,
    split: str = "all",
    out: str | Path = "features.npz",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    data_root: str | Path | None = None,
    limit: int | None = None,
) -> Path:
    """Save the features of ``data``'s ``split`` (or every split: ``all``) under ``source``'s network:
    ``features_<split>`` (float32 N x D), ``labels_<split>`` (int64 N) and ``classes``.

    The data is converted to the network's input channels, and to its recorded input size
    for a convlab checkpoint (torchvision weights take the data at its own size).
    """

    device = check_device(device)  # None: CUDA when present
    model, report = pretrained_model(source)
    size = None
    if report.kind == "convlab checkpoint" and report.preprocessing:
        size = report.preprocessing.size
    # a convlab checkpoint's images are brought to its size by the rule it was trained with (crop or squash)
    resize = report.preprocessing.resize if size is not None else None
    bundle = load_data(
        data, data_root=data_root, image_size=size, in_chans=in_chans_of(model), limit=limit, resize=resize
    )
    splits = bundle.splits() if split == "all" else [bundle.check_split(split)]
    arrays: dict[str, np.ndarray] = {"classes": np.array(bundle.classes)}
    for name in splits:
        arrays[f"features_{name}"], arrays[f"labels_{name}"] = extract_features(
            model, bundle, name, batch_size, device
        )

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append .npz to a name
            np.savez(handle, **arrays)

    atomic_write(Path(out), write)
    return Path(out)
