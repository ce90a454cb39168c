"""Managed local deployments for real: start, hot swap and rollback under load, undeploy."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from mloop.config import load_project
from mloop.deploy import local
from mloop.errors import DeployError, RegistryError
from mloop.project import run_project

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def project_with_two_versions(first_run, tmp_path_factory) -> Path:
    root, _ = first_run
    copy = Path(shutil.copytree(root, tmp_path_factory.mktemp("deploy") / "breast_cancer",
                                ignore=shutil.ignore_patterns("__pycache__", "deployments")))
    outcome = run_project(load_project(copy), params={"logreg": {"C": "0.05"}, "knn": {"n_neighbors": "40"}})
    assert outcome.registration.version == "2"
    return copy


class Load:
    """``clients`` threads, each on its own keep-alive connection, POSTing until stopped."""

    def __init__(self, url: str, body: bytes, clients: int = 32) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.body = host, int(port), body
        self.stop = threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        deadline = time.time() + 120  # bounded, whatever happens
        while not self.stop.is_set() and time.time() < deadline:
            try:
                conn.request("POST", "/predict", self.body, {"content-type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                outcome = str(response.status)
                version = json.loads(payload).get("version", "?") if response.status == 200 else "-"
            except (OSError, http.client.HTTPException) as err:
                outcome, version = f"error:{type(err).__name__}", "-"
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            with self.lock:
                self.outcomes[outcome] += 1
                self.versions[version] += 1
        conn.close()

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_swap_refused_version_and_rollback_under_load_lose_no_request(project_with_two_versions):
    import pandas as pd

    cfg = load_project(project_with_two_versions)
    row = pd.read_csv(project_with_two_versions / "data" / "breast_cancer.csv").drop(columns=["target"]).iloc[0]
    body = json.dumps({"instances": [row.to_dict()]}).encode()
    started = local.deploy(cfg, "models:/breast_cancer@champion")
    try:
        assert (started.action, started.model, started.version) == ("started", "breast_cancer", "1")
        with Load(started.url, body) as load:
            time.sleep(1.0)
            swapped = local.deploy(cfg, "models:/breast_cancer/2")
            assert (swapped.action, swapped.version, swapped.previous_version) == ("swapped", "2", "1")
            assert local.deploy(cfg, "models:/breast_cancer/2").action == "unchanged"
            time.sleep(1.0)
            with pytest.raises(RegistryError, match="no models:/breast_cancer/77"):
                local.deploy(cfg, "models:/breast_cancer/77")  # refused before the server is asked
            time.sleep(0.5)
            rolled = local.rollback(cfg, "breast_cancer")
            assert (rolled.action, rolled.version, rolled.previous_version) == ("rolled_back", "1", "2")
            time.sleep(1.0)
        total = sum(load.outcomes.values())
        assert load.outcomes == Counter({"200": total}), f"failed requests: {load.outcomes}"
        assert total > 500 and load.versions["1"] > 0 and load.versions["2"] > 0, load.versions
        [status] = local.list_deployments(cfg)
        assert status.healthy and status.served_version == "1" and status.deployment.history == []
    finally:
        stopped = local.undeploy(cfg, "breast_cancer")
    assert stopped.action == "stopped" and stopped.log is not None and stopped.log.is_file()
    assert local.list_deployments(cfg) == []
    assert started.pid is not None and not local.process_alive(started.pid)
    stray = [p.name for p in project_with_two_versions.iterdir() if p.name in ("mlflow.db", "mlruns")]
    assert stray == [], "MLflow's global default store was used instead of the project's"


def test_rollback_without_history_and_unknown_names_are_clear(project_with_two_versions):
    cfg = load_project(project_with_two_versions)
    local.deploy(cfg, "models:/breast_cancer/2", name="second")
    try:
        with pytest.raises(DeployError, match="has served only v2"):
            local.rollback(cfg, "second")
        with pytest.raises(DeployError, match="serves model 'breast_cancer', not 'other'"):
            local.deploy(cfg, "models:/other/1", name="second")
        with pytest.raises(DeployError, match="no deployment 'secnd'; did you mean 'second'"):
            local.undeploy(cfg, "secnd")
    finally:
        local.undeploy(cfg, "second")
    with pytest.raises(DeployError, match="deployment 'second' is not running"):
        local.rollback(cfg, "second")


def test_a_version_that_does_not_exist_is_refused_before_anything_starts(project_with_two_versions):
    cfg = load_project(project_with_two_versions)
    with pytest.raises(RegistryError, match="no models:/breast_cancer/9"):
        local.deploy(cfg, "models:/breast_cancer/9", name="nine")
    assert not (project_with_two_versions / ".mloop" / "deployments" / "nine").exists()


def test_monitor_export_scrapes_the_running_deployment_and_keeps_its_secrets_out_of_git(project_with_two_versions,
                                                                                         tmp_path):
    import subprocess

    import yaml

    from tests.support.servers import MLOOP

    cfg = load_project(project_with_two_versions)
    started = local.deploy(cfg, "models:/breast_cancer/1")
    try:
        out = tmp_path / "ops"
        done = subprocess.run([MLOOP, "monitor", "export", "--out", str(out)], cwd=project_with_two_versions,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        scrape = yaml.safe_load((out / "prometheus.yml").read_text())["scrape_configs"][0]
        assert scrape["static_configs"][0]["targets"] == [started.url.removeprefix("http://")]
        assert set((out / ".gitignore").read_text().split()) >= {"alert-token", "scrape-token"}
    finally:
        local.undeploy(cfg, "breast_cancer")
