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
            with pytest.raises(DeployError, match="changed since the rollback from v1 to v2 was asked: it serves v2 now"):
                local.rollback(cfg, "breast_cancer", expect=("1", "2"))  # what someone confirmed is no longer so
            rolled = local.rollback(cfg, "breast_cancer", expect=("2", "1"))
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


def mloop_cli(root: Path, *args: str, **popen):
    import os
    import subprocess

    from tests.support.servers import MLOOP

    return subprocess.Popen([MLOOP, *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"}, **popen)


def servers_of(root: Path) -> list:
    """The mloop servers of this project running on this machine (whatever state files say)."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = process.info["cmdline"] or []
        if "serve" in line and str(root) in line:
            found.append(process)
    return found


def test_concurrent_deploys_of_one_name_start_exactly_one_server(project_with_two_versions):
    root = project_with_two_versions
    procs = [mloop_cli(root, "deploy", "breast_cancer/1", "--name", "race") for _ in range(3)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    try:
        assert all(proc.returncode == 0 for proc in procs), outputs
        said = [out for out, _ in outputs]
        assert sum("started" in out for out in said) == 1 and sum("already serves" in out for out in said) == 2, said
        assert len(servers_of(root)) == 1
        [status] = [s for s in local.list_deployments(load_project(root)) if s.deployment.name == "race"]
        assert status.healthy
    finally:
        local.undeploy(load_project(root), "race")
    assert servers_of(root) == []


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_a_deploy_interrupted_while_waiting_leaves_a_managed_deployment_or_nothing(project_with_two_versions, sig):
    import os
    import signal

    root = project_with_two_versions
    cfg = load_project(root)
    state = root / ".mloop" / "deployments" / "cut" / "state.json"
    proc = mloop_cli(root, "deploy", "breast_cancer/1", "--name", "cut")
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    assert not local.status(local.load_state(cfg, "cut")).healthy, "killed while waiting for readiness"
    os.kill(proc.pid, getattr(signal, sig))
    out, err = proc.communicate(timeout=60)
    if sig == "SIGTERM":  # handled like Ctrl-C: the server it started is stopped and forgotten
        assert proc.returncode == 143 and "Traceback" not in err, err
        assert local.load_state(cfg, "cut") is None and servers_of(root) == []
        return
    # killed outright: the server it started is a managed deployment, listed, and undeploy stops it
    [status] = [s for s in local.list_deployments(cfg) if s.deployment.name == "cut"]
    assert status.running and len(servers_of(root)) == 1
    assert local.undeploy(cfg, "cut").action == "stopped"
    assert servers_of(root) == []


def test_names_must_be_plain_and_a_damaged_state_hides_no_other_deployment(project_with_two_versions, tmp_path):
    import subprocess

    from tests.support.servers import MLOOP

    root = project_with_two_versions
    for bad in ("../../x", "a/b", ".hidden", ""):
        done = subprocess.run([MLOOP, "deploy", "breast_cancer/1", "--name", bad], cwd=root, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2 and "not a plain deployment name" in done.stderr, (bad, done.stderr)
        assert "Traceback" not in done.stderr
    assert not (root.parent / "x").exists() and not (root / ".mloop" / "x").exists()
    done = subprocess.run([MLOOP, "undeploy", "../../x"], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not a plain deployment name" in done.stderr

    cfg = load_project(root)
    local.deploy(cfg, "models:/breast_cancer/1", name="good")
    damaged = root / ".mloop" / "deployments" / "bad" / "state.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"\xff{not json")
    try:
        listed = subprocess.run([MLOOP, "deployments"], cwd=root, capture_output=True, text=True, timeout=120,
                                env={**__import__("os").environ, "COLUMNS": "200"})
        assert listed.returncode == 0, listed.stderr
        assert "good" in listed.stdout and "healthy" in listed.stdout
        assert str(damaged) in listed.stderr and "delete" in listed.stderr and "Traceback" not in listed.stderr
    finally:
        local.undeploy(cfg, "good")
        shutil.rmtree(damaged.parent)


def test_a_redeploy_after_a_crash_reuses_the_port_and_each_deployment_monitors_into_its_own_folder(
        project_with_two_versions):
    import os
    import signal
    import subprocess

    from tests.support.servers import MLOOP, free_port

    root = project_with_two_versions
    cfg = load_project(root)
    first = local.deploy(cfg, "models:/breast_cancer/1", name="crashy")
    other = local.deploy(cfg, "models:/breast_cancer/2", name="other")
    try:
        # a second server of the model into a folder a running one holds is refused, with the fix
        refused = subprocess.run([MLOOP, "serve", "breast_cancer/1", "--name", "crashy", "--port", str(free_port())],
                                 cwd=root,
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2, refused.stderr
        assert f"(pid {first.pid})" in refused.stderr and "--name crashy-2" in refused.stderr
        folders = {p.name for p in (root / ".mloop" / "monitor").iterdir()}
        assert {"crashy", "other"} <= folders

        os.kill(first.pid, signal.SIGKILL)  # the server crashes
        deadline = time.time() + 10
        while not local._port_free("127.0.0.1", int(first.url.rsplit(":", 1)[1])) and time.time() < deadline:  # its threads are gone
            time.sleep(0.05)
        again = local.deploy(cfg, "models:/breast_cancer/1", name="crashy")
        assert again.action == "started" and again.url == first.url, (again.url, first.url)
    finally:
        local.undeploy(cfg, "crashy")
        local.undeploy(cfg, "other")


def test_a_recycled_pid_in_a_stale_state_is_not_killed(project_with_two_versions):
    import dataclasses
    import subprocess

    root = project_with_two_versions
    cfg = load_project(root)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        stale = local.Deployment("stale", "breast_cancer", "1", "127.0.0.1", 1, bystander.pid, "t",
                                 time.time() - 3600)  # recorded an hour before the bystander started
        path = root / ".mloop" / "deployments" / "stale" / "state.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(stale)))
        [status] = [s for s in local.list_deployments(cfg) if s.deployment.name == "stale"]
        assert not status.running
        assert local.undeploy(cfg, "stale").action == "stopped"
        assert bystander.poll() is None, "undeploy killed a process that was not the deployment's"
    finally:
        bystander.kill()
        bystander.wait()
