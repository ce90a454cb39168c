"""agent.log (the output of ``mloop agent start``) is rotated past its size, at start and while the agent
writes to it through its stdout and stderr."""

from __future__ import annotations

import os
from pathlib import Path

from mloop.automation.agent import AGENT_LOG_KEEP, rotate_log


def test_a_log_past_its_size_is_rotated_and_the_oldest_generation_goes(tmp_path: Path):
    log = tmp_path / "agent.log"
    log.write_bytes(b"small\n")
    assert not rotate_log(log, max_bytes=100) and log.read_bytes() == b"small\n"
    for n in range(AGENT_LOG_KEEP + 1):
        log.write_bytes(f"generation {n}\n".encode() * 20)
        assert rotate_log(log, max_bytes=100)
        assert not log.exists()  # nothing writes to it: the next writer makes it
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == [f"agent.log.{n}" for n in range(1, AGENT_LOG_KEEP + 1)]
    assert (tmp_path / "agent.log.1").read_text().startswith(f"generation {AGENT_LOG_KEEP}")
    assert not rotate_log(tmp_path / "never-written.log", max_bytes=1)


def test_descriptors_open_on_the_log_write_to_the_new_file_after_a_rotation(tmp_path: Path):
    log = tmp_path / "agent.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # as the agent's stdout is
    try:
        os.write(fd, b"x" * 200 + b"\n")
        assert rotate_log(log, max_bytes=100, fds=(fd,))
        os.write(fd, b"after the rotation\n")
    finally:
        os.close(fd)
    assert log.read_bytes() == b"after the rotation\n"
    assert (tmp_path / "agent.log.1").read_bytes() == b"x" * 200 + b"\n"
