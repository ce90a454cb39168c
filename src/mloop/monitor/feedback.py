"""Ground truth for served predictions: joined by request id, scored over the last labelled rows.

The server remembers the labels it predicted for the last ``capacity`` requests (by the id it echoes in
``x-request-id``); feedback with the true labels for such a request is joined to them, and accuracy,
precision and recall (as the caller defines them: ``mloop.registry.metrics``, the table the promotion
gate uses) are computed over the last ``window`` labelled rows (model drift, live).
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
    def __init__(self, capacity: int = 100_000, window: int = 10_000) -> None:
        self.capacity = capacity
        self.predicted: OrderedDict[str, list[Any]] = OrderedDict()
        self.labelled: OrderedDict[str, None] = OrderedDict()  # ids labelled already (the last ``capacity``)
        self.pairs: deque[tuple[Any, Any]] = deque(maxlen=window)
        self.labelled_total = 0
        self._lock = threading.Lock()

    def record(self, request_id: str, labels: list[Any]) -> None:
        """Remember what was predicted for a request (called once per request; O(1))."""
        with self._lock:
            self.predicted[request_id] = labels
            if len(self.predicted) > self.capacity:
                self.predicted.popitem(last=False)

    def add(self, request_id: str, truth: list[Any]) -> int:
        """Join the true labels of one request; returns how many rows were labelled."""
        with self._lock:
            predicted = self.predicted.pop(request_id, None)
            if predicted is None:
                raise AlreadyLabelled(request_id) if request_id in self.labelled else UnknownRequest(request_id)
            if len(truth) != len(predicted):
                self.predicted[request_id] = predicted  # keep it: the client can send the right number
                raise ValueError(f"request {request_id} had {len(predicted)} rows; {len(truth)} labels were sent")
            self._remember_labelled(request_id)
            self.pairs.extend(zip(predicted, truth, strict=True))
            self.labelled_total += len(truth)
            return len(truth)

    def _remember_labelled(self, request_id: str) -> None:
        self.labelled[request_id] = None
        if len(self.labelled) > self.capacity:
            self.labelled.popitem(last=False)

    def restore_pairs(self, pairs: list[tuple[Any, Any]], total: int, labelled_ids: Sequence[str] = ()) -> None:
        """Labelled (predicted, true) pairs from before a restart, oldest first, how many there were in all,
        and the ids that were labelled (oldest first)."""
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
