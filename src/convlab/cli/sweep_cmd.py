"""`convlab sweep`: train's flags for what every configuration shares, --vary for what differs, then
``convlab.training.sweeps.sweep``."""

from __future__ import annotations

import argparse

from convlab.cli.train_cmd import add_training_flags
from convlab.training.sweeps import MAX_RUNS_WITHOUT_YES

# train's flags that a sweep sets for each run itself (--out names the sweep folder instead).
RUN_FLAGS = ("--resume", "--folds", "--fold", "--out")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="train a grid of configurations and compare them in one table and one plot",
        description="Train one configuration with some settings varied (--vary NAME=V1,V2,...: any flag of "
        "`convlab train`, --model, or a model option), each point into a run folder of its own inside the "
        "sweep folder, then write sweep.md (a table of final and best validation top-1, final training "
        "loss, seconds, parameters and multiply-adds), sweep.csv (one row per run) and sweep.png (loss and "
        "accuracy of every run against epoch and seconds). `tensorboard --logdir SWEEP` overlays the runs. "
        "A run whose loss goes non-finite is recorded as diverged and the sweep goes on; --resume SWEEP "
        "continues an interrupted sweep, skipping finished runs. Example: convlab sweep --model lenet5 "
        "--data fashion-mnist --epochs 3 --vary optimizer=sgd,momentum,adam",
        argument_default=argparse.SUPPRESS,  # only flags actually given override the config file
    )
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument(
        "--vary",
        action="append",
        metavar="NAME=V1,V2,...",
        help="a setting and the values to compare, repeatable: the grid is the product (values are YAML: "
        "lr=0.1,0.01; hidden=[500],[300,100]; option.NAME for a model option a setting shares a name with)",
    )
    sweep.add_argument(
        "--repeat",
        type=int,
        metavar="K",
        help="train each configuration with K seeds (seed, seed+1, ...) and report mean and spread (default 1)",
    )
    sweep.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="train N runs at a time in separate processes, the cores split between them (default 1)",
    )
    sweep.add_argument(
        "--yes", action="store_true", help=f"start a sweep of more than {MAX_RUNS_WITHOUT_YES} runs"
    )
    sweep.add_argument(
        "--dry-run", action="store_true", help="print the runs the sweep would train, and stop"
    )
    sweep.add_argument(
        "--out", metavar="DIR", help="the sweep folder (default runs/sweep-<model>-<data>-<YYYYmmdd-HHMMSS>)"
    )
    sweep.add_argument(
        "--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep with its saved plan"
    )
    add_training_flags(parser, leave_out=RUN_FLAGS, title_prefix="shared by every run: ")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = {key: value for key, value in vars(args).items() if key not in ("func", "command")}
    if "options" in settings:
        settings["options"] = dict(settings["options"])
    from convlab.training.sweeps import sweep  # the engine, and all it runs on

    outcome = sweep(settings.pop("vary", None), **settings)
    if isinstance(outcome, list):  # --dry-run: the plan
        print(f"{len(outcome)} runs:")
        for configuration in outcome:
            print(f"  {configuration.folder}  {configuration.label}")
    return 0
