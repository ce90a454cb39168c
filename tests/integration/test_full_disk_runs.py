"""`mloop run` on a full disk: it stops with one line naming the disk and the fix, leaves the store
readable, and the next run after space returns completes (and `mloop doctor` finds nothing to repair)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_concurrency import PIPELINE
from tests.support.disks import fill, small_disk
from tests.support.projects import write_project
from tests.support.servers import MLOOP

pytestmark = pytest.mark.integration


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MLOOP, *args], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("when", ["before the run", "after the first run"])
def test_a_run_on_a_full_disk_says_so_and_the_next_run_completes(tmp_path: Path, mlflow_db_template: Path, when):
    with small_disk(tmp_path / "disk", "48m") as disk:
        root = write_project(disk / "project", "race", PIPELINE, toml='task = "binary"\n')
        (root / ".mloop").mkdir()
        shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")
        params = []
        if when == "after the first run":
            assert cli(root, "run").returncode == 0
            params = ["-p", "train.C=0.5"]  # a new model to store and register
        filler = fill(disk)
        full = cli(root, "run", *params)
        said = full.stdout + full.stderr
        assert full.returncode == 2, said
        assert "is full" in said and ("df -h" in said or "free space" in said), said
        assert "Traceback" not in said and "internal error" not in said and "tracking server" not in said, said
        filler.unlink()
        again = cli(root, "run", *params)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "registered" in again.stdout or "unchanged" in again.stdout, again.stdout
        listed = cli(root, "runs")
        assert listed.returncode == 0 and "RUNNING" not in listed.stdout, listed.stdout
        checked = cli(root, "doctor", "--dry-run")
        assert checked.returncode == 0, checked.stdout
