"""Every file mloop reads, damaged the ways an adversarial probe damaged them (a folder where a file belongs,
a file emptied or of the wrong shape): the command that needs it stops with one line naming the file and
the fix (exit 2), or goes on without it; never an internal error, never a dead server; `mloop doctor`
runs through and the project works after it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import MLOOP, post, start_server, stop

pytestmark = pytest.mark.integration


def cli(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([MLOOP, *args], cwd=root, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def clean(done: subprocess.CompletedProcess) -> str:
    said = done.stdout + done.stderr
    assert "internal error" not in said and "Traceback" not in said, said
    return said


@pytest.fixture()
def project(first_run, tmp_path: Path) -> Path:
    root, _ = first_run
    # (other modules serve the shared project itself, which leaves its monitoring folder behind: not part of a copy)
    return Path(shutil.copytree(root, tmp_path / "breast_cancer", ignore=shutil.ignore_patterns("deployments",
                                                                                               "monitor")))


def into_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "x").write_text("x")


def test_store_and_cache_paths_of_the_wrong_kind_or_shape_are_rebuilt_by_the_next_run(project: Path):
    store = project / ".mloop"
    entries = sorted((store / "cache").glob("*/*.json"))
    into_folder(entries[0])
    data = json.loads(entries[1].read_text())
    next(iter(data["outputs"].values()))["digest"] = 5
    entries[1].write_text(json.dumps(data))
    into_folder(sorted((store / "objects").glob("*/*.parquet"))[0])
    checked = cli(project, "doctor", "--dry-run")
    assert checked.returncode == 2 and "paths of the wrong kind" in clean(checked) and "unreadable cache" in checked.stdout
    ran = cli(project, "run", timeout=300)
    assert ran.returncode == 0, clean(ran)
    assert cli(project, "doctor").returncode == 0, clean(cli(project, "doctor", "--dry-run"))


@pytest.mark.parametrize("damage,said", [
    ("folder", "is not a file"),
    ("empty", "it was truncated"),
    ("link", "is a link to nothing"),
])
def test_a_database_path_that_cannot_be_a_database_stops_at_once_with_the_fix(project: Path, damage, said):
    db = project / ".mloop" / "mlflow.db"
    db.unlink()
    if damage == "folder":
        db.mkdir()
    elif damage == "empty":
        db.write_bytes(b"")
    else:
        db.symlink_to(project / "nowhere.db")
    for command in (["runs"], ["models"]):
        done = cli(project, *command, timeout=30)  # SQLite would retry for minutes on a folder
        assert done.returncode == 2 and said in clean(done) and f"mv {db}" in done.stderr, done.stderr


def test_config_lock_and_store_of_the_wrong_kind_are_named(project: Path):
    (project / ".mloop" / "locks").mkdir(exist_ok=True)
    lock = project / ".mloop" / "locks" / "mlflow-db.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()
    done = cli(project, "runs")
    assert done.returncode == 2 and "Is a directory" in clean(done) and str(lock) in done.stderr
    shutil.rmtree(lock)
    toml = (project / "mloop.toml").read_bytes()
    (project / "mloop.toml").write_bytes(b"\xff\xfe\x00garbage" + toml)
    done = cli(project, "runs")
    assert done.returncode == 2 and "is not UTF-8 text" in clean(done)
    (project / "mloop.toml").write_bytes(b"\xef\xbb\xbf" + toml)  # a byte-order mark is fine
    assert cli(project, "runs").returncode == 0
    shutil.move(project / ".mloop", project / "store")
    (project / ".mloop").write_text("x")
    done = cli(project, "runs")
    assert done.returncode == 2 and "is not a folder" in clean(done) and "mv " in done.stderr


def test_damaged_monitoring_files_stop_no_command_and_no_server(project: Path):
    import pandas as pd

    folder = project / ".mloop" / "monitor" / "breast_cancer"
    (folder / "predictions").mkdir(parents=True, exist_ok=True)
    (folder / "predictions" / "part-20260101T000000-1000001.parquet").write_bytes(b"PAR1 torn")
    (folder / "status.json").mkdir()
    (folder / "alerts.jsonl").mkdir()
    for command in (["monitor", "status"], ["monitor", "alerts"], ["monitor", "report", "--since", "1h"]):
        clean(cli(project, *command))
    proc, url = start_server(project, "--no-access-log")  # serves, monitored in memory, and says why
    try:
        row = pd.read_csv(project / "data" / "breast_cancer.csv").drop(columns=["target"]).head(1)
        status, _ = post(f"{url}/predict", json.dumps({"instances": row.to_dict("records")}).encode())
        assert status == 200
    finally:
        err = stop(proc)
    assert "Traceback" not in err
    repaired = cli(project, "doctor")
    assert "could not run" not in clean(repaired) and "moved aside" in repaired.stdout, repaired.stdout
    assert (folder / "quarantine" / "predictions").is_dir()
    assert cli(project, "monitor", "alerts").returncode == 0


def test_a_state_with_wrong_values_and_a_damaged_model_are_named(project: Path):
    state = project / ".mloop" / "deployments" / "odd" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"name": "odd", "model": "breast_cancer", "version": "1", "host": "127.0.0.1",
                                 "port": 1, "pid": "abc", "admin_token": "t", "started": "yesterday"}))
    listed = cli(project, "deployments")
    assert listed.returncode == 0 and str(state) in clean(listed)
    stopped = cli(project, "undeploy", "odd")
    assert stopped.returncode == 2 and "unreadable" in clean(stopped)
    checked = cli(project, "doctor")
    assert "could not run" not in clean(checked) and "state.json.damaged" in checked.stdout



def test_a_registered_model_whose_files_do_not_load_is_named(first_run, monkeypatch):
    from mloop.bundle import loaded
    from mloop.config import load_project
    from mloop.errors import ModelError
    from mloop.registry.fetch import load_registered

    def damaged(*args, **kwargs):
        raise EOFError("Ran out of input")  # what unpickling an emptied file says

    monkeypatch.setattr(loaded, "load_model_dir", damaged)
    with pytest.raises(ModelError, match="stored files of breast_cancer v1 are damaged") as info:
        load_registered(load_project(first_run[0]), "models:/breast_cancer/1")
    assert "mloop models promote" in info.value.hint
