"""One training or evaluation measurement of one side, in its own process (started by benchmarks/run.py).

Sides:
  reference     torchvision FashionMNIST + PIL transforms + DataLoader + the tutorial loop (reference.py)
  convlab       convlab's in-memory uint8 set, batched normalisation, train_one_epoch, channels_last and
                the precision that pays for the model (MODELS: float32 for LeNet-5's thin layers, bf16
                autocast for ResNet-20's): the fast path
  convlab-nchw  the same convlab data path and loop in plain fp32 NCHW (what the data path alone buys)

Modes:
  train    images/s over --images training images after --warmup batches (same model, batch size,
           optimizer, threads and initial weights on every side)
  eval     images/s of one pass over the 10,000 test images (reference: the tutorial's test loop at
           batch 64; convlab: evaluate_model, no autograd, batch 512)
  target   training seconds until the test top-1 reaches --target (checked after every epoch; the
           checks are not timed); the reference trains as the tutorial does (SGD momentum 0.9,
           lr 0.01, batch 64), convlab with a recipe (--recipe, default lenet5-fast)
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import MODELS, Clock, emit, set_threads, weights_digest  # noqa: E402
from torch import nn  # noqa: E402

TUTORIAL_LR, TUTORIAL_MOMENTUM = 0.01, 0.9


def build(model_name: str, init: Path | None) -> nn.Module:
    from convlab.models import create_model

    options, _, _ = MODELS[model_name]
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, in_chans=1, **options)
    if init is not None:
        model.load_state_dict(torch.load(init, weights_only=True))
    return model


class Limited:
    """The first ``batches`` batches of a loader, with a length (train_one_epoch reads len())."""

    def __init__(self, loader, batches: int) -> None:
        self.loader, self.batches = loader, min(batches, len(loader))

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.batches)


def convlab_setup(
    side: str, model_name: str, batch_size: int, threads: int, recipe: str | None = None, **settings
):
    """Bundle, TrainConfig and a quiet progress for the convlab sides."""
    from convlab.data import load_data
    from convlab.training.config import resolve_config
    from convlab.training.progress import TrainProgress

    _, size, amp = MODELS[model_name]
    fast = side == "convlab"
    if recipe is not None:
        config = resolve_config(recipe=recipe, val_split=0, threads=threads, **settings)
    else:
        config = resolve_config(
            model=model_name,
            batch_size=batch_size,
            optimizer="momentum",
            lr=TUTORIAL_LR,
            momentum=TUTORIAL_MOMENTUM,
            schedule="constant",
            val_split=0,
            threads=threads,
            amp=amp if fast else "off",
            channels_last=fast,
            **settings,
        )
    bundle = load_data(config.data, image_size=(size, size), val_split=0)
    return bundle, config, TrainProgress(None, interactive=False)


def measure_train(args) -> dict:
    from convlab.training.optim import Schedule, build_optimizer
    from convlab.training.step import train_one_epoch

    model = build(args.model, args.init)
    digest = weights_digest(model)
    criterion = nn.CrossEntropyLoss()
    if args.side == "reference":
        import reference

        loader = reference.fashion_loader(args.fashion_root, True, MODELS[args.model][1], args.batch_size)
        optimizer = torch.optim.SGD(model.parameters(), lr=TUTORIAL_LR, momentum=TUTORIAL_MOMENTUM)
        reference.train_loop(model, loader, criterion, optimizer, max_images=args.warmup * args.batch_size)
        clock = Clock().start()
        seen = reference.train_loop(model, loader, criterion, optimizer, max_images=args.images)
        wall, cpu = clock.stop()
        epoch_images = len(loader.dataset)
    else:
        bundle, config, progress = convlab_setup(args.side, args.model, args.batch_size, args.threads)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, config.optimizer, config.lr, config.momentum, config.weight_decay)
        batches = -(-args.images // args.batch_size)
        schedule = Schedule(optimizer, config.schedule, 1, len(bundle.loader("train", args.batch_size)))

        def loader(epoch: int, count: int):
            return Limited(
                bundle.loader("train", args.batch_size, shuffle=True, epoch=epoch, drop_last=True), count
            )

        train_one_epoch(model, loader(0, args.warmup), optimizer, schedule, criterion, config, progress)
        clock = Clock().start()
        stats = train_one_epoch(model, loader(1, batches), optimizer, schedule, criterion, config, progress)
        wall, cpu = clock.stop()
        seen = stats["images"]
        epoch_images = bundle.size("train")
    return {
        "images": seen,
        "seconds": wall,
        "cpu_seconds": cpu,
        "images_per_s": seen / wall,
        "seconds_per_epoch": epoch_images / (seen / wall),
        "cpu_seconds_per_epoch": epoch_images * cpu / seen,
        "initial_weights": digest,
    }


def measure_eval(args) -> dict:
    model = build(args.model, args.init)
    if args.side == "reference":
        import reference

        loader = reference.fashion_loader(args.fashion_root, False, MODELS[args.model][1])
        clock = Clock().start()
        top1, _ = reference.test_loop(model, loader, nn.CrossEntropyLoss())
        wall, cpu = clock.stop()
        images = len(loader.dataset)
    else:
        from convlab.evaluation import evaluate_model

        bundle, config, _ = convlab_setup(args.side, args.model, args.batch_size, args.threads)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        clock = Clock().start()
        result = evaluate_model(model, bundle, "test", batch_size=512, amp=config.amp)
        wall, cpu = clock.stop()
        top1, images = result.top1, result.n
    return {
        "images": images,
        "seconds": wall,
        "cpu_seconds": cpu,
        "images_per_s": images / wall,
        "top1": top1,
    }


def measure_target(args) -> dict:
    """Epochs until the test top-1 reaches args.target; only the training is timed."""
    model = build(args.model, args.init)
    digest = weights_digest(model)
    history, wall_total, cpu_total = [], 0.0, 0.0
    if args.side == "reference":
        import reference

        train_loader = reference.fashion_loader(args.fashion_root, True, MODELS[args.model][1])
        test_loader = reference.fashion_loader(args.fashion_root, False, MODELS[args.model][1])
        criterion = nn.CrossEntropyLoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=TUTORIAL_LR, momentum=TUTORIAL_MOMENTUM)
        for _ in range(args.max_epochs):
            clock = Clock().start()
            reference.train_loop(model, train_loader, criterion, optimizer)
            wall, cpu = clock.stop()
            wall_total, cpu_total = wall_total + wall, cpu_total + cpu
            top1, _ = reference.test_loop(model, test_loader, criterion)
            history.append({"top1": top1, "seconds": wall_total, "cpu_seconds": cpu_total})
            if top1 >= args.target:
                break
        settings = {
            "batch_size": reference.TUTORIAL_BATCH,
            "optimizer": "SGD momentum 0.9",
            "lr": TUTORIAL_LR,
            "schedule": "constant",
        }
    else:
        from convlab.evaluation import evaluate_model
        from convlab.training.optim import Schedule, build_optimizer
        from convlab.training.step import train_one_epoch

        bundle, config, progress = convlab_setup(args.side, args.model, 0, args.threads, recipe=args.recipe)
        if config.model != args.model:
            raise SystemExit(f"recipe {args.recipe} trains {config.model}, not {args.model}")
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        steps = len(bundle.loader("train", config.batch_size, drop_last=True))
        optimizer = build_optimizer(model, config.optimizer, config.lr, config.momentum, config.weight_decay)
        schedule = Schedule(optimizer, config.schedule, config.epochs, steps, config.warmup_epochs)
        criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        for epoch in range(1, config.epochs + 1):
            loader = bundle.loader(
                "train",
                config.batch_size,
                shuffle=True,
                augment=config.augment,
                epoch=epoch,
                seed=config.seed,
                drop_last=True,
            )
            clock = Clock().start()
            train_one_epoch(model, loader, optimizer, schedule, criterion, config, progress)
            wall, cpu = clock.stop()
            wall_total, cpu_total = wall_total + wall, cpu_total + cpu
            top1 = evaluate_model(model, bundle, "test", amp=config.amp).top1
            history.append({"top1": top1, "seconds": wall_total, "cpu_seconds": cpu_total})
            if top1 >= args.target:
                break
        settings = {
            key: value
            for key, value in config.to_dict().items()
            if key
            in (
                "batch_size",
                "optimizer",
                "lr",
                "schedule",
                "epochs",
                "label_smoothing",
                "amp",
                "channels_last",
                "augment",
            )
        }
    reached = bool(history) and history[-1]["top1"] >= args.target
    return {
        "reached": reached,
        "epochs": len(history),
        "seconds": history[-1]["seconds"],
        "cpu_seconds": history[-1]["cpu_seconds"],
        "top1": history[-1]["top1"],
        "history": history,
        "settings": settings,
        "initial_weights": digest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("train", "eval", "target"))
    parser.add_argument("--side", choices=("reference", "convlab", "convlab-nchw"), required=True)
    parser.add_argument("--model", choices=tuple(MODELS), default="lenet5")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=60000, help="train mode: images to time")
    parser.add_argument(
        "--warmup", type=int, default=5, help="train mode: batches run before the clock starts"
    )
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--init", type=Path, help="initial weights (state dict) both sides start from")
    parser.add_argument(
        "--fashion-root", type=Path, help="reference: root prepared by reference.prepare_fashion_mnist"
    )
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--recipe", default="lenet5-fast")
    args = parser.parse_args()
    set_threads(args.threads)
    measure = {"train": measure_train, "eval": measure_eval, "target": measure_target}[args.mode]
    emit({"mode": args.mode, "side": args.side, "model": args.model, **measure(args)})


if __name__ == "__main__":
    main()
