"""Drive the mloop command as a user would, in fresh project folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.servers import MLOOP, free_port, wait_for_http

pytestmark = pytest.mark.e2e



def mloop(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([MLOOP, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.fixture
def new_project(tmp_path: Path, mlflow_db_template: Path) -> Path:
    done = mloop("init", "churn", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    root = tmp_path / "churn"
    (root / ".mloop").mkdir(exist_ok=True)
    shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")  # skip the slow first migration
    return root


def test_init_run_cached_rerun_param_change_and_listings(new_project: Path):
    root = new_project
    assert sorted(p.name for p in root.iterdir()) == [".dvc", ".dvcignore", ".git", ".gitignore", ".mloop", "README.md",
                                                       "data", "mloop.toml", "pipeline.py", "tests"]
    first = mloop("run", cwd=root)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 ran, 0 from cache" in first.stdout
    assert "model churn v1 registered as challenger, champion" in first.stdout
    assert "mloop runs show" in first.stdout and "mloop mlflow-ui" in first.stdout

    again = mloop("run", cwd=root)
    assert again.returncode == 0, again.stderr
    assert "all 4 steps from cache" in again.stdout
    assert again.stdout.count("cached") >= 4
    assert "unchanged, already registered" in again.stdout

    changed = mloop("run", "-p", "train.C=0.01", cwd=root)
    assert changed.returncode == 0, changed.stderr
    assert "2 ran, 2 from cache" in changed.stdout  # load_data and split are reused; train and evaluate rerun
    assert "model churn v2 registered as challenger" in changed.stdout

    runs = mloop("runs", cwd=root)
    assert runs.returncode == 0, runs.stderr
    lines = [line for line in runs.stdout.splitlines()[1:] if line.strip()]
    assert len(lines) == 3 and "FINISHED" in lines[0] and "v2" in lines[0]
    assert "evaluate.accuracy=" in runs.stdout

    run_id = lines[0].split()[0]
    show = mloop("runs", "show", run_id, cwd=root)
    assert show.returncode == 0, show.stderr
    for expected in ("load_data", "hit", "miss", "C=0.01", "sha256", "scikit-learn", "model      churn v2"):
        assert expected in show.stdout, expected
    compare = mloop("runs", "compare", run_id, lines[-1].split()[0], cwd=root)
    assert compare.returncode == 0, compare.stderr
    differs = [line for line in compare.stdout.splitlines() if line.startswith("* param")]
    assert len(differs) == 1 and "train.C" in differs[0] and "0.01" in differs[0] and "1.0" in differs[0]

    models = mloop("models", cwd=root)
    assert models.returncode == 0
    rows = {line.split()[1]: line for line in models.stdout.splitlines()[1:] if line.strip()}
    assert "champion" in rows["1"] and "challenger" in rows["2"] and "not promoted" in rows["2"]
    shown = mloop("models", "show", "churn/2", cwd=root)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("churn v2  challenger") and "not promoted" in shown.stdout
    assert any(line.startswith("test set   accuracy=") and "precision=" in line for line in lines)
    assert any(line.split()[:3] == ["x1", "float", "no"] for line in lines)  # the input schema
    missing = mloop("models", "show", "churn/9", cwd=root)
    assert missing.returncode == 2 and "error: no models:/churn/9" in missing.stderr

    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                           capture_output=True, text=True, timeout=120)
    assert tests.returncode == 0, tests.stdout
    assert not (root / "mlflow.db").exists() and not (root / "mlruns").exists(), \
        "MLflow's global default store was used instead of the project's"


def test_list_shows_steps_and_parameters(new_project: Path):
    listed = mloop("run", "--list", cwd=new_project)
    assert listed.returncode == 0
    assert "train" in listed.stdout and "C=1.0" in listed.stdout and "train<-split.train" in listed.stdout


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: ")
    return done.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["-p", "trian.C=1"], "unknown step 'trian'; did you mean 'train'"),
    (["-p", "train.c=1"], "has no parameter 'c'; did you mean 'C'"),
    (["-p", "train.C=high"], "parameter train.C expects float, got 'high'"),
    (["-p", "train"], "is not STEP.PARAM=VALUE"),
])
def test_bad_parameters_exit_2_with_one_line(new_project: Path, args, expected):
    err = one_error_line(mloop("run", *args, cwd=new_project))
    assert expected in err


def test_missing_data_file_names_the_file_and_the_fix(new_project: Path):
    (new_project / "data" / "data.csv").unlink()
    err = one_error_line(mloop("run", cwd=new_project))
    assert "input file data/data.csv does not exist" in err and "-p load_data.path=PATH" in err


def test_malformed_config_names_the_line(new_project: Path):
    (new_project / "mloop.toml").write_text('[project]\nname = "churn\n')
    err = one_error_line(mloop("run", cwd=new_project))
    assert "not valid TOML" in err and "line 2" in err


def test_wrong_config_value_names_the_key(new_project: Path):
    text = (new_project / "mloop.toml").read_text().replace("min_improvement = 0.0", "min_improvement = -1")
    (new_project / "mloop.toml").write_text(text)
    err = one_error_line(mloop("runs", cwd=new_project))
    assert "promotion.min_improvement = -1" in err and "greater than or equal to 0" in err


def test_outside_a_project_says_how_to_start_one(tmp_path: Path):
    err = one_error_line(mloop("run", cwd=tmp_path))
    assert "no mloop.toml" in err and "mloop init" in err


def test_failing_step_reports_step_error_and_location_and_verbose_shows_traceback(new_project: Path):
    source = (new_project / "pipeline.py").read_text()
    broken = source.replace("    return LogisticRegression(", "    raise RuntimeError('labels are all one class')\n    return LogisticRegression(")
    (new_project / "pipeline.py").write_text(broken)
    done = mloop("run", cwd=new_project)
    err = one_error_line(done)
    assert "step 'train' failed: RuntimeError: labels are all one class" in err
    assert "pipeline.py:" in err and "not run because of it: evaluate" in err
    verbose = mloop("run", "--verbose", cwd=new_project)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr and "labels are all one class" in verbose.stderr
    (new_project / "pipeline.py").write_text(source)
    fixed = mloop("run", cwd=new_project)
    assert fixed.returncode == 0 and "2 ran, 2 from cache" in fixed.stdout


def test_unknown_pipeline_attribute_suggests_the_right_one(new_project: Path):
    text = (new_project / "mloop.toml").read_text().replace("pipeline:training", "pipeline:trainig")
    (new_project / "mloop.toml").write_text(text)
    err = one_error_line(mloop("run", cwd=new_project))
    assert "did you mean 'training'" in err


def test_init_refuses_a_bad_name_and_a_non_empty_folder(tmp_path: Path):
    assert "must start with a letter" in one_error_line(mloop("init", "1x", cwd=tmp_path))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    assert "not empty" in one_error_line(mloop("init", "taken", cwd=tmp_path))


def test_mlflow_ui_serves_the_projects_store_on_loopback(new_project: Path):
    port = free_port()
    proc = subprocess.Popen([MLOOP, "mlflow-ui", "--port", str(port)], cwd=new_project,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = wait_for_http(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=5", proc)
        assert b'"experiments"' in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    store = str(new_project / ".mloop" / "mlflow.db")
    deadline = time.time() + 20
    while time.time() < deadline:
        left = subprocess.run(["pgrep", "-f", store], capture_output=True, text=True).stdout.split()
        if not left:
            break
        time.sleep(0.3)
    assert not left, "stopping mloop mlflow-ui left the MLflow server running"


def test_ui_serves_the_app_on_loopback_and_refuses_a_public_address_without_a_token(new_project: Path):
    refused = mloop("ui", "--host", "0.0.0.0", cwd=new_project)
    assert refused.returncode == 2 and "has no token" in one_error_line(refused)
    port = free_port()
    proc = subprocess.Popen([MLOOP, "ui", "--port", str(port)], cwd=new_project, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/_stcore/health", proc) == b"ok"
        assert b"<title>Streamlit</title>" in wait_for_http(f"http://127.0.0.1:{port}/", proc)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}" in out
    assert proc.returncode == 0, out
    left = subprocess.run(["pgrep", "-f", f"--server.port {port}"], capture_output=True, text=True).stdout.split()
    assert not left, "stopping mloop ui left Streamlit running"


def test_help_lists_the_commands(tmp_path: Path):
    done = mloop("--help", cwd=tmp_path)
    assert done.returncode == 0
    for command in ("run", "runs", "models", "ui", "mlflow-ui", "init"):
        assert command in done.stdout


def test_unreachable_tracking_server_fails_fast_with_the_fix(new_project: Path):
    started = time.time()
    done = mloop("run", cwd=new_project, env={"MLOOP_TRACKING_URI": f"http://127.0.0.1:{free_port()}"})
    err = one_error_line(done)
    assert "is not reachable" in err and "MLOOP_TRACKING_URI" in err
    assert time.time() - started < 60, "MLflow's own retries were not cut short"


def test_what_a_step_prints_is_shown_after_the_table(new_project: Path):
    source = (new_project / "pipeline.py").read_text()
    (new_project / "pipeline.py").write_text(source.replace(
        '    log_metric("accuracy", accuracy)', '    print(f"accuracy on the test set: {accuracy:.3f}")\n    log_metric("accuracy", accuracy)'))
    first = mloop("run", "--no-track", cwd=new_project)
    assert first.returncode == 0, first.stderr
    assert "--- printed by evaluate" in first.stdout and "accuracy on the test set: 0." in first.stdout
    cached = mloop("run", "--no-track", cwd=new_project)
    assert "printed by" not in cached.stdout  # nothing ran
    everything = mloop("run", "--no-track", "--show-output", cwd=new_project)
    assert "--- printed by evaluate (from the cache)" in everything.stdout


def test_version_and_help_say_what_mloop_is(tmp_path: Path):
    from mloop import __version__

    assert mloop("--version", cwd=tmp_path).stdout.strip() == f"mloop {__version__}"
    text = mloop("--help", cwd=tmp_path, env={"COLUMNS": "80"}).stdout
    assert "serves it" in text and "monitoring" in text
    commands = text.split("Commands:")[1].splitlines()
    assert [line for line in commands if line.rstrip().endswith("...")] == [], "a summary was cut"
    for command in (["run"], ["serve"], ["monitor", "report"], ["models", "show"]):  # each its own help
        assert mloop(*command, "--help", cwd=tmp_path).stdout.startswith(f"Usage: mloop {' '.join(command)} ")
