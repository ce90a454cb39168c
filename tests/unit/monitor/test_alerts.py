"""Alert rules: pending, firing after 'for', resolving; the log; webhooks; Alertmanager's payloads; config errors."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mloop.config import AlertRule, parse_settings
from mloop.errors import ConfigError
from mloop.monitor.alerts import Alerting, firing, read_alert_log


def rule(**kwargs):
    return AlertRule.model_validate({"name": "DataDrift", "metric": "drifted_features_share", "above": 0.3} | kwargs)


def test_a_rule_is_pending_then_fires_after_its_duration_then_resolves(tmp_path):
    log = tmp_path / "alerts.jsonl"
    alerting = Alerting([rule(**{"for": "5m"})], "m", log_path=log)
    assert alerting.evaluate({"drifted_features_share": 0.5}, now=1000) == []
    assert alerting.state(now=1060) == ([], {"DataDrift": 60.0})
    assert alerting.evaluate({"drifted_features_share": 0.5}, now=1299) == []
    [fired] = alerting.evaluate({"drifted_features_share": 0.4}, now=1300)
    assert fired.status == "firing" and fired.started == 1000 and fired.value == 0.4
    assert alerting.evaluate({"drifted_features_share": 0.9}, now=1310) == []  # fires once, not per update
    [resolved] = alerting.evaluate({"drifted_features_share": 0.1}, now=1400)
    assert resolved.status == "resolved" and resolved.started == 1000
    assert [e.status for e in read_alert_log(log)] == ["firing", "resolved"]
    # a condition that stops holding before 'for' never fires
    alerting.evaluate({"drifted_features_share": 0.5}, now=2000)
    assert alerting.evaluate({"drifted_features_share": 0.1}, now=2100) == [] and not alerting.pending


def test_below_rules_and_missing_values():
    alerting = Alerting([AlertRule.model_validate({"name": "LowAccuracy", "metric": "accuracy", "below": 0.9})], "m")
    assert alerting.evaluate({}, now=1) == []  # no labelled predictions yet: no value, no alert
    assert alerting.evaluate({"accuracy": 0.95}, now=2) == []
    assert alerting.evaluate({"accuracy": 0.8}, now=3)[0].status == "firing"
    assert alerting.evaluate({"accuracy": None}, now=4)[0].status == "resolved"  # no data resolves, as in Prometheus


def test_firing_alerts_survive_a_restart_through_the_log(tmp_path):
    log = tmp_path / "alerts.jsonl"
    Alerting([rule()], "m", log_path=log).evaluate({"drifted_features_share": 0.5}, now=10)
    with log.open("a") as fh:
        fh.write('{"torn": ')  # a crash mid-line is skipped by readers
    again = Alerting([rule()], "m", log_path=log)
    assert again.evaluate({"drifted_features_share": 0.6}, now=20) == []  # still firing: not fired twice
    [resolved] = again.evaluate({"drifted_features_share": 0.0}, now=30)
    assert resolved.status == "resolved" and resolved.started == 10
    assert firing(read_alert_log(log)) == {}


class _Sink(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        _Sink.received.append((self.headers.get("authorization"), json.loads(body)))
        self.send_response(500 if len(_Sink.received) == 1 else 200)  # the first attempt fails: retried
        self.end_headers()

    def log_message(self, *args):
        pass


def test_events_reach_webhooks_in_alertmanager_format_with_retries(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        alerting = Alerting([rule()], "bc", webhooks=[url], webhook_token="tok")
        alerting.evaluate({"drifted_features_share": 0.5}, now=100)
        alerting.evaluate({"drifted_features_share": 0.0}, now=200)
        alerting.close()
    finally:
        server.shutdown()
    assert len(_Sink.received) == 3  # firing (failed once, then delivered), resolved
    auth, firing_payload = _Sink.received[1]
    assert auth == "Bearer tok" and firing_payload["version"] == "4" and firing_payload["status"] == "firing"
    [alert] = firing_payload["alerts"]
    assert alert["labels"] == {"alertname": "DataDrift", "model": "bc", "severity": "warning", "source": "mloop"}
    assert alert["startsAt"].startswith("1970-01-01T00:01:40") and alert["annotations"]["value"] == "0.5"
    resolved = _Sink.received[2][1]["alerts"][0]
    assert resolved["status"] == "resolved" and resolved["endsAt"].startswith("1970-01-01T00:03:20")


def test_alertmanager_payloads_are_recorded_like_mloops_own(tmp_path):
    log = tmp_path / "alerts.jsonl"
    alerting = Alerting([], "bc", log_path=log)
    payload = {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "MloopDataDrift", "model": "bc", "severity": "warning"},
         "annotations": {"summary": "drift"}, "startsAt": "2026-11-22T10:00:00Z", "fingerprint": "abc"}]}
    [event] = alerting.receive(payload)
    assert event.source == "alertmanager" and event.alert == "MloopDataDrift" and event.summary == "drift"
    assert list(firing(read_alert_log(log))) == [("alertmanager", "MloopDataDrift")]
    for bad, where in (({}, "alerts"), ({"alerts": [{"labels": {}}]}, "alerts[0].status"),
                       ({"alerts": [{"status": "odd", "labels": {"alertname": "x"}}]}, "alerts[0].status"),
                       ({"alerts": [{"status": "firing", "labels": {}}]}, "alerts[0].labels.alertname")):
        with pytest.raises(ValueError, match=f"payload: {where.replace('[', '.').replace(']', '.')}"):
            alerting.receive(bad)


def test_the_log_skips_lines_that_are_not_events(tmp_path):
    log = tmp_path / "alerts.jsonl"
    Alerting([rule()], "m", log_path=log).evaluate({"drifted_features_share": 0.5}, now=10)
    with log.open("ab") as fh:
        fh.write(b'[1, 2]\n"text"\n\xff\xfe not utf-8\n')
    [event] = read_alert_log(log)
    assert event.alert == "DataDrift" and event.status == "firing"


@pytest.mark.parametrize("alerts, message", [
    ([{"name": "A", "metric": "acuracy", "above": 1}], "monitor.alerts.0.metric"),
    ([{"name": "A", "metric": "accuracy"}], "exactly one of 'above', 'below' or 'worse_than_test'"),
    ([{"name": "A", "metric": "accuracy", "below": 0.8, "worse_than_test": 0.1}], "exactly one of"),
    ([{"name": "A", "metric": "p99_latency_ms", "worse_than_test": 0.1}], "worse_than_test needs a live score"),
    ([{"name": "A", "metric": "accuracy", "worse_than_test": 0}], "monitor.alerts.0.worse_than_test"),
    ([{"name": "A", "metric": "accuracy", "below": 1, "for": "5 min"}], "duration such as 30s"),
    ([{"name": "A", "metric": "accuracy", "below": 1}, {"name": "A", "metric": "error_ratio", "above": 0}], "repeated: A"),
    ([{"name": "A b", "metric": "accuracy", "below": 1}], "monitor.alerts.0.name"),
])
def test_wrong_alert_rules_are_config_errors_naming_the_setting(alerts, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings({"project": {"name": "p"}, "monitor": {"alerts": alerts}})


def test_the_default_rules_are_the_documented_ones_with_live_scores_relative_to_the_test_set():
    rules = parse_settings({"project": {"name": "p"}}).monitor.alerts
    assert [(r.name, r.metric, r.for_, r.severity) for r in rules] == [
        ("DataDrift", "drifted_features_share", "5m", "warning"), ("LowAccuracy", "accuracy", "0s", "critical"),
        ("HighError", "rmse", "0s", "critical"), ("HighLatency", "p99_latency_ms", "5m", "warning"),
        ("HighErrorRatio", "error_ratio", "5m", "critical")]
    classifier = {"accuracy": 0.85, "f1": 0.8}
    resolved = [r.for_model(classifier) for r in rules]
    assert [(r.op, round(r.threshold, 6)) for r in resolved if r is not None] == [
        (">", 0.3), ("<", 0.765), (">", 200), (">", 0.01)]  # 10 % below its own 0.85; no rmse: no HighError
    assert "more than 10% worse than on the test set (0.85)" in resolved[1].summary
    high_error = rules[2].for_model({"rmse": 2.0, "r2": -0.5})
    assert (high_error.op, high_error.threshold) == (">", 2.5)
    r2 = parse_settings({"project": {"name": "p"}, "monitor": {"alerts": [
        {"name": "LowR2", "metric": "r2", "worse_than_test": 0.5}]}}).monitor.alerts[0]
    assert r2.for_model({"r2": -0.5}).threshold == -0.75  # below a negative score: worse still


def test_an_alert_on_another_tasks_live_score_is_a_config_error():
    with pytest.raises(ConfigError, match="metric 'accuracy' is not a live score of a regression model; "
                                          "use one of: mae, rmse, r2"):
        parse_settings({"project": {"name": "p", "task": "regression"}, "promotion": {"metric": "rmse"},
                        "monitor": {"alerts": [{"name": "A", "metric": "accuracy", "below": 0.9}]}})
    parse_settings({"project": {"name": "p", "task": "regression"}, "promotion": {"metric": "rmse"}})  # defaults fit




def _payload(count, status="firing"):
    return {"alerts": [{"status": status, "labels": {"alertname": f"Am{i}", "model": "m"}} for i in range(count)]}


def test_past_its_budget_the_log_is_renamed_and_readers_still_see_the_history(tmp_path):
    from mloop.monitor.queries import alert_history

    log = tmp_path / "alerts.jsonl"
    alerting = Alerting([rule()], "m", log_path=log, log_max_bytes=3000)
    alerting.evaluate({"drifted_features_share": 0.5}, now=10)  # fires; its event is the log's first line
    alerting.receive(_payload(12))  # past the budget: renamed to alerts.jsonl.1
    assert not log.exists() and log.with_name("alerts.jsonl.1").stat().st_size > 3000
    alerting.receive(_payload(3, "resolved"))
    history = alert_history(tmp_path)
    assert len(history.events) == 16 and history.events[0].alert == "DataDrift"  # oldest first, across the files
    assert set(history.firing) == {("mloop", "DataDrift")} | {("alertmanager", f"Am{i}") for i in range(3, 12)}
    restarted = Alerting([rule()], "m", log_path=log, log_max_bytes=3000)
    assert restarted.evaluate({"drifted_features_share": 0.6}, now=20) == []  # still firing, from the renamed file
    for _ in range(6):  # the number of old files is bounded: .1 and .2
        restarted.receive(_payload(12))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.jsonl.1", "alerts.jsonl.2"]
    assert len(read_alert_log(log)) == 24 and alert_history(tmp_path, limit=5).events[-1].alert == "Am11"


def test_events_a_full_disk_refuses_wait_and_are_logged_once_when_it_has_space(tmp_path, monkeypatch, capsys):
    import errno

    from mloop.monitor import alerts

    log = tmp_path / "alerts.jsonl"
    append = alerts.append_synced

    def no_space(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(alerts, "append_synced", no_space)
    alerting = Alerting([rule()], "m", log_path=log)
    assert len(alerting.receive(_payload(2))) == 2  # the receiver still answers
    assert alerting.evaluate({"drifted_features_share": 0.5}, now=10)[0].status == "firing"
    assert alerting.evaluate({}, now=20)[0].status == "resolved"
    said = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith('{"path"')]
    assert [line["error"] for line in said] == [(f"cannot write the alert log {log}: no space left on the device holding "
                                                 "it (2 events kept in memory (the newest 10,000 at most), retried "
                                                 "every update; free space there)")]
    monkeypatch.setattr(alerts, "append_synced", append)
    alerting.evaluate({}, now=30)  # no new event: the waiting ones are written at the next evaluation
    assert [(e.alert, e.status) for e in read_alert_log(log)] == [("Am0", "firing"), ("Am1", "firing"),
                                                                  ("DataDrift", "firing"), ("DataDrift", "resolved")]
    alerting.evaluate({}, now=40)
    assert len(read_alert_log(log)) == 4 and "is written again" in capsys.readouterr().err
