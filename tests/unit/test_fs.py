"""mloop._fs: the one place files are written atomically, and appended so that a crash leaves them readable."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mloop._fs import (
    WriteTrouble,
    append_synced,
    atomic_path,
    atomic_write_text,
    commit,
    temporary_path,
    write_error,
)


def test_atomic_write_replaces_the_whole_file_and_leaves_nothing_else(tmp_path: Path):
    target = tmp_path / "entry.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["entry.json"]


def test_a_secret_is_never_readable_by_others_not_even_while_written(tmp_path: Path):
    target = tmp_path / "state.json"
    with atomic_path(target, mode=0o600) as tmp:
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600  # before a byte is written
        tmp.write_text("token")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "token"


def test_an_error_while_writing_keeps_the_old_content_and_removes_the_temporary_file(tmp_path: Path):
    target = tmp_path / "status.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_process_killed_mid_write_leaves_the_old_file_whole(tmp_path: Path):
    target = tmp_path / "status.json"
    atomic_write_text(target, "old")
    code = ("import os, sys; from pathlib import Path; from mloop._fs import atomic_path\n"
            f"with atomic_path(Path({str(target)!r})) as tmp:\n"
            "    tmp.write_text('half'); os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert target.read_text() == "old"  # a stray hidden .tmp file may remain; no reader looks at it
    assert all(p.name.startswith(".") for p in tmp_path.iterdir() if p != target)


def test_commit_without_replace_keeps_what_is_there(tmp_path: Path):
    final = tmp_path / "ab" / "digest"
    with temporary_path(tmp_path / "tmp") as first:
        first.write_text("same bytes")
        assert commit(first, final, replace=False)
    with temporary_path(tmp_path / "tmp") as second:
        second.write_text("same bytes")
        assert not commit(second, final, replace=False)
    assert final.read_text() == "same bytes" and not list((tmp_path / "tmp").iterdir())


def test_append_after_a_torn_line_starts_on_a_new_line(tmp_path: Path):
    log = tmp_path / "alerts.jsonl"
    log.write_bytes(b'{"a": 1}\n{"torn": ')
    append_synced(log, b'{"b": 2}\n')
    assert log.read_bytes().splitlines() == [b'{"a": 1}', b'{"torn": ', b'{"b": 2}']
    append_synced(tmp_path / "new" / "log.jsonl", b"x\n")
    assert (tmp_path / "new" / "log.jsonl").read_bytes() == b"x\n"


def test_an_append_that_fails_leaves_the_file_as_it_was(tmp_path: Path, monkeypatch):
    import errno

    log = tmp_path / "alerts.jsonl"
    log.write_bytes(b'{"a": 1}\n')

    def no_space(fd: int) -> None:  # the data went in, but the disk refuses to keep it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        append_synced(log, b'{"b": 2}\n')
    assert log.read_bytes() == b'{"a": 1}\n'  # appending the same lines again writes them once


def test_a_write_error_names_a_full_disk_and_anything_else_by_its_own_words(tmp_path: Path, capsys):
    import errno
    import json

    assert write_error(OSError(errno.ENOSPC, "No space left on device")) == "no space left on the device holding it"
    assert "quota" in write_error(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert write_error(OSError(errno.EACCES, "Permission denied")) == "Permission denied"
    trouble = WriteTrouble("the alert log")
    trouble.worked(tmp_path)  # nothing had failed: nothing to say
    for _ in range(3):
        trouble.failed(OSError(errno.EACCES, "Permission denied"), tmp_path, "skipped")
    trouble.worked(tmp_path, "3 lines written")
    said = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert said == [{"path": str(tmp_path), "error": f"cannot write the alert log {tmp_path}: Permission denied (skipped)"},
                    {"path": str(tmp_path), "recovered": f"the alert log {tmp_path} is written again (3 lines written)"}]
    assert trouble.error == ""


def test_temporary_files_are_hidden_beside_the_target(tmp_path: Path):
    with atomic_path(tmp_path / "part-1.parquet") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".part-1.parquet.")
        tmp.write_bytes(b"x")
    assert os.listdir(tmp_path) == ["part-1.parquet"]


def test_a_written_file_has_the_permissions_a_plain_write_gives(tmp_path: Path):
    """Files written atomically are read by others too (a container's user reads the model folder)."""
    plain = tmp_path / "plain"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic", "x")
    assert stat.S_IMODE((tmp_path / "atomic").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
