"""Real Prometheus and Alertmanager (Debian packages) with the configs `mloop monitor export` writes.

Prometheus scrapes a running `mloop serve`; drifted traffic makes the drift alert fire in Prometheus,
Alertmanager delivers it to mloop's authenticated receiver, and it resolves after normal traffic.
mloop's own evaluation of the same rule fires and resolves beside it. The exported Grafana dashboard
only names metrics the server really exports, and its queries are valid PromQL (checked by promtool).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.support.projects import with_monitor
from tests.support.servers import (
    MLOOP,
    free_port,
    post,
    start_server,
    stop,
    system_binary,
    wait_for_http,
)

pytestmark = pytest.mark.integration

MONITOR = """
[monitor]
interval = 1
window = 300
min_samples = 50
rate_window = "30s"

[[monitor.alerts]]
name = "DataDrift"
metric = "drifted_features_share"
above = 0.3
for = "0s"
summary = "more than 30% of the features drifted"

[[monitor.alerts]]
name = "HighLatency"
metric = "p99_latency_ms"
above = 200
for = "1m"

[[monitor.alerts]]
name = "LowAccuracy"
metric = "accuracy"
worse_than_test = 0.1
"""


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    return {"prometheus": system_binary("prometheus", "prometheus"),
            "promtool": system_binary("promtool", "prometheus"),
            "alertmanager": system_binary("prometheus-alertmanager", "prometheus-alertmanager"),
            "amtool": system_binary("amtool", "prometheus-alertmanager")}


@pytest.fixture(scope="module")
def project(first_run, tmp_path_factory) -> Path:
    root, _ = first_run
    copy = tmp_path_factory.mktemp("alerting") / "breast_cancer"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("monitor", "deployments"))
    with_monitor(copy, MONITOR)
    return copy


def _export(project: Path, out: Path, target: str, alertmanager: str, env: dict[str, str]) -> None:
    done = subprocess.run([MLOOP, "monitor", "export", "--out", str(out), "--target", target,
                           "--alertmanager", alertmanager, "--interval", "1s", "--group-wait", "1s"],
                          cwd=project, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr


def _start(args: list[str], ready_url: str) -> subprocess.Popen:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_http(ready_url, proc, timeout=60)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _events(project: Path) -> list[dict]:
    path = project / ".mloop" / "monitor" / "breast_cancer" / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(condition, what: str, timeout: float = 90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _send(url: str, frame: pd.DataFrame, batches: int = 6) -> None:
    for chunk in range(batches):
        part = frame.iloc[chunk * 50:(chunk + 1) * 50]
        status, _ = post(f"{url}/predict", json.dumps({"instances": part.to_dict(orient="records")}).encode())
        assert status == 200


def test_exported_configs_pass_promtool_and_amtool(project, tools, tmp_path):
    import os

    _export(project, tmp_path, "127.0.0.1:8080", "127.0.0.1:9093", {**os.environ, "MLOOP_SERVING_ALERT_TOKEN": "t"})
    for args in ([tools["promtool"], "check", "config", str(tmp_path / "prometheus.yml")],
                 [tools["promtool"], "check", "rules", str(tmp_path / "mloop-rules.yml")],
                 [tools["amtool"], "check-config", str(tmp_path / "alertmanager.yml")]):
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "alert-token").read_text() == "t" and (tmp_path / "alert-token").stat().st_mode & 0o077 == 0


def test_grafana_dashboard_queries_name_real_metrics_and_parse(project, tools, tmp_path, first_run):
    import os

    _export(project, tmp_path, "127.0.0.1:8080", "127.0.0.1:9093", dict(os.environ))
    dashboard = json.loads((tmp_path / "grafana-dashboard.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) and all(p["targets"] and p["gridPos"] for p in panels)
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in ("request rate", "latency", "errors", "drift", "outlier", "accuracy", "version"):
        assert topic in titles
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    # every metric a query names is exported by a real server that has served, been labelled and monitored
    proc, url = start_server(project, "--monitor-interval", "1")
    try:
        rows = pd.read_csv(project / "data" / "breast_cancer.csv").drop(columns=["target"]).head(120)
        status, answer = post(f"{url}/predict", json.dumps({"instances": rows.to_dict(orient="records")}).encode(),
                              {"x-request-id": "g-1"})
        labels = [p["label"] for p in answer["predictions"]]
        post(f"{url}/feedback", json.dumps({"id": "g-1", "labels": labels}).encode())

        def monitored() -> str | None:
            text = urllib.request.urlopen(f"{url}/metrics").read().decode()
            return text if "mloop_drifted_features_share" in text else None

        exported = _wait_for(monitored, "monitoring metrics", 30)
    finally:
        stop(proc)
    families = set(re.findall(r"^# TYPE (\w+) ", exported, re.M))
    named = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"\b(mloop_\w+)", e)}
    named = {m if m in families else m.removesuffix("_total") for m in named}
    assert named and named <= families, named - families
    # the queries are valid PromQL: promtool checks them as recording rules
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:q{i}", "expr": e.replace("$__rate_interval", "1m")} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps(rules))
    done = subprocess.run([tools["promtool"], "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_drift_alert_fires_in_prometheus_reaches_mloop_through_alertmanager_and_resolves(project, tools, tmp_path):
    import os

    env = {**os.environ, "MLOOP_SERVING_ALERT_TOKEN": "am-secret"}
    data = pd.read_csv(project / "data" / "breast_cancer.csv").drop(columns=["target"])
    server, url = start_server(project, env=env)
    prometheus = alertmanager = None
    try:
        am_port, prom_port = free_port(), free_port()
        _export(project, tmp_path / "export", url.removeprefix("http://"), f"127.0.0.1:{am_port}", env)
        alertmanager = _start([tools["alertmanager"], f"--config.file={tmp_path / 'export' / 'alertmanager.yml'}",
                               f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                               "--cluster.listen-address="], f"http://127.0.0.1:{am_port}/-/ready")
        prometheus = _start([tools["prometheus"], f"--config.file={tmp_path / 'export' / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s"],
                            f"http://127.0.0.1:{prom_port}/-/ready")
        prom = f"http://127.0.0.1:{prom_port}"
        _wait_for(lambda: any(t["health"] == "up" for t in _get(f"{prom}/api/v1/targets")["data"]["activeTargets"]),
                  "Prometheus to scrape the model server")

        _send(url, data.sample(300, random_state=0) * 3.0)  # every feature tripled: clear drift
        _wait_for(lambda: any(a["labels"]["alertname"] == "DataDrift" and a["state"] == "firing"
                              for a in _get(f"{prom}/api/v1/alerts")["data"]["alerts"]), "the alert to fire in Prometheus")
        received = _wait_for(lambda: [e for e in _events(project) if e["source"] == "alertmanager"
                                      and e["status"] == "firing"], "Alertmanager to deliver the alert to mloop")
        assert received[0]["alert"] == "DataDrift" and received[0]["labels"]["source"] == "prometheus"
        assert received[0]["summary"] == "more than 30% of the features drifted"
        assert any(e["source"] == "mloop" and e["status"] == "firing" for e in _events(project)), _events(project)

        _send(url, data.sample(300, random_state=1))  # the training distribution again
        _wait_for(lambda: [e for e in _events(project) if e["source"] == "alertmanager" and e["status"] == "resolved"],
                  "the resolved alert to reach mloop")
        assert any(e["source"] == "mloop" and e["status"] == "resolved" for e in _events(project))

        shown = subprocess.run([MLOOP, "monitor", "alerts"], cwd=project, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and "no alert of breast_cancer is firing" in shown.stdout
        assert shown.stdout.count("DataDrift") >= 4  # fired and resolved, from both sources

        # LowAccuracy is relative to the served version's test accuracy (mloop_test_score) in PromQL too
        rows = data.sample(50, random_state=2)
        _, answer = post(f"{url}/predict", json.dumps({"instances": rows.to_dict(orient="records")}).encode(),
                         {"x-request-id": "wrong"})
        status, _ = post(f"{url}/feedback", json.dumps({"id": "wrong", "labels": [
            1 - p["label"] for p in answer["predictions"]]}).encode())
        assert status == 200
        _wait_for(lambda: any(a["labels"]["alertname"] == "LowAccuracy" and a["state"] == "firing"
                              for a in _get(f"{prom}/api/v1/alerts")["data"]["alerts"]), "LowAccuracy to fire")
    finally:
        for proc in (prometheus, alertmanager):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
        err = stop(server)
    assert "Traceback" not in err
