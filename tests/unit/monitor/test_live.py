"""The server's live monitor: status, prediction log, feedback across a restart, operations, alerts, a full disk."""

import errno
import json
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import IsolationForest

from mloop.config import MonitorSection
from mloop.monitor.metrics import histogram_quantile
from tests.support.asgi import app_for, call


@pytest.fixture
def model(small_model):
    rng = np.random.default_rng(1)
    detector = IsolationForest(n_estimators=20, random_state=0).fit(rng.normal(size=(200, 3)))
    info = replace(small_model.info, class_counts={"0": 100, "1": 100})
    return replace(small_model, info=info, outlier_detector=detector)


def settings(**kwargs):
    return MonitorSection.model_validate({"interval": 0, "min_samples": 50} | kwargs)


def rows(n, shift=0.0, seed=0):
    data = np.random.default_rng(seed).normal(size=(n, 3))
    data[:, 0] += shift
    return [{"a": a, "b": b, "c": c} for a, b, c in data.tolist()]


def test_status_and_log_after_an_update(model, tmp_path):
    app = app_for(model, monitor=settings(), monitor_dir=tmp_path)
    for i in range(3):
        call(app, "POST", "/predict", json={"instances": rows(40, shift=4.0, seed=i)}, headers={"x-request-id": f"r{i}"})
    status = app.dataplane.update_monitoring()
    on_disk = json.loads((tmp_path / "status.json").read_text())
    assert on_disk["drift"]["share"] == status.drift.share == pytest.approx(1 / 3)
    assert on_disk["drift"]["features"]["a"]["drifted"] is True and on_disk["drift"]["features"]["b"]["drifted"] is False
    assert set(on_disk["drift"]["predictions"]["training"]) == {"0", "1"}
    assert on_disk["outliers"]["ratio"] > 0.5  # shifted by 4 sd: mostly outliers
    log = pd.read_parquet(tmp_path / "predictions")
    assert len(log) == 120 and log["request_id"].nunique() == 3 and log["outlier"].mean() > 0.5
    assert on_disk["prediction_log"]["rows_written"] == 120
    assert app.dataplane.update_monitoring().prediction_log.rows_written == 0  # written once
    metrics = call(app, "GET", "/metrics").text
    assert 'mloop_prediction_drift_p_value{model="toy",version="3"}' in metrics


def test_too_few_rows_get_no_verdict_and_the_status_says_so(model):
    app = app_for(model, monitor=settings(min_samples=100))
    call(app, "POST", "/predict", json={"instances": rows(10)})
    drift = app.dataplane.update_monitoring().drift
    assert drift.share is None and "10 rows < min_samples 100" in drift.note


def test_feedback_for_predictions_made_before_a_restart_still_counts(model, tmp_path):
    first = app_for(model, monitor=settings(), monitor_dir=tmp_path)
    answer = call(first, "POST", "/predict", json={"instances": rows(2)}, headers={"x-request-id": "before"})
    labels = [p["label"] for p in answer.json()["predictions"]]
    call(first, "POST", "/predict", json={"instances": rows(1)}, headers={"x-request-id": "labelled"})
    one = [p["label"] for p in call(first, "POST", "/predict", json={"instances": rows(1)},
                                    headers={"x-request-id": "x"}).json()["predictions"]]
    assert call(first, "POST", "/feedback", json={"id": "x", "labels": one}).status_code == 200
    first.dataplane.monitor.close()  # shutdown writes what is pending
    second = app_for(model, monitor=settings(), monitor_dir=tmp_path)
    assert second.dataplane.monitor.feedback.labelled_total == 1
    reply = call(second, "POST", "/feedback", json={"id": "before", "labels": labels})
    assert reply.status_code == 200 and reply.json()["total_labelled"] == 3 and reply.json()["accuracy"] == 1.0
    assert call(second, "POST", "/feedback", json={"id": "x", "labels": one}).status_code == 409  # labelled once only
    assert 'mloop_labelled_predictions_total{model="toy",version="3"} 3.0' in call(second, "GET", "/metrics").text


def test_after_a_restart_the_window_holds_the_rows_the_served_version_answered_so_drift_is_judged_at_once(model, tmp_path):
    first = app_for(model, monitor=settings(), monitor_dir=tmp_path)
    for i in range(3):
        call(first, "POST", "/predict", json={"instances": rows(40, shift=4.0, seed=i)})
    before = first.dataplane.update_monitoring().drift
    first.dataplane.monitor.close()

    second = app_for(model, monitor=settings(), monitor_dir=tmp_path)
    outliers_before = first.dataplane.monitor.status.outliers
    after_status = second.dataplane.update_monitoring()
    after = after_status.drift
    assert (after.rows, after.share) == (before.rows, before.share) == (120, pytest.approx(1 / 3))
    assert (after_status.outliers.rows, after_status.outliers.ratio) == (outliers_before.rows, outliers_before.ratio)
    assert outliers_before.rows == 120 and outliers_before.ratio > 0.5
    assert after.features["a"].p_value == pytest.approx(before.features["a"].p_value)
    smaller = app_for(model, monitor=settings(window=50), monitor_dir=tmp_path).dataplane.monitor.window
    newest = np.asarray([[r["a"], r["b"], r["c"]] for r in rows(40, shift=4.0, seed=2)])
    assert smaller.size == 50 and np.allclose(smaller.snapshot()[0][-40:], newest)  # the newest rows, oldest first
    other = app_for(replace(model, version="4"), monitor=settings(), monitor_dir=tmp_path)
    assert other.dataplane.monitor.window.size == 0  # another version's rows are not its own
    call(other, "POST", "/predict", json={"instances": rows(60, seed=9)})
    other.dataplane.monitor.close()
    back = app_for(model, monitor=settings(window=100), monitor_dir=tmp_path).dataplane.monitor.window
    assert back.size == 100  # its own newest rows, though another version's are newer
    assert np.allclose(back.snapshot()[0][-40:], newest)


def test_a_categorical_models_window_comes_back_with_the_same_category_indexes(churn_model, tmp_path):
    sent = [{"plan": "pro", "region": None, "age": 30, "spend": 80.5, "member": True},
            {"plan": "gold", "region": "north", "age": 61, "spend": None, "member": False},  # gold: never seen
            {"plan": "basic", "region": "south", "age": 45, "spend": 12.0, "member": True}]
    first = app_for(churn_model, monitor=settings(), monitor_dir=tmp_path)
    assert call(first, "POST", "/predict", json={"instances": sent}).status_code == 200
    served, labels = first.dataplane.monitor.window.snapshot()
    first.dataplane.monitor.close()
    again, labels_again = app_for(churn_model, monitor=settings(), monitor_dir=tmp_path).dataplane.monitor.window.snapshot()
    np.testing.assert_array_equal(again, served)  # NaN where missing, -1 for the unseen category
    assert labels_again.tolist() == labels.tolist()


def test_p99_latency_and_error_ratio_come_from_the_servers_counters(model):
    app = app_for(model, monitor=settings(rate_window="1m"))
    assert app.dataplane.monitor.update(now=990.0).operations.p99_latency_ms is None  # before any request
    for _ in range(98):
        app.dataplane.metrics.observe_request("predict", 200, 0.002)
    app.dataplane.metrics.observe_request("predict", 500, 0.3)
    app.dataplane.metrics.observe_request("infer", 200, 0.3)
    app.dataplane.metrics.observe_request("metrics", 200, 9.0)  # not a prediction route: ignored
    ops = app.dataplane.monitor.update(now=1000.0).operations
    assert ops.requests == 100 and ops.errors == 1 and ops.error_ratio == 0.01
    assert ops.p99_latency_ms == pytest.approx(375.0)  # rank 99 of 100: half-way into (0.25, 0.5], as Prometheus
    ops = app.dataplane.monitor.update(now=1061.0).operations
    assert ops.requests == 0 and ops.error_ratio is None  # nothing new within the window


def test_each_update_keeps_its_interval_s_requests_and_latency_in_the_operations_history(model, tmp_path):
    from mloop.monitor.status import OPERATIONS_FILE, read_operations

    app = app_for(model, monitor=settings(rate_window="10m"), monitor_dir=tmp_path)
    monitor, metrics = app.dataplane.monitor, app.dataplane.metrics
    start = monitor._started
    for _ in range(10):
        metrics.observe_request("predict", 200, 0.002)
    monitor.update(now=start + 10)
    for _ in range(9):
        metrics.observe_request("predict", 200, 0.3)
    metrics.observe_request("predict", 500, 0.3)
    monitor.update(now=start + 20)
    monitor.update(now=start + 30)
    first, second, third = read_operations(tmp_path)
    assert (first.requests, first.errors, first.seconds, first.version) == (10, 0, pytest.approx(10.0), "3")
    assert first.p99_latency_ms < 5 and second.p50_latency_ms > 250  # each its own interval, not the 10 min window
    assert (second.requests, second.errors) == (10, 1) and (third.requests, third.p99_latency_ms) == (0, None)
    assert [p.time for p in read_operations(tmp_path, since=start + 15)] == [start + 20, start + 30]
    with open(tmp_path / OPERATIONS_FILE, "a") as cut:  # a crash in the middle of a line, then more lines
        cut.write('{"time": 1, "vers')
    monitor.update(now=start + 40)
    assert [p.time for p in read_operations(tmp_path)][-2:] == [start + 30, start + 40]


def test_the_operations_history_rotates_and_is_read_across_the_two_files(tmp_path, monkeypatch):
    from mloop.monitor import status

    monkeypatch.setattr(status, "OPERATIONS_MAX_BYTES", 500)
    for t in range(40):
        status.append_operations(tmp_path, status.OperationsPoint(float(t), "1", 1.0, t, 0, 1.0, 2.0, 3.0))
    assert (tmp_path / "operations.jsonl.1").exists() and not (tmp_path / "operations.jsonl.2").exists()
    times = [p.time for p in status.read_operations(tmp_path)]
    assert times == sorted(times) and times[-1] == 39.0 and len(times) < 40  # the oldest rotated away


def test_requests_served_before_the_first_update_stay_in_the_window(model):
    app = app_for(model, monitor=settings(rate_window="1m"))
    start = app.dataplane.monitor._started
    for _ in range(4):
        app.dataplane.metrics.observe_request("predict", 200, 0.002)
    assert app.dataplane.monitor.update(now=start + 10).operations.requests == 4
    assert app.dataplane.monitor.update(now=start + 20).operations.requests == 4  # still within the minute
    assert app.dataplane.monitor.update(now=start + 75).operations.requests == 0


def test_histogram_quantile_matches_prometheus_semantics():
    bounds = np.array([0.1, 0.5, 1.0, np.inf])
    assert histogram_quantile(0.5, bounds, np.array([0.0, 10.0, 10.0, 10.0])) == pytest.approx(0.3)
    assert histogram_quantile(0.99, bounds, np.array([0.0, 0.0, 0.0, 5.0])) == 1.0  # +Inf: highest finite bound
    assert histogram_quantile(0.99, bounds, np.zeros(4)) is None


def test_an_alert_rule_fires_from_the_live_picture_and_is_exported(model, tmp_path):
    rule = {"name": "Drift", "metric": "drifted_features_share", "above": 0.2}
    app = app_for(model, monitor=settings(alerts=[rule]), monitor_dir=tmp_path)
    call(app, "POST", "/predict", json={"instances": rows(200, shift=4.0)})
    status = app.dataplane.update_monitoring()
    assert status.alerts.firing == ["Drift"]
    assert 'mloop_alerts_firing{alertname="Drift",model="toy"} 1.0' in call(app, "GET", "/metrics").text
    [event] = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert event["status"] == "firing" and event["value"] == pytest.approx(1 / 3)


def test_the_alert_receiver_needs_a_token_and_a_valid_payload(model, tmp_path):
    payload = {"alerts": [{"status": "firing", "labels": {"alertname": "MloopDataDrift"}}]}
    closed = app_for(model, monitor=settings())
    answer = call(closed, "POST", "/alerts/webhook", json=payload)
    assert answer.status_code == 403 and "MLOOP_SERVING_ALERT_TOKEN" in answer.json()["error"]
    app = app_for(model, monitor=settings(), monitor_dir=tmp_path, alert_token="am")
    assert call(app, "POST", "/alerts/webhook", json=payload).status_code == 401
    good = {"authorization": "Bearer am"}
    assert call(app, "POST", "/alerts/webhook", json={"alerts": "no"}, headers=good).status_code == 422
    assert call(app, "POST", "/alerts/webhook", json=payload, headers=good).json() == {"received": 1}
    assert json.loads((tmp_path / "alerts.jsonl").read_text())["source"] == "alertmanager"


def exported(app) -> dict[str, set[str]]:
    """Every mloop series on /metrics with its label names."""
    import re

    labels: dict[str, set[str]] = {}
    for name, inner in re.findall(r"^(mloop_\w+?)(?:_bucket|_sum|_count)?(?:\{(.*?)\})? ",
                                  call(app, "GET", "/metrics").text, re.M):
        labels.setdefault(name, set()).update(re.findall(r'(\w+)="', inner))
    for name in list(labels):
        labels[name].discard("le")
    return labels


def test_every_exported_metric_is_documented(model, small_regressor, tmp_path):
    import re
    from dataclasses import replace
    from pathlib import Path

    model = replace(model, info=replace(model.info, test_scores={"accuracy": 0.9}))  # as registration records
    app = app_for(model, monitor=settings(), monitor_dir=tmp_path)  # with a prediction log
    call(app, "POST", "/predict", json={"instances": rows(60)}, headers={"x-request-id": "x"})
    app.dataplane.update_monitoring()
    app.dataplane.monitor.set_scores()
    assert call(app, "POST", "/feedback", json={"id": "x", "labels": [0] * 60}).status_code == 200
    regression = app_for(small_regressor, monitor=settings())
    call(regression, "POST", "/predict", json={"instances": rows(60)}, headers={"x-request-id": "y"})
    assert call(regression, "POST", "/feedback", json={"id": "y", "labels": [0.5] * 60}).status_code == 200
    # a roll-out's series: a canary of the classifier, a shadow of the regressor
    admin = {"authorization": "Bearer adm"}
    canary = app_for(model, monitor=settings(), admin_token="adm", loader=lambda uri: replace(model, version="4"))
    assert call(canary, "POST", "/admin/rollout", json={"uri": "models:/toy/4", "strategy": "canary", "weight": 1.0},
                headers=admin).status_code == 200
    call(canary, "POST", "/predict", json={"instances": rows(5)}, headers={"x-request-id": "z"})
    assert call(canary, "POST", "/feedback", json={"id": "z", "labels": [0] * 5}).status_code == 200
    shadow = app_for(small_regressor, monitor=settings(), admin_token="adm",
                     loader=lambda uri: replace(small_regressor, version="2"))
    assert call(shadow, "POST", "/admin/rollout", json={"uri": "models:/reg/2", "strategy": "shadow"},
                headers=admin).status_code == 200
    call(shadow, "POST", "/predict", json={"instances": rows(5)})
    deadline = time.time() + 10
    while shadow.dataplane.rollout_state()["shadow"]["compared_rows"] < 5 and time.time() < deadline:
        time.sleep(0.02)
    labels = exported(app)
    for other in (regression, canary, shadow):
        for name, names in exported(other).items():
            labels.setdefault(name, set()).update(names)
    call(shadow, "POST", "/admin/rollout/abort", headers=admin)
    page = (Path(__file__).parents[3] / "docs" / "metrics.md").read_text()
    documented = {name: set(re.findall(r"`(\w+)`", columns)) for name, columns in
                  re.findall(r"^\| `(mloop_\w+)` \| \w+ \|([^|]*)\|", page, re.M)}
    assert labels == documented


def test_a_regressor_is_answered_with_predictions_and_its_series_stay_few(small_regressor):
    app = app_for(small_regressor, monitor=settings())
    answer = call(app, "POST", "/predict", json={"instances": rows(3)}, headers={"x-request-id": "r"}).json()
    assert set(answer["predictions"][0]) == {"prediction"} and isinstance(answer["predictions"][0]["prediction"], float)
    call(app, "POST", "/predict", json={"instances": rows(200, seed=9)})
    app.dataplane.update_monitoring()
    call(app, "GET", "/metrics")  # every series this traffic makes exists now (the metrics route's own too)
    before = len(call(app, "GET", "/metrics").text.splitlines())
    for seed in range(10):  # 10,000 more distinct rows and predicted values
        call(app, "POST", "/predict", json={"instances": rows(1000, seed=seed + 10)})
    app.dataplane.update_monitoring()
    assert len(call(app, "GET", "/metrics").text.splitlines()) == before
    bad = call(app, "POST", "/feedback", json={"id": "r", "labels": [1.0, "2", 3.0]})
    assert bad.status_code == 422 and bad.json()["field"] == "body.labels" and "numbers" in bad.json()["error"]
    good = call(app, "POST", "/feedback", json={"id": "r", "labels": [1.0, 2, 3.5]}).json()
    assert good["labelled"] == 3 and {"mae", "rmse", "r2"} <= set(good) and "accuracy" not in good


def test_a_swap_ends_the_old_versions_monitoring_series(model):
    app = app_for(model, monitor=settings(), admin_token="adm", loader=lambda uri: replace(model, version="4"))
    call(app, "POST", "/predict", json={"instances": rows(60)})
    app.dataplane.update_monitoring()
    assert 'mloop_drifted_features_share{model="toy",version="3"}' in call(app, "GET", "/metrics").text
    swap = call(app, "POST", "/admin/model", json={"uri": "models:/toy/4"}, headers={"authorization": "Bearer adm"})
    assert swap.status_code == 200
    call(app, "POST", "/predict", json={"instances": rows(60)})
    app.dataplane.update_monitoring()
    text = call(app, "GET", "/metrics").text
    stale = [line for line in text.splitlines() if 'version="3"' in line and not line.startswith("mloop_predictions_total")]
    assert stale == []  # counters of what v3 predicted stay; its gauges are gone
    assert 'mloop_drifted_features_share{model="toy",version="4"}' in text


def test_a_regressors_predicted_values_drift_against_the_training_target(small_regressor):
    app = app_for(small_regressor, monitor=settings())
    call(app, "POST", "/predict", json={"instances": rows(400, seed=3)})
    same = app.dataplane.update_monitoring().drift.predictions
    assert same is not None and same.drifted is False and same.p_value > 0.01
    assert abs(same.current["mean"] - same.training["mean"]) < 0.5
    app.dataplane.monitor.window.clear()
    call(app, "POST", "/predict", json={"instances": rows(400, shift=1.0, seed=4)})  # 3 * a: predictions up by 3
    moved = app.dataplane.update_monitoring().drift.predictions
    assert moved.drifted is True and moved.current["mean"] > moved.training["mean"] + 2
    assert 'mloop_prediction_drift_detected{model="reg",version="1"} 1.0' in call(app, "GET", "/metrics").text


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_on_a_full_disk_the_monitor_goes_on_and_metrics_and_status_say_what_waits(model, tmp_path, monkeypatch,
                                                                                     capsys):
    from mloop.monitor import live, predlog

    write_parquet, write_status = predlog._write_parquet, live.write_status
    monkeypatch.setattr(predlog, "_write_parquet", _no_space)
    monkeypatch.setattr(live, "write_status", _no_space)
    app = app_for(model, monitor=settings(log_waiting_rows=50), monitor_dir=tmp_path, admin_token="adm",
                  loader=lambda uri: replace(model, version="4"))
    for i in range(2):
        assert call(app, "POST", "/predict", json={"instances": rows(40, seed=i)}).status_code == 200
    logged = app.dataplane.update_monitoring().prediction_log
    assert (logged.rows_written, logged.rows_waiting, logged.rows_dropped) == (0, 50, 30)
    assert logged.error == f"cannot write the prediction log {tmp_path / 'predictions'}: no space left on the device " \
                           "holding it"
    app.dataplane.update_monitoring()  # fails again: counted, not said again
    text = call(app, "GET", "/metrics").text
    assert 'mloop_log_rows_waiting{log="predictions",model="toy"} 50.0' in text
    assert 'mloop_log_rows_dropped_total{log="predictions",model="toy"} 30.0' in text
    assert 'mloop_log_write_failures_total{log="predictions",model="toy"} 2.0' in text
    assert 'mloop_log_rows_waiting{log="feedback",model="toy"} 0.0' in text
    said = [json.loads(line)["error"] for line in capsys.readouterr().err.splitlines() if line.startswith('{"path"')]
    assert said == [(f"cannot write the prediction log {tmp_path / 'predictions'}: no space left on the device "
                     "holding it (50 rows kept in memory, retried every monitoring update; free space there)"),
                    (f"cannot write the monitoring status {tmp_path / 'status.json'}: no space left on the device "
                     "holding it (skipped; written again every update; free space there)")]
    auth = {"authorization": "Bearer adm"}
    assert call(app, "POST", "/admin/model", json={"uri": "models:/toy/4"}, headers=auth).status_code == 200
    assert app.dataplane.monitor.log.predictions.waiting_rows == 50  # the next version's log writes them
    monkeypatch.setattr(predlog, "_write_parquet", write_parquet)
    monkeypatch.setattr(live, "write_status", write_status)
    call(app, "POST", "/predict", json={"instances": rows(5)})
    assert app.dataplane.update_monitoring().prediction_log.rows_written == 55
    assert len(pd.read_parquet(tmp_path / "predictions")) == 55
    assert json.loads((tmp_path / "status.json").read_text())["prediction_log"]["rows_dropped"] == 30
    assert 'mloop_log_rows_waiting{log="predictions",model="toy"} 0.0' in call(app, "GET", "/metrics").text
