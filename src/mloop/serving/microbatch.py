"""Adaptive batching: requests that arrive together share one predict call, a lone one is not delayed.

A request's rows join the open batch; the first request of a batch schedules the flush for the next
turn of the event loop (``call_soon``), so every request parsed in the same turn rides along and a
request alone is predicted at once. A batch that reaches ``max_rows`` is flushed immediately;
``max_wait_s`` > 0 holds a batch open a little longer to gather more under heavy load. A batch holds
rows for one predict function (one model version); a request for another one flushes it first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

Predict = Callable[[Any], tuple[np.ndarray, "np.ndarray | None"]]


def _concatenate(parts: list[Any]) -> Any:
    return np.concatenate(parts)


class Batcher:
    """Batches rows (a numpy array, or any value with ``len`` that ``concat`` joins: the server's ``Rows``)."""

    def __init__(self, *, max_rows: int, max_wait_s: float = 0.0,
                 on_batch: Callable[[Any, np.ndarray], None] | None = None,
                 concat: Callable[[list[Any]], Any] = _concatenate) -> None:
        self.predict: Predict | None = None
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch or (lambda rows, labels: None)
        self.concat = concat
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._rows = 0
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None

    def flush_now(self) -> None:
        """Predict the open batch at once (before a model swap)."""
        self._flush()

    async def submit(self, rows: Any, predict: Predict) -> tuple[np.ndarray, np.ndarray | None]:
        loop = asyncio.get_running_loop()
        if self._pending and predict != self.predict:  # bound methods are new objects each time: compare by ==
            self._flush()
        self.predict = predict
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((rows, future))
        self._rows += len(rows)
        if self._rows >= self.max_rows:
            self._flush()
        elif self._scheduled is None:
            self._scheduled = (loop.call_later(self.max_wait_s, self._flush) if self.max_wait_s > 0
                               else loop.call_soon(self._flush))
        result: tuple[np.ndarray, np.ndarray | None] = await future
        return result

    def _flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        batch, self._pending, self._rows = self._pending, [], 0
        if not batch:
            return
        rows = batch[0][0] if len(batch) == 1 else self.concat([r for r, _ in batch])
        assert self.predict is not None
        try:
            labels, proba = self.predict(rows)
        except Exception as err:  # a model failure fails every request of the batch, not the server
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        self.on_batch(rows, labels)
        start = 0
        for part, future in batch:
            end = start + len(part)
            if not future.done():
                future.set_result((labels[start:end], None if proba is None else proba[start:end]))
            start = end
