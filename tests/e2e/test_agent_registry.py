"""Versions registered outside the agent (CI, a colleague's `mloop run`): the agent gates and rolls out that
version against what the deployment serves, and a newer one arriving mid-watch restarts the analysis."""

from __future__ import annotations

import time
from pathlib import Path

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
registry = true
debounce = "0s"

[automation.gate]
rules = [{metric = "accuracy", floor = 0.5}]

[automation.infra]
p99_ms = 5000
sample = 5

[automation.watch]
interval = "500ms"
count = COUNT
metrics = [{metric = "error_ratio", above = 0.5, min_samples = 1}]
"""


def cycles(cfg) -> list:
    journal = open_journal(cfg)
    try:
        return journal.cycles("shifty", limit=100)
    finally:
        journal.close()


def wait(cfg, until, timeout: float = 150.0) -> list:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = cycles(cfg)
        if until(found):
            return found
        time.sleep(0.2)
    log = cfg.store / "automation" / "agent.log"
    raise AssertionError(f"{[(c.id, c.state, c.reason) for c in cycles(cfg)]}\n"
                         + (log.read_text()[-3000:] if log.exists() else ""))


def test_a_version_registered_outside_is_rolled_out_and_a_newer_one_mid_watch_restarts_the_analysis(
        tmp_path: Path, mlflow_db_template):
    automation = AUTOMATION.replace("PORT", str(free_port()))
    root = agent_project(tmp_path / "shifty", mlflow_db_template, automation.replace("COUNT", "40"))
    cfg = load_project(root)
    assert mloop(root, "run").returncode == 0
    assert mloop(root, "deploy").returncode == 0
    assert mloop(root, "agent", "start").returncode == 0
    try:
        with Traffic(local.load_state(cfg, "shifty").url, data(300, shifted=True, seed=5), clients=2,
                     pause=0.01) as traffic:
            time.sleep(1.0)  # the registry watcher's first look only records
            data(1000, shifted=True, seed=6).to_csv(root / "data" / "data.csv", index=False)
            ci = mloop(root, "run")  # "CI": registers v2 as a challenger (the agent owns the champion)
            assert ci.returncode == 0, ci.stderr
            assert champion_version(cfg, "shifty") == "1"
            first = wait(cfg, lambda found: found and found[0].state == "watching")[0]
            assert first.candidate == "2" and first.champion == "1"  # judged against what serves
            (root / "mloop.toml").write_text((root / "mloop.toml").read_text().replace("count = 40", "count = 2"))
            data(1000, shifted=True, seed=8).to_csv(root / "data" / "data.csv", index=False)
            assert mloop(root, "run").returncode == 0  # v3, mid-watch
            found = wait(cfg, lambda found: len(found) == 2 and found[0].final and found[1].final)
    finally:
        assert mloop(root, "agent", "stop").returncode == 0
        served = local.load_state(cfg, "shifty")
        mloop(root, "undeploy", "shifty")
    second, first = found
    assert first.state == "abandoned" and "superseded" in first.reason, first.reason
    assert second.state == "promoted" and second.candidate == "3", (second.state, second.reason)
    assert "train" not in {r.kind for r in open_audit(cfg).records(cycle=second.id)}
    assert champion_version(cfg, "shifty") == "3" and served is not None and served.version == "3"
    assert traffic.failed == 0, traffic.outcomes
    assert {"1", "2", "3"} <= set(traffic.versions), traffic.versions
