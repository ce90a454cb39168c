"""Writes that a reader or a crash never sees half done, and appends that survive one.

Every file mloop keeps (artifacts, cache entries, deployment state, monitoring logs and status) is
written through here: to a hidden temporary file beside the target, flushed and fsynced, then
renamed over it, so a reader sees the old content or the new, never a mix, and a process killed
mid-write leaves at most a stray ``.*.tmp`` file that no reader looks at.

A long-running writer that retries (the model server's monitor, on a full disk) says what fails through
``WriteTrouble``: one line on stderr when writing starts failing, one when it works again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def temporary_path(folder: Path, *, prefix: str = ".", suffix: str = ".tmp") -> Iterator[Path]:
    """A new, empty file in ``folder`` to write; removed on the way out unless it was renamed away.

    It is created with the permissions any new file gets (0666 less the umask), so the file it becomes
    is readable as a plainly written one would be (``mkstemp``'s 0600 would follow it into an image).
    """
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        path = folder / f"{prefix}{secrets.token_hex(8)}{suffix}"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def commit(tmp: Path, final: Path, *, replace: bool = True) -> bool:
    """fsync ``tmp`` and rename it to ``final``; with ``replace=False`` an existing ``final`` is kept.

    Returns whether ``tmp`` became ``final``.
    """
    if not replace and final.exists():
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return True


@contextlib.contextmanager
def atomic_path(path: Path, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error it becomes ``path``.

    ``mode`` (e.g. ``0o600``) is set before anything is written, so a secret is never readable by others.
    """
    with temporary_path(path.parent, prefix=f".{path.name}.") as tmp:
        if mode is not None:
            os.chmod(tmp, mode)
        yield tmp
        commit(tmp, path)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (see the module docstring)."""
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def append_synced(path: Path, data: bytes) -> None:
    """Append ``data`` (whole lines) to ``path`` and fsync it.

    If a crash left the file ending mid-line, a newline goes first, so the torn line stays one line
    that readers skip and the new lines parse. An append that fails (a full disk) is cut off again,
    so the file is as it was and appending the same lines later writes each of them once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        if end > 0 and os.pread(fd, 1, end - 1) != b"\n":
            data = b"\n" + data
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, end)
            raise
    finally:
        os.close(fd)


def write_error(err: OSError) -> str:
    """Why a write failed, in words: a full disk (or a used-up quota) says so; anything else its own strerror."""
    if err.errno == errno.ENOSPC:
        return "no space left on the device holding it"
    if err.errno == errno.EDQUOT:
        return "the disk quota on the device holding it is used up"
    return err.strerror or str(err)


class WriteTrouble:
    """Says on stderr, once, that writing ``what`` starts failing, and once that it works again.

    A writer that retries every few seconds (the prediction log on a full disk) calls ``failed`` or
    ``worked`` after every attempt; only the changes are printed, as one JSON line each (the server's
    stderr is JSON lines). ``error`` is the current failure's message, "" while writing works.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.error = ""

    def failed(self, err: OSError, path: Path, meanwhile: str) -> None:
        """A write to ``path`` failed; ``meanwhile`` says what happens to what was not written."""
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        message = f"cannot write {self.what} {path}: {write_error(err)}"
        if not self.error:
            advice = "; free space there" if full else ""
            print(json.dumps({"path": str(path), "error": f"{message} ({meanwhile}{advice})"}),
                  file=sys.stderr, flush=True)
        self.error = message

    def worked(self, path: Path, note: str = "") -> None:
        """A write to ``path`` worked (``note``: what that brought, said if writing had been failing)."""
        if self.error:
            print(json.dumps({"path": str(path), "recovered": f"{self.what} {path} is written again"
                              + (f" ({note})" if note else "")}), file=sys.stderr, flush=True)
        self.error = ""


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the block: other processes that ask
    for the same lock wait. The kernel drops it when the holder exits, however it exits (fcntl.flock),
    so a killed process never leaves a stale lock."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def hold_lock(path: Path) -> int | None:
    """Take the exclusive lock on ``path`` without waiting and keep it: the open descriptor (the lock lasts
    until it is closed or the process exits), or None when another process holds it. The holder writes its
    pid into the file, so the one refused can say who holds it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def private_folder(path: Path) -> None:
    """Make ``path`` a folder only its owner can enter (0700), creating it if needed: what it holds (data,
    tokens, models, logs) is then out of other users' reach whatever each file's own mode. Nothing happens
    where that is not allowed (a read-only checkout): the command that needs to write says so itself."""
    with contextlib.suppress(OSError):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)


def rotate(path: Path, keep: int) -> None:
    """``path`` becomes ``path.1``, ``path.1`` becomes ``path.2``, ... up to ``path.<keep>``, the oldest
    replaced; each step is one rename, so no line is ever in no file (the alert log, the agent's log)."""
    for generation in range(keep, 1, -1):
        older = path.with_name(f"{path.name}.{generation - 1}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{generation}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


def move_aside(path: Path, folder: Path) -> Path:
    """Move a damaged file or folder into ``folder`` (a ``quarantine/``), for a look: nothing reads it there.
    An earlier copy of the same name there is replaced. Returns where it went."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(path, target)
    return target
