"""A roll-out in the server: a candidate version beside the served one (the champion).

``canary``: each request is answered by the candidate with probability ``weight`` (drawn per request),
else by the champion; a request that names a version (``/v2/models/M/versions/V/infer``) is answered by
that one. Each version has its own micro-batcher, so a batch only ever holds rows of one version.

``shadow``: the champion answers every request; the candidate scores the same rows off the request path.
The event loop only appends the answered request to a bounded queue (``ShadowScorer.offer``); a worker
thread takes what accumulated every ``POLL_S``, scores it with the candidate in one predict call, and
compares, logs and counts the answers. When the candidate falls behind (more than ``max_rows`` rows
waiting) new requests are not queued, and their rows are counted as dropped.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mloop.bundle.loaded import LoadedModel, Rows
from mloop.monitor.rollout import RolloutMonitor
from mloop.serving import protocol
from mloop.serving.microbatch import Batcher

POLL_S = 0.02  # the shadow worker looks for requests this often
SHADOW_BATCH_ROWS = 4096  # rows scored in one predict call at most
SHADOW_QUEUE_ROWS = 20_000  # rows waiting at most; beyond, requests are not shadow-scored (counted as dropped)


def same_schema(a: LoadedModel, b: LoadedModel) -> bool:
    """Whether rows parsed for ``a`` mean the same to ``b``: the same features, types and categories in order."""
    return [(f.name, f.type, f.categories) for f in a.features] == [(f.name, f.type, f.categories) for f in b.features]


@dataclass
class Offered:
    """A request the champion answered, waiting for the shadow candidate: its rows (parsed for the champion,
    when they mean the same to the candidate) or its body to parse again."""

    request_id: str
    served: np.ndarray  # the champion's answers
    rows: Rows | None
    body: bytes = b""
    v2: bool = False
    header_length: int | None = None


class ShadowScorer:
    """Scores the candidate on the requests the champion answered, on a worker thread."""

    def __init__(self, champion: LoadedModel, candidate: LoadedModel, watch: RolloutMonitor,
                 record: Callable[[str, LoadedModel, np.ndarray, str, np.ndarray], None], *,
                 max_rows: int = SHADOW_QUEUE_ROWS, batch_rows: int = SHADOW_BATCH_ROWS) -> None:
        assert watch.shadow is not None
        self.champion, self.candidate = champion, candidate
        self.watch, self.tally = watch, watch.shadow
        self.record = record  # (request id, candidate, its labels, served version, served labels)
        self.max_rows, self.batch_rows = max_rows, batch_rows
        self.reuse_rows = same_schema(champion, candidate)
        self._queue: deque[Offered] = deque()
        self._queued = 0  # rows ever queued (written by the event loop only)
        self._taken = 0  # rows ever taken off the queue (written by the worker only)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mloop-shadow-{candidate.version}", daemon=True)
        watch.queued_rows = self.backlog

    def start(self) -> None:
        self._thread.start()

    def backlog(self) -> int:
        return self._queued - self._taken

    def offer(self, request_id: str, rows: Rows, served: np.ndarray, body: bytes, *, v2: bool,
              header_length: int | None = None) -> None:
        """A request the champion answered (on the event loop: an append, or a count when the queue is full)."""
        count = len(served)
        if self._queued - self._taken + count > self.max_rows:
            self.tally.dropped_rows(count)
            return
        self._queued += count
        if self.reuse_rows:
            self._queue.append(Offered(request_id, served, rows))
        else:
            self._queue.append(Offered(request_id, served, None, body, v2, header_length))

    def stop(self) -> None:
        """Ask the worker to stop (what waits is not scored); ``join`` waits for it."""
        self._stop.set()

    def join(self, timeout: float = 30.0) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------------------ the worker

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            while self._queue and not self._stop.is_set():
                self._score(self._take())

    def _take(self) -> list[Offered]:
        taken: list[Offered] = []
        rows = 0
        while self._queue and rows < self.batch_rows:
            item = self._queue.popleft()
            taken.append(item)
            rows += len(item.served)
        self._taken += rows
        return taken

    def _score(self, items: list[Offered]) -> None:
        parsed: list[tuple[Offered, Rows]] = []
        failed = 0
        for item in items:
            rows = item.rows if item.rows is not None else self._parse(item)
            if rows is None or len(rows) != len(item.served):
                failed += 1
                self.tally.failed_rows(len(item.served))
            else:
                parsed.append((item, rows))
        if not parsed:
            self.watch.candidate_tally.scored(failed, 0, failed, None)
            return
        started = time.perf_counter()
        answers = self._predict(parsed)
        took = time.perf_counter() - started
        scored_rows = 0
        for (item, _), labels in zip(parsed, answers, strict=True):
            if labels is None:
                failed += 1
                self.tally.failed_rows(len(item.served))
                continue
            scored_rows += len(labels)
            self.tally.compare(item.served, labels)
            self.record(item.request_id, self.candidate, labels, self.champion.version, item.served)
        self.watch.candidate_tally.scored(len(items), scored_rows, failed, took)

    def _parse(self, item: Offered) -> Rows | None:
        """The request's rows as the candidate reads them (its schema differs from the champion's)."""
        try:
            if item.v2:
                return protocol.parse_v2(item.body, self.candidate, item.header_length).rows
            return protocol.parse_plain(item.body, self.candidate)
        except protocol.RequestError:
            return None

    def _predict(self, parsed: list[tuple[Offered, Rows]]) -> list[np.ndarray | None]:
        """The candidate's labels per request: one predict call for all, or one per request if that fails (so
        a request it cannot score fails alone)."""
        try:
            labels, _ = self.candidate.predict(Rows.concat([rows for _, rows in parsed]))
        except Exception:  # noqa: BLE001 (any failure of the candidate's model: retried request by request)
            return [self._predict_one(rows) for _, rows in parsed]
        answers: list[np.ndarray | None] = []
        start = 0
        for _, rows in parsed:
            answers.append(labels[start:start + len(rows)])
            start += len(rows)
        return answers

    def _predict_one(self, rows: Rows) -> np.ndarray | None:
        try:
            return self.candidate.predict(rows)[0]
        except Exception:  # noqa: BLE001 (the candidate cannot score this request: counted as failed)
            return None


class Rollout:
    """The candidate beside the champion, how requests are shared, and the watch over both."""

    def __init__(self, champion: LoadedModel, candidate: LoadedModel, watch: RolloutMonitor, *,
                 batcher: Batcher | None = None, shadow: ShadowScorer | None = None) -> None:
        self.champion, self.candidate = champion, candidate
        self.watch = watch
        self.strategy = watch.strategy
        self.batcher = batcher  # canary: the candidate's own micro-batcher
        self.shadow = shadow
        self.weight = watch.weight

    @property
    def started_at(self) -> float:
        return self.watch.started_at

    def set_weight(self, weight: float) -> None:
        self.weight = weight
        self.watch.set_weight(weight)

    def pick(self, version: str | None) -> LoadedModel:
        """The version that answers a request (``version``: the one the request names, checked already)."""
        if self.batcher is None:  # shadow: the champion answers everything
            return self.champion
        if version is None:
            return self.candidate if random.random() < self.weight else self.champion
        return self.candidate if version == self.candidate.version else self.champion

    def serves(self, version: str) -> bool:
        """Whether a request may name ``version``: the candidate answers requests in a canary only."""
        return self.batcher is not None and version == self.candidate.version

    def observe(self, model: Any, status: int, seconds: float, rows: int) -> None:
        self.watch.observe(model, status, seconds, rows)

    def stop(self) -> None:
        """Predict what waits in the candidate's batch now, and stop shadow scoring (on the event loop)."""
        if self.batcher is not None:
            self.batcher.flush_now()
        if self.shadow is not None:
            self.shadow.stop()

    def join(self) -> None:
        """Wait for the shadow worker to stop (off the event loop)."""
        if self.shadow is not None:
            self.shadow.join()
