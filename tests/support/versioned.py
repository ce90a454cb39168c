"""Projects under git and DVC, made as a user makes them: ``mloop init``, then a first commit."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.servers import MLOOP


def mloop(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([MLOOP, *args], cwd=root, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "250", **(env or {})})


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def versioned_project(parent: Path, name: str, db_template: Path, *, task: str = "binary") -> Path:
    """``mloop init NAME`` (git, DVC, the sample data tracked) and a first commit; an already migrated store."""
    made = mloop(parent, "init", name, "--task", task)
    assert made.returncode == 0, made.stderr
    root = parent / name
    git(root, "commit", "-qm", "new mloop project")
    (root / ".mloop").mkdir(exist_ok=True)
    shutil.copyfile(db_template, root / ".mloop" / "mlflow.db")
    return root
