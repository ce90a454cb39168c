"""Production data back into training, for real: a served model's predictions and the labels sent for them
(`mloop serve`, POST /predict and /feedback), `mloop data snapshot` joining them into one Parquet file
tracked by DVC, and a pipeline that trains on the sample data and the snapshot, both inputs' versions
recorded by the run."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from mloop.config import load_project
from tests.support.servers import post, start_server, stop
from tests.support.versioned import git, mloop, versioned_project

pytestmark = pytest.mark.integration

SERVER = "snapshot-server"  # the server's --name: its monitoring folder, and the snapshot's MODEL
FEATURES = ["x1", "x2", "x3", "x4"]
LABELLED = {"r0": [0], "r1": [1], "r2": [2], "multi": [10, 11, 12]}  # request id -> rows of data.csv labelled
UNLABELLED = {"r3": [3], "r4": [4], "r5": [5]}  # and two requests with no id of the client's (rows 20, 21)


def instances(data: pd.DataFrame, rows: list[int]) -> bytes:
    return json.dumps({"instances": data.loc[rows, FEATURES].to_dict(orient="records")}).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path):
    """A project under git + DVC whose champion served 11 rows in 9 requests; 6 rows (4 requests) got labels,
    one request's labels were sent twice."""
    root = versioned_project(tmp_path_factory.mktemp("snapshot"), "snap", mlflow_db_template)
    toml = root / "mloop.toml"
    toml.write_text(toml.read_text().replace("interval = 10 ", "interval = 1 "))
    git(root, "commit", "-qam", "monitor every second")
    ran = mloop(root, "run")
    assert ran.returncode == 0, ran.stderr
    data = pd.read_csv(root / "data" / "data.csv")
    proc, url = start_server(root, "--name", SERVER)
    try:
        for request_id, rows in {**LABELLED, **UNLABELLED}.items():
            status, _ = post(f"{url}/predict", instances(data, rows), {"x-request-id": request_id})
            assert status == 200
        for rows in ([20], [21]):
            assert post(f"{url}/predict", instances(data, rows))[0] == 200
        for request_id, rows in LABELLED.items():
            status, answer = post(f"{url}/feedback", json.dumps(
                {"id": request_id, "labels": data.loc[rows, "target"].tolist()}).encode())
            assert status == 200, answer
        again, answer = post(f"{url}/feedback", json.dumps({"id": "r1", "labels": [0]}).encode())
        assert again == 409, answer  # labels are final: the first ones count
        status_file = root / ".mloop" / "monitor" / SERVER / "status.json"
        deadline = time.time() + 30
        while time.time() < deadline and not status_file.exists():
            time.sleep(0.2)
    finally:
        err = stop(proc)
    assert "Traceback" not in err, err
    assert status_file.exists()
    return root, data


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def dvc_md5(dvc_file: Path) -> str:
    return next(line.split(":", 1)[1].strip() for line in dvc_file.read_text().splitlines() if "md5:" in line)


def test_a_snapshot_has_each_labelled_row_once_with_its_true_label_and_is_tracked_by_dvc(served):
    root, data = served
    done = mloop(root, "data", "snapshot", SERVER, "--out", "data/production.parquet")
    assert done.returncode == 0, done.stderr
    out = root / "data" / "production.parquet"
    frame = pd.read_parquet(out)
    assert list(frame.columns) == [*FEATURES, "target", "served_version", "request_id", "served_at"]
    assert len(frame) == 6  # the labelled rows, each once (r1's second feedback was refused and counts for nothing)
    assert frame["request_id"].tolist() == ["r0", "r1", "r2", "multi", "multi", "multi"]  # in the order served
    expected = [row for rows in LABELLED.values() for row in rows]
    assert frame["target"].tolist() == data.loc[expected, "target"].tolist()
    assert frame[FEATURES].to_numpy().tolist() == data.loc[expected, FEATURES].to_numpy().tolist()
    assert set(frame["served_version"]) == {"1"} and str(frame["served_at"].dt.tz) == "UTC"
    assert frame["served_at"].is_monotonic_increasing
    assert "wrote data/production.parquet: 6 rows (6 labelled) served by snap v1" in done.stdout
    assert "left out: 5 predictions without a label (--include-unlabelled keeps them)" in done.stdout
    assert "git commit" in done.stdout and "mloop data push" in done.stdout
    dvc_file = root / "data" / "production.parquet.dvc"
    assert dvc_file.is_file() and dvc_md5(dvc_file) == md5(out) and md5(out) in done.stdout
    status = mloop(root, "data", "status", "--no-remote")
    line = next(line for line in status.stdout.splitlines() if "data/production.parquet" in line)
    assert "added, not committed" in line


def test_the_same_logs_give_the_same_file_even_with_rows_logged_twice(served):
    root, _ = served
    first = mloop(root, "data", "snapshot", SERVER, "--out", "data/again.parquet")
    assert first.returncode == 0, first.stderr
    assert md5(root / "data" / "again.parquet") == md5(root / "data" / "production.parquet")
    folder = root / ".mloop" / "monitor" / SERVER
    for log in ("predictions", "feedback"):  # as a rotation that crashed half-way leaves them: every row twice
        for path in sorted((folder / log).glob("*.parquet")):
            shutil.copyfile(path, path.with_name(path.name.replace(".parquet", "9.parquet")))
    second = mloop(root, "data", "snapshot", SERVER, "--out", "data/again.parquet")
    assert second.returncode == 0, second.stderr
    assert md5(root / "data" / "again.parquet") == md5(root / "data" / "production.parquet")
    assert dvc_md5(root / "data" / "again.parquet.dvc") == md5(root / "data" / "production.parquet")
    assert "11 rows logged twice" in second.stdout and "6 repeated labels" in second.stdout


def test_include_unlabelled_keeps_every_predicted_row_with_an_empty_label(served):
    root, data = served
    done = mloop(root, "data", "snapshot", SERVER, "--out", "data/all.parquet", "--include-unlabelled")
    assert done.returncode == 0, done.stderr
    frame = pd.read_parquet(root / "data" / "all.parquet")
    assert len(frame) == 11 and frame["request_id"].tolist().count("multi") == 3
    assert frame["target"].isna().sum() == 5 and str(frame["target"].dtype) == "Int64"
    labelled = frame[frame["request_id"].isin(list(LABELLED))]
    assert labelled["target"].notna().all() and len(labelled) == 6
    assert "6 labelled and 5 without a label" in done.stdout
    explicit = mloop(root, "data", "snapshot", SERVER, "--out", "data/labelled.parquet", "--labelled-only")
    assert explicit.returncode == 0 and md5(root / "data" / "labelled.parquet") == md5(root / "data" / "production.parquet")
    recent = mloop(root, "data", "snapshot", SERVER, "--out", "data/week.parquet", "--since", "7d")
    assert recent.returncode == 0 and "in the last 7d" in recent.stdout, recent.stderr
    assert md5(root / "data" / "week.parquet") == md5(root / "data" / "production.parquet")


def test_what_cannot_be_snapshot_is_said_with_the_fix(served, tmp_path: Path):
    root, _ = served
    cases = {
        ("nothing-served",): ("no predictions of 'nothing-served' were logged yet", "mloop serve"),
        (SERVER, "--out", "../outside.parquet"): ("is outside the project", "data/production.parquet"),
        (SERVER, "--since", "a week"): ("--since 'a week'", "7d"),
        (SERVER, "--since", "1ms"): ("no predictions of 'snapshot-server' were served in the last 1ms", "--since"),
        (SERVER, "--out", "data/production.csv"): ("written as Parquet", ".parquet"),
    }
    # a server whose requests got no label: its log without the feedback
    unlabelled = root / ".mloop" / "monitor" / "no-labels"
    shutil.copytree(root / ".mloop" / "monitor" / SERVER / "predictions", unlabelled / "predictions")
    shutil.copyfile(root / ".mloop" / "monitor" / SERVER / "status.json", unlabelled / "status.json")
    cases[("no-labels", "--out", "data/none.parquet")] = (
        "none of the 11 predictions of 'no-labels' served so far has a true label", "--include-unlabelled")
    for args, (message, hint) in cases.items():
        done = mloop(root, "data", "snapshot", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr and hint in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    assert not (root / "data" / "none.parquet").exists() and not (tmp_path.parent / "outside.parquet").exists()


PIPELINE_LOAD = '''
@step
def load_data(path: Path = Path("data/data.csv"), production: Path = Path("data/production.parquet")) -> Any:
    """The sample data and the production snapshot (its provenance columns dropped), as one table."""
    import pandas as pd

    served = pd.read_parquet(production).drop(columns=["served_version", "request_id", "served_at"])
    both = pd.concat([pd.read_csv(path), served], ignore_index=True)
    log_metric("rows", len(both))
    return both
'''


def test_a_pipeline_trains_on_the_data_and_the_snapshot_and_the_run_records_both_versions(served):
    root, data = served
    pipeline = root / "pipeline.py"
    source = pipeline.read_text()
    start = source.index("@step\ndef load_data")
    end = source.index("@step", start + 1)
    pipeline.write_text(source[:start] + PIPELINE_LOAD.lstrip() + "\n\n" + source[end:])
    git(root, "add", "pipeline.py", "data/production.parquet.dvc", "data/.gitignore")
    git(root, "commit", "-qm", "train on production data too")
    commit = git(root, "rev-parse", "HEAD")
    ran = mloop(root, "run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = next(line.split()[1].rstrip(":") for line in ran.stdout.splitlines() if line.startswith("run "))

    sample_md5, snapshot_md5 = dvc_md5(root / "data" / "data.csv.dvc"), dvc_md5(root / "data" / "production.parquet.dvc")
    shown = mloop(root, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert f"DVC md5 {sample_md5}" in shown.stdout and f"DVC md5 {snapshot_md5} (commit {commit[:12]})" in shown.stdout

    from mlflow import MlflowClient

    cfg = load_project(root)
    inputs = MlflowClient(cfg.tracking_uri).get_run(run_id).inputs.dataset_inputs
    sources = {d.dataset.name: json.loads(d.dataset.source) for d in inputs}
    assert set(sources) == {"data.csv", "production.parquet"}
    assert sources["production.parquet"]["dvc"]["md5"] == snapshot_md5
    assert sources["production.parquet"]["dvc"]["state"] == "committed"
    assert sources["data.csv"]["dvc"]["md5"] == sample_md5
    versions = json.loads(mloop(root, "data", "versions", "data/production.parquet", "--json").stdout)
    assert versions[0]["md5"] == snapshot_md5 and versions[0]["runs"] == [run_id]
    steps = MlflowClient(cfg.tracking_uri).search_runs(
        [MlflowClient(cfg.tracking_uri).get_run(run_id).info.experiment_id],
        f"tags.mlflow.parentRunId = '{run_id}' and tags.`mloop.step` = 'load_data'")
    assert steps[0].data.metrics["rows"] == len(data) + 6  # the union: the sample rows and the labelled production rows
