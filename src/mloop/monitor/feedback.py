"""Ground truth for served predictions: joined by request id, scored over the last labelled rows.

The server remembers the labels it predicted for the last ``capacity`` requests (by the id it echoes in
``x-request-id``, or a V2 request's own ``id``) and which version predicted them; feedback with the true
labels for such a request is joined to them, and the live scores (as the caller defines them:
``mloop.registry.metrics``, the table the promotion gate uses) are computed over the last ``window``
labelled rows of the version served now (model drift, live).

During a roll-out (``start_rollout``) the labelled rows of the champion and of the candidate are also
kept apart since it started, so both are scored over the same period: a request the candidate answered
(canary) scores the candidate, and so does, in shadow, its answer for a request the champion answered.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from mloop.monitor.model import LiveMetric


class UnknownRequest(KeyError):
    """The request id was never served, or is older than the remembered ones."""


class AlreadyLabelled(KeyError):
    """The request was labelled before: labels are final (the first ones count, once)."""


class Labelled:
    """One version's labelled (predicted, true) pairs since a roll-out started: the last ``window``, and how many."""

    def __init__(self, window: int) -> None:
        self.pairs: deque[tuple[Any, Any]] = deque(maxlen=window)
        self.total = 0

    def add(self, predicted: Sequence[Any], truth: Sequence[Any]) -> None:
        self.pairs.extend(zip(predicted, truth, strict=True))
        self.total += len(truth)


class FeedbackJoiner:
    """Joins true labels to remembered predictions. Scores are per served version: labels for a request
    that an earlier version answered are accepted (they belong in the log) but do not count towards the
    live scores of the version served now (``start_version`` after a swap)."""

    def __init__(self, capacity: int = 100_000, window: int = 10_000, version: str = "") -> None:
        self.capacity = capacity
        self.version = version  # the version whose labelled predictions are scored
        self.predicted: OrderedDict[str, tuple[str, list[Any]]] = OrderedDict()  # id -> (version, labels)
        self.labelled: OrderedDict[str, None] = OrderedDict()  # ids labelled already (the last ``capacity``)
        self.pairs: deque[tuple[Any, Any]] = deque(maxlen=window)
        self.labelled_total = 0  # labelled rows of this version
        self.since_rollout: dict[str, Labelled] = {}  # per version of a roll-out in progress
        self.shadow: OrderedDict[str, tuple[str, list[Any]]] = OrderedDict()  # id -> a shadow candidate's answer
        self._lock = threading.Lock()

    def record(self, request_id: str, labels: list[Any], version: str | None = None) -> bool:
        """Remember what was predicted for a request, and by which version (O(1)). An id that names a
        remembered or labelled request already is not taken again (False): a client's ``x-request-id``
        never replaces another request's record."""
        with self._lock:
            if request_id in self.predicted or request_id in self.labelled:
                return False
            self.predicted[request_id] = (self.version if version is None else version, labels)
            if len(self.predicted) > self.capacity:
                self.predicted.popitem(last=False)
            return True

    def knows(self, request_id: str) -> bool:
        """Whether ``request_id`` names a remembered or labelled request."""
        return request_id in self.predicted or request_id in self.labelled

    def check(self, request_id: str, count: int) -> None:
        """Raise what ``add`` would raise for these labels, without adding them."""
        with self._lock:
            found = self.predicted.get(request_id)
            if found is None:
                raise AlreadyLabelled(request_id) if request_id in self.labelled else UnknownRequest(request_id)
            if count != len(found[1]):
                raise ValueError(f"request {request_id} had {len(found[1])} rows; {count} labels were sent")

    def add(self, request_id: str, truth: list[Any]) -> tuple[int, str]:
        """Join the true labels of one request; returns how many rows were labelled, and the version that
        predicted them."""
        with self._lock:
            found = self.predicted.pop(request_id, None)
            if found is None:
                raise AlreadyLabelled(request_id) if request_id in self.labelled else UnknownRequest(request_id)
            version, predicted = found
            if len(truth) != len(predicted):
                self.predicted[request_id] = found  # keep it: the client can send the right number
                raise ValueError(f"request {request_id} had {len(predicted)} rows; {len(truth)} labels were sent")
            self._remember_labelled(request_id)
            if version == self.version:
                self.pairs.extend(zip(predicted, truth, strict=True))
                self.labelled_total += len(truth)
            if self.since_rollout:
                tally = self.since_rollout.get(version)
                if tally is not None:
                    tally.add(predicted, truth)
                shadow = self.shadow.pop(request_id, None)
                if shadow is not None and shadow[0] in self.since_rollout and len(shadow[1]) == len(truth):
                    self.since_rollout[shadow[0]].add(shadow[1], truth)
            return len(truth), version

    def start_rollout(self, versions: Sequence[str]) -> None:
        """A roll-out starts: the labelled rows of ``versions`` are kept apart from now on."""
        with self._lock:
            self.since_rollout = {version: Labelled(self.pairs.maxlen or 10_000) for version in versions}
            self.shadow.clear()

    def end_rollout(self, promoted: str | None = None) -> None:
        """The roll-out ends; with ``promoted``, that version is served now and its labelled rows of the
        roll-out are its live scores' start (the labels already given for it still count)."""
        with self._lock:
            if promoted is not None:
                tally = self.since_rollout.get(promoted)
                self.version = promoted
                self.pairs.clear()
                self.labelled_total = 0
                if tally is not None:
                    self.pairs.extend(tally.pairs)
                    self.labelled_total = tally.total
            self.since_rollout = {}
            self.shadow.clear()

    def record_shadow(self, request_id: str, labels: list[Any], version: str) -> None:
        """What a shadow candidate answered for a request the champion answered (its labels score it too)."""
        with self._lock:
            if version not in self.since_rollout or request_id in self.labelled:
                return
            self.shadow[request_id] = (version, labels)
            if len(self.shadow) > self.capacity:
                self.shadow.popitem(last=False)

    def rollout_scores(self, version: str, metrics: Sequence[LiveMetric]) -> tuple[int, dict[str, float]]:
        """How many rows of ``version`` were labelled since the roll-out started, and their scores."""
        with self._lock:
            tally = self.since_rollout.get(version)
            if tally is None:
                return 0, {}
            total, pairs = tally.total, list(tally.pairs)
        return total, _scores(pairs, metrics)

    def start_version(self, version: str) -> None:
        """A new version is served: its scores start from nothing (remembered predictions stay labellable)."""
        with self._lock:
            self.version = version
            self.pairs.clear()
            self.labelled_total = 0

    def _remember_labelled(self, request_id: str) -> None:
        self.labelled[request_id] = None
        if len(self.labelled) > self.capacity:
            self.labelled.popitem(last=False)

    def restore_pairs(self, pairs: list[tuple[Any, Any]], total: int, labelled_ids: Sequence[str] = ()) -> None:
        """Labelled (predicted, true) pairs of this version from before a restart, oldest first, how many
        there were in all, and the ids that were labelled (any version, oldest first)."""
        with self._lock:
            self.pairs.extend(pairs)
            self.labelled_total += total
            for request_id in labelled_ids:
                self._remember_labelled(request_id)

    def scores(self, metrics: Sequence[LiveMetric]) -> dict[str, float]:
        """Each metric over the labelled window; undefined ones (NaN) are left out."""
        with self._lock:
            pairs = list(self.pairs)
        return _scores(pairs, metrics)


def _scores(pairs: list[tuple[Any, Any]], metrics: Sequence[LiveMetric]) -> dict[str, float]:
    if not pairs:
        return {}
    predicted, truth = (np.asarray(side) for side in zip(*pairs, strict=True))
    found = {metric.name: metric.fn(truth, predicted) for metric in metrics}
    return {name: value for name, value in found.items() if not math.isnan(value)}
