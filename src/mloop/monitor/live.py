"""``LiveMonitor``: everything a model server knows about how its model is doing, kept off the request path.

Per request the server calls ``record`` (the prediction log and the feedback joiner: appends) and per
predict call ``on_batch`` (the in-memory window). Every ``interval`` seconds a worker thread calls
``update``: drift per feature and of the predicted classes against training, the outlier ratio, live
scores, p99 latency and error ratio over ``rate_window``; it sets the gauges on ``/metrics``,
evaluates the alert rules, writes the pending prediction log to Parquet (with each row's outlier
score) and leaves the whole picture in ``status.json`` (a ``MonitorStatus``) for ``mloop monitor status``.
On a full disk the update goes on: the log keeps what it could not write (``mloop_log_rows_waiting``),
a status that cannot be written is skipped, and each says so once on stderr.

During a roll-out (``start_rollout``) a second version, the candidate, is watched beside the served one
(``monitor.rollout.RolloutMonitor``): the requests it answered are logged with its version, labels for
them score it (not the champion), and the status carries both versions' figures since the start.
``promote`` makes it the served version (as ``swap`` would, keeping its labelled rows); ``end_rollout``
forgets it. Drift and outliers are the served version's: its window holds only the rows it answered.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mloop._fs import WriteTrouble
from mloop.config import AlertRule, MonitorSection, duration_s
from mloop.monitor.alerts import ALERT_LOG, Alerting
from mloop.monitor.feedback import FeedbackJoiner
from mloop.monitor.metrics import ALERT_METRICS, ServerMetrics, latency_percentiles_ms
from mloop.monitor.model import LiveMetric, MonitoredModel
from mloop.monitor.outliers import Scorer, model_scorer
from mloop.monitor.predlog import (
    LABEL,
    OUTLIER,
    OUTLIER_SCORE,
    PREDICTION,
    REQUEST_ID,
    ROW,
    TS,
    VERSION,
    PredictionLog,
    read_newest,
)
from mloop.monitor.status import (
    OPERATIONS_FILE,
    STATUS_FILE,
    AlertStatus,
    DriftStatus,
    FeatureDriftStatus,
    FeedbackStatus,
    MonitorStatus,
    OperationsPoint,
    OperationsStatus,
    OutlierStatus,
    PredictionDriftStatus,
    PredictionLogStatus,
    RolloutStatus,
    append_operations,
    write_status,
)
from mloop.monitor.rollout import RolloutMonitor
from mloop.monitor.window import PredictionWindow

ROTATE_EVERY_S = 60.0
UNSEEN = "\u2205 a category training never saw"

LiveMetrics = Callable[[MonitoredModel], Sequence[LiveMetric]]  # the live scores of a model, by its classes


class LiveMonitor:
    """Monitors the model a server serves.

    ``live_metrics`` gives, for a model, the scores to compute from feedback (the caller passes
    ``mloop.registry.metrics.live_metrics``: the table the promotion gate uses). ``folder`` keeps the
    prediction log, alerts and status; without one, everything stays in memory.
    """

    def __init__(self, model: MonitoredModel, metrics: ServerMetrics, settings: MonitorSection | None = None,
                 folder: Path | None = None, *, live_metrics: LiveMetrics) -> None:
        self.settings = settings or MonitorSection()
        self.folder = folder
        self.metrics = metrics
        self.model = model
        self.live_metrics = live_metrics
        self._scorers = list(live_metrics(model))
        self.window = PredictionWindow(self.settings.window, len(model.feature_names))
        self.feedback = FeedbackJoiner(version=model.version)
        self.log = self._new_log(model)
        self._log_totals: dict[str, tuple[int, int]] = {}  # per log: dropped rows, failed writes on /metrics
        self._count_log()
        self._status_trouble = WriteTrouble("the monitoring status")
        self._history_trouble = WriteTrouble("the operations history")
        self.alerting = Alerting(self._rules(model), model.name,
                                 log_path=folder / ALERT_LOG if folder is not None else None,
                                 webhooks=self.settings.webhooks,
                                 webhook_token=self.settings.webhook_token.get_secret_value())
        self._show_test_scores(model)
        self.status: MonitorStatus | None = None
        self._detector: Any = None
        self._detector_for: MonitoredModel | None = None
        self._rates: deque[tuple[float, np.ndarray, float, float]] = deque()
        self._started = time.time()
        self._rotated = self._flushed = time.time()
        self._recent_outliers = np.zeros(0, dtype=bool)
        self._score: Scorer | None = None
        self._scorer_for: MonitoredModel | None = None
        self.rollout: RolloutMonitor | None = None
        # Versions no longer watched whose last requests may still be recorded (answered a moment before a
        # swap, promotion or abort) until their log is written out: (model, its log).
        self._retired: list[tuple[MonitoredModel, PredictionLog]] = []
        self.restore()

    def _rules(self, model: MonitoredModel) -> list[AlertRule]:
        """The alert rules with numbers for thresholds, for this model; a rule relative to a test score the
        model does not have (another task's metric, or an older bundle) does not apply to it."""
        rules = []
        for rule in self.settings.alerts:
            resolved = rule.for_model(model.test_scores)
            if resolved is not None:
                rules.append(resolved)
        return rules

    def _show_test_scores(self, model: MonitoredModel) -> None:
        for metric, value in model.test_scores.items():
            self.metrics.test_score.labels(model.name, model.version, metric).set(value)

    def _new_log(self, model: MonitoredModel, previous: PredictionLog | None = None) -> PredictionLog | None:
        if self.folder is None or not self.settings.log:
            return None
        if previous is not None:  # the same files, and what waits to be written there
            return previous.successor(model.feature_names, list(model.categories))
        return PredictionLog(self.folder, model.feature_names, int(self.settings.log_max_mb * 1024 * 1024),
                             categorical=list(model.categories), max_waiting_rows=self.settings.log_waiting_rows)

    # ------------------------------------------------------------------------------ request path

    def record(self, request_id: str, model: MonitoredModel, rows: np.ndarray, labels: np.ndarray,
               text: np.ndarray | None = None) -> None:
        """One served request: its rows (categorical features as training category indexes) and, for a model
        with categorical features, their values as sent."""
        if not self.feedback.record(request_id, labels.tolist(), model.version):
            return  # the id was taken meanwhile (the dataplane refuses a known one before predicting)
        if self.log is None:
            return
        if model is self.model:
            self.log.record(request_id, model.version, rows, labels, text)
        else:  # the candidate of a canary, or a version a moment ago
            log = self._log_of(model)
            if log is not None:
                log.record(request_id, model.version, rows, labels, text)

    def _log_of(self, model: MonitoredModel) -> PredictionLog | None:
        rollout = self.rollout
        if rollout is not None and model is rollout.candidate:
            return rollout.log
        for retired, log in self._retired:
            if retired is model:
                return log
        return None

    def record_shadow(self, request_id: str, candidate: MonitoredModel, labels: np.ndarray, served_version: str,
                      served: np.ndarray) -> None:
        """A shadow candidate's answer for a request the served version answered (the shadow worker's thread):
        logged beside the served answer, and scored when the request's labels come."""
        self.feedback.record_shadow(request_id, labels.tolist(), candidate.version)
        log = self.log
        if log is not None:
            log.record_shadow(request_id, candidate.version, labels, served_version, served)

    def on_batch(self, rows: np.ndarray, labels: np.ndarray) -> None:
        if rows.shape[1] == self.window.rows.shape[1]:
            self.window.append(rows, labels)

    def add_feedback(self, request_id: str, truth: list[Any]) -> int:
        """Join true labels to a served request (raises UnknownRequest, or ValueError for a wrong count)."""
        matched, version = self.feedback.add(request_id, truth)
        if self.log is not None:
            self.log.record_feedback(request_id, truth)
        rollout = self.rollout
        if version == self.model.version or (rollout is not None and version == rollout.candidate.version):
            self.metrics.labelled.labels(self.model.name, version).inc(matched)  # (an earlier version's: not scored)
        return matched

    def swap(self, model: MonitoredModel) -> Callable[[], None]:
        """A new version is served: from now on every request is logged and compared as the new one's.

        Called on the event loop at the moment of the switch (so no request falls between the two
        versions); returns the slow part, writing out the old version's pending log, to run on a thread.
        """
        finish_rollout = self.end_rollout()  # a swap ends a roll-out in progress
        self.feedback.start_version(model.version)
        write_out_old_log = self._serve(model, self._new_log(model, self.log))

        def write_out() -> None:
            finish_rollout()
            write_out_old_log()

        return write_out

    def _serve(self, model: MonitoredModel, log: PredictionLog | None) -> Callable[[], None]:
        """Watch ``model`` as the served version from now on, logging into ``log``; returns the writing out of
        the old version's pending log (to run on a thread)."""
        old_model, old_log, old_score = self.model, self.log, self._scorer()
        self.model = model
        self._scorers = list(self.live_metrics(model))
        self.alerting.rules = self._rules(model)  # relative thresholds follow the new version's test scores
        self.metrics.clear_monitoring()
        self._show_test_scores(model)
        self.window = PredictionWindow(self.window.capacity, len(model.feature_names))
        self.log = log
        self._recent_outliers = np.zeros(0, dtype=bool)
        return self._retire(old_model, old_log, old_score)

    def _retire(self, model: MonitoredModel, log: PredictionLog | None, score: Scorer | None) -> Callable[[], None]:
        """Keep recording ``model``'s last requests into ``log`` until the returned call writes it out."""
        if log is None:
            return lambda: None
        retired = (model, log)
        self._retired.append(retired)

        def write_out() -> None:
            log.flush(score)
            if retired in self._retired:
                self._retired.remove(retired)

        return write_out

    # ------------------------------------------------------------------------------ roll-out

    def start_rollout(self, candidate: MonitoredModel, strategy: str, weight: float, *,
                      tolerance: float = 0.0) -> tuple[RolloutMonitor, Callable[[], None]]:
        """Watch ``candidate`` beside the served version (called on the event loop); a roll-out in progress
        ends. Returns the new roll-out and the writing out of the ended one's log (to run on a thread)."""
        finish = self.end_rollout()
        log = self.log.successor(candidate.feature_names, list(candidate.categories)) if self.log is not None else None
        self.feedback.start_rollout([self.model.version, candidate.version])
        self.rollout = RolloutMonitor(self.metrics, self.model, candidate, strategy, weight,
                                      scorers=self.live_metrics(candidate), log=log if strategy == "canary" else None,
                                      tolerance=tolerance)
        return self.rollout, finish

    def rollout_status(self) -> RolloutStatus | None:
        """Both versions' figures since the roll-out in progress started (None: no roll-out)."""
        rollout = self.rollout
        return rollout.status(self.feedback, self._scorers) if rollout is not None else None

    def end_rollout(self) -> Callable[[], None]:
        """Forget the candidate (an abort): the served version is the only one watched. Returns the writing out
        of the candidate's pending log (to run on a thread)."""
        rollout = self.rollout
        if rollout is None:
            return lambda: None
        self.rollout = None
        rollout.close()
        self.feedback.end_rollout()
        self.metrics.live_score.clear()  # the candidate's scores end; the served version's are set again
        self.set_scores()
        return self._retire(rollout.candidate, rollout.log, rollout.scorer())

    def promote(self) -> Callable[[], None]:
        """The candidate becomes the served version (called on the event loop), keeping its labelled rows of the
        roll-out; returns the writing out of the old version's pending log (to run on a thread)."""
        rollout = self.rollout
        if rollout is None:
            raise ValueError("no roll-out in progress")
        self.rollout = None
        rollout.close()
        candidate = rollout.candidate
        self.feedback.end_rollout(promoted=candidate.version)
        log = rollout.log or self._new_log(candidate, self.log)
        write_out = self._serve(candidate, log)
        self.set_scores()
        return write_out

    # ------------------------------------------------------------------------------ restart

    def restore(self) -> None:
        """Rebuild the window and the feedback join from the logs, so that drift and outliers have the rows the
        served version answered before a restart to judge, and labels for those predictions still count.

        Reads only what they can hold: the newest prediction files up to the window's capacity in rows and
        the joiner's in requests, the ids of every labelled request (so none is labelled twice), and the
        newest labels up to the scoring window; only the columns it needs.
        """
        if self.log is None:
            return
        self._refill_window(self.log)
        predictions = read_newest(self.log.predictions, [REQUEST_ID, ROW, VERSION, PREDICTION],
                                  self.feedback.capacity, distinct=REQUEST_ID)
        labelled_ids = read_newest(self.log.feedback, [REQUEST_ID], None)
        if not len(predictions) and not len(labelled_ids):
            return
        version = self.model.version
        ours = predictions[predictions[VERSION].astype(str) == version] if len(predictions) else predictions
        recent_labels = read_newest(self.log.feedback, [TS, REQUEST_ID, ROW, LABEL], self.feedback.pairs.maxlen)
        if len(recent_labels) and len(ours):  # the scores are the served version's: its labelled predictions
            joined = recent_labels.merge(ours, on=[REQUEST_ID, ROW], how="inner").sort_values(TS)
            pairs = list(zip(joined[PREDICTION].tolist(), joined[LABEL].tolist(), strict=True))
        else:
            pairs = []
        ids = labelled_ids[REQUEST_ID].astype(str).drop_duplicates().tolist() if len(labelled_ids) else []
        total = int(labelled_ids[REQUEST_ID].isin(set(ours[REQUEST_ID])).sum()) if len(ours) and len(ids) else 0
        self.feedback.restore_pairs(pairs, total=total, labelled_ids=ids)
        if len(predictions):
            labelled = set(labelled_ids[REQUEST_ID].unique()) if len(labelled_ids) else set()
            waiting = predictions[~predictions[REQUEST_ID].isin(labelled)]
            grouped = waiting.groupby(REQUEST_ID, sort=False).agg({PREDICTION: list, VERSION: "first"})
            for request_id, labels, served_by in zip(grouped.index, grouped[PREDICTION], grouped[VERSION],
                                                     strict=True):  # oldest first, as they were served
                self.feedback.record(str(request_id), list(labels), str(served_by))
        self.metrics.labelled.labels(self.model.name, self.model.version).inc(self.feedback.labelled_total)
        self.set_scores()

    def _refill_window(self, log: PredictionLog) -> None:
        """The served version's newest logged rows into the window, oldest first, as ``on_batch`` would have put
        them (a categorical feature's logged text as its training category index: -1 unseen, NaN missing), and
        the outlier flags of those of them that were scored."""
        names = self.model.feature_names
        ours = read_newest(log.predictions, [*names, PREDICTION], self.window.capacity, version=self.model.version)
        if not len(ours):
            return
        if self.model.outlier_detector is not None:  # the flags of the rows scored on their way to the log
            scored = read_newest(log.predictions, [OUTLIER_SCORE, OUTLIER], self.window.capacity,
                                 version=self.model.version)
            if len(scored):
                flags = scored[OUTLIER][scored[OUTLIER_SCORE].notna() & scored[OUTLIER].notna()]
                self._recent_outliers = flags.to_numpy(dtype=bool)[-self.settings.window:]
        rows = np.empty((len(ours), len(names)), dtype=np.float64)
        position = {name: j for j, name in enumerate(self.model.categories)}
        for index, name in enumerate(names):
            column = ours[name]
            if name in position:  # the text a request sent, encoded as the server encoded it
                sent = column.astype(object).where(column.notna(), None).tolist()
                rows[:, index] = self.model.encode(position[name], sent)
            else:
                rows[:, index] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        labels = np.empty(len(ours), dtype=object)
        labels[:] = ours[PREDICTION].tolist()
        self.window.append(rows, labels)

    # ------------------------------------------------------------------------------ periodic update

    def update(self, now: float | None = None) -> MonitorStatus:
        now = time.time() if now is None else now
        model, metrics = self.model, self.metrics
        rows, labels = self.window.snapshot()
        metrics.window_rows.labels(model.name, model.version).set(rows.shape[0])
        drift = DriftStatus(rows=int(rows.shape[0]), min_samples=self.settings.min_samples)
        if model.profile is not None and rows.shape[0]:
            self._drift(rows, labels, drift)
        elif model.profile is None:
            drift.note = "the model has no reference profile: no drift verdict"
        else:
            drift.note = "no predictions yet"
        logged = self._flush_log(now)
        outliers = self._outliers(rows)
        feedback = FeedbackStatus(self.feedback.labelled_total, self.set_scores(),
                                  {metric.name: metric.definition for metric in self._scorers})
        firing, pending = self.alerting.state(now)  # refreshed below, after the rules saw this status
        status = MonitorStatus(model.name, model.version, now, os.getpid(), drift, outliers, self._operations(now),
                               feedback, AlertStatus(firing, pending), logged,
                               self.rollout_status())
        self.alerting.evaluate({name: metric.value(status) for name, metric in ALERT_METRICS.items()}, now)
        for rule in self.alerting.rules:
            metrics.alerts_firing.labels(model.name, rule.name).set(1.0 if rule.name in self.alerting.active else 0.0)
        status.alerts = AlertStatus(*self.alerting.state(now))
        self.status = status
        if self.folder is not None:
            try:
                write_status(self.folder, status)
            except OSError as err:
                self._status_trouble.failed(err, self.folder / STATUS_FILE, "skipped; written again every update")
            else:
                self._status_trouble.worked(self.folder / STATUS_FILE)
            try:
                append_operations(self.folder, self._interval(now))
            except OSError as err:
                self._history_trouble.failed(err, self.folder / OPERATIONS_FILE, "this interval is not kept")
            else:
                self._history_trouble.worked(self.folder / OPERATIONS_FILE)
        return status

    def _drift(self, rows: np.ndarray, labels: np.ndarray, drift: DriftStatus) -> None:
        from mloop.monitor.drift import Categories, DriftDetector

        model, metrics = self.model, self.metrics
        if self._detector_for is not model:
            assert model.profile is not None
            self._detector = DriftDetector.from_settings(self.settings).fit(model.profile)
            self._detector_for = model
        report = self._detector.compare(self._decoded(rows), missing_tested=model.nullable_features)
        for name, feature in report.features.items():
            if feature.psi is not None:
                metrics.drift_psi.labels(model.name, model.version, name).set(feature.psi)
            if feature.p_value is not None:
                metrics.drift_p_value.labels(model.name, model.version, name).set(feature.p_value)
            if feature.drifted is not None:
                metrics.drift_detected.labels(model.name, model.version, name).set(1.0 if feature.drifted else 0.0)
            drift.features[name] = FeatureDriftStatus(feature.drifted, feature.psi, feature.p_value, feature.reason)
        drift.share = report.drifted_share
        if drift.share is not None:
            metrics.drift_share.labels(model.name, model.version).set(drift.share)
        else:
            drift.note = f"{rows.shape[0]} rows < min_samples {self.settings.min_samples}"
        counts = model.class_counts
        if not model.classes:
            self._value_drift(labels, drift)
        elif counts:
            import pandas as pd

            predicted_labels = pd.Series(labels.astype(str))
            predicted = self._detector.categorical("prediction", Categories(counts), predicted_labels)
            if predicted.p_value is not None:
                metrics.prediction_drift_p_value.labels(model.name, model.version).set(predicted.p_value)
                metrics.prediction_drift_detected.labels(model.name, model.version).set(1.0 if predicted.drifted else 0.0)
            shares = predicted_labels.value_counts(normalize=True)
            total = sum(counts.values())
            drift.predictions = PredictionDriftStatus(
                predicted.drifted, predicted.p_value, predicted.reason,
                {str(k): round(float(v), 4) for k, v in shares.items()},
                {k: round(v / total, 4) for k, v in counts.items()})

    def _value_drift(self, predicted: np.ndarray, drift: DriftStatus) -> None:
        """A regressor's predicted values against the training target's distribution (KS, as for a feature)."""
        import pandas as pd

        model, metrics = self.model, self.metrics
        reference = model.profile.features_.get(model.target) if model.profile is not None else None
        if reference is None or reference.kind != "numeric" or not len(reference.sample):
            return
        values = np.asarray(predicted, dtype=np.float64)
        found = self._detector.compare(pd.DataFrame({model.target: values}), missing_tested=()).features[model.target]
        if found.p_value is not None:
            metrics.prediction_drift_p_value.labels(model.name, model.version).set(found.p_value)
            metrics.prediction_drift_detected.labels(model.name, model.version).set(1.0 if found.drifted else 0.0)
        training = np.asarray(reference.sample, dtype=np.float64)
        drift.predictions = PredictionDriftStatus(found.drifted, found.p_value, found.reason, _summary(values),
                                                  _summary(training))

    def _decoded(self, rows: np.ndarray) -> Any:
        """The window as a DataFrame, a categorical feature's training category indexes as its categories
        (one training never saw as a value no category has)."""
        import pandas as pd

        frame = pd.DataFrame(rows, columns=self.model.feature_names)
        for name, categories in self.model.categories.items():
            codes = frame[name].to_numpy()
            lookup = np.asarray([*categories, UNSEEN], dtype=object)
            decoded = np.full(codes.shape, None, dtype=object)
            present = ~np.isnan(codes)
            decoded[present] = lookup[codes[present].astype(np.int64)]  # -1 picks UNSEEN, the last
            frame[name] = decoded
        return frame

    def _outliers(self, rows: np.ndarray) -> OutlierStatus:
        if self.model.outlier_detector is None:
            return OutlierStatus(note="the model has no outlier detector")
        if self.log is not None:  # the logged rows were scored once, on their way to the log: reuse that
            flags = self._recent_outliers
        else:
            if self.model.categories:  # the window keeps no text: the log is where such rows are scored
                return OutlierStatus(note="rows with categorical features are scored on their way to the prediction "
                                          "log, which is off")
            finite = rows[np.isfinite(rows).all(axis=1)]
            score = self._scorer()
            flags = score(finite, None)[1] if finite.shape[0] and score is not None else np.zeros(0, dtype=bool)
        if not flags.size:
            return OutlierStatus(None, 0)
        ratio = float(flags.mean())
        self.metrics.outlier_ratio.labels(self.model.name, self.model.version).set(ratio)
        return OutlierStatus(ratio, int(flags.size))

    def set_scores(self) -> dict[str, float]:
        """The live scores of the labelled window, also set on ``/metrics`` (during a roll-out, the candidate's
        too: over its labelled rows since the roll-out started)."""
        scores = self.feedback.scores(self._scorers)
        of = {scorer.name: scorer.of for scorer in self._scorers}
        for metric, value in scores.items():
            self.metrics.live_score.labels(self.model.name, self.model.version, metric, of[metric]).set(value)
        rollout = self.rollout
        if rollout is not None:
            candidate = rollout.candidate
            _, candidate_scores = self.feedback.rollout_scores(candidate.version, rollout.scorers)
            of = {scorer.name: scorer.of for scorer in rollout.scorers}
            for metric, value in candidate_scores.items():
                self.metrics.live_score.labels(candidate.name, candidate.version, metric, of[metric]).set(value)
        return scores

    def _operations(self, now: float) -> OperationsStatus:
        """Latency percentiles (p50, p90, p99) of predictions and the server-error ratio over ``rate_window``, from
        the server's own counters."""
        buckets, requests, errors = self.metrics.traffic.snapshot()
        window_s = duration_s(self.settings.rate_window)
        if not self._rates:  # the counters start at zero with the server: requests before the first update count
            self._rates.append((self._started, np.zeros_like(buckets), 0.0, 0.0))
        self._rates.append((now, buckets, requests, errors))
        while len(self._rates) > 2 and self._rates[1][0] <= now - window_s:
            self._rates.popleft()
        then = self._rates[0]
        d_buckets, d_requests, d_errors = buckets - then[1], requests - then[2], errors - then[3]
        ops = OperationsStatus(window_s, int(d_requests), int(d_errors))
        if d_requests > 0:
            ops.error_ratio = d_errors / d_requests
        ops.p50_latency_ms, ops.p90_latency_ms, ops.p99_latency_ms = latency_percentiles_ms(d_buckets)
        return ops

    def _interval(self, now: float) -> OperationsPoint:
        """Requests, errors and latency percentiles since the update before (``_operations`` ran first)."""
        (then, old_buckets, old_requests, old_errors), (_, buckets, requests, errors) = self._rates[-2], self._rates[-1]
        d_buckets = buckets - old_buckets
        return OperationsPoint(now, self.model.version, now - then, int(requests - old_requests),
                               int(errors - old_errors), *latency_percentiles_ms(d_buckets),
                               [int(count) for count in d_buckets])

    def _flush_log(self, now: float) -> PredictionLogStatus | None:
        if self.log is None:
            return None
        elapsed = max(now - self._flushed, self.settings.interval, 1.0)
        self._flushed = now
        budget = int(self.settings.outlier_rows_per_s * elapsed)  # 0 (no limit) stays 0
        rollout = self.rollout
        if rollout is not None and rollout.log is not None:  # the rows the candidate answered (their own files)
            rollout.log.flush(rollout.scorer(), budget)
        flushed = self.log.flush(self._scorer(), budget)
        taken, scored = flushed.predictions, 0
        if taken is not None and OUTLIER in taken.column_names:  # flags of the last `window` scored rows
            was_scored = np.isfinite(taken.column(OUTLIER_SCORE).to_numpy())
            flags = np.asarray(taken.column(OUTLIER).to_numpy(zero_copy_only=False)[was_scored], dtype=bool)
            self._recent_outliers = np.concatenate([self._recent_outliers, flags])[-self.settings.window:]
            scored = int(was_scored.sum())
        if now - self._rotated >= ROTATE_EVERY_S:
            self.log.rotate()
            self._rotated = now
        self._count_log()
        logs = (self.log.predictions, self.log.feedback, self.log.shadow)
        return PredictionLogStatus(str(logs[0].folder), flushed.rows_written, scored,
                                   sum(log.waiting_rows for log in logs), sum(log.dropped_rows for log in logs),
                                   "; ".join(log.error for log in logs if log.error))

    def _count_log(self) -> None:
        """Rows waiting, rows dropped and failed writes of the prediction and feedback logs, on /metrics."""
        if self.log is None:
            return
        for name, log in (("predictions", self.log.predictions), ("feedback", self.log.feedback),
                          ("shadow", self.log.shadow)):
            waiting, dropped, failures = log.waiting_rows, log.dropped_rows, log.failed_writes
            counted_dropped, counted_failures = self._log_totals.get(name, (0, 0))
            self.metrics.log_rows_waiting.labels(self.model.name, name).set(waiting)
            self.metrics.log_rows_dropped.labels(self.model.name, name).inc(dropped - counted_dropped)
            self.metrics.log_write_failures.labels(self.model.name, name).inc(failures - counted_failures)
            self._log_totals[name] = (dropped, failures)

    def _scorer(self) -> Scorer | None:
        """The bundled detector's per-row scorer, built once per served model."""
        if self._scorer_for is not self.model:
            self._score, self._scorer_for = model_scorer(self.model), self.model
        return self._score

    def close(self) -> None:
        """Write out what is pending and deliver queued alerts (server shutdown)."""
        rollout = self.rollout
        if rollout is not None and rollout.log is not None:
            rollout.log.flush(rollout.scorer())
        if self.log is not None:
            self.log.flush(self._scorer())
            for log in (self.log.predictions, self.log.feedback, self.log.shadow):
                if log.waiting_rows:  # the disk is still full: say what is lost
                    print(json.dumps({"path": str(log.folder), "error": f"{log.waiting_rows:,} rows are lost at "
                                      f"shutdown: {log.error}"}), file=sys.stderr, flush=True)
        self.alerting.close()


def _summary(values: np.ndarray) -> dict[str, float]:
    """Where a regressor's values lie: mean and quartiles."""
    if not values.size:
        return {}
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return {"mean": round(float(values.mean()), 4), "p25": round(float(q1), 4), "p50": round(float(median), 4),
            "p75": round(float(q3), 4)}
