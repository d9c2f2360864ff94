"""Writing files so that a crash never leaves half of one: checkpoints, metrics, reports, configs; and the
lock that keeps a run folder to one training at a time.

Torch-free, so that every layer, the configuration included, writes the same way.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from datetime import datetime
from pathlib import Path

from convlab.errors import ConvlabError

try:
    import fcntl
except ImportError:  # Windows has no flock; convlab's machines are Linux, so there a run folder is unlocked
    fcntl = None

# The lock file inside a run folder; hidden, and not one of the files that make a folder "hold a run".
LOCK_FILE = ".lock"
# atomic_write's temporary files: ``.NAME.`` + mkstemp's 8 characters + ``.tmp``. A process killed while
# writing leaves one behind; run_lock removes them (only these, only in its folder).
TEMP_FILE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


class RunFolderInUse(ConvlabError):
    """Another training holds the run folder's lock."""


class WriteError(ConvlabError, OSError):
    """A file could not be written (disk full, quota, read-only or missing folder, ...): ``path`` and the
    operating system's ``errno`` and ``reason``, so that a caller can add what to do about it. The
    command line exits with status 1 for it: the machine failed, not the command. An OSError still, so
    that code catching the operating system's error around a write goes on catching it."""

    def __init__(self, path: str | Path, reason: str, errno: int | None = None, message: str = "") -> None:
        super().__init__(message or f"Cannot write '{path}': {reason}.")
        # (strerror stays None: OSError would print "[Errno 28] ..." instead of the sentence)
        self.path, self.reason, self.errno = Path(path), reason, errno


def write_error(path: str | Path, error: OSError) -> WriteError:
    """The WriteError for ``error``, raised while writing ``path``."""
    if isinstance(error, (FileExistsError, NotADirectoryError)):  # a folder on the way is a file
        in_the_way = next((folder for folder in (Path(path), *Path(path).parents) if folder.is_file()), None)
        if in_the_way is not None:
            return WriteError(path, f"'{in_the_way}' is a file, not a folder", error.errno)
    return WriteError(path, error.strerror or str(error), error.errno)


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: a crash never leaves half a file.

    ``write(tmp)`` writes the file at ``tmp``. An OSError on the way (no space, quota, a read-only or
    missing folder) is a WriteError naming ``path``; ``path`` itself is then as it was, and the
    temporary file is gone. Bytes are best written with Python's own file calls
    (``Path(tmp).write_bytes``): libraries that write in C++ or Rust (torch.save, safetensors'
    save_file) report a full disk as an error of their own, without the errno that says so.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        # mkstemp creates files readable by the owner only; give them the usual umask mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except WriteError:  # said already, by a write inside ``write``
        raise
    except OSError as error:
        raise write_error(path, error) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            with contextlib.suppress(OSError):  # never hide the error that brought us here
                os.unlink(tmp)


def remove_temp_files(folder: str | Path) -> list[str]:
    """Remove the temporary files ``atomic_write`` left in ``folder`` (a process killed mid-write leaves
    its ``.NAME.XXXXXXXX.tmp``); returns their names. Only for a folder whose writer is known to be
    gone: ``run_lock`` calls it once it holds the folder."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
            if TEMP_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return removed


def require_file_or_folder(path: str | Path) -> Path:
    """``path`` when something is there; otherwise the one sentence every command gives for a missing
    checkpoint. Torch-free, so that the command line answers a mistyped path before loading torch."""
    path = Path(path)
    if not path.exists():
        raise ConvlabError(
            f"No checkpoint at '{path}': give a run folder or a .safetensors file written by convlab."
        )
    return path


@contextlib.contextmanager
def run_lock(run_dir: str | Path):
    """Hold ``run_dir`` for one training, from before its previous-run check to its last write.

    An exclusive ``flock`` on ``run_dir/.lock`` (created, with the folder, if missing); a second
    writer, in this process or another, gets one sentence naming the holder. The operating system
    drops a flock when its process ends, however it ends (exception, Ctrl-C, SIGKILL), so a killed run never leaves a stale lock: the file may remain, the lock does not.
    On release the file is removed, and the folder too when the lock created it and it is empty
    (a run refused before writing anything leaves nothing behind).

    Yields the names of the temporary files a killed writer left in the folder, removed once the
    lock is held (no training can be writing them then; see ``remove_temp_files``).
    """
    run_dir = Path(run_dir)
    if fcntl is None:  # no flock on Windows: run unlocked, and no writer can be known to be gone
        yield []
        return
    created = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]  # innermost first
    fd = _acquire(run_dir)
    path = run_dir / LOCK_FILE
    try:
        yield remove_temp_files(run_dir)
    finally:
        # Unlink while still locked: a writer that opened the old file then finds it gone and retries.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        for folder in created:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break


def _acquire(run_dir: Path) -> int:
    """A descriptor of ``run_dir/.lock`` holding its exclusive lock, with the holder written into it."""
    path = run_dir / LOCK_FILE
    for _ in range(100):
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the folder was removed by a holder releasing it: try again
                continue
        except (FileExistsError, NotADirectoryError) as error:
            raise WriteError(
                run_dir,
                "it, or a folder above it, is a file",
                error.errno,
                f"'{run_dir}' cannot be a run folder: it, or a folder above it, is a file; choose another --out.",
            ) from None
        except OSError as error:  # a read-only file system, no permission, a folder that cannot hold one
            raise WriteError(
                run_dir,
                error.strerror or str(error),
                error.errno,
                f"Cannot lock run folder '{run_dir}': {error.strerror or error}; choose another --out.",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by another open of the file: another training
            holder = _holder(fd)
            os.close(fd)
            raise RunFolderInUse(
                f"Run folder '{run_dir}' is in use by another training{holder}; "
                "wait for it to finish or choose another --out."
            ) from None
        except OSError as error:  # a file system without locks
            os.close(fd)
            raise ConvlabError(
                f"Cannot lock run folder '{run_dir}': {error.strerror or error}; choose another --out."
            ) from None
        # The file may have been unlinked by the holder between our open and our lock: then this lock
        # guards nothing, and the next try opens the file that is there now.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        owner = f"{os.getpid()} {socket.gethostname()} {datetime.now().isoformat(timespec='seconds')}\n"
        # Who holds the lock is a courtesy to a second writer (_holder); on a full disk the lock holds
        # without it, and the run's first real write says what is wrong.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, owner.encode(), 0)
        return fd
    raise ConvlabError(f"Cannot lock run folder '{run_dir}': it keeps changing; choose another --out.")


def _holder(fd: int) -> str:
    """`` (pid N on HOST since TIME)`` from the lock file, or nothing when the holder has not written it yet."""
    try:
        pid, host, since = os.pread(fd, 512, 0).decode().split()
    except (OSError, UnicodeDecodeError, ValueError):
        return ""
    return f" (pid {pid} on {host} since {since.replace('T', ' ')})"
