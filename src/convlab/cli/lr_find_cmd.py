"""`convlab lr-find`: the learning-rate range test on the model and data `convlab train` would use."""

from __future__ import annotations

import argparse

from convlab.cli.train_cmd import add_training_flags

# the settings the test decides or does not use: it tries every rate, for steps, not epochs
NOT_TAKEN = (
    "--lr",
    "--resume",
    "--folds",
    "--fold",
    "--epochs",
    "--early-stop",
    "--test-tta",
    "--checkpoint-every",
    "--log-gradients",
    "--schedule",
    "--warmup-epochs",
    "--out",
)
START, END, STEPS = 1e-7, 10.0, 100  # convlab.training.lr_range's defaults (that module loads torch)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "lr-find",
        help="find a learning rate: the loss over an exponentially growing rate (range test)",
        description="The learning-rate range test (Smith 2015; fastai's lr_find): train STEPS steps with the "
        "rate growing exponentially from START to END on the model and data `convlab train` would use with "
        "the same flags, then put the weights and optimizer back. Prints and plots (lr_find.png) the loss "
        "against the rate with two suggestions: where it falls fastest, and a tenth of where it is lowest "
        "(what `convlab train --lr auto` trains at).",
        argument_default=argparse.SUPPRESS,
    )
    test = parser.add_argument_group("range test")
    test.add_argument("--start", type=float, metavar="LR", help=f"the first rate (default {START:g})")
    test.add_argument("--end", type=float, metavar="LR", help=f"the last rate (default {END:g})")
    test.add_argument("--steps", type=int, metavar="N", help=f"steps from START to END (default {STEPS})")
    test.add_argument(
        "--out",
        metavar="DIR",
        help="where lr_find.csv and lr_find.png go (default runs/lr-find-<model>-<data>-<time>)",
    )
    add_training_flags(parser, leave_out=NOT_TAKEN, title_prefix="model, data and optimizer: ")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = {key: value for key, value in vars(args).items() if key not in ("func", "command", "config")}
    if "options" in settings:
        settings["options"] = dict(settings["options"])
    from convlab.training import lr_find  # the engine, and all it runs on

    result = lr_find(getattr(args, "config", None), **settings)
    print(f"files: {', '.join(str(path) for path in result.files)}")
    return 0
