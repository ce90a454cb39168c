"""The metric schema: the alert metrics mloop evaluates are the ones the config accepts, with PromQL for each."""

from mloop.config import ALERT_METRICS as CONFIG_ALERT_METRICS
from mloop.monitor.metrics import ALERT_METRICS, ServerMetrics, job_name


def test_every_metric_an_alert_rule_may_name_has_promql_and_a_value():
    assert set(ALERT_METRICS) == set(CONFIG_ALERT_METRICS)
    for name, metric in ALERT_METRICS.items():
        promql = metric.promql(job_name("bc"), "bc", "5m")
        assert 'job="mloop-bc"' in promql, name


def test_the_request_totals_monitoring_reads_are_kept_beside_the_series():
    metrics = ServerMetrics()
    for _ in range(3):
        metrics.observe_request("predict", 200, 0.002)
    metrics.observe_request("feedback", 503, 0.001)
    metrics.observe_request("metrics", 500, 9.0)  # neither a prediction nor a scored route
    buckets, requests, errors = metrics.traffic.snapshot()
    assert (requests, errors) == (4.0, 1.0) and buckets[-1] == 3.0  # latency: prediction routes only
    assert b"_created" not in metrics.expose()
