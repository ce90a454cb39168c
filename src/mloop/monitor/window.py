"""``PredictionWindow``: the last N rows a server predicted, in memory (no disk write on the request path)."""

from __future__ import annotations

import threading

import numpy as np


class PredictionWindow:
    """A ring buffer of feature rows and predicted labels; ``snapshot`` returns them oldest first."""

    def __init__(self, capacity: int, n_features: int) -> None:
        self.capacity = capacity
        self.rows = np.empty((capacity, n_features), dtype=np.float64)
        self.labels = np.empty(capacity, dtype=object)
        self.size = 0
        self._next = 0
        self._lock = threading.Lock()  # appends on the event loop, snapshots from a monitor thread

    def append(self, rows: np.ndarray, labels: np.ndarray) -> None:
        n = rows.shape[0]
        if n >= self.capacity:
            rows, labels, n = rows[-self.capacity:], labels[-self.capacity:], self.capacity
        with self._lock:
            first = min(n, self.capacity - self._next)
            self.rows[self._next:self._next + first] = rows[:first]
            self.labels[self._next:self._next + first] = labels[:first]
            if first < n:
                self.rows[: n - first] = rows[first:]
                self.labels[: n - first] = labels[first:]
            self._next = (self._next + n) % self.capacity
            self.size = min(self.size + n, self.capacity)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self.size < self.capacity:
                return self.rows[: self.size].copy(), self.labels[: self.size].copy()
            order = np.r_[self._next:self.capacity, 0:self._next]
            return self.rows[order].copy(), self.labels[order].copy()

    def clear(self) -> None:
        with self._lock:
            self.size = 0
            self._next = 0
