"""A full disk under the monitor folder (a real, small tmpfs): nothing lost while it is full, up to the bound; said once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from mloop.monitor.alerts import Alerting, read_alert_log
from mloop.monitor.predlog import PART, PredictionLog, read_log
from tests.support.disks import fill, small_disk
from tests.support.projects import with_monitor
from tests.support.servers import MLOOP, post, start_server, stop

pytestmark = pytest.mark.integration


def test_a_log_flushed_onto_a_full_disk_writes_every_record_once_when_space_returns(tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        log = PredictionLog(disk / "model", ["a", "b"])
        log.record("before", "1", np.ones((3, 2)), np.zeros(3, dtype=int))
        assert log.flush().rows_written == 3
        filler = fill(disk)
        log.record_feedback("before", [1, 0, 1])
        for i in range(4):
            log.record(f"full{i}", "1", np.full((500, 2), float(i)), np.ones(500, dtype=int))
            assert log.flush().rows_written == 0
        assert log.predictions.waiting_rows == 2000 and log.feedback.waiting_rows == 3
        assert "no space left on the device holding it" in log.predictions.error
        assert all(PART.match(p.name) for p in (disk / "model" / "predictions").iterdir())  # no stray temporary file
        filler.unlink()
        assert log.flush().rows_written == 2000
        frame = read_log(disk / "model" / "predictions")
        labels = read_log(disk / "model" / "feedback")
    assert frame["request_id"].tolist() == ["before"] * 3 + [f"full{i}" for i in range(4) for _ in range(500)]
    assert frame["row"].tolist() == [0, 1, 2] + list(range(500)) * 4
    assert frame["a"].iloc[3:].tolist() == np.repeat(np.arange(4.0), 500).tolist()
    assert labels["label"].tolist() == [1, 0, 1] and log.predictions.error == "" and log.predictions.dropped_rows == 0


def test_an_alert_append_cut_short_by_a_full_disk_is_undone_and_retried_once(tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        path = disk / "alerts.jsonl"
        alerting = Alerting([], "m", log_path=path)
        alerting.receive({"alerts": [{"status": "firing", "labels": {"alertname": "First"}}]})
        before = path.read_bytes()
        filler = fill(disk)
        with filler.open("r+b") as fh:  # leave two pages free: room for part of the next append, not all of it
            fh.truncate(filler.stat().st_size - 8192)
        many = {"alerts": [{"status": "firing", "labels": {"alertname": f"A{i}"}} for i in range(200)]}
        assert len(alerting.receive(many)) == 200  # the receiver answers; the events wait
        assert path.read_bytes() == before  # the part that fitted was cut off again
        filler.unlink()
        alerting.evaluate({})  # the next evaluation writes what waited
        names = [event.alert for event in read_alert_log(path)]
        assert names == ["First"] + [f"A{i}" for i in range(200)]


MONITOR = """
[monitor]
log_waiting_rows = 150
alerts = []
"""


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("mloop_log_")}


def _until(check, what: str, timeout: float = 30.0, between=lambda: None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        between()
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


def test_a_server_whose_disk_fills_keeps_answering_counts_what_waits_and_writes_it_when_space_returns(first_run,
                                                                                                        tmp_path):
    root, _ = first_run
    project = tmp_path / "breast_cancer"
    shutil.copytree(root, project, ignore=shutil.ignore_patterns("monitor", "deployments"))
    with_monitor(project, MONITOR)
    features = pd.read_csv(project / "data" / "breast_cancer.csv").drop(columns=["target"])
    folder = project / ".mloop" / "monitor" / "breast_cancer"
    series = 'mloop_log_{}{{log="{}",model="breast_cancer"}}'

    def predict(request_id: str, start: int) -> list:
        body = json.dumps({"instances": features.iloc[start:start + 10].to_dict(orient="records")}).encode()
        status, answer = post(f"{url}/predict", body, {"x-request-id": request_id})
        assert status == 200, answer
        return [p["label"] for p in answer["predictions"]]

    with small_disk(project / ".mloop" / "monitor", "4m") as disk:
        proc, url = start_server(project, "--no-access-log", "--monitor-interval", "0.3")
        try:
            labels = predict("a0", 0)
            for i in (1, 2):
                predict(f"a{i}", i * 10)
            _until(lambda: len(read_log(folder / "predictions")) == 30, "writing the first 30 rows")
            filler = fill(disk)
            for i in range(20):  # 200 rows while the disk is full: the oldest 50 are beyond the bound of 150
                predict(f"f{i}", 30 + i * 10)
            assert post(f"{url}/feedback", json.dumps({"id": "a0", "labels": labels}).encode())[0] == 200
            full = _until(lambda: (m := _metrics(url))[series.format("rows_waiting", "predictions")] == 150 and m,
                          "150 rows waiting", between=lambda: fill(disk))  # (topped up: the server frees a page)
            assert full[series.format("rows_dropped_total", "predictions")] == 50
            assert full[series.format("write_failures_total", "predictions")] >= 1
            filler.unlink()
            _until(lambda: (json.loads((folder / "status.json").read_text())["prediction_log"] or {}).get(
                "rows_dropped") == 50, "a status written after the disk has space")
            assert _metrics(url)[series.format("rows_waiting", "predictions")] == 0
            shown = subprocess.run([MLOOP, "monitor", "status"], cwd=project, capture_output=True, text=True,
                                   timeout=60, env={**os.environ, "COLUMNS": "200"}, check=True)
        finally:
            err = stop(proc)
        log = read_log(folder / "predictions")
        feedback = read_log(folder / "feedback")
    expected = [f"a{i}" for i in range(3)] + [f"f{i}" for i in range(5, 20)]  # f0-f4: the oldest, dropped
    assert log.groupby("request_id", sort=False).size().to_dict() == {request_id: 10 for request_id in expected}
    assert log["request_id"].drop_duplicates().tolist() == expected  # in the order served, each row once
    assert feedback["request_id"].tolist() == ["a0"] * 10 and feedback["label"].tolist() == labels
    assert "0 rows waiting to be written; 50 rows dropped since the server started" in shown.stdout, shown.stdout
    said = [json.loads(line) for line in err.splitlines() if line.startswith('{"path"')]
    failing = [line["error"] for line in said if "error" in line]
    assert f"cannot write the prediction log {folder / 'predictions'}: no space left on the device holding it" in \
        failing[0] and failing[0].endswith("free space there)")
    assert len([line for line in failing if "the prediction log" in line]) == 1  # said once, not once per update
    assert any(line.startswith(f"cannot write the monitoring status {folder / 'status.json'}: no space left")
               for line in failing)
    assert any("the prediction log" in line.get("recovered", "") for line in said)
    assert "Traceback" not in err, err
