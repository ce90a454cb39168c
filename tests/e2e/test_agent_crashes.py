"""kill -9 of the agent at each transition of a cycle: after a restart every cycle reaches a final state,
never two champions, never a champion that is not the version serving, no roll-out left half done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mloop.automation.agent import open_audit, open_journal
from mloop.config import load_project
from mloop.deploy import local
from mloop.registry.aliases import champion_version
from tests.support.agent_project import Traffic, agent_project, data
from tests.support.servers import free_port
from tests.support.versioned import mloop

pytestmark = pytest.mark.e2e

AUTOMATION = """
[monitor]
interval = 0

[automation]
strategy = "canary"
canary_steps = [0.5]
poll = "200ms"
port = PORT

[automation.triggers]
data = false
registry = false
debounce = "0s"

[automation.gate]
rules = [{metric = "accuracy", floor = 0.5}]
alpha = 0.5

[automation.infra]
p99_ms = 5000
sample = 5

[automation.watch]
interval = "300ms"
count = 2
inconclusive_limit = 5
metrics = [{metric = "error_ratio", above = 0.5, min_samples = 1}]
"""

# Each transition of a cycle that promotes, in order: a state just journalled, or a step's side effect done
# and its result not yet journalled.
TRANSITIONS = ["training", "train:done", "gating", "gate:done", "checking", "infra:done", "rolling_out",
               "rollout:done", "watching", "promoting"]


def agent_run(root: Path, crash_at: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLOOP_AGENT_CRASH_AT"}
    if crash_at:
        env["MLOOP_AGENT_CRASH_AT"] = crash_at
    return subprocess.Popen([sys.executable, "-m", "mloop.cli.main", "agent", "run", "--project", str(root)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def consistent(cfg) -> tuple[str | None, str]:
    """The champion and the version the deployment serves, with no roll-out in progress."""
    champion = champion_version(cfg, "shifty")
    state = local.rollout_state(cfg, "shifty")
    assert not state.get("candidate_version"), state
    deployment = local.load_state(cfg, "shifty")
    served = httpx.get(f"{deployment.url}/v2/models/shifty", timeout=5).json()["versions"][0]
    return champion, str(served)


@pytest.fixture
def project(tmp_path, mlflow_db_template) -> Path:
    root = agent_project(tmp_path / "shifty", mlflow_db_template, AUTOMATION.replace("PORT", str(free_port())))
    assert mloop(root, "run").returncode == 0
    assert mloop(root, "deploy").returncode == 0
    yield root
    mloop(root, "undeploy", "shifty")


def test_a_cycle_killed_at_every_transition_in_turn_ends_promoted_and_consistent(project):
    cfg = load_project(project)
    data(1200, shifted=True, seed=3).to_csv(project / "data" / "data.csv", index=False)  # the world shifted
    assert mloop(project, "agent", "trigger", "--reason", "crash test").returncode == 0  # queued in the inbox
    with Traffic(local.load_state(cfg, "shifty").url, data(500, shifted=True, seed=4), clients=2, pause=0.01) as traffic:
        cycle = killed_at_every_transition_then_resumed(project, cfg)
    assert traffic.failed == 0 and sum(traffic.outcomes.values()) > 100, traffic.outcomes
    assert cycle.state == "promoted", cycle.reason
    assert cycle.steps["train"].attempts >= 2 and cycle.steps["gate"].attempts >= 2
    champion, served = consistent(cfg)
    assert champion == served == cycle.candidate == "2"
    assert traffic.versions["1"] > 0 and traffic.versions["2"] > 0, traffic.versions
    records = open_audit(cfg).records(cycle=cycle.id)
    assert [r.kind for r in records].count("promote") == 1
    assert open_audit(cfg).verify() == []


def killed_at_every_transition_then_resumed(project: Path, cfg):
    for transition in TRANSITIONS:
        proc = agent_run(project, transition)
        try:
            out, _ = proc.communicate(timeout=90)
        finally:
            proc.kill()
        assert proc.returncode == -signal.SIGKILL, f"{transition}: the agent did not reach it:\n{out[-3000:]}"
        journal = open_journal(cfg)
        [cycle] = journal.cycles("shifty")
        journal.close()
        assert not cycle.final, (transition, cycle.state, cycle.reason)
        if transition == "watching":  # killed mid-watch: the roll-out runs on, and status says nothing watches it
            status = mloop(project, "agent", "status")
            assert "NOTHING watches it" in status.stdout and "is unfinished (watching)" in status.stdout, status.stdout
        champion, served = consistent(cfg) if transition not in ("rollout:done", "watching", "promoting") else (None, None)
        if champion is not None:  # outside a roll-out: the champion serves everything
            assert champion == served, (transition, champion, served)
    proc = agent_run(project, None)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            journal = open_journal(cfg)
            [cycle] = journal.cycles("shifty")
            journal.close()
            if cycle.final:
                return cycle
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
    raise AssertionError(f"the cycle did not end: {cycle.state}\n{out[-3000:]}")
