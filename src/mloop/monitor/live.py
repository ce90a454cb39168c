"""``LiveMonitor``: everything a model server knows about how its model is doing, kept off the request path.

Per request the server calls ``record`` (the prediction log and the feedback joiner: appends) and per
predict call ``on_batch`` (the in-memory window). Every ``interval`` seconds a worker thread calls
``update``: drift per feature and of the predicted classes against training, the outlier ratio, live
accuracy, p99 latency and error ratio over ``rate_window``; it sets the gauges on ``/metrics``,
evaluates the alert rules, writes the pending prediction log to Parquet (with each row's outlier
score) and leaves the whole picture in ``status.json`` for ``mloop monitor status``.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mloop.config import MonitorSection, duration_s
from mloop.models.loaded import LoadedModel
from mloop.monitor.alerts import Alerting
from mloop.monitor.feedback import FeedbackJoiner
from mloop.monitor.predlog import PredictionLog, read_newest
from mloop.monitor.window import PredictionWindow
from mloop.serving.metrics import LATENCY_BUCKETS, PREDICT_ROUTES, SCORED_ROUTES

ROTATE_EVERY_S = 60.0


class LiveMonitor:
    def __init__(self, model: LoadedModel, metrics: Any, settings: MonitorSection | None = None,
                 folder: Path | None = None) -> None:
        self.settings = settings or MonitorSection()
        self.folder = folder
        self.metrics = metrics
        self.model = model
        self.window = PredictionWindow(self.settings.window, len(model.features))
        self.feedback = FeedbackJoiner()
        self.log = self._new_log(model)
        self.alerting = Alerting(self.settings.alerts, model.name,
                                 log_path=folder / "alerts.jsonl" if folder is not None else None,
                                 webhooks=self.settings.webhooks,
                                 webhook_token=self.settings.webhook_token or os.environ.get("MLOOP_WEBHOOK_TOKEN", ""))
        self.status: dict[str, Any] = {}
        self._detector: Any = None
        self._detector_for: LoadedModel | None = None
        self._rates: deque[tuple[float, np.ndarray, float, float]] = deque()
        self._bounds = np.asarray([*LATENCY_BUCKETS, np.inf])
        self._rotated = self._flushed = time.time()
        self._recent_outliers = np.zeros(0, dtype=bool)
        self._score: Any = None
        self._scorer_for: LoadedModel | None = None
        self.restore()

    def _new_log(self, model: LoadedModel) -> PredictionLog | None:
        if self.folder is None or not self.settings.log:
            return None
        return PredictionLog(self.folder, [f.name for f in model.features], int(self.settings.log_max_mb * 1024 * 1024))

    # ------------------------------------------------------------------------------ request path

    def record(self, request_id: str, model: LoadedModel, rows: np.ndarray, labels: np.ndarray) -> None:
        self.feedback.record(request_id, labels.tolist())
        if self.log is not None and model is self.model:
            self.log.record(request_id, model.version, rows, labels)

    def on_batch(self, rows: np.ndarray, labels: np.ndarray) -> None:
        if rows.shape[1] == self.window.rows.shape[1]:
            self.window.append(rows, labels)

    def add_feedback(self, request_id: str, truth: list[Any]) -> int:
        matched = self.feedback.add(request_id, truth)
        if self.log is not None:
            self.log.record_feedback(request_id, truth)
        return matched

    def swap(self, model: LoadedModel) -> Callable[[], None]:
        """A new version is served: from now on every request is logged and compared as the new one's.

        Called on the event loop at the moment of the switch (so no request falls between the two
        versions); returns the slow part, writing out the old version's pending log, to run on a thread.
        """
        old_log, old_score = self.log, self._scorer()
        self.model = model
        self.metrics.clear_monitoring()
        self.window = PredictionWindow(self.window.capacity, len(model.features))
        self.log = self._new_log(model)
        self._recent_outliers = np.zeros(0, dtype=bool)

        def write_out_old_log() -> None:
            if old_log is not None:
                old_log.flush(old_score)

        return write_out_old_log

    # ------------------------------------------------------------------------------ restart

    def restore(self) -> None:
        """Rebuild the feedback join from the logs, so labels for predictions made before a restart still count.

        Reads only what the join can hold: the newest prediction files up to the joiner's capacity in
        requests, the ids of every labelled request (so none is labelled twice), and the newest labels
        up to the scoring window; only the columns it needs.
        """
        if self.log is None:
            return
        predictions = read_newest(self.log.predictions, ["request_id", "row", "prediction"],
                                  self.feedback.capacity, distinct="request_id")
        labelled_ids = read_newest(self.log.feedback, ["request_id"], None)
        if not len(predictions) and not len(labelled_ids):
            return
        recent_labels = read_newest(self.log.feedback, ["ts", "request_id", "row", "label"], self.feedback.pairs.maxlen)
        if len(recent_labels) and len(predictions):
            joined = recent_labels.merge(predictions, on=["request_id", "row"], how="inner").sort_values("ts")
            pairs = list(zip(joined["prediction"].tolist(), joined["label"].tolist(), strict=True))
        else:
            pairs = []
        self.feedback.restore_pairs(pairs, total=len(labelled_ids))
        if len(predictions):
            labelled = set(labelled_ids["request_id"].unique()) if len(labelled_ids) else set()
            waiting = predictions[~predictions["request_id"].isin(labelled)]
            grouped = waiting.groupby("request_id", sort=False)["prediction"].agg(list)
            for request_id, labels in grouped.items():  # oldest first, as they were served
                self.feedback.record(str(request_id), list(labels))
        self.metrics.labelled.labels(self.model.name, self.model.version).inc(self.feedback.labelled_total)
        self.set_scores()

    # ------------------------------------------------------------------------------ periodic update

    def update(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        model, metrics = self.model, self.metrics
        rows, labels = self.window.snapshot()
        metrics.window_rows.labels(model.name, model.version).set(rows.shape[0])
        values: dict[str, float | None] = {}
        drift: dict[str, Any] = {"rows": int(rows.shape[0]), "min_samples": self.settings.min_samples}
        if model.profile is not None and rows.shape[0]:
            drift |= self._drift(rows, labels, values)
        elif model.profile is None:
            drift["note"] = "the model has no reference profile: no drift verdict"
        else:
            drift["note"] = "no predictions yet"
        logged = self._flush_log(now)
        outliers = self._outliers(rows)
        values["outlier_ratio"] = outliers.get("ratio")
        scores = self.set_scores()
        values.update(scores)
        ops = self._operations(now)
        values.update({"p99_latency_ms": ops.get("p99_latency_ms"), "error_ratio": ops.get("error_ratio")})
        self.alerting.evaluate(values, now)
        for rule in self.alerting.rules:
            metrics.alerts_firing.labels(model.name, rule.name).set(1.0 if rule.name in self.alerting.active else 0.0)
        self.status = {
            "model": model.name, "version": model.version, "updated": now, "pid": os.getpid(),
            "drift": drift, "outliers": outliers, "operations": ops,
            "feedback": {"labelled_total": self.feedback.labelled_total, **scores},
            "alerts": self.alerting.state(now), "prediction_log": logged,
        }
        if self.folder is not None:
            from mloop.pipeline.artifacts import atomic_write_text

            atomic_write_text(self.folder / "status.json", json.dumps(self.status, indent=1, default=str))
        return self.status

    def _drift(self, rows: np.ndarray, labels: np.ndarray, values: dict[str, float | None]) -> dict[str, Any]:
        from mloop.monitor.drift import DriftDetector

        model, metrics = self.model, self.metrics
        if self._detector_for is not model:
            self._detector = DriftDetector(alpha=self.settings.alpha, min_samples=self.settings.min_samples,
                                           thresholds=self.settings.thresholds).fit(model.profile)
            self._detector_for = model
        report = self._detector.score(rows, [f.name for f in model.features])
        features = {}
        for name, feature in report.features.items():
            if feature.psi is not None:
                metrics.drift_psi.labels(model.name, model.version, name).set(feature.psi)
            if feature.p_value is not None:
                metrics.drift_p_value.labels(model.name, model.version, name).set(feature.p_value)
            if feature.drifted is not None:
                metrics.drift_detected.labels(model.name, model.version, name).set(1.0 if feature.drifted else 0.0)
            features[name] = {"drifted": feature.drifted, "psi": feature.psi, "p_value": feature.p_value,
                              "reason": feature.reason}
        share = report.drifted_share
        if share is not None:
            metrics.drift_share.labels(model.name, model.version).set(share)
        values["drifted_features_share"] = share
        result: dict[str, Any] = {"share": share, "features": features}
        if share is None:
            result["note"] = f"{rows.shape[0]} rows < min_samples {self.settings.min_samples}: no verdict yet"
        counts = model.info.class_counts
        if counts:
            import pandas as pd

            spec = {"kind": "categorical", "counts": counts, "other": 0}
            predicted = self._detector.categorical("prediction", spec, pd.Series(labels.astype(str)))
            if predicted.p_value is not None:
                metrics.prediction_drift_p_value.labels(model.name, model.version).set(predicted.p_value)
                metrics.prediction_drift_detected.labels(model.name, model.version).set(1.0 if predicted.drifted else 0.0)
            shares = pd.Series(labels.astype(str)).value_counts(normalize=True)
            total = sum(counts.values())
            result["predictions"] = {
                "drifted": predicted.drifted, "p_value": predicted.p_value, "reason": predicted.reason,
                "current": {str(k): round(float(v), 4) for k, v in shares.items()},
                "training": {k: round(v / total, 4) for k, v in counts.items()}}
        return result

    def _outliers(self, rows: np.ndarray) -> dict[str, Any]:
        detector = self.model.outlier_detector
        if detector is None:
            return {"note": "the model has no outlier detector"}
        if self.log is not None:  # the logged rows were scored once, on their way to the log: reuse that
            flags = self._recent_outliers
        else:
            finite = rows[np.isfinite(rows).all(axis=1)]
            flags = self._scorer()(finite)[1] if finite.shape[0] else np.zeros(0, dtype=bool)
        if not flags.size:
            return {"ratio": None, "rows": 0}
        ratio = float(flags.mean())
        self.metrics.outlier_ratio.labels(self.model.name, self.model.version).set(ratio)
        return {"ratio": ratio, "rows": int(flags.size)}

    def set_scores(self) -> dict[str, float]:
        positive = self.model.classes[-1] if self.model.classes else None
        scores = self.feedback.scores(positive)
        for metric, value in scores.items():
            self.metrics.live_score.labels(self.model.name, self.model.version, metric).set(value)
        return scores

    def _operations(self, now: float) -> dict[str, Any]:
        """p99 latency of predictions and the server-error ratio over ``rate_window``, from the server's own counters."""
        buckets, requests, errors = self._counters()
        window_s = duration_s(self.settings.rate_window)
        self._rates.append((now, buckets, requests, errors))
        while len(self._rates) > 2 and self._rates[1][0] <= now - window_s:
            self._rates.popleft()
        then = self._rates[0] if len(self._rates) > 1 else (now, np.zeros_like(buckets), 0.0, 0.0)
        d_buckets, d_requests, d_errors = buckets - then[1], requests - then[2], errors - then[3]
        ops: dict[str, Any] = {"window_s": window_s, "requests": int(d_requests), "errors": int(d_errors),
                               "p99_latency_ms": None, "error_ratio": None}
        if d_requests > 0:
            ops["error_ratio"] = d_errors / d_requests
        p99 = histogram_quantile(0.99, self._bounds, d_buckets)
        if p99 is not None:
            ops["p99_latency_ms"] = p99 * 1000.0
        return ops

    def _counters(self) -> tuple[np.ndarray, float, float]:
        cumulative: dict[float, float] = {}
        requests = errors = 0.0
        for family in self.metrics.registry.collect():
            if family.name == "mloop_request_duration_seconds":
                for sample in family.samples:
                    if sample.name.endswith("_bucket") and sample.labels["route"] in PREDICT_ROUTES:
                        bound = float(sample.labels["le"])
                        cumulative[bound] = cumulative.get(bound, 0.0) + sample.value
            elif family.name == "mloop_requests":
                for sample in family.samples:
                    if sample.name == "mloop_requests_total" and sample.labels["route"] in SCORED_ROUTES:
                        requests += sample.value
                        if sample.labels["code"].startswith("5"):
                            errors += sample.value
        return np.asarray([cumulative.get(b, 0.0) for b in self._bounds]), requests, errors

    def _flush_log(self, now: float) -> dict[str, Any] | None:
        if self.log is None:
            return None
        elapsed = max(now - self._flushed, self.settings.interval, 1.0)
        self._flushed = now
        budget = int(self.settings.outlier_rows_per_s * elapsed)  # 0 (no limit) stays 0
        written, _ = self.log.flush(self._scorer(), budget)
        scored = 0
        if written is not None and "outlier" in written.column_names:  # flags of the last `window` scored rows
            was_scored = np.isfinite(written.column("outlier_score").to_numpy())
            flags = np.asarray(written.column("outlier").to_numpy(zero_copy_only=False)[was_scored], dtype=bool)
            self._recent_outliers = np.concatenate([self._recent_outliers, flags])[-self.settings.window:]
            scored = int(was_scored.sum())
        if now - self._rotated >= ROTATE_EVERY_S:
            self.log.rotate()
            self._rotated = now
        return {"folder": str(self.log.predictions.folder), "rows_written": 0 if written is None else written.num_rows,
                "rows_scored": scored}

    def _scorer(self) -> Any:
        """The bundled detector's per-row scorer, built once per served model."""
        if self._scorer_for is not self.model:
            from mloop.monitor.outliers import make_scorer

            self._score, self._scorer_for = make_scorer(self.model.outlier_detector), self.model
        return self._score

    def close(self) -> None:
        """Write out what is pending and deliver queued alerts (server shutdown)."""
        if self.log is not None:
            self.log.flush(self._scorer())
        self.alerting.close()


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
