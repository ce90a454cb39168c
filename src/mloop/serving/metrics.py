"""The server's Prometheus metrics (a registry per app, so several apps can live in one process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Routes the monitoring measures (mloop's own rules and the exported PromQL alike): latency of these
# (a batch file takes as long as it is big) and the error ratio over those.
PREDICT_ROUTES = ("infer", "predict")
SCORED_ROUTES = ("infer", "predict", "predict_batch", "feedback")
MV = ["model", "version"]  # the labels of every per-model series
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: no rule uses them
        self.registry = CollectorRegistry(auto_describe=True)
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
        self.live_score = Gauge("mloop_live_score", "Accuracy, precision and recall over the last labelled predictions",
                                [*MV, "metric"], registry=self.registry)
        self.outlier_ratio = Gauge("mloop_outlier_ratio", "Share of window rows the bundled detector calls outliers",
                                   MV, registry=self.registry)
        self.prediction_drift_p_value = Gauge(
            "mloop_prediction_drift_p_value", "p-value of chi-square: predicted classes vs training labels",
            MV, registry=self.registry)
        self.prediction_drift_detected = Gauge("mloop_prediction_drift_detected",
                                               "1 if the predicted class distribution drifted", MV,
                                               registry=self.registry)
        self.alerts_firing = Gauge("mloop_alerts_firing", "1 while an mloop alert rule fires", ["model", "alertname"],
                                   registry=self.registry)

        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count a request and its latency (the labelled children are looked up once, then cached)."""
        children = self._children.get((route, status))
        if children is None:
            children = (self.requests.labels(route, str(status)), self.latency.labels(route))
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def clear_monitoring(self) -> None:
        """Forget the monitoring gauges of the version served before (a swap): its series end."""
        for gauge in (self.window_rows, self.drift_share, self.drift_detected, self.drift_psi, self.drift_p_value,
                      self.live_score, self.outlier_ratio, self.prediction_drift_p_value,
                      self.prediction_drift_detected):
            gauge.clear()

    def serving(self, model: str, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(model, version).set(1)

    def expose(self) -> bytes:
        return generate_latest(self.registry)
