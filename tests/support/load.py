"""A load generator for a real server: keep-alive clients on threads, every answer counted."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from itertools import cycle


class Load:
    """``clients`` threads, each on its own keep-alive connection, POSTing ``bodies`` (in turn) to ``path`` until
    stopped. Each answer is counted by outcome (status, or the transport error) and, per ``phase`` (what the
    test set it to when the request was *sent*), by the version in its ``x-model-version`` header; ``answered``
    counts the 200 answers per body (its index in ``bodies``)."""

    def __init__(self, url: str, bodies: list[bytes], *, clients: int = 16, path: str = "/predict") -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.path = host, int(port), path
        self.bodies = bodies
        self.phase = "start"
        self.stop = threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.versions: Counter[tuple[str, str]] = Counter()  # (phase, version) -> answers
        self.answered: Counter[int] = Counter()  # body index -> 200 answers
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def _client(self, index: int) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        start = index % len(self.bodies)
        bodies = cycle([*range(start, len(self.bodies)), *range(start)])
        deadline = time.time() + 120  # bounded, whatever happens
        while not self.stop.is_set() and time.time() < deadline:
            phase, body = self.phase, next(bodies)
            try:
                conn.request("POST", self.path, self.bodies[body], {"content-type": "application/json"})
                response = conn.getresponse()
                response.read()
                outcome, version = str(response.status), response.getheader("x-model-version", "-")
            except (OSError, http.client.HTTPException) as err:
                outcome, version = f"error:{type(err).__name__}", "-"
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            with self.lock:
                self.outcomes[outcome] += 1
                self.versions[(phase, version)] += 1
                if outcome == "200":
                    self.answered[body] += 1
        conn.close()

    def answers(self, phase: str) -> Counter[str]:
        """Answers to the requests sent in ``phase``, by version."""
        with self.lock:
            return Counter({version: n for (p, version), n in self.versions.items() if p == phase})

    def wait_for(self, phase: str, answers: int, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while sum(self.answers(phase).values()) < answers:
            assert time.time() < deadline, f"only {self.answers(phase)} answers in phase {phase!r} after {timeout} s"
            time.sleep(0.05)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
