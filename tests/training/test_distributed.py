"""Training on two processes with DistributedDataParallel (gloo on loopback), as `convlab train --nproc 2`
starts it: both processes end with the same weights, the figures reported are those one process measures on
the saved checkpoint, a process that dies stops the run with one sentence and leaves its last checkpoint
whole, and a run of two processes resumes on two, to the weights of a run never stopped."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import convlab
from convlab.cli import build_parser
from convlab.cli.train_cmd import command_line
from convlab.data.bundle import Shard
from convlab.data.folder import EpochBatchSampler
from convlab.errors import ConvlabError
from convlab.training.config import check_distributed, resolve_config
from convlab.training.distributed import DIGESTS_HOOK, STOP_HOOK, STOP_HOOK_STATUS, Group, weights_digest

# LeNet-5 on 2,000 Fashion-MNIST images (1,800 train: 28 steps of 64 an epoch, 32 images each process), one
# thread a process, so that every run of these settings adds up alike.
LENET = [
    "--model", "lenet5", "--data", "fashion-mnist", "--limit", "2000", "--epochs", "1",
    "--batch-size", "64", "--threads", "1",
]  # fmt: skip


def train_command(*arguments, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m convlab train ARGUMENTS`` in a fresh process, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "convlab", "train", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def digests(folder: Path) -> list[str]:
    return [path.read_text().strip() for path in sorted(folder.glob("rank-*.sha256"))]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv without its timings, which no two runs share."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [
            {k: v for k, v in row.items() if k not in ("seconds", "images_per_s")}
            for row in csv.DictReader(handle)
        ]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One epoch of LeNet-5 on two processes, each writing the digest of its final weights."""
    work = tmp_path_factory.mktemp("distributed")
    run_dir, hashes = work / "run", work / "digests"
    hashes.mkdir()
    done = train_command("--nproc", "2", *LENET, "--out", run_dir, env={DIGESTS_HOOK: str(hashes)})
    assert done.returncode == 0, done.stderr
    return run_dir, hashes, done


def test_two_processes_end_with_bit_identical_weights_those_of_the_checkpoint(two_processes):
    run_dir, hashes, done = two_processes
    assert (
        "distributed: 2 processes (gloo, 1 thread each); each takes 32 images of every batch of 64"
        in done.stdout
    )
    assert done.stdout.count("epoch 1/1") == 1 and done.stderr == ""  # process 0 alone speaks
    first, second = digests(hashes)
    assert first == second
    assert first == weights_digest(load_file(run_dir / "last.safetensors"))


def test_the_reported_figures_are_one_process_evaluating_the_checkpoint(two_processes):
    run_dir, _, _ = two_processes
    val = convlab.evaluate(run_dir, split="val", write=False)
    test = convlab.evaluate(run_dir, split="test", write=False)
    (row,) = metrics(run_dir)  # the validation figures, summed over both processes' batches
    assert (row["val_loss"], row["val_top1"], row["val_top5"]) == (
        f"{val.loss:.6f}",
        f"{val.top1:.6f}",
        f"{val.top5:.6f}",
    )
    report = (run_dir / "report.md").read_text()  # the test figures, and every class's scores
    assert f"| top-1 accuracy | {test.top1:.4f} |" in report and f"| loss | {test.loss:.4f} |" in report
    for scores in test.per_class:
        assert (
            f"| {scores['class']} | {scores['precision']:.4f} | {scores['recall']:.4f} | {scores['f1']:.4f} | "
            f"{scores['support']} |"
        ) in report
    # only process 0 wrote: one run folder, whole
    assert sorted(
        path.name for path in run_dir.iterdir() if path.suffix in (".safetensors", ".pt", ".csv")
    ) == [
        "best.safetensors",
        "last.safetensors",
        "metrics.csv",
        "state.pt",
    ]


def test_a_process_that_dies_stops_the_run_which_resumes_on_two_processes_to_the_same_weights(
    two_processes, tmp_path
):
    straight, _, _ = two_processes
    run_dir, hashes = tmp_path / "run", tmp_path / "digests"
    hashes.mkdir()
    # state.pt at steps 10 and 20 of the 28; process 1 dies after its 25th step, as a crash would
    died = train_command(
        "--nproc", "2", *LENET, "--checkpoint-every", "10", "--out", run_dir, env={STOP_HOOK: "1:25"}
    )
    assert died.returncode == 1 and "Traceback" not in died.stderr
    assert died.stderr.strip().splitlines()[-1] == (
        f"convlab: error: Training process 1 of 2 exited with status {STOP_HOOK_STATUS}, so the run stopped on "
        f"every process; the run folder keeps 20 of the 28 steps of epoch 1 (resume with --resume {run_dir} "
        "--nproc 2)."
    )
    state = torch.load(run_dir / "state.pt", weights_only=True)
    assert (state["epoch"], state["in_epoch"]["steps"], state["world_size"]) == (0, 20, 2)

    one = train_command("--resume", run_dir)
    assert one.returncode == 2
    assert f"Cannot resume '{run_dir}' on 1 process: it was trained on 2" in one.stderr

    resumed = train_command("--resume", run_dir, "--nproc", "2", env={DIGESTS_HOOK: str(hashes)})
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run_dir} at step 20 of 28 in epoch 1 of 1" in resumed.stdout
    first, second = digests(hashes)
    assert first == second == weights_digest(load_file(straight / "last.safetensors"))
    assert metrics(run_dir) == metrics(straight)


def test_each_process_takes_its_part_of_every_batch_of_one_process(fashion_mnist):
    bundle = fashion_mnist(limit=1000)  # 900 train, 100 val
    whole = list(bundle.loader("train", 64, shuffle=True, epoch=3, seed=5, drop_last=True))
    parts = [
        list(bundle.loader("train", 64, shuffle=True, epoch=3, seed=5, drop_last=True, shard=Shard(rank, 2)))
        for rank in (0, 1)
    ]
    assert len(parts[0]) == len(parts[1]) == len(whole) == 14  # every process takes as many steps
    for (images, labels), (first, first_labels), (second, second_labels) in zip(whole, *parts):
        assert first.shape[0] == second.shape[0] == 32
        assert torch.equal(images, torch.cat([first, second])) and torch.equal(
            labels, torch.cat([first_labels, second_labels])
        )
    # evaluation: batches of 64 x 2 dealt out are the single process's batches of 64, the last one alone
    evaluated = list(bundle.loader("val", 64))
    dealt = [list(bundle.loader("val", 128, shard=Shard(rank, 2))) for rank in (0, 1)]
    assert [labels.shape[0] for _, labels in dealt[0]] == [64] and [
        labels.shape[0] for _, labels in dealt[1]
    ] == [36]
    assert torch.equal(dealt[0][0][0], evaluated[0][0]) and torch.equal(dealt[1][0][0], evaluated[1][0])
    # a folder's sampler deals out the same way, each image keeping its own seed
    whole = list(iter_sampler(EpochBatchSampler(10, 4, True, False)))
    dealt = [list(iter_sampler(EpochBatchSampler(10, 4, True, False, Shard(rank, 2)))) for rank in (0, 1)]
    assert [a + b for a, b in zip(dealt[0], dealt[1] + [[]])] == whole  # the last batch of 2: process 0's


def iter_sampler(sampler: EpochBatchSampler):
    sampler.seed, sampler.epoch = 5, 3
    yield from sampler


def test_the_flags_each_process_is_given_read_back_as_the_flags_given():
    parser = build_parser()
    given = [
        "train", "--model", "lenet5", "--option", "pool=max", "--option", "hidden=[64, 32]", "--lr", "auto",
        "--augment", "flip,crop", "--no-compile", "--channels-last", "--log-gradients", "--out", "-odd name",
        "--image-size", "28x32", "--nproc", "2", "--sync-bn", "--allow-partial",
    ]  # fmt: skip
    args = parser.parse_args(given)
    again = parser.parse_args(["train", *command_line(args), "--nproc", "2"])
    assert vars(again).keys() == vars(args).keys()
    assert {k: v for k, v in vars(again).items() if k != "func"} == {
        k: v for k, v in vars(args).items() if k != "func"
    }


@pytest.mark.parametrize(
    ("settings", "processes", "words"),
    [
        ({"folds": 5}, 2, "trains its folds one after another on one process"),
        ({"lr": "auto"}, 2, "runs the range test on one process"),
        ({"batch_size": 63}, 2, "must split evenly between them; give a multiple of 2"),
        ({"pretrained": "runs/x", "transfer": "linear-probe"}, 2, "one fit on one process"),
        ({"sync_bn": True}, 1, "this run has one"),
    ],
)
def test_what_a_distributed_run_cannot_take_is_refused_in_one_sentence(settings, processes, words):
    with pytest.raises(ConvlabError, match=words):
        check_distributed(resolve_config(**settings), processes)


def test_a_bad_batch_or_number_of_processes_is_refused_before_any_process_starts(capsys):
    from convlab.cli import main

    assert main(["train", "--nproc", "2", "--batch-size", "63", "--epochs", "1"]) == 2
    assert "give a multiple of 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--nproc", "0"])
    assert "'0' is not a number of processes" in capsys.readouterr().err


def test_sync_bn_is_refused_on_cpus_where_torch_has_no_syncbatchnorm():
    with pytest.raises(ConvlabError, match="--sync-bn needs GPUs"):
        Group(rank=0, world=2).wrap(nn.BatchNorm2d(3), torch.device("cpu"), sync_bn=True)
