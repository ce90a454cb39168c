"""The metric schema of a model server, in one place: the Prometheus series it exports (names, labels,
buckets), the routes monitoring watches, and the metrics an alert rule can name, each with its PromQL
(for ``mloop monitor export``) and its value in a ``MonitorStatus`` (for mloop's own evaluation).

``ServerMetrics`` holds one app's series in its own registry, so several apps can live in one process.
Beside the Prometheus series it keeps ``Traffic``, the running totals monitoring needs (latency of the
prediction routes, requests and server errors of the scored routes), so nothing reads the registry back.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

from mloop.monitor.status import MonitorStatus

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# Routes monitoring measures (mloop's own rules and the exported PromQL alike): the latency of these
# (a batch file takes as long as it is big) ...
PREDICT_ROUTES = ("infer", "predict")
# ... and the server-error ratio over those.
SCORED_ROUTES = ("infer", "predict", "predict_batch", "feedback")
MV = ["model", "version"]  # the labels of every per-model series


class Traffic:
    """Running totals of served requests for monitoring: updated on the event loop, read by the monitor."""

    def __init__(self) -> None:
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket (not cumulative), +Inf last
        self.requests = 0
        self.errors = 0

    def snapshot(self) -> tuple[np.ndarray, float, float]:
        """Cumulative latency bucket counts (as Prometheus keeps them), requests and server errors."""
        return np.cumsum(np.asarray(self.latency_counts, dtype=np.float64)), float(self.requests), float(self.errors)


class _WithoutCreated:
    """The registry's series without the ``*_created`` samples, which no rule or dashboard uses.

    (``prometheus_client.disable_created_metrics`` would do it for the whole process instead.)
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.traffic = Traffic()
        self.requests = Counter("mloop_requests_total", "HTTP requests by route and status code",
                                ["route", "code"], registry=self.registry)
        self.latency = Histogram("mloop_request_duration_seconds", "Request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("mloop_batch_rows", "Rows per predict call (adaptive batching)",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.predictions = Counter("mloop_predictions_total", "Predictions by predicted class", [*MV, "label"],
                                   registry=self.registry)
        self.model_info = Gauge("mloop_model_info", "The model being served (value 1)", ["model", "version"],
                                registry=self.registry)
        self.in_flight = Gauge("mloop_requests_in_flight", "Requests being handled", registry=self.registry)
        # Monitoring: recomputed from the in-memory window of recent predictions every few seconds.
        self.window_rows = Gauge("mloop_monitor_window_rows", "Rows in the monitoring window", MV,
                                 registry=self.registry)
        self.drift_share = Gauge("mloop_drifted_features_share", "Share of features that drifted (no sample: absent)",
                                 MV, registry=self.registry)
        self.drift_detected = Gauge("mloop_feature_drift_detected", "1 if the feature drifted, 0 if not",
                                    [*MV, "feature"], registry=self.registry)
        self.drift_psi = Gauge("mloop_feature_drift_psi", "Population Stability Index against training",
                               [*MV, "feature"], registry=self.registry)
        self.drift_p_value = Gauge("mloop_feature_drift_p_value", "p-value of the drift test (KS or chi-square)",
                                   [*MV, "feature"], registry=self.registry)
        self.labelled = Counter("mloop_labelled_predictions_total", "Predictions joined with their true label",
                                MV, registry=self.registry)
        self.live_score = Gauge("mloop_live_score", "Live scores over the last labelled predictions (classification: "
                                "accuracy, precision, recall, f1 - 'of' the positive class or the macro average; "
                                "regression: mae, rmse, r2)", [*MV, "metric", "of"], registry=self.registry)
        self.test_score = Gauge("mloop_test_score", "The served version's live scores on its own test set, recorded "
                                "at registration (what worse_than_test alert rules compare with)",
                                [*MV, "metric"], registry=self.registry)
        self.outlier_ratio = Gauge("mloop_outlier_ratio", "Share of window rows the bundled detector calls outliers",
                                   MV, registry=self.registry)
        self.prediction_drift_p_value = Gauge(
            "mloop_prediction_drift_p_value", "p-value of the prediction drift test: predicted classes vs training "
            "labels (chi-square), or predicted values vs the training target (KS)",
            MV, registry=self.registry)
        self.prediction_drift_detected = Gauge("mloop_prediction_drift_detected",
                                               "1 if the distribution of the predictions drifted", MV,
                                               registry=self.registry)
        self.alerts_firing = Gauge("mloop_alerts_firing", "1 while an mloop alert rule fires", ["model", "alertname"],
                                   registry=self.registry)
        # The durable logs (log: predictions or feedback): rows that could not be written yet (a full disk).
        self.log_rows_waiting = Gauge("mloop_log_rows_waiting", "Rows kept in memory because writing them to the log "
                                      "failed; retried every monitoring update", ["model", "log"], registry=self.registry)
        self.log_rows_dropped = Counter("mloop_log_rows_dropped_total", "Rows never written to the log: the oldest of those "
                                        "waiting, beyond [monitor] log_waiting_rows", ["model", "log"],
                                        registry=self.registry)
        self.log_write_failures = Counter("mloop_log_write_failures_total", "Writes of a log file that failed (OSError, "
                                          "e.g. a full disk)", ["model", "log"], registry=self.registry)
        # A roll-out (canary or shadow): what each version answered, and how a shadow candidate compares.
        self.rollout_weight = Gauge("mloop_rollout_weight", "1 series while a roll-out runs: the share of requests "
                                    "sent to the candidate (canary; 0 for a shadow, which answers none)",
                                    ["model", "strategy", "champion", "candidate"], registry=self.registry)
        self.rollout_requests = Counter("mloop_rollout_requests_total", "Prediction requests answered during the "
                                        "roll-out, by the version (and its role) that answered and status code",
                                        [*MV, "role", "code"], registry=self.registry)
        self.rollout_latency = Histogram("mloop_rollout_request_duration_seconds", "Latency of the prediction "
                                         "requests answered during the roll-out, by version", [*MV, "role"],
                                         buckets=LATENCY_BUCKETS, registry=self.registry)
        self.rollout_rows = Counter("mloop_rollout_rows_total", "Rows predicted during the roll-out by version: "
                                    "answered, or scored in shadow", [*MV, "role"], registry=self.registry)
        self.shadow_compared = Counter("mloop_rollout_shadow_compared_rows_total", "Rows the shadow candidate "
                                       "scored and compared with the champion's answers", MV, registry=self.registry)
        self.shadow_disagreed = Counter("mloop_rollout_shadow_disagreed_rows_total", "Compared rows on which the "
                                        "shadow candidate disagreed with the champion (another class; a regressor: "
                                        "further apart than the tolerance)", MV, registry=self.registry)
        self.shadow_failed = Counter("mloop_rollout_shadow_failed_rows_total", "Rows the shadow candidate could not "
                                     "score (its predict failed, or its schema refused the request)", MV,
                                     registry=self.registry)
        self.shadow_dropped = Counter("mloop_rollout_shadow_dropped_rows_total", "Rows never shadow-scored: the "
                                      "candidate fell behind and its queue was full", MV, registry=self.registry)
        self.shadow_disagreement = Gauge("mloop_rollout_shadow_disagreement_ratio", "Share of the compared rows "
                                         "the shadow candidate disagreed on, since the roll-out started", MV,
                                         registry=self.registry)
        self.shadow_abs_difference = Gauge("mloop_rollout_shadow_mean_abs_difference", "A regressor in shadow: "
                                           "mean absolute difference between its predictions and the champion's",
                                           MV, registry=self.registry)
        self.prediction_values: Histogram | None = None  # a regressor's predictions (see predicted_values)
        self._children: dict[tuple[str, int], tuple[Any, Any, bool, bool]] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count a request and its latency (the labelled children are looked up once, then cached)."""
        children = self._children.get((route, status))
        if children is None:
            children = (self.requests.labels(route, str(status)), self.latency.labels(route),
                        route in PREDICT_ROUTES, route in SCORED_ROUTES)
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)
        if children[2]:
            self.traffic.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        if children[3]:
            self.traffic.requests += 1
            if status >= 500:
                self.traffic.errors += 1

    def predicted_values(self, buckets: list[float]) -> Histogram:
        """The histogram of a regressor's predicted values, made on first use with ``buckets`` (the training
        target's quantiles): a label per predicted float would make the series unbounded."""
        if self.prediction_values is None:
            inner = sorted({float(b) for b in buckets[1:-1] if np.isfinite(b)}) or [0.0]
            self.prediction_values = Histogram("mloop_prediction_value", "Predicted values of a regressor",
                                               MV, buckets=inner, registry=self.registry)
        return self.prediction_values

    def clear_monitoring(self) -> None:
        """Forget the monitoring gauges of the version served before (a swap): its series end."""
        for gauge in (self.window_rows, self.drift_share, self.drift_detected, self.drift_psi, self.drift_p_value,
                      self.live_score, self.test_score, self.outlier_ratio, self.prediction_drift_p_value,
                      self.prediction_drift_detected):
            gauge.clear()

    def clear_rollout(self) -> None:
        """A roll-out ended (promoted, aborted or replaced): its series end; the next one starts from zero."""
        for series in (self.rollout_weight, self.rollout_requests, self.rollout_latency, self.rollout_rows,
                       self.shadow_compared, self.shadow_disagreed, self.shadow_failed, self.shadow_dropped,
                       self.shadow_disagreement, self.shadow_abs_difference):
            series.clear()

    def serving(self, model: str, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(model, version).set(1)

    def expose(self) -> bytes:
        return generate_latest(_WithoutCreated(self.registry))


def histogram_quantile(q: float, bounds: np.ndarray, cumulative: np.ndarray) -> float | None:
    """The ``q`` quantile from cumulative bucket counts, interpolated within a bucket as Prometheus does."""
    if not cumulative.size or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    index = int(np.searchsorted(cumulative, rank, side="left"))
    if index >= len(bounds) - 1 and np.isinf(bounds[-1]):  # in the +Inf bucket: the highest finite bound
        return float(bounds[-2]) if len(bounds) > 1 else None
    lower = 0.0 if index == 0 else float(bounds[index - 1])
    below = 0.0 if index == 0 else float(cumulative[index - 1])
    in_bucket = float(cumulative[index]) - below
    if in_bucket <= 0:
        return float(bounds[index])
    return float(lower + (float(bounds[index]) - lower) * (rank - below) / in_bucket)


LATENCY_BOUNDS = np.asarray([*LATENCY_BUCKETS, np.inf])  # the upper bounds of the latency histogram's buckets


def latency_percentiles_ms(cumulative: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """p50, p90 and p99 in milliseconds from the latency histogram's cumulative counts (``LATENCY_BOUNDS``);
    None where it counts nothing."""
    p50, p90, p99 = (histogram_quantile(q, LATENCY_BOUNDS, cumulative) for q in (0.5, 0.9, 0.99))
    return tuple(None if q is None else q * 1000.0 for q in (p50, p90, p99))  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ alert metrics


def job_name(model: str) -> str:
    """The Prometheus scrape job of a model's server in the exported configuration."""
    return f"mloop-{model}"


def _routes(routes: tuple[str, ...]) -> str:
    return f'route=~"{"|".join(routes)}"'


@dataclass(frozen=True)
class AlertMetric:
    """A metric an alert rule can name: its PromQL over the exported series and its value in a status."""

    name: str
    promql: Callable[[str, str, str], str]  # (job, model, rate window) -> expression
    value: Callable[[MonitorStatus], float | None]


def _gauge(series: str, aggregate: str, extra: str = "") -> Callable[[str, str, str], str]:
    return lambda job, model, window: f'{aggregate}({series}{{job="{job}",model="{model}"{extra}}})'


def _p99(job: str, model: str, window: str) -> str:
    return (f"1000 * histogram_quantile(0.99, sum by (le) "
            f'(rate(mloop_request_duration_seconds_bucket{{job="{job}",{_routes(PREDICT_ROUTES)}}}[{window}])))')


def _error_ratio(job: str, model: str, window: str) -> str:
    scored = f'job="{job}",{_routes(SCORED_ROUTES)}'
    return (f'sum(rate(mloop_requests_total{{{scored},code=~"5.."}}[{window}])) / '
            f"sum(rate(mloop_requests_total{{{scored}}}[{window}]))")


def _live(metric: str) -> AlertMetric:
    return AlertMetric(metric, _gauge("mloop_live_score", "min", f',metric="{metric}"'),
                       lambda status: status.feedback.scores.get(metric))


ALERT_METRICS: dict[str, AlertMetric] = {m.name: m for m in (
    AlertMetric("drifted_features_share", _gauge("mloop_drifted_features_share", "max"),
                lambda status: status.drift.share),
    AlertMetric("outlier_ratio", _gauge("mloop_outlier_ratio", "max"), lambda status: status.outliers.ratio),
    _live("accuracy"),
    _live("precision"),
    _live("recall"),
    _live("f1"),
    _live("mae"),
    _live("rmse"),
    _live("r2"),
    AlertMetric("p99_latency_ms", _p99, lambda status: status.operations.p99_latency_ms),
    AlertMetric("error_ratio", _error_ratio, lambda status: status.operations.error_ratio),
)}
