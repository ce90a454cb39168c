"""Shared fixtures: one MLflow database per session (migrations are slow), copied per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.projects import EXAMPLE, copy_project

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
for name in [n for n in os.environ if n.startswith("MLOOP_")]:
    del os.environ[name]  # the tests set what they need
# git commits made by the tests, and the default DVC remote (under XDG_DATA_HOME) kept out of the home folder
for name, value in {"GIT_AUTHOR_NAME": "mloop tests", "GIT_AUTHOR_EMAIL": "tests@mloop.invalid",
                    "GIT_COMMITTER_NAME": "mloop tests", "GIT_COMMITTER_EMAIL": "tests@mloop.invalid"}.items():
    os.environ.setdefault(name, value)
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="mloop-tests-xdg-")


@pytest.fixture(autouse=True)
def _main_module_kept():
    """Streamlit's AppTest installs the page script it ran as ``__main__`` and leaves it there; multiprocessing
    would then run that script again in every new pipeline worker of a later test. Each test ends with the
    ``__main__`` it started with."""
    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main


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


@pytest.fixture
def breast_cancer_project(tmp_path: Path, mlflow_db_template: Path, breast_cancer_csv: Path) -> Path:
    """A private copy of the reference project with its data and a fresh MLflow store."""
    root = copy_project(EXAMPLE, tmp_path / "breast_cancer", mlflow_db_template)
    (root / "data").mkdir(exist_ok=True)
    shutil.copyfile(breast_cancer_csv, root / "data" / "breast_cancer.csv")
    return root


@pytest.fixture(scope="session")
def first_run(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path, breast_cancer_csv: Path):
    """The reference project after one full run: (root, ProjectRun). Shared and read-only: copy to change it."""
    from mloop.config import load_project
    from mloop.project import run_project

    root = copy_project(EXAMPLE, tmp_path_factory.mktemp("ref") / "breast_cancer", mlflow_db_template)
    (root / "data").mkdir(exist_ok=True)
    shutil.copyfile(breast_cancer_csv, root / "data" / "breast_cancer.csv")
    return root, run_project(load_project(root))
