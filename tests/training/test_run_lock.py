"""One training per run folder: a second writer (new run or --resume) is refused by name, a killed holder
leaves no stale lock, and a finished run leaves its folder resumable and evaluable."""

import multiprocessing
import os
import signal
import socket

import pytest

from convlab.errors import ConvlabError
from convlab.evaluation import evaluate
from convlab.files import LOCK_FILE, run_lock
from convlab.training import train

# An MLP on 1,000 Fashion-MNIST images, as tests/training/test_engine.py trains it: quick.
QUICK = dict(
    model="mlp", data="fashion-mnist", limit=1000, batch_size=50, optimizer="adam", options={"hidden": [64]}
)
IN_USE = r"^Run folder '.*' is in use by another training \(pid {pid} on {host} since .+\); wait for it to finish or choose another --out\.$"


def in_use(pid: int) -> str:
    return IN_USE.format(pid=pid, host=socket.gethostname())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch run."""
    return train(**QUICK, epochs=1, out=tmp_path_factory.mktemp("runs") / "done")


def _hold(run_dir, ready, release):
    with run_lock(run_dir):
        ready.set()
        release.wait(60)


def _child_holding(run_dir):
    """A child process holding ``run_dir``'s lock, with the event that lets it go."""
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    child = context.Process(target=_hold, args=(str(run_dir), ready, release))
    child.start()
    assert ready.wait(60), "the child never took the lock"
    return child, release


def test_a_new_run_into_a_held_folder_is_refused_by_name(tmp_path):
    out = tmp_path / "run"
    with run_lock(out):
        with pytest.raises(ConvlabError, match=in_use(os.getpid())):
            train(**QUICK, epochs=1, out=out)
        # refused before the previous-run check and before writing anything
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    assert not out.exists()  # the lock made the folder; an empty one goes with it


def test_a_resume_of_a_held_folder_is_refused_and_the_run_is_untouched(finished):
    run_dir = finished.run_dir
    before = {name: (run_dir / name).read_bytes() for name in ("state.pt", "metrics.csv", "last.safetensors")}
    child, release = _child_holding(run_dir)
    try:
        with pytest.raises(ConvlabError, match=in_use(child.pid)):
            train(resume=run_dir, epochs=2)
        with pytest.raises(ConvlabError, match=in_use(child.pid)):
            train(**QUICK, epochs=1, out=run_dir)
    finally:
        release.set()
        child.join(60)
    assert child.exitcode == 0
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert not (run_dir / LOCK_FILE).exists()  # released: nothing left behind


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    child, _ = _child_holding(out)
    os.kill(child.pid, signal.SIGKILL)
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert (out / LOCK_FILE).exists()  # the file stays; the lock died with its process
    result = train(**QUICK, epochs=1, out=out)
    assert result.epochs_completed == 1 and (out / "state.pt").is_file()
    assert not (out / LOCK_FILE).exists()


def test_a_finished_run_can_be_resumed_and_evaluated(finished, tmp_path):
    run_dir = finished.run_dir
    assert not (run_dir / LOCK_FILE).exists()
    with pytest.raises(ConvlabError, match="already holds a run"):  # the lock did not hide the run
        train(**QUICK, epochs=1, out=run_dir)
    assert evaluate(run_dir, write=False).n > 0
    assert train(resume=run_dir, epochs=2).epochs_completed == 2
    # a folder whose only file is a left-over lock file does not hold a run
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / LOCK_FILE).write_text("1 elsewhere 2020-01-01T00:00:00\n")
    assert train(**QUICK, epochs=1, out=tmp_path / "fresh").epochs_completed == 1
