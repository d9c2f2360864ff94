"""`convlab summary`: a model's layers, shapes, parameters, multiply-adds and receptive fields."""

from __future__ import annotations

import json
from pathlib import Path

from convlab.cli.options import parse_model_option
from convlab.errors import ConvlabError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "summary",
        help="layer-by-layer shapes, parameters, multiply-adds and receptive fields of a model",
        description="Run one forward pass (on the meta device: no weights, seconds even for ResNet-152) "
        "and print every layer with its output shape, parameters, multiply-adds and receptive field.",
    )
    parser.add_argument(
        "model",
        metavar="NAME",
        help="a model name from `convlab models`, your own network as path/to/file.py:function or "
        "package.module:function (runs that code; give --input), or a run folder or checkpoint "
        "(its network at the size it was trained on)",
    )
    parser.add_argument(
        "--input",
        metavar="CxHxW",
        default=None,
        help="input size, e.g. 3x224x224 (or HxW, or S for the model's channels); default: the model's own",
    )
    parser.add_argument("--num-classes", type=int, default=None, metavar="N", help="classifier outputs")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a builder option, repeatable, e.g. --option stride_in=1x1 (values read as YAML: 0.5, true, [300, 100])",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.set_defaults(func=run)


def _recorded_network(args) -> tuple[object, str | None] | None:
    """A run folder or checkpoint: ``(network, input size)`` as its record describes them, the network built
    on the meta device (no weights) and the input the one it was trained on unless --input says otherwise;
    None for a model given by name."""
    path = Path(args.model)
    run_folder = path.is_dir() and any((path / f"{n}.safetensors").is_file() for n in ("best", "last"))
    if not (run_folder or path.suffix == ".safetensors"):
        return None  # a name (a folder that happens to share a zoo name holds no checkpoint)
    if args.num_classes is not None or args.option:
        raise ConvlabError(
            f"--num-classes and --option apply to a model given by name; '{args.model}' records its own."
        )
    import torch

    from convlab.checkpoint import read_record

    record = read_record(path)
    with torch.device("meta"):
        model = record.model.build()  # a network of yours: built from the copy of its file in the folder
    trained = record.input.shape if record.input else record.model.input_size
    return model, args.input or "x".join(str(s) for s in trained)


def run(args) -> int:
    options = dict(parse_model_option(pair) for pair in args.option)  # answered before torch loads
    # imported here, not at the top: the parser loads every command module, and this import loads torch
    from convlab.analysis.inspector import print_summary, summary

    recorded = _recorded_network(args)
    if recorded is not None:
        result = summary(*recorded)
    else:
        result = summary(args.model, args.input, num_classes=args.num_classes, **options)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_summary(result)
    return 0
