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


def send_feedback(url: str, answered: list, *, wrong_for_all_but: str | None = None) -> int:
    """The true label of every answered request (the wrong one for those not answered by ``wrong_for_all_but``)."""
    items = []
    for request_id, version, _, truth in answered:
        label = 1 - truth if wrong_for_all_but is not None and version != wrong_for_all_but else truth
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


def test_live_accuracy_below_its_floor_during_the_watch_rolls_back_with_zero_failed_requests(project):
    cfg = load_project(project)
    before = champion_version(cfg, "shifty")
    deployment = local.load_state(cfg, "shifty")
    toml = (project / "mloop.toml").read_text()
    watch = toml.split("[automation.watch]")[0] + """[automation.watch]
interval = "1s"
count = 8
inconclusive_limit = 8
metrics = [
  {metric = "error_ratio", above = 0.01, min_samples = 5},
  {metric = "accuracy", below = 0.8, min_samples = 10},
]
"""
    (project / "mloop.toml").write_text(watch)
    more = data(400, shifted=True, seed=11)
    more.to_csv(project / "data" / "data.csv", mode="a", header=False, index=False)  # a new version to train
    try:
        with Traffic(deployment.url, data(2000, shifted=True, seed=12), clients=3, pause=0.005) as traffic:
            assert mloop(project, "agent", "trigger", "--reason", "new data").returncode == 0
            deadline = time.time() + 180
            while time.time() < deadline:
                time.sleep(0.3)
                with traffic.lock:
                    answered, traffic.answered = traffic.answered, []
                send_feedback(deployment.url, answered, wrong_for_all_but=before)  # the candidate is always wrong
                journal = open_journal(cfg)
                try:
                    newest = journal.cycles("shifty")[0]
                finally:
                    journal.close()
                if newest.final and newest.reason != "" and newest.triggers[0].get("reason") == "new data":
                    break
            time.sleep(0.5)
    finally:
        (project / "mloop.toml").write_text(toml)
    cycle = wait_for_cycle(project, done=3)[0]
    assert cycle.state == "rolled_back" and "accuracy < 0.8" in cycle.reason, cycle.reason
    assert traffic.failed == 0, traffic.outcomes
    assert traffic.versions[str(cycle.candidate)] > 0, traffic.versions  # it did serve, in the canary
    assert champion_version(cfg, "shifty") == before == serving_version(cfg, "shifty")
    assert local.rollout_state(cfg, "shifty")["active"] is False
    kinds = [r.kind for r in open_audit(cfg).records(cycle=cycle.id)]
    assert "rollback" in kinds and "promote" not in kinds


def test_a_burst_of_100_alerts_in_10_seconds_gives_one_cycle_listing_them_all(project):
    from mloop.automation.agent import read_state

    cfg = load_project(project)
    agent = read_state(cfg)
    assert agent is not None
    journal = open_journal(cfg)
    known = {c.id for c in journal.cycles("shifty", limit=1000)}
    journal.close()
    started = time.time()
    answers: list[int] = []

    def post(n: int) -> None:
        alert = {"status": "firing", "labels": {"alertname": "DataDrift", "model": "shifty", "instance": f"i{n}"},
                 "annotations": {"summary": f"burst {n}"}, "startsAt": "2026-11-27T10:00:00Z",
                 "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": f"{n:016x}"}
        payload = {"version": "4", "status": "firing", "receiver": "agent", "groupKey": f"g{n}", "truncatedAlerts": 0,
                   "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "alerts": [alert]}
        answer = httpx.post(f"{agent.url}/alerts", json=payload, timeout=10)
        answers.append(answer.status_code if answer.json().get("triggers") == 1 else -1)

    import threading

    for wave in range(10):  # ten alerts at once, every 0.9 s: concurrent deliveries, 100 in under 10 s
        threads = [threading.Thread(target=post, args=(wave * 10 + i,)) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(max(0.0, started + (wave + 1) * 0.9 - time.time()))
    assert answers.count(200) == 100, answers
    assert time.time() - started < 10.5
    cycles = wait_for_cycle(project, done=len(known) + 1)
    new = [c for c in cycles if c.id not in known]
    assert len(new) == 1, [(c.id, len(c.triggers)) for c in new]
    reasons = {t["reason"] for t in new[0].triggers}
    assert len(new[0].triggers) == 100 and len(reasons) == 100, len(new[0].triggers)
    history = json.loads(mloop(project, "agent", "history", new[0].id, "--json").stdout)
    assert len(history[0]["triggers"]) == 100


def test_status_and_a_person_overriding_the_gate_is_recorded_and_served(project):
    cfg = load_project(project)
    status = json.loads(mloop(project, "agent", "status", "--json").stdout)
    assert status["running"] and status["status"]["model"] == "shifty" and status["status"]["running"] == []
    champion = champion_version(cfg, "shifty")
    journal = open_journal(cfg)
    rejected = [c for c in journal.cycles("shifty", limit=100) if c.state == "rejected"][0]
    journal.close()
    refused = mloop(project, "models", "promote", str(rejected.candidate))
    assert refused.returncode == 4 and "--force --reason" in refused.stderr, refused.stderr
    no_reason = mloop(project, "models", "promote", str(rejected.candidate), "--force")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    forced = mloop(project, "models", "promote", str(rejected.candidate), "--force", "--reason", "the auditors asked")
    assert forced.returncode == 0 and "override recorded" in forced.stdout, forced.stderr
    assert champion_version(cfg, "shifty") == rejected.candidate == serving_version(cfg, "shifty")
    override = [r for r in open_audit(cfg).records() if r.kind == "override"][-1]
    assert override.version == rejected.candidate and "the auditors asked" in override.summary
    assert version_tags(cfg, "shifty", str(rejected.candidate))["mloop.override.reason"] == "the auditors asked"
    back = mloop(project, "models", "promote", str(champion))  # it passed its gate: no --force needed
    assert back.returncode == 0, back.stderr
    assert champion_version(cfg, "shifty") == champion == serving_version(cfg, "shifty")
    missing = mloop(project, "models", "promote", "99")
    assert missing.returncode == 2 and "no version '99'" in missing.stderr


def test_history_at_a_moment_names_the_champion_then_and_why(project):
    cfg = load_project(project)
    journal = open_journal(cfg)
    promoted = [c for c in journal.cycles("shifty", limit=100) if c.state == "promoted"][-1]
    journal.close()
    after = promoted.updated + 0.5
    found = json.loads(mloop(project, "history", "--at", str_time(after), "--json").stdout)
    assert found["champion"] == promoted.candidate and "gate PASS" in found["why"], found
    assert found["deployments"]["shifty"] == {promoted.candidate: 1.0}
    before = json.loads(mloop(project, "history", "--at", str_time(promoted.created - 0.5), "--json").stdout)
    assert before["champion"] == "1" and before["deployments"]["shifty"] == {"1": 1.0}, before
    garbage = mloop(project, "history", "--at", "the day before yesterday")
    assert garbage.returncode == 2 and "ISO time" in garbage.stderr


def str_time(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def test_too_many_rollbacks_in_a_row_stop_the_agent_and_raise_an_alert(project):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    hook = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    cfg = load_project(project)
    toml = (project / "mloop.toml").read_text()
    failing = toml.split("[automation.watch]")[0].replace("[automation]\n", "[automation]\nmax_rollbacks = 1\n") + """
[automation.watch]
interval = "300ms"
count = 3
metrics = [{metric = "p99_latency_ms", above = 0.0001, min_samples = 1}]
"""
    failing = failing.replace("[monitor]\n", f"[monitor]\nwebhooks = [\"http://127.0.0.1:{hook.server_address[1]}/hook\"]\n")
    (project / "mloop.toml").write_text(failing)
    deployment = local.load_state(cfg, "shifty")
    data(300, shifted=True, seed=21).to_csv(project / "data" / "data.csv", mode="a", header=False, index=False)
    journal = open_journal(cfg)
    known = len(journal.cycles("shifty", limit=1000))
    journal.close()
    try:
        with Traffic(deployment.url, data(500, shifted=True, seed=22), clients=2, pause=0.01) as traffic:
            assert mloop(project, "agent", "trigger", "--reason", "will fail").returncode == 0
            cycles = wait_for_cycle(project, done=known + 1)
    finally:
        (project / "mloop.toml").write_text(toml)
    assert cycles[0].state == "rolled_back", cycles[0].reason
    assert traffic.failed == 0, traffic.outcomes
    deadline = time.time() + 30
    while time.time() < deadline and json.loads(mloop(project, "agent", "status", "--json").stdout)["running"]:
        time.sleep(0.5)
    status = mloop(project, "agent", "status")
    assert "no agent runs" in status.stdout
    alerts = (cfg.store / "automation" / "alerts.jsonl").read_text()
    assert "AgentStopped" in alerts and "automatic rollbacks in a row" in alerts
    hook.shutdown()
    delivered = [a for payload in received for a in payload["alerts"] if a["labels"]["alertname"] == "AgentStopped"]
    assert delivered and delivered[0]["status"] == "firing", received
    restarted = mloop(project, "agent", "start")  # a person looked: the agent runs again
    assert restarted.returncode == 0 and "started" in restarted.stdout
