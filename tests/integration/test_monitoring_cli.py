"""A served model's monitoring from the command line: status, alerts, the prediction log, report --since, restart."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from tests.support.projects import with_monitor
from tests.support.servers import MLOOP, post, start_server, stop

pytestmark = pytest.mark.integration

MONITOR = """
[monitor]
interval = 1
window = 400
min_samples = 50
webhooks = ["{hook}"]
webhook_token = "hook-secret"

[[monitor.alerts]]
name = "DataDrift"
metric = "drifted_features_share"
above = 0.3
"""


def mloop(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MLOOP, *args], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[str | None, dict]] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        _Hook.received.append((self.headers.get("authorization"), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook.received
    server.shutdown()


@pytest.fixture(scope="module")
def served(first_run, tmp_path_factory, hook):
    """A project copy whose server saw normal, then tripled traffic, with true labels for part of it."""
    root, _ = first_run
    project = tmp_path_factory.mktemp("monitoring") / "breast_cancer"
    shutil.copytree(root, project, ignore=shutil.ignore_patterns("monitor", "deployments"))
    with_monitor(project, MONITOR.replace("{hook}", hook[0]))
    data = pd.read_csv(project / "data" / "breast_cancer.csv")
    features = data.drop(columns=["target"])
    proc, url = start_server(project)
    ids = {}
    try:
        for i in range(4):
            part = features.iloc[i * 50:(i + 1) * 50]
            status, answer = post(f"{url}/predict", json.dumps({"instances": part.to_dict(orient="records")}).encode(),
                                  {"x-request-id": f"n{i}"})
            assert status == 200
            ids[f"n{i}"] = data["target"].iloc[i * 50:(i + 1) * 50].tolist()
        status, _ = post(f"{url}/feedback", json.dumps({"id": "n0", "labels": ids["n0"]}).encode())
        assert status == 200
        for i in range(4):
            part = features.iloc[i * 100:(i + 1) * 100] * 3.0
            post(f"{url}/predict", json.dumps({"instances": part.to_dict(orient="records")}).encode())
        status_file = project / ".mloop" / "monitor" / "breast_cancer" / "status.json"
        deadline = time.time() + 30
        while time.time() < deadline:
            if status_file.exists() and json.loads(status_file.read_text())["drift"].get("share"):
                break
            time.sleep(0.3)
        shown = mloop(project, "monitor", "status")
        as_json = mloop(project, "monitor", "status", "--json")
    finally:
        err = stop(proc)
    assert "Traceback" not in err
    return project, url, ids, data, shown, as_json


def test_status_prints_drift_outliers_accuracy_and_alerts(served):
    _, _, _, _, shown, as_json = served
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "breast_cancer v1: updated" in text and "features drifted" in text
    assert "outliers:" in text and "live: accuracy" in text and "over 50 labelled predictions" in text
    assert "firing DataDrift" in text
    data = json.loads(as_json.stdout)
    assert data["drift"]["share"] > 0.3 and data["drift"]["rows"] == 400 and data["feedback"]["labelled_total"] == 50


def test_the_prediction_log_holds_every_served_row_after_shutdown(served):
    project, _, _, _, _, _ = served
    log = pd.read_parquet(project / ".mloop" / "monitor" / "breast_cancer" / "predictions")
    assert len(log) == 600 and log["request_id"].str.startswith("n").sum() == 200
    assert log["outlier_score"].notna().all() and log.loc[log["request_id"] == "n1", "outlier"].mean() < 0.2
    assert log.loc[~log["request_id"].str.startswith("n"), "outlier"].mean() > 0.5
    labels = pd.read_parquet(project / ".mloop" / "monitor" / "breast_cancer" / "feedback")
    assert len(labels) == 50


def test_the_firing_alert_reached_the_configured_webhook(served, hook):
    _, received = hook
    deadline = time.time() + 15
    while time.time() < deadline and not received:
        time.sleep(0.2)
    auth, payload = received[0]
    assert auth == "Bearer hook-secret" and payload["status"] == "firing"
    assert payload["alerts"][0]["labels"]["alertname"] == "DataDrift"
    assert payload["alerts"][0]["labels"]["model"] == "breast_cancer"


def test_alerts_lists_the_firing_and_resolved_events(served):
    project = served[0]
    done = mloop(project, "monitor", "alerts")
    assert done.returncode == 0, done.stderr
    assert "DataDrift" in done.stdout and "mloop" in done.stdout
    events = [json.loads(line) for line in mloop(project, "monitor", "alerts", "--json").stdout.splitlines()]
    assert events and events[0]["status"] == "firing" and events[0]["source"] == "mloop"


def test_report_since_compares_the_served_rows_and_shows_accuracy_over_time(served, tmp_path):
    project = served[0]
    out = tmp_path / "since.html"
    done = mloop(project, "monitor", "report", "--since", "1h", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "in 600 rows of predictions of the last 1h" in done.stdout and "not compared" not in done.stdout
    page = out.read_text()
    assert "Accuracy over time" in page and page.count("<polyline") == 1


def test_labels_for_predictions_made_before_a_restart_still_count(served):
    project, _, ids, _, _, _ = served
    proc, url = start_server(project)
    try:
        status, answer = post(f"{url}/feedback", json.dumps({"id": "n1", "labels": ids["n1"]}).encode())
        assert status == 200 and answer["total_labelled"] == 100
        status, _ = post(f"{url}/feedback", json.dumps({"id": "n0", "labels": ids["n0"]}).encode())
        assert status == 409  # labelled before the restart: labels are final, and counted once
    finally:
        stop(proc)


@pytest.mark.parametrize("args, message", [
    (["monitor", "status", "nosuchmodel"], "no monitoring status for 'nosuchmodel'"),
    (["monitor", "report"], "pass either --from FILE"),
    (["monitor", "report", "--since", "5 weeks"], "--since '5 weeks'"),
    (["monitor", "alerts", "--since", "yesterday"], "--since 'yesterday'"),
    (["monitor", "export", "--out", "x", "--target", "nohost"], "--target 'nohost' is not host:port"),
])
def test_wrong_monitor_commands_exit_2_naming_the_problem(served, args, message):
    done = mloop(served[0], *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
