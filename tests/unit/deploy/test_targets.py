"""Deploy targets are picked by name; a process is alive only if it is the one that was started."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mloop.config import load_project
from mloop.deploy import TARGETS, DeployTarget, get_target
from mloop.deploy.local import LocalTarget, process_alive
from mloop.errors import ConfigError


@pytest.fixture
def cfg(tmp_path: Path):
    (tmp_path / "mloop.toml").write_text('[project]\nname = "p"\n')
    return load_project(tmp_path)


def test_targets_are_found_by_name_and_an_unknown_one_lists_the_known(cfg):
    assert isinstance(get_target("local", cfg), LocalTarget)
    assert all(isinstance(get_target(name, cfg), DeployTarget) for name in TARGETS)
    with pytest.raises(ConfigError, match="unknown deploy target 'kubernets'; did you mean 'kubernetes'"):
        get_target("kubernets", cfg)


def test_a_process_is_alive_only_if_it_started_before_the_record_was_made():
    assert process_alive(os.getpid())
    assert process_alive(os.getpid(), started_by=time.time())
    assert not process_alive(os.getpid(), started_by=0.0), "a later process under a recycled pid is not the one"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's boot time in whole seconds")
def test_a_process_stays_itself_when_the_clock_steps(monkeypatch):
    """A start time is ticks since boot plus /proc/stat's btime, whole seconds from the wall clock: a step of the
    clock moves it, and the process recorded must not become a stranger."""
    import psutil._pslinux as linux

    from mloop._proc import started_at

    recorded = started_at(os.getpid())
    booted = linux.boot_time
    monkeypatch.setattr(linux, "boot_time", lambda: booted() + 2.0)  # the clock stepped two seconds ahead
    assert process_alive(os.getpid(), started_by=recorded)
    monkeypatch.setattr(linux, "boot_time", lambda: booted() + 60.0)  # a process started a minute later: not it
    assert not process_alive(os.getpid(), started_by=recorded)
