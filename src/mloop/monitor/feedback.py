"""Ground truth for served predictions: joined by request id, scored over the last labelled rows.

The server remembers the labels it predicted for the last ``capacity`` requests (by the id it echoes in
``x-request-id``, or a V2 request's own ``id``) and which version predicted them; feedback with the true
labels for such a request is joined to them, and the live scores (as the caller defines them:
``mloop.registry.metrics``, the table the promotion gate uses) are computed over the last ``window``
labelled rows of the version served now (model drift, live).
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
            return len(truth), version

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
            if not self.pairs:
                return {}
            predicted, truth = (np.asarray(side) for side in zip(*self.pairs, strict=True))
        found = {metric.name: metric.fn(truth, predicted) for metric in metrics}
        return {name: value for name, value in found.items() if not math.isnan(value)}
