"""files.py: a write that fails leaves the file as it was, no temporary file, and one sentence (WriteError); a
run folder's lock clears the temporary files a killed writer left, and only those."""

import errno
import os
import resource
import signal
import subprocess
import sys

import pytest

from convlab.errors import ConvlabError
from convlab.files import LOCK_FILE, WriteError, atomic_write, remove_temp_files, run_lock


def test_a_write_that_fails_keeps_the_file_as_it_was_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "state.pt"
    path.write_bytes(b"epoch 3")

    def half_then_full(tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"epoch 4, half of it")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)

    with pytest.raises(WriteError, match=rf"^Cannot write '{path}': No space left on device\.$") as failed:
        atomic_write(path, half_then_full)
    assert isinstance(failed.value, ConvlabError)
    assert (failed.value.path, failed.value.errno) == (path, errno.ENOSPC)
    assert path.read_bytes() == b"epoch 3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_a_write_whose_folder_cannot_be_made_names_the_file_in_the_way(tmp_path):
    (tmp_path / "runs").write_text("a file")
    with pytest.raises(
        WriteError,
        match=rf"^Cannot write '{tmp_path}/runs/x/config\.yaml': '{tmp_path}/runs' is a file, not a folder\.$",
    ):
        atomic_write(tmp_path / "runs" / "x" / "config.yaml", lambda tmp: None)


# A child whose files may not grow past 1 kB writes 2 kB: the kernel's EFBIG, not one made by the test.
TOO_LARGE_CHILD = """
import resource, signal, sys
from pathlib import Path
from convlab.files import WriteError, atomic_write

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
try:
    atomic_write(Path(sys.argv[1]), lambda tmp: Path(tmp).write_bytes(bytes(2000)))
except WriteError as error:
    print(error, error.errno)
"""


def test_a_file_larger_than_the_system_allows_is_a_write_error(tmp_path):
    path = tmp_path / "last.safetensors"
    path.write_bytes(b"the previous checkpoint")
    child = subprocess.run(
        [sys.executable, "-c", TOO_LARGE_CHILD, str(path)], capture_output=True, text=True, timeout=120
    )
    assert child.stdout == f"Cannot write '{path}': File too large. {errno.EFBIG}\n", child.stderr
    assert path.read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_the_lock_removes_the_temporary_files_of_a_killed_write_and_nothing_else(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "fold-1").mkdir(parents=True)
    stale = [".state.pt.k3_9abcd.tmp", ".last.safetensors.0a1b2c3d.tmp", ".metrics.csv.zzzzzzzz.tmp"]
    kept = [
        "state.pt",
        ".state.pt.tmp",  # no mkstemp part
        "notes.abcdefgh.tmp",  # not hidden: not atomic_write's
        ".state.pt.ABCDEFGH.tmp",  # mkstemp draws lower-case letters, digits and _
        ".state.pt.abcdefg.tmp",  # seven characters
        ".state.pt.abcdefgh.tmp.bak",
    ]
    for name in stale + kept:
        (run_dir / name).write_text("x")
    (run_dir / ".dir.abcdefgh.tmp").mkdir()  # a folder: never atomic_write's
    (run_dir / "fold-1" / ".state.pt.abcdefgh.tmp").write_text("x")  # another folder's: its own run clears it

    with run_lock(run_dir) as removed:
        assert removed == sorted(stale)
        left = sorted(p.name for p in run_dir.iterdir())
    assert left == sorted([*kept, LOCK_FILE, ".dir.abcdefgh.tmp", "fold-1"])
    assert (run_dir / "fold-1" / ".state.pt.abcdefgh.tmp").exists()
    assert remove_temp_files(tmp_path / "no-such-folder") == []


def test_the_lock_holds_on_a_full_disk(tmp_path):
    # the holder's line is a courtesy: where it cannot be written (here a file-size limit of 0 bytes, in a
    # child), the folder is locked all the same
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "from convlab.files import run_lock\nwith run_lock(__import__('sys').argv[1]): print('held')",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: (
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN),
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY)),
        ),
    )
    assert child.stdout == "held\n", child.stderr
