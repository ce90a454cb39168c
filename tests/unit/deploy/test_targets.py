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
