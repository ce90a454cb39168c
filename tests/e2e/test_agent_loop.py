"""The continuous-training loop, end to end, with a real deployment, a real agent process and traffic counted.

1. Traffic shifts → the drift alert fires → the agent snapshots the labelled production rows, retrains,
   the gate passes, canary, the watch passes → the new version serves 100 %, zero failed requests.
2. A worse retrained model is registered, not promoted, and the report says why.
3. The candidate's live accuracy falls below its floor during the watch → automatic rollback.
4. A burst of 100 alerts in 10 seconds gives exactly one cycle that lists them all.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from mloop.automation.agent import open_audit, open_journal
from mloop.config import load_project
from mloop.deploy import local
from mloop.registry.aliases import champion_version, version_tags
from tests.support.agent_project import FEATURES, Traffic, agent_project, data
from tests.support.versioned import git, mloop

pytestmark = pytest.mark.e2e

AUTOMATION = """
[params.train]
quality = "good"

[monitor]
interval = 1
window = 300
min_samples = 100
alerts = [
  {name = "DataDrift", metric = "drifted_features_share", above = 0.3, for = "0s"},
]

[automation]
strategy = "canary"
canary_steps = [0.3, 0.6]
snapshot = true
poll = "500ms"
port = PORT

[automation.triggers]
alerts = ["DataDrift"]
data = false
registry = false
debounce = "1s"

[automation.gate]
alpha = 0.05
rules = [{metric = "accuracy", floor = 0.6}]

[automation.infra]
p99_ms = 2000
max_memory_mb = 4096
sample = 50

[automation.watch]
interval = "500ms"
count = 4
metrics = [
  {metric = "error_ratio", above = 0.01, min_samples = 5},
  {metric = "p99_latency_ms", above = 2000, min_samples = 5},
]
"""


def wait_for_cycle(root: Path, *, done: int, timeout: float = 180.0) -> list:
    """Until ``done`` cycles are final; the cycles, newest first."""
    cfg = load_project(root)
    deadline = time.time() + timeout
    while time.time() < deadline:
        journal = open_journal(cfg)
        try:
            cycles = journal.cycles(cfg.model_name, limit=100)
        finally:
            journal.close()
        if len([c for c in cycles if c.final]) >= done and not [c for c in cycles if not c.final]:
            return cycles
        time.sleep(0.5)
    log = (cfg.store / "automation" / "agent.log")
    raise AssertionError(f"no final cycle after {timeout} s; agent log:\n"
                         + (log.read_text()[-3000:] if log.exists() else "(none)"))


def serving_version(cfg, name: str) -> str:
    deployment = local.load_state(cfg, name)
    assert deployment is not None
    answer = httpx.get(f"{deployment.url}/v2/models/{deployment.model}", timeout=5).json()
    return str(answer["versions"][0])


def send_feedback(url: str, answered: list, *, wrong_for: str | None = None) -> int:
    """The true label of every answered request (the wrong one for requests ``wrong_for`` answered)."""
    items = []
    for request_id, version, _, truth in answered:
        label = 1 - truth if version == wrong_for else truth
        items.append({"id": request_id, "labels": [label]})
    sent = 0
    for start in range(0, len(items), 200):
        response = httpx.post(f"{url}/feedback", json={"items": items[start:start + 200]}, timeout=10)
        sent += response.status_code == 200
    return sent


@pytest.fixture(scope="module")
def project(tmp_path_factory, mlflow_db_template) -> Path:
    from tests.support.servers import free_port

    root = agent_project(tmp_path_factory.mktemp("agent") / "shifty", mlflow_db_template,
                         AUTOMATION.replace("PORT", str(free_port())))
    git(root, "init", "-q")
    assert mloop(root, "data", "init").returncode == 0
    git(root, "add", "-A")
    git(root, "commit", "-qm", "shifty")
    first = mloop(root, "run")
    assert first.returncode == 0, first.stderr
    deployed = mloop(root, "deploy")
    assert deployed.returncode == 0, deployed.stderr
    started = mloop(root, "agent", "start")
    assert started.returncode == 0, started.stderr
    yield root
    mloop(root, "agent", "stop")
    mloop(root, "undeploy", "shifty")


def test_drift_alert_retrains_gates_canaries_and_promotes_with_zero_failed_requests(project):
    cfg = load_project(project)
    deployment = local.load_state(cfg, "shifty")
    assert deployment is not None and champion_version(cfg, "shifty") == "1"
    shifted = data(3000, shifted=True, seed=7)
    with Traffic(deployment.url, shifted, clients=4, pause=0.002) as traffic:
        deadline = time.time() + 180
        labelled = 0
        while time.time() < deadline:
            time.sleep(1.0)
            with traffic.lock:
                answered, traffic.answered = traffic.answered, []
            labelled += send_feedback(deployment.url, answered)
            cycles = wait_for_cycle(project, done=0, timeout=0.01) if False else None
            journal = open_journal(cfg)
            try:
                found = journal.cycles("shifty")
            finally:
                journal.close()
            if found and found[0].final:
                break
        time.sleep(1.0)
    cycles = wait_for_cycle(project, done=1)
    cycle = cycles[0]
    assert cycle.state == "promoted", (cycle.reason, cycle.steps)
    assert any(t["kind"] == "alert" and "DataDrift" in t["reason"] for t in cycle.triggers), cycle.triggers
    assert traffic.failed == 0, traffic.outcomes
    assert traffic.versions["1"] > 0 and traffic.versions[str(cycle.candidate)] > 0, traffic.versions
    assert champion_version(cfg, "shifty") == cycle.candidate == serving_version(cfg, "shifty")
    tags = version_tags(cfg, "shifty", str(cycle.candidate))
    assert tags["mloop.agent.verdict"] == "PASS" and tags["mloop.agent.cycle"] == cycle.id
    kinds = [r.kind for r in open_audit(cfg).records(cycle=cycle.id)]
    for kind in ("run", "gate", "infra", "traffic", "watch", "promote", "cycle"):
        assert kind in kinds, kinds
    assert open_audit(cfg).verify() == []
    assert (project / "data" / "production.parquet").exists()  # the snapshot the candidate trained on
    history = mloop(project, "agent", "history", cycle.id)
    assert history.returncode == 0 and "promoted" in history.stdout and "gate PASS" in history.stdout
    at = mloop(project, "history", "--at", "now", "--json")
    served = json.loads(at.stdout)
    assert served["champion"] == cycle.candidate and served["deployments"]["shifty"] == {cycle.candidate: 1.0}


def test_a_worse_model_is_registered_but_not_promoted_and_the_report_says_why(project):
    cfg = load_project(project)
    before = champion_version(cfg, "shifty")
    toml = (project / "mloop.toml").read_text()
    (project / "mloop.toml").write_text(toml.replace('quality = "good"', 'quality = "bad"'))
    try:
        assert mloop(project, "agent", "trigger", "--reason", "try a worse model").returncode == 0
        cycles = wait_for_cycle(project, done=2)
    finally:
        (project / "mloop.toml").write_text(toml)
    cycle = cycles[0]
    assert cycle.state == "rejected" and "gate FAIL" in cycle.reason, cycle.reason
    assert champion_version(cfg, "shifty") == before == serving_version(cfg, "shifty")
    tags = version_tags(cfg, "shifty", str(cycle.candidate))
    assert tags["mloop.agent.verdict"] == "FAIL" and tags["mloop.agent.outcome"] == "rejected"
    report = json.loads(tags["mloop.agent.gate"])
    assert report["verdict"] == "FAIL"
