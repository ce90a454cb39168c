"""`mloop run` killed with SIGTERM or SIGKILL (what `timeout`, CI cancellation and `docker stop` send) at
each phase of a run: no process is left behind, no run stays RUNNING, and the next run completes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.support.projects import write_project
from tests.support.servers import MLOOP

pytestmark = pytest.mark.integration

PIPELINE = '''
import os
import time
from pathlib import Path
from typing import Any

from mloop import ModelCandidate, log_metric, pipeline, step

MARKS = Path(os.environ["CRASH_MARKS"])


def mark(name: str) -> None:
    (MARKS / name).write_text(str(os.getpid()))


@step(outputs=("train", "test"))
def split() -> tuple[Any, Any]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 3, -1]]
    train, test = train_test_split(data, test_size=0.3, random_state=0, stratify=data["target"])
    return train.reset_index(drop=True), test.reset_index(drop=True)


@step
def slow_left(train: Any, pause: float = 0.0) -> int:
    mark("left")
    time.sleep(pause)
    return len(train)


@step
def slow_right(train: Any, pause: float = 0.0) -> int:
    mark("right")
    time.sleep(pause)
    return len(train)


@step
def train(train: Any, left: int, right: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500).fit(train.drop(columns=["target"]), train["target"])


@step
def evaluate(model: Any, test: Any) -> dict:
    accuracy = float((model.predict(test.drop(columns=["target"])) == test["target"]).mean())
    log_metric("accuracy", accuracy)
    mark("evaluated")
    return {"accuracy": accuracy}


@pipeline
def training() -> ModelCandidate:
    train_set, test_set = split()
    model = train(train_set, slow_left(train_set), slow_right(train_set))
    return ModelCandidate(model=model, train=train_set, test=test_set, target="target", metrics=evaluate(model, test_set))
'''


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def family(pid: int) -> list[psutil.Process]:
    try:
        return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def running(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture(scope="module")
def base(tmp_path_factory, mlflow_db_template: Path) -> Path:
    import shutil

    root = write_project(tmp_path_factory.mktemp("crash") / "base", "crash", PIPELINE, toml='task = "binary"\n')
    (root / ".mloop").mkdir()
    shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")
    return root


def mloop(root: Path, marks: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([MLOOP, *args], cwd=root, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "CRASH_MARKS": str(marks), "COLUMNS": "200"}, **popen)


# (phase, the mark that says it has begun, the pause of the slow steps)
PHASES = [("start", (), 60.0), ("steps", ("left", "right"), 60.0), ("registration", ("evaluated",), 0.0)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("phase,marks_needed,pause", PHASES, ids=[p[0] for p in PHASES])
def test_a_killed_run_leaves_no_process_and_no_run_running(base: Path, tmp_path: Path, sig, phase, marks_needed, pause):
    import shutil

    root = Path(shutil.copytree(base, tmp_path / "project"))
    marks = tmp_path / "marks"
    marks.mkdir()
    params = ["-p", f"slow_left.pause={pause}", "-p", f"slow_right.pause={pause}"]
    proc = mloop(root, marks, "run", *params)
    wait_for(lambda: all((marks / m).exists() for m in marks_needed) or proc.poll() is not None, 120, phase)
    if phase == "start":
        time.sleep(0.3)
    assert proc.poll() is None, proc.communicate()
    processes = family(proc.pid)  # the CLI, its fork server, the workers, the resource tracker
    if phase == "steps":
        workers = {int((marks / m).read_text()) for m in marks_needed}
        assert workers <= {p.pid for p in processes}, "the slow steps run in workers of this run"
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    if phase == "start":  # still importing: SIGTERM's default action, or the handler if it is installed
        assert proc.returncode in (-signal.SIGTERM, 143, -signal.SIGKILL) and "Traceback" not in err, out + err
    elif sig == signal.SIGTERM and phase == "registration" and proc.returncode in (0, -signal.SIGTERM):
        # registering this small model takes well under a second: the signal may come as the run ends
        assert "Traceback" not in err and "registered" in out, out + err
    elif sig == signal.SIGTERM:
        assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err, out + err
    # every process of the run is gone soon after it (none waits for a 60 s step to finish)
    wait_for(lambda: not running(processes), 15, f"the processes of the run to end: {running(processes)}")
    if phase == "steps" and sig == signal.SIGKILL:  # what the killed steps left is where mloop doctor looks
        assert list((root / ".mloop" / "tmp").glob("mloop-slow_*")), list(root.joinpath(".mloop").iterdir())

    listed = subprocess.run([MLOOP, "runs"], cwd=root, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "RUNNING" not in listed.stdout, listed.stdout

    # the next run completes (a cut registration included): a champion is registered
    again = mloop(root, marks, "run", "-p", "slow_left.pause=0", "-p", "slow_right.pause=0")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, out + err
    models = subprocess.run([MLOOP, "models"], cwd=root, capture_output=True, text=True, timeout=120)
    assert "champion" in models.stdout, models.stdout + models.stderr


def test_runs_shows_a_run_whose_process_is_gone_as_failed_and_records_it(base: Path, tmp_path: Path):
    import shutil

    from mloop.config import load_project
    from mloop.tracking.client import mlflow_client

    root = Path(shutil.copytree(base, tmp_path / "project"))
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = mloop(root, marks, "run", "-p", "slow_left.pause=60", "-p", "slow_right.pause=60")
    client = mlflow_client(load_project(root))

    def tracked_runs() -> list:
        return client.search_runs([r.experiment_id for r in client.search_experiments()], max_results=100)

    wait_for(lambda: (marks / "left").exists() or proc.poll() is not None, 120, "the slow step")
    wait_for(lambda: any(r.info.status == "RUNNING" for r in tracked_runs()), 60, "the run to be tracked")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    shown = subprocess.run([MLOOP, "runs"], cwd=root, capture_output=True, text=True, timeout=120)
    assert "FAILED" in shown.stdout and "RUNNING" not in shown.stdout, shown.stdout
    runs = tracked_runs()
    assert runs and all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    parent = next(r for r in runs if "mloop.pid" in r.data.tags)
    assert "killed" in parent.data.tags["mloop.error"]
