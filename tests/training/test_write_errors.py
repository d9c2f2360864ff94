"""A run that cannot write: a full disk, a file larger than allowed, an --out that cannot be a folder. Each is one
sentence that names the file, says what to do and what the run folder keeps (status 1 on the command line, a
ConvlabError in Python); the previous state.pt stays whole and no temporary file is left behind.

The tests run as root, where permissions do not stop a write: the failures are made by the kernel (a file-size
limit in a child process: EFBIG; /dev/full: ENOSPC; a path under a file or under /proc), or, to reach each file a
run writes, by a rename that fails with ENOSPC.
"""

import errno
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from convlab.cli import main
from convlab.errors import ConvlabError
from convlab.files import WriteError
from convlab.training import train

# An MLP on 1,000 Fashion-MNIST images: 51k parameters, so a checkpoint takes 0.2 MB and state.pt, with
# Adam's two moments, 0.6 MB.
QUICK = dict(
    model="mlp",
    data="fashion-mnist",
    limit=1000,
    batch_size=50,
    optimizer="adam",
    options={"hidden": [64]},
    threads=1,
)
FILE_SIZE_LIMIT = 400_000  # checkpoints fit, state.pt does not
FULL = "No space left on device; free space or choose another --out."


def temp_files(run_dir) -> list[str]:
    return sorted(path.name for path in Path(run_dir).glob(".*.tmp"))


def saved_epoch(run_dir) -> int:
    return torch.load(Path(run_dir) / "state.pt", weights_only=True)["epoch"]


def limit_file_size() -> None:
    """In the child, before it runs: files may not grow past FILE_SIZE_LIMIT, and a write that would gets EFBIG
    (SIGXFSZ, which would kill the process instead, is ignored)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, resource.RLIM_INFINITY))


def test_a_file_too_large_to_write_is_one_sentence_and_the_previous_state_stays(tmp_path):
    run_dir = tmp_path / "run"
    train(**QUICK, epochs=1, out=run_dir)
    before = (run_dir / "state.pt").read_bytes()

    child = subprocess.run(
        [sys.executable, "-m", "convlab.cli", "train", "--resume", str(run_dir), "--epochs", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_file_size,
    )

    sentence = (
        f"Cannot write '{run_dir}/state.pt': File too large; free space or choose another --out. "
        f"The run folder keeps epoch 1 (resume with --resume {run_dir})."
    )
    assert child.returncode == 1
    assert child.stderr.splitlines() == [f"convlab: error: {sentence}"]  # no traceback, not even a thread's
    assert (run_dir / "state.pt").read_bytes() == before and temp_files(run_dir) == []
    assert sentence in (run_dir / "train.log").read_text()
    # with room again, the advice works: epoch 2 is trained again, once in metrics.csv
    assert train(resume=run_dir).epochs_completed == 2
    assert [line.split(",")[0] for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]] == [
        "1",
        "2",
    ]


# (the file whose write fails, what the folder keeps then) in a one-epoch run
KEPT_AFTER = {
    "config.yaml": "Nothing to resume was written; start the run again once it can write.",
    "last.safetensors": "The run folder keeps no checkpoint yet (start it again with --resume {run_dir}).",
    "best.safetensors": "The run folder keeps no checkpoint yet (start it again with --resume {run_dir}).",
    "metrics.csv": "The run folder keeps no checkpoint yet (start it again with --resume {run_dir}).",
    "state.pt": "The run folder keeps no checkpoint yet (start it again with --resume {run_dir}).",
    "report.md": "The run folder keeps epoch 1 (resume with --resume {run_dir}).",
    "curves.png": "The run folder keeps epoch 1 (resume with --resume {run_dir}).",
}


@pytest.mark.parametrize("name", KEPT_AFTER)
def test_a_full_disk_at_any_file_of_the_run_is_one_sentence_then_the_advice_works(
    tmp_path, monkeypatch, name
):
    run_dir = tmp_path / "run"
    replace = os.replace

    def disk_full_at(source, target):
        if Path(target).name == name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), source)
        replace(source, target)

    monkeypatch.setattr(os, "replace", disk_full_at)
    with pytest.raises(WriteError) as failed:
        train(**QUICK, epochs=1, out=run_dir)
    monkeypatch.undo()

    kept = KEPT_AFTER[name].format(run_dir=run_dir)
    assert str(failed.value) == f"Cannot write '{run_dir / name}': {FULL} {kept}"
    assert isinstance(failed.value, ConvlabError) and failed.value.errno == errno.ENOSPC
    assert temp_files(run_dir) == []
    if "--resume" in kept:  # with room again, what the sentence says to do finishes the run
        assert train(resume=run_dir).epochs_completed == 1
        assert saved_epoch(run_dir) == 1 and (run_dir / "report.md").is_file()


def test_a_full_disk_under_train_log_is_one_sentence(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train.log").symlink_to("/dev/full")  # every write to it: ENOSPC, from the kernel
    with pytest.raises(WriteError) as failed:
        train(**QUICK, epochs=1, out=run_dir)
    assert str(failed.value) == (
        f"Cannot write '{run_dir}/train.log': {FULL} "
        "Nothing to resume was written; start the run again once it can write."
    )


def test_a_tensorboard_folder_that_is_a_file_is_one_sentence(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tb").write_text("not a folder")
    with pytest.raises(
        WriteError,
        match=rf"^Cannot write '{re.escape(str(run_dir))}/tb': '.*/tb' is a file, not a folder; choose another --out\. ",
    ):
        train(**QUICK, epochs=1, out=run_dir)


# TensorBoard's writer in a child process whose files may not grow past 2 kB: its thread fails, and the run's
# next figures meet the error.
TENSORBOARD_CHILD = """
import resource, signal, sys
from pathlib import Path
from convlab.training.tensorboard import TensorBoard
from convlab.files import WriteError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
board = TensorBoard(Path(sys.argv[1]))
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.RLIM_INFINITY))
try:
    for epoch in range(1, 200):
        board.log({"epoch": epoch, "train_loss": 1.0, "train_top1": 0.5, "lr": 0.1})
except WriteError as error:
    board.close(failing=True)
    print(error)
"""


def test_tensorboard_failing_on_its_own_thread_is_one_sentence_without_a_traceback(tmp_path):
    child = subprocess.run(
        [sys.executable, "-c", TENSORBOARD_CHILD, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0
    assert child.stdout == f"Cannot write '{tmp_path}/tb': File too large.\n"
    assert child.stderr == ""  # the writer thread's traceback is not printed


def test_an_out_that_cannot_be_a_folder_is_one_sentence_and_status_1(tmp_path, capsys):
    (tmp_path / "file").write_text("a file, not a folder")
    under_a_file, under_proc = tmp_path / "file" / "run", "/proc/convlab-test/run"
    for out, sentence in (
        (
            under_a_file,
            f"'{under_a_file}' cannot be a run folder: it, or a folder above it, is a file; choose another --out.",
        ),
        (
            under_proc,
            f"Cannot lock run folder '{under_proc}': No such file or directory; choose another --out.",
        ),
    ):
        assert main(["train", "--model", "mlp", "--limit", "1000", "--epochs", "1", "--out", str(out)]) == 1
        assert capsys.readouterr().err == f"convlab: error: {sentence}\n"
        with pytest.raises(WriteError, match=f"^{re.escape(sentence)}$"):
            train(**QUICK, epochs=1, out=out)
