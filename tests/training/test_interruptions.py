"""Runs that stop where they should not: killed inside an epoch, interrupted before their first checkpoint, or
killed while writing one. A resume continues them to the same weights as a run never stopped; a run with
nothing to continue from starts again in its own folder; a killed write leaves a temporary file that the
next run of the folder removes."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import convlab.training.step as step
from convlab.errors import ConvlabError
from convlab.training import train
from convlab.training.config import resolve_config, save_config

# LeNet-5 on 1,000 Fashion-MNIST images (900 train: 28 steps of 32 an epoch), flips drawn from the loader's
# seeded stream; an in-epoch checkpoint every 5 steps (steps 5, 10, 15, 20, 25: five state.pt writes an epoch
# and the epoch's own, six in all). One thread, as the child process runs it, so the sums add up alike.
LENET = dict(
    model="lenet5",
    data="fashion-mnist",
    limit=1000,
    batch_size=32,
    epochs=2,
    optimizer="adam",
    lr=0.002,
    augment="flip",
    threads=1,
    checkpoint_every=5,
)
# An MLP with dropout (torch's generator) under onecycle (the schedule's state): 18 steps of 50 an epoch.
DROPOUT = dict(
    model="mlp",
    data="fashion-mnist",
    limit=1000,
    batch_size=50,
    epochs=2,
    optimizer="adam",
    schedule="onecycle",
    augment="flip",
    options={"hidden": [64], "dropout": 0.2},
    threads=1,
)

# A training in a child process that SIGKILLs itself at its ``kill_at``-th state.pt write, once the new file
# is written and before it replaces the old one: the worst moment, which leaves the temporary file behind.
KILLED_CHILD = """
import json, os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from convlab.training import train

settings, kill_at = json.loads(sys.argv[1]), int(sys.argv[2])
writes, replace = 0, os.replace

def replace_or_die(source, target):
    global writes
    if Path(target).name == "state.pt":
        writes += 1
        if writes == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    replace(source, target)

os.replace = replace_or_die
train(**settings)
"""


def weights(path):
    return load_file(path)


def same_weights(a, b) -> bool:
    first, second = weights(a), weights(b)
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def metrics(run_dir) -> list[dict[str, str]]:
    """metrics.csv without its timings, which no two runs share."""
    lines = (Path(run_dir) / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in rows]


def state_position(run_dir) -> tuple[int, int]:
    """(epochs completed, steps of the next one) that state.pt holds."""
    state = torch.load(Path(run_dir) / "state.pt", weights_only=True)
    return state["epoch"], (state["in_epoch"] or {}).get("steps", 0)


def temp_files(run_dir) -> list[str]:
    return sorted(path.name for path in Path(run_dir).glob(".*.tmp"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The LeNet-5 run, never stopped."""
    return train(**LENET, out=tmp_path_factory.mktemp("runs") / "straight")


@pytest.mark.parametrize(
    ("kill_at", "kept"),
    [
        (2, (0, 5)),  # in epoch 1, writing step 10: the folder keeps 5 steps and no checkpoint file yet
        (9, (1, 10)),  # in epoch 2, writing step 15: the folder keeps epoch 1 and 10 steps of epoch 2
    ],
)
def test_a_run_killed_inside_an_epoch_resumes_to_the_weights_of_a_run_never_stopped(
    straight, tmp_path, kill_at, kept
):
    run_dir = tmp_path / "killed"
    settings = json.dumps({**LENET, "out": str(run_dir)})
    child = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, settings, str(kill_at)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert state_position(run_dir) == kept  # the previous state.pt, whole
    left = temp_files(run_dir)
    assert len(left) == 1 and left[0].startswith(".state.pt.")  # what the kill left

    resumed = train(resume=run_dir)

    assert resumed.epochs_completed == 2
    assert same_weights(run_dir / "last.safetensors", straight.run_dir / "last.safetensors")
    assert same_weights(run_dir / "best.safetensors", straight.run_dir / "best.safetensors")
    assert metrics(run_dir) == metrics(straight.run_dir)  # one row an epoch, the unbroken run's figures
    assert resumed.test.top1 == straight.test.top1
    assert temp_files(run_dir) == []
    log = (run_dir / "train.log").read_text()
    assert f"removed 1 temporary file an interrupted write left in {run_dir}: {left[0]}" in log
    epochs_done, steps = kept
    assert f"resuming {run_dir} at step {steps} of 28 in epoch {epochs_done + 1} of 2" in log
    # TensorBoard has each epoch once (its files are read in name order: two started in one second, the
    # killed run's and the resumed run's, come by process id)
    board = EventAccumulator(str(run_dir / "tb"))
    board.Reload()
    assert sorted(event.step for event in board.Scalars("train/loss")) == [1, 2]


def test_dropout_and_the_schedule_continue_exactly_from_a_step_inside_an_epoch(tmp_path, monkeypatch, capsys):
    # without --checkpoint-every: the in-epoch checkpoints change nothing the run computes
    unbroken = train(**DROPOUT, out=tmp_path / "unbroken")

    steps, train_step = [0], step.train_step

    def ctrl_c_at_epoch_2_step_11(*args, **kwargs):
        steps[0] += 1
        if steps[0] == 18 + 11:
            raise KeyboardInterrupt
        return train_step(*args, **kwargs)

    monkeypatch.setattr(step, "train_step", ctrl_c_at_epoch_2_step_11)
    with pytest.raises(KeyboardInterrupt):
        train(**DROPOUT, checkpoint_every=4, out=tmp_path / "stopped")
    monkeypatch.undo()
    assert (
        "interrupted in epoch 2; the run folder keeps epoch 1 and 8 of the 18 steps of epoch 2. "
        f"Continue with: convlab train --resume {tmp_path / 'stopped'}"
    ) in capsys.readouterr().out
    assert state_position(tmp_path / "stopped") == (1, 8)

    resumed = train(resume=tmp_path / "stopped")
    assert resumed.epochs_completed == 2
    assert same_weights(tmp_path / "stopped" / "last.safetensors", unbroken.run_dir / "last.safetensors")
    assert metrics(tmp_path / "stopped") == metrics(unbroken.run_dir)


def test_a_resume_from_inside_an_epoch_with_more_epochs_redraws_the_schedule(tmp_path, monkeypatch):
    settings = dict(DROPOUT, schedule="cosine")
    three = train(**dict(settings, epochs=3), out=tmp_path / "three")
    steps, train_step = [0], step.train_step

    def ctrl_c_in_epoch_2(*args, **kwargs):
        steps[0] += 1
        if steps[0] == 18 + 7:
            raise KeyboardInterrupt
        return train_step(*args, **kwargs)

    monkeypatch.setattr(step, "train_step", ctrl_c_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(**settings, checkpoint_every=3, out=tmp_path / "two")
    monkeypatch.undo()
    with pytest.raises(ConvlabError, match=r"^--epochs 1 is fewer than the 2 epochs already begun\.$"):
        train(resume=tmp_path / "two", epochs=1)

    extended = train(resume=tmp_path / "two", epochs=3)
    assert extended.epochs_completed == 3
    rows, reference = metrics(tmp_path / "two"), metrics(three.run_dir)
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    # epoch 3 learns at the rates of a run given 3 epochs from the start; epoch 2's row shows the redrawn rate
    assert float(rows[2]["lr"]) == pytest.approx(float(reference[2]["lr"]), rel=1e-5)
    assert float(rows[1]["lr"]) == pytest.approx(float(reference[1]["lr"]), rel=1e-5)


def test_a_run_stopped_before_its_first_checkpoint_starts_again_with_resume(tmp_path, monkeypatch, capsys):
    settings = dict(DROPOUT, epochs=1)
    unbroken = train(**settings, out=tmp_path / "unbroken")
    run_dir = tmp_path / "stopped"
    replace = os.replace

    def ctrl_c_before_state_pt(source, target):
        if Path(target).name == "state.pt":  # epoch 1's checkpoints and metrics.csv are written already
            raise KeyboardInterrupt
        replace(source, target)

    monkeypatch.setattr(os, "replace", ctrl_c_before_state_pt)
    with pytest.raises(KeyboardInterrupt):
        train(**settings, out=run_dir)
    monkeypatch.undo()
    assert (
        "the run folder keeps no checkpoint yet. Start it again with: "
        f"convlab train --resume {run_dir}" in capsys.readouterr().out
    )
    assert not (run_dir / "state.pt").exists() and temp_files(run_dir) == []

    # a new run is refused, pointing to the resume, which starts it again
    with pytest.raises(
        ConvlabError,
        match=r"holds a run that stopped before its first checkpoint \(config\.yaml, last\.safetensors, "
        r"best\.safetensors, metrics\.csv; no state\.pt\); start it again with --resume .*stopped or choose "
        r"another --out\.$",
    ):
        train(**settings, out=run_dir)
    restarted = train(resume=run_dir)

    assert restarted.epochs_completed == 1
    assert same_weights(run_dir / "last.safetensors", unbroken.run_dir / "last.safetensors")
    assert metrics(run_dir) == metrics(unbroken.run_dir)
    assert (
        f"starting {run_dir} again from its config.yaml: the run stopped before its first checkpoint (no state.pt)"
        in (run_dir / "train.log").read_text()
    )

    # a finished run whose state.pt was deleted is not started again over its results
    (run_dir / "state.pt").unlink()
    with pytest.raises(
        ConvlabError, match=r"its state\.pt is gone, though the run got further than its first"
    ):
        train(resume=run_dir)


def test_a_finished_linear_probe_is_not_started_again(tmp_path):
    run_dir = tmp_path / "probe"
    save_config(
        resolve_config(model="resnet18", pretrained="torchvision:resnet18", transfer="linear-probe"),
        run_dir / "config.yaml",
    )
    (run_dir / "last.safetensors").write_bytes(b"")  # one fit, no state.pt: what a finished probe leaves
    with pytest.raises(
        ConvlabError,
        match=r"^Cannot resume '.*probe': it holds a linear probe, one fit with nothing to resume",
    ):
        train(resume=run_dir)
    with pytest.raises(
        ConvlabError,
        match=r"^'.*probe' already holds a run \(config\.yaml, last\.safetensors\); choose another --out "
        r"\(a previous run is never overwritten\)\.$",
    ):
        train(model="mlp", out=run_dir)
    with pytest.raises(
        ConvlabError,
        match=r"^Cannot resume '.*nothing': it is not a run folder \(it holds no config\.yaml\)\.$",
    ):
        train(resume=tmp_path / "nothing")
