"""`mloop models gate`, the CI gate: exit 0 when the latest run's candidate is the champion, 4 when the
promotion gate kept the champion, 2 when the latest run registered nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mloop.config import load_project
from mloop.project import run_project
from tests.integration.test_concurrency import PIPELINE
from tests.support.projects import write_project
from tests.support.servers import MLOOP

pytestmark = pytest.mark.integration


def gate(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([MLOOP, "models", "gate"], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def test_the_gate_command_says_whether_the_latest_candidate_passed(tmp_path: Path, mlflow_db_template: Path):
    root = write_project(tmp_path / "gated", "race", PIPELINE, toml='task = "binary"\n')
    (root / ".mloop").mkdir()
    shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")
    nothing = gate(root)
    assert nothing.returncode == 2 and "no tracked run yet" in nothing.stderr

    run_project(load_project(root), params={"split": {"rows": 120}, "train": {"C": 0.1}})
    passed = gate(root)
    assert passed.returncode == 0, passed.stderr
    assert "race v1" in passed.stdout and "passed the promotion gate" in passed.stdout

    run_project(load_project(root), params={"split": {"rows": 20}, "train": {"C": 0.001}})  # a worse model
    failed = gate(root)
    assert failed.returncode == 4, failed.stdout + failed.stderr
    assert "race v2" in failed.stderr and "did not pass the promotion gate" in failed.stderr
    assert "Traceback" not in failed.stderr

    (root / "pipeline.py").write_text((root / "pipeline.py").read_text().replace(
        "def evaluate(model: Any, test: Any) -> dict:\n", "def evaluate(model: Any, test: Any) -> dict:\n    raise ValueError('broken')\n"))
    broken = subprocess.run([MLOOP, "run"], cwd=root, capture_output=True, text=True, timeout=300)
    assert broken.returncode == 2
    none = gate(root)
    assert none.returncode == 2 and "registered no candidate" in none.stderr, none.stderr
