"""`mloop reproduce RUN` with real git and DVC: the run's commit in a temporary worktree, its data found by
content (the commit's DVC version, the cache, the remote, the working copy), the metrics compared, the
user's working copy untouched; a clean clone that pulls and reproduces."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.versioned import git, mloop, versioned_project

pytestmark = pytest.mark.integration


def run_id_of(ran) -> str:
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return next(line.split()[1].rstrip(":") for line in ran.stdout.splitlines() if line.startswith("run "))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def append_rows(root: Path, rows: str = "0.5,0.5,0.5,0.5,1\n-0.5,-0.5,-0.5,-0.5,0\n" * 20) -> None:
    with (root / "data" / "data.csv").open("a") as fh:
        fh.write(rows)


def test_a_past_run_reproduces_from_its_commit_and_data_without_touching_the_working_copy(
        tmp_path: Path, mlflow_db_template: Path):
    root = versioned_project(tmp_path, "again", mlflow_db_template)
    first = run_id_of(mloop(root, "run"))
    append_rows(root)
    assert mloop(root, "data", "add", "data/data.csv").returncode == 0
    git(root, "commit", "-qm", "more data")
    second = run_id_of(mloop(root, "run"))
    before = (digest(root / "data" / "data.csv"), git(root, "status", "--porcelain"), git(root, "rev-parse", "HEAD"))

    done = mloop(root, "reproduce", first[:8])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the recorded version, from the commit's DVC version" in done.stdout
    assert "equal" in done.stdout and "DIFFERS" not in done.stdout and "reproduced: every metric equal" in done.stdout
    assert (digest(root / "data" / "data.csv"), git(root, "status", "--porcelain"), git(root, "rev-parse", "HEAD")) == before
    assert len(git(root, "worktree", "list").splitlines()) == 1  # the temporary worktree is gone
    assert not list((root / ".mloop" / "tmp").glob("reproduce-*"))
    kept = mloop(root, "reproduce", second, "--keep")
    assert kept.returncode == 0 and "the worktree is kept" in kept.stdout, kept.stdout + kept.stderr
    leftover = next((root / ".mloop" / "tmp").glob("reproduce-*"))
    assert len(git(root, "worktree", "list").splitlines()) == 2
    assert mloop(root, "doctor").returncode == 0
    assert leftover.exists()  # kept on purpose: doctor leaves it for an hour
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    assert mloop(root, "doctor").returncode == 0
    assert not leftover.exists() and len(git(root, "worktree", "list").splitlines()) == 1

    # a run on data added but not committed: its version comes from the DVC cache by its hash
    append_rows(root, "1,1,1,1,1\n" * 30)
    assert mloop(root, "data", "add", "data/data.csv").returncode == 0
    third = run_id_of(mloop(root, "run"))
    git(root, "checkout", "-q", "--", ".")  # the .dvc file goes back: the working copy has another version now
    assert mloop(root, "data", "pull").returncode == 0
    done = mloop(root, "reproduce", third)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "from the DVC cache" in done.stdout
    assert "uncommitted changes" in done.stdout  # the .dvc file was not committed at the time of the run


def test_a_non_deterministic_pipeline_is_reported_with_the_differences_and_exit_5(tmp_path: Path, mlflow_db_template: Path):
    root = versioned_project(tmp_path, "noisy", mlflow_db_template)
    pipeline = root / "pipeline.py"
    # a metric from an unseeded generator: every run gets another value
    pipeline.write_text(pipeline.read_text().replace(
        '    log_metric("accuracy", accuracy)\n',
        '    log_metric("accuracy", accuracy)\n    import random\n\n    log_metric("noise", random.random())\n'))
    git(root, "commit", "-qam", "an unseeded metric")
    ran = run_id_of(mloop(root, "run"))
    done = mloop(root, "reproduce", ran)
    assert done.returncode == 5, done.stdout + done.stderr
    assert "noise" in done.stdout and "DIFFERS" in done.stdout
    assert "did not reproduce: 1 metric differs" in done.stderr
    assert "Traceback" not in done.stderr


def test_data_found_nowhere_and_runs_outside_git_are_named(tmp_path: Path, mlflow_db_template: Path):
    root = versioned_project(tmp_path, "lost", mlflow_db_template)
    (root / "data" / "extra.csv").write_text((root / "data" / "data.csv").read_text())
    (root / "pipeline.py").write_text((root / "pipeline.py").read_text().replace("data/data.csv", "data/extra.csv"))
    git(root, "commit", "-qam", "an untracked data file")
    ran = run_id_of(mloop(root, "run"))
    assert "from the working copy" in mloop(root, "reproduce", ran).stdout  # same bytes still there
    (root / "data" / "extra.csv").write_text("x1,x2,x3,x4,target\n")
    lost = mloop(root, "reproduce", ran)
    assert lost.returncode == 2 and "data/extra.csv" in lost.stderr and "nowhere to be found" in lost.stderr
    assert "mloop data add" in lost.stderr

    plain = tmp_path / "plain"
    assert mloop(tmp_path, "init", "plain", "--no-data-versioning").returncode == 0
    (plain / ".mloop").mkdir(exist_ok=True)
    (plain / ".mloop" / "mlflow.db").write_bytes(mlflow_db_template.read_bytes())
    untracked = run_id_of(mloop(plain, "run"))
    said = mloop(plain, "reproduce", untracked)
    assert said.returncode == 2 and "recorded no git commit" in said.stderr


def test_a_clean_clone_pulls_the_data_from_the_remote_and_reproduces(tmp_path: Path, mlflow_db_template: Path):
    root = versioned_project(tmp_path, "shared", mlflow_db_template)
    (root / "mloop.toml").write_text((root / "mloop.toml").read_text() + f'\n[data]\nremote = "{tmp_path / "remote"}"\n')
    git(root, "commit", "-qam", "a remote of our own")
    append_rows(root)
    assert mloop(root, "data", "add", "data/data.csv").returncode == 0  # added, pushed, never committed
    assert mloop(root, "data", "push").returncode == 0
    ran = run_id_of(mloop(root, "run"))

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    store = {"MLOOP_TRACKING_URI": f"sqlite:///{root / '.mloop' / 'mlflow.db'}"}  # the team's tracking store
    done = mloop(clone, "reproduce", ran, env=store)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "from the DVC remote" in done.stdout and "reproduced: every metric equal" in done.stdout
    assert not (clone / "data" / "data.csv").exists()  # the clone's own working copy untouched


def test_a_reproduction_killed_midway_leaves_nothing_doctor_does_not_clear(tmp_path: Path, mlflow_db_template: Path):
    from tests.support.servers import MLOOP

    root = versioned_project(tmp_path, "killed", mlflow_db_template)
    ran = run_id_of(mloop(root, "run"))
    proc = subprocess.Popen([MLOOP, "reproduce", ran], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list((root / ".mloop" / "tmp").glob("reproduce-*/worktree/pipeline.py")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(1)  # the child running the pipeline dies with its parent (PR_SET_PDEATHSIG)
    assert list((root / ".mloop" / "tmp").glob("reproduce-*"))
    assert len(git(root, "worktree", "list").splitlines()) == 2
    doctor = mloop(root, "doctor", "--dry-run")
    assert "temporary files" in doctor.stdout, doctor.stdout
    assert mloop(root, "doctor").returncode == 0  # its process is gone: removed at once, whatever its age
    assert not list((root / ".mloop" / "tmp").glob("reproduce-*"))
    assert len(git(root, "worktree", "list").splitlines()) == 1
    assert mloop(root, "reproduce", ran).returncode == 0
