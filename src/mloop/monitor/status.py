"""``MonitorStatus``: the whole monitoring picture of a served model, as ``status.json`` holds it.

The live monitor writes it after every update (``write_status``); ``mloop monitor status``, the UI
and the automation agent read it back with ``read_status``, typed. Nothing else reads the file.

Beside it, ``operations.jsonl`` keeps the history status.json does not: one ``OperationsPoint`` per update
(requests, errors and latency percentiles of that interval), so latency can be drawn over time.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop._fs import atomic_write_bytes
from mloop.errors import DataError, listed

if TYPE_CHECKING:
    from pydantic import TypeAdapter

STATUS_FILE = "status.json"
OPERATIONS_FILE = "operations.jsonl"
OPERATIONS_MAX_BYTES = 4_000_000  # then it becomes operations.jsonl.1: ~1.7 days each at a 10 s interval


@dataclass
class FeatureDriftStatus:
    drifted: bool | None
    psi: float | None
    p_value: float | None
    reason: str


@dataclass
class PredictionDriftStatus:
    """Predicted classes in the window against the training labels (a regressor: its predicted values
    against the training target, KS; ``current`` and ``training`` then hold their mean and quartiles)."""

    drifted: bool | None
    p_value: float | None
    reason: str
    current: dict[str, float] = field(default_factory=dict)  # share per class, now
    training: dict[str, float] = field(default_factory=dict)  # share per class in training


@dataclass
class DriftStatus:
    rows: int
    min_samples: int
    share: float | None = None  # of the evaluated features that drifted; None: no verdict yet
    features: dict[str, FeatureDriftStatus] = field(default_factory=dict)
    predictions: PredictionDriftStatus | None = None
    note: str = ""  # why there is no verdict

    @property
    def drifted(self) -> list[str]:
        """The drifted features, most significant first."""
        found = [name for name, f in self.features.items() if f.drifted]
        return sorted(found, key=lambda name: self.features[name].p_value or 0.0)

    def headline(self) -> str:
        """One line: how many of the features with a verdict drifted, which, and those without one."""
        judged = [name for name, f in self.features.items() if f.drifted is not None]
        unjudged = [name for name, f in self.features.items() if f.drifted is None]
        share = "" if self.share is None else f" ({self.share:.0%})"
        line = (f"{len(self.drifted)} of {len(judged)} features drifted{share} in the last {self.rows} rows"
                + (f": {', '.join(self.drifted[:8])}" if self.drifted else ""))
        if unjudged:
            line += (f"; no verdict for {listed(unjudged, 8)} "
                     f"({self.features[unjudged[0]].reason.removesuffix(': no verdict') or 'too few values'})")
        return line


@dataclass
class OutlierStatus:
    ratio: float | None = None
    rows: int = 0
    note: str = ""


@dataclass
class OperationsStatus:
    """Requests over the last ``window_s`` seconds, from the server's own counters."""

    window_s: float
    requests: int = 0
    errors: int = 0
    p99_latency_ms: float | None = None
    error_ratio: float | None = None
    p50_latency_ms: float | None = None  # as p99: from the latency histogram's buckets
    p90_latency_ms: float | None = None


@dataclass
class OperationsPoint:
    """One monitoring interval (``seconds`` up to ``time``) of one server: what ``OperationsStatus`` says for its
    window, for that interval alone. A line of ``operations.jsonl``."""

    time: float
    version: str
    seconds: float
    requests: int
    errors: int
    p50_latency_ms: float | None = None
    p90_latency_ms: float | None = None
    p99_latency_ms: float | None = None
    latency_buckets: list[int] = field(default_factory=list)  # cumulative counts at metrics.LATENCY_BUCKETS, +Inf


@dataclass
class FeedbackStatus:
    """Live scores over the last labelled predictions; ``definitions`` says how each is computed."""

    labelled_total: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=dict)


@dataclass
class AlertStatus:
    firing: list[str] = field(default_factory=list)
    pending: dict[str, float] = field(default_factory=dict)  # rule name -> seconds its condition has held


@dataclass
class PredictionLogStatus:
    """The prediction log at this update: rows written and scored, and (on a full disk) what waits."""

    folder: str
    rows_written: int = 0
    rows_scored: int = 0
    rows_waiting: int = 0  # predictions and feedback kept in memory: their write failed; retried every update
    rows_dropped: int = 0  # since the server started: the oldest waiting rows, beyond [monitor] log_waiting_rows
    error: str = ""  # why writing the log fails now ("" while it works)


@dataclass
class VersionStatus:
    """What one version did since its roll-out started. A shadow candidate answers no request: its
    ``requests`` and ``rows`` are those it scored, ``server_errors`` the requests it failed to score, and
    its latency that of its predict calls on the shadow worker (one per batch)."""

    version: str
    role: str  # champion or candidate
    requests: int = 0
    rows: int = 0
    server_errors: int = 0  # answered 5xx
    error_ratio: float | None = None  # server_errors / requests
    p50_latency_ms: float | None = None  # from the latency histogram's buckets, as Prometheus interpolates
    p99_latency_ms: float | None = None
    labelled: int = 0  # its rows labelled by feedback since the roll-out started
    scores: dict[str, float] = field(default_factory=dict)  # live scores of those rows (the registry's metrics)


@dataclass
class ShadowStatus:
    """How a shadow candidate's answers compare with the champion's, since the roll-out started.

    A classifier disagrees on a row when its label differs; a regressor when the two predictions are
    more than ``tolerance`` apart (``mean_abs_difference`` is over every compared row).
    """

    compared_rows: int = 0
    disagreed_rows: int = 0
    disagreement_rate: float | None = None  # disagreed_rows / compared_rows
    mean_abs_difference: float | None = None  # a regressor only
    tolerance: float | None = None  # a regressor only
    failed_rows: int = 0  # the candidate could not score them (its predict failed, or its schema refused them)
    dropped_rows: int = 0  # never scored: the candidate fell behind and its queue was full
    queued_rows: int = 0  # waiting to be scored now


@dataclass
class RolloutStatus:
    """A roll-out in progress: the candidate beside the champion (``canary``: it answers ``weight`` of the
    requests; ``shadow``: it scores every request, answers none)."""

    strategy: str
    weight: float
    started_at: float
    champion: VersionStatus
    candidate: VersionStatus
    shadow: ShadowStatus | None = None


@dataclass
class MonitorStatus:
    model: str
    version: str
    updated: float
    pid: int
    drift: DriftStatus
    outliers: OutlierStatus
    operations: OperationsStatus
    feedback: FeedbackStatus
    alerts: AlertStatus
    prediction_log: PredictionLogStatus | None = None
    rollout: RolloutStatus | None = None


def parse_rollout(state: dict[str, Any]) -> RolloutStatus | None:
    """A server's roll-out answer (``GET /admin/rollout``, ``deploy.local.rollout_state``) typed, or None when no
    roll-out is in progress. DataError if the answer is not one."""
    from pydantic import TypeAdapter, ValidationError

    if not state.get("active"):
        return None
    try:
        return TypeAdapter(RolloutStatus).validate_python(
            {key: state.get(key) for key in ("strategy", "weight", "started_at", "champion", "candidate", "shadow")})
    except ValidationError as err:
        raise DataError(f"the server's roll-out state is not one this mloop can read: {err.errors()[0]['msg']}",
                        hint="is the server the same mloop version? see GET /admin/rollout") from err


@functools.cache
def _adapter() -> TypeAdapter[MonitorStatus]:
    from pydantic import TypeAdapter

    return TypeAdapter(MonitorStatus)


def write_status(folder: Path, status: MonitorStatus) -> None:
    """Replace ``folder/status.json`` atomically."""
    atomic_write_bytes(folder / STATUS_FILE, _adapter().dump_json(status, indent=1))


def read_status(folder: Path) -> MonitorStatus | None:
    """The last status written to ``folder``, or None if there is none yet.

    Raises DataError if the file is unreadable (written by another mloop version, or damaged).
    """
    from pydantic import ValidationError

    path = folder / STATUS_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        status: MonitorStatus = _adapter().validate_json(raw)
    except ValidationError as err:
        raise DataError(f"{path} is not a status this mloop can read: {err.errors()[0]['msg']}",
                        hint="restart the model server (it rewrites the file every monitoring interval)") from err
    return status


def append_operations(folder: Path, point: OperationsPoint) -> None:
    """Add ``point`` to ``folder/operations.jsonl`` as one synced line (``_fs.append_synced``: a line cut by a
    crash is not joined to this one); past ``OPERATIONS_MAX_BYTES`` the file becomes ``operations.jsonl.1``."""
    import json
    from dataclasses import asdict

    from mloop._fs import append_synced, rotate

    path = folder / OPERATIONS_FILE
    try:
        if path.stat().st_size > OPERATIONS_MAX_BYTES:
            rotate(path, keep=1)
    except FileNotFoundError:
        pass
    append_synced(path, (json.dumps(asdict(point), separators=(",", ":")) + "\n").encode())


def read_operations(folder: Path, since: float | None = None) -> list[OperationsPoint]:
    """The intervals in ``folder``'s operations history, oldest first, from ``since`` on. The current file is read
    before the rotated one, so a rotation between the two reads shows an interval twice (kept once) rather than
    hides a file's worth. A line that is not a whole interval (cut by a crash, damaged, a time that is not a
    finite number) is skipped, and so is a file that cannot be read: the history is a view, not a record."""
    import math

    from pydantic import TypeAdapter, ValidationError

    adapter = TypeAdapter(OperationsPoint)
    seen: dict[tuple[float, str], OperationsPoint] = {}
    for path in (folder / OPERATIONS_FILE, folder / f"{OPERATIONS_FILE}.1"):
        try:
            if since is not None and path.name.endswith(".1") and path.stat().st_mtime < since:
                continue  # rotated before the window began: every line of it is older
            lines = path.read_bytes().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                point = adapter.validate_json(line)
            except ValidationError:
                continue
            if math.isfinite(point.time) and (since is None or point.time >= since):
                seen.setdefault((point.time, point.version), point)
    return sorted(seen.values(), key=lambda point: point.time)
