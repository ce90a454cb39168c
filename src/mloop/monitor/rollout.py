"""A roll-out as monitoring sees it: what each version did since the roll-out started and, in shadow, how
often the candidate disagrees with the champion.

The server routes the requests (``mloop.serving.rollout``); this module counts them. Each tally has one
writer — the event loop for answered requests, the shadow worker for what a shadow candidate scored —
so its counters need no lock; readers (the admin API, the monitor thread) take them as they are. The
Prometheus series are the ``mloop_rollout_*`` set of ``ServerMetrics``; they end with the roll-out.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mloop.monitor.feedback import FeedbackJoiner
from mloop.monitor.metrics import LATENCY_BUCKETS, ServerMetrics, latency_percentiles_ms
from mloop.monitor.model import LiveMetric, MonitoredModel
from mloop.monitor.outliers import Scorer, model_scorer
from mloop.monitor.predlog import PredictionLog
from mloop.monitor.status import RolloutStatus, ShadowStatus, VersionStatus

STRATEGIES = ("canary", "shadow")


class VersionTally:
    """Requests, rows, server errors and latency of one version since the roll-out started."""

    def __init__(self, metrics: ServerMetrics, model: str, version: str, role: str) -> None:
        self.version, self.role = version, role
        self.requests = self.rows = self.errors = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket (not cumulative), +Inf last
        self._metrics = metrics
        self._labels = (model, version, role)
        self._latency = metrics.rollout_latency.labels(model, version, role)
        self._rows = metrics.rollout_rows.labels(model, version, role)
        self._codes: dict[int, Any] = {}  # status code -> its counter

    def observe(self, status: int, seconds: float, rows: int) -> None:
        """A prediction request this version answered (on the event loop)."""
        counter = self._codes.get(status)
        if counter is None:
            counter = self._codes[status] = self._metrics.rollout_requests.labels(*self._labels, str(status))
        counter.inc()
        self._latency.observe(seconds)
        if rows:
            self._rows.inc(rows)
        self.requests += 1
        self.rows += rows
        if status >= 500:
            self.errors += 1
        self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def scored(self, requests: int, rows: int, failed: int, seconds: float | None) -> None:
        """A shadow candidate's work on ``requests`` requests, ``failed`` of which it could not score, in a
        predict call of ``seconds`` (None: no call; on the shadow worker)."""
        self.requests += requests
        self.rows += rows
        self.errors += failed
        if rows:
            self._rows.inc(rows)
        if seconds is not None:
            self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def status(self, labelled: int, scores: dict[str, float]) -> VersionStatus:
        p50, _, p99 = latency_percentiles_ms(np.cumsum(np.asarray(self.latency_counts, dtype=np.float64)))
        requests = self.requests
        return VersionStatus(self.version, self.role, requests, self.rows, self.errors,
                             self.errors / requests if requests else None,
                             None if p50 is None else round(p50, 3), None if p99 is None else round(p99, 3),
                             labelled, scores)


class ShadowTally:
    """How a shadow candidate's answers compare with the champion's: a classifier disagrees on a row when
    its label differs, a regressor when the two predictions are more than ``tolerance`` apart."""

    def __init__(self, metrics: ServerMetrics, model: str, version: str, *, regression: bool,
                 tolerance: float) -> None:
        self.regression, self.tolerance = regression, tolerance
        self.compared = self.disagreed = self.failed = 0  # the shadow worker writes these
        self.dropped = 0  # the event loop writes this one
        self.abs_difference = 0.0  # summed over the compared rows (a regressor)
        self._compared = metrics.shadow_compared.labels(model, version)
        self._disagreed = metrics.shadow_disagreed.labels(model, version)
        self._failed = metrics.shadow_failed.labels(model, version)
        self._dropped = metrics.shadow_dropped.labels(model, version)
        self._ratio = metrics.shadow_disagreement.labels(model, version)
        self._difference = metrics.shadow_abs_difference.labels(model, version) if regression else None

    def compare(self, served: np.ndarray, answered: np.ndarray) -> None:
        """The champion's answers for some rows and the candidate's for the same rows."""
        if self.regression:
            difference = np.abs(np.asarray(answered, dtype=np.float64) - np.asarray(served, dtype=np.float64))
            disagreed = int(np.count_nonzero(difference > self.tolerance))
            self.abs_difference += float(difference.sum())
        else:
            if served.dtype.kind != answered.dtype.kind:  # e.g. 0/1 against "0"/"1": compared as text
                served, answered = served.astype(str), answered.astype(str)
            disagreed = int(np.count_nonzero(served != answered))
        self.compared += len(served)
        self.disagreed += disagreed
        self._compared.inc(len(served))
        if disagreed:
            self._disagreed.inc(disagreed)
        if self.compared:
            self._ratio.set(self.disagreed / self.compared)
            if self._difference is not None:
                self._difference.set(self.abs_difference / self.compared)

    def failed_rows(self, rows: int) -> None:
        self.failed += rows
        self._failed.inc(rows)

    def dropped_rows(self, rows: int) -> None:
        self.dropped += rows
        self._dropped.inc(rows)

    def status(self, queued: int) -> ShadowStatus:
        compared = self.compared
        return ShadowStatus(compared, self.disagreed, self.disagreed / compared if compared else None,
                            (self.abs_difference / compared if compared else None) if self.regression else None,
                            self.tolerance if self.regression else None, self.failed, self.dropped, queued)


class RolloutMonitor:
    """A roll-out in progress: the tallies of both versions, the candidate's prediction log (canary: the
    requests it answered) and, in shadow, the comparison."""

    def __init__(self, metrics: ServerMetrics, champion: MonitoredModel, candidate: MonitoredModel, strategy: str,
                 weight: float, *, scorers: Sequence[LiveMetric], log: PredictionLog | None,
                 tolerance: float = 0.0) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown roll-out strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        self.metrics = metrics
        self.champion, self.candidate = champion, candidate
        self.strategy = strategy
        self.started_at = time.time()
        self.scorers = list(scorers)  # the candidate's live metrics (its classes)
        self.log = log
        self.champion_tally = VersionTally(metrics, champion.name, champion.version, "champion")
        self.candidate_tally = VersionTally(metrics, candidate.name, candidate.version, "candidate")
        self.shadow = (ShadowTally(metrics, candidate.name, candidate.version, regression=not candidate.classes,
                                   tolerance=tolerance) if strategy == "shadow" else None)
        self.queued_rows: Callable[[], int] = lambda: 0  # the shadow worker's backlog (set by the server)
        self._score: Scorer | None = None
        self._scorer_built = False
        self.weight = 0.0
        self.set_weight(weight)

    def set_weight(self, weight: float) -> None:
        self.weight = weight
        self.metrics.rollout_weight.labels(self.champion.name, self.strategy, self.champion.version,
                                           self.candidate.version).set(weight)

    def observe(self, model: object, status: int, seconds: float, rows: int) -> None:
        """A prediction request answered during the roll-out, by ``model``."""
        if model is self.candidate:
            self.candidate_tally.observe(status, seconds, rows)
        elif model is self.champion:
            self.champion_tally.observe(status, seconds, rows)

    def scorer(self) -> Scorer | None:
        """The candidate's outlier scorer (for the rows it answered, on their way to the log)."""
        if not self._scorer_built:
            self._score = model_scorer(self.candidate)
            self._scorer_built = True
        return self._score

    def status(self, feedback: FeedbackJoiner, champion_scorers: Sequence[LiveMetric]) -> RolloutStatus:
        champion = self.champion_tally.status(*feedback.rollout_scores(self.champion.version, champion_scorers))
        candidate = self.candidate_tally.status(*feedback.rollout_scores(self.candidate.version, self.scorers))
        shadow = self.shadow.status(self.queued_rows()) if self.shadow is not None else None
        return RolloutStatus(self.strategy, self.weight, self.started_at, champion, candidate, shadow)

    def close(self) -> None:
        """The roll-out ended: its series end."""
        self.metrics.clear_rollout()
