"""`mloop agent start|stop|status|trigger` as a user runs them against a real background agent: start rotates a
big agent.log; the others reach the agent while mloop.toml does not validate (the agent tolerates that, so its
commands must too), status says why, shows the watchers' problems in text, and prints the next scheduled cycle
in the schedule's zone."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import psutil
import pytest

from mloop.automation.agent import AGENT_LOG_MAX_BYTES
from mloop.automation.journal import Journal
from tests.support.agent_project import agent_project
from tests.support.versioned import mloop

pytestmark = pytest.mark.e2e

AUTOMATION = """
[automation]
poll = "200ms"

[automation.triggers]
registry = false
schedule = "0 9 1 1 *"
timezone = "Asia/Tokyo"
"""


def until(check, what: str, timeout: float = 30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_stop_status_and_trigger_reach_the_agent_while_mloop_toml_does_not_validate(tmp_path: Path,
                                                                                     mlflow_db_template: Path):
    root = agent_project(tmp_path / "shifty", mlflow_db_template, AUTOMATION)
    log = root / ".mloop" / "automation" / "agent.log"
    log.parent.mkdir(parents=True)
    with log.open("wb") as big:  # an earlier agent's log past the size where it rotates (sparse: no real writes)
        big.truncate(AGENT_LOG_MAX_BYTES + 1)
    started = mloop(root, "agent", "start")
    assert started.returncode == 0, started.stderr
    pid = json.loads((root / ".mloop" / "automation" / "agent.json").read_text())["pid"]
    try:
        assert log.with_name("agent.log.1").stat().st_size == AGENT_LOG_MAX_BYTES + 1
        assert log.stat().st_size < 100_000 and "takes alerts and triggers" in log.read_text()
        idle = mloop(root, "agent", "status")
        assert idle.returncode == 0, idle.stderr
        # the schedule's zone, named (not the machine's): 1 January, 09:00 in Tokyo
        assert re.search(r"next scheduled cycle \d{4}-01-01 09:00 Asia/Tokyo", idle.stdout), idle.stdout

        (root / "pipeline.py").write_text("def training(:\n")  # the data watcher cannot list the inputs now
        def status_with_the_problem() -> str:
            out = mloop(root, "agent", "status").stdout
            return out if "cannot be listed" in out else ""

        shown = until(status_with_the_problem, "the data watcher's problem in the text status")
        assert "data: the pipeline's input files cannot be listed" in shown, shown

        with (root / "mloop.toml").open("a") as toml:
            toml.write("[automation.gate]]\n")
        status = mloop(root, "agent", "status")
        assert status.returncode == 0, status.stderr
        assert "mloop.toml does not validate" in status.stdout and "not valid TOML" in status.stdout, status.stdout
        assert f"agent runs: pid {pid}" in status.stdout and "cannot be listed" in status.stdout, status.stdout
        as_json = json.loads(mloop(root, "agent", "status", "--json").stdout)
        assert as_json["running"] and "not valid TOML" in as_json["config_error"]

        triggered = mloop(root, "agent", "trigger", "--reason", "with a broken mloop.toml")
        assert triggered.returncode == 0 and triggered.stdout.startswith("trigger:"), triggered.stderr

        def cycle_of_the_trigger() -> list:
            journal = Journal(root / ".mloop" / "automation" / "journal.db")
            try:
                return [c for c in journal.cycles() if any(t.get("reason") == "with a broken mloop.toml"
                                                           for t in c.triggers) and c.final]
            finally:
                journal.close()

        until(cycle_of_the_trigger, "the agent taking the trigger (its cycle fails: the pipeline is broken)", 60)

        stopped = mloop(root, "agent", "stop")
        assert stopped.returncode == 0 and f"agent stopped (pid {pid})" in stopped.stdout, stopped.stderr
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

        # no agent now, and none can start: status says both; a trigger that nothing could take is refused
        after = mloop(root, "agent", "status")
        assert after.returncode == 0 and "no agent runs" in after.stdout and "does not validate" in after.stdout
        refused = mloop(root, "agent", "trigger")
        assert refused.returncode == 2 and "no agent can take the trigger" in refused.stderr, refused.stderr
        assert "fix mloop.toml" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        if psutil.pid_exists(pid):
            psutil.Process(pid).kill()
