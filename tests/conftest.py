"""Shared fixtures: one MLflow database per session (migrations are slow), copied per test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "breast_cancer"

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
for name in [n for n in os.environ if n.startswith("MLOOP_")]:
    del os.environ[name]  # the tests set what they need


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow SQLite database, created once per session."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="session")
def breast_cancer_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "breast_cancer.csv"
    subprocess.run([sys.executable, str(EXAMPLE / "write_data.py"), str(out)], check=True, capture_output=True)
    return out


def copy_project(source: Path, dest: Path, db_template: Path) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".mloop", "__pycache__", "*.csv"))
    (dest / ".mloop").mkdir()
    shutil.copyfile(db_template, dest / ".mloop" / "mlflow.db")
    return dest


@pytest.fixture
def breast_cancer_project(tmp_path: Path, mlflow_db_template: Path, breast_cancer_csv: Path) -> Path:
    """A private copy of the reference project with its data and a fresh MLflow store."""
    root = copy_project(EXAMPLE, tmp_path / "breast_cancer", mlflow_db_template)
    (root / "data").mkdir(exist_ok=True)
    shutil.copyfile(breast_cancer_csv, root / "data" / "breast_cancer.csv")
    return root


@pytest.fixture(autouse=True)
def _forget_pipeline_modules():
    """Each test imports its own project's pipeline module: drop it from sys.modules afterwards."""
    before = set(sys.modules)
    path = list(sys.path)
    yield
    for name in set(sys.modules) - before:
        if name in ("pipeline", "flow", "steps") or name.startswith("pipeline."):
            del sys.modules[name]
    sys.path[:] = path


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> bytes:
    """Poll ``url`` until it answers 200 and return the body; fail early with the output if ``proc`` exits."""
    import time
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            output = proc.stderr.read() if proc.stderr else (proc.stdout.read() if proc.stdout else "")
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode} before {url} answered: {output!r}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return bytes(response.read())
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def first_run(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path, breast_cancer_csv: Path):
    """The reference project after one full run: (root, ProjectRun). Shared and read-only: copy to change it."""
    from mloop.config import load_project
    from mloop.project import run_project

    root = copy_project(EXAMPLE, tmp_path_factory.mktemp("ref") / "breast_cancer", mlflow_db_template)
    (root / "data").mkdir(exist_ok=True)
    shutil.copyfile(breast_cancer_csv, root / "data" / "breast_cancer.csv")
    return root, run_project(load_project(root))


def system_binary(name: str, package: str) -> str:
    """The path of a program from a Debian package, installing the package first if it is missing (as root)."""
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail(f"{name} is missing and only root can install it: apt-get install {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                          env=env, capture_output=True, text=True, timeout=900)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"installing {package} did not give {name}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return found


def with_monitor(project: Path, section: str) -> None:
    """Replace the ``[monitor]`` settings (the last section of the reference project's mloop.toml)."""
    path = project / "mloop.toml"
    text = path.read_text(encoding="utf-8")
    head = text.split("\n[monitor]")[0]
    path.write_text(head.rsplit("\n# Monitoring", 1)[0] + "\n" + section, encoding="utf-8")
