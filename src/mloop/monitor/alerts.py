"""Alerts: the rules of ``[monitor] alerts`` evaluated by mloop, plus alerts received from Alertmanager.

``Alerting.evaluate`` runs after each monitoring update with the current value of every metric a rule
can name. A rule whose condition holds becomes *pending*, and *firing* once it has held for its
``for`` duration; it *resolves* when the condition no longer holds (or its metric has no value, as in
Prometheus). Firing and resolved events (``AlertEvent``) — mloop's own and those Alertmanager delivers
to the server's receiver — are appended to ``alerts.jsonl`` (one JSON object per line, synced) and
posted to the configured webhooks in Alertmanager's webhook format, so a consumer handles both
sources alike. Posting happens on a background thread with retries; it never blocks evaluation.

Past ``ALERT_LOG_MAX_BYTES`` the log is renamed to ``alerts.jsonl.1`` (the one before to ``.2``; the
oldest of ``ALERT_LOG_KEEP`` goes), and ``read_alert_log`` reads the renamed files too. Lines that
cannot be written (a full disk) wait in memory (the newest ``UNWRITTEN_EVENTS``) and are appended
with the next events or at the next evaluation, so every event reaches the log once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import queue
import re
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mloop._fs import WriteTrouble, append_synced, rotate
from mloop.config import AlertRule

if TYPE_CHECKING:
    from pydantic import TypeAdapter

ALERT_LOG = "alerts.jsonl"
ALERT_LOG_MAX_BYTES = 8 * 1024 * 1024  # past this, alerts.jsonl is renamed to alerts.jsonl.1 and a new one begins
ALERT_LOG_KEEP = 2  # renamed generations kept: alerts.jsonl.1 (newer) and .2
UNWRITTEN_EVENTS = 10_000  # events kept in memory at most while the log cannot be written
Status = Literal["firing", "resolved"]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class AlertEvent:
    """An alert firing or resolving, from mloop's own rules or from Alertmanager."""

    ts: float
    alert: str
    status: Status
    model: str
    source: Literal["mloop", "alertmanager"] = "mloop"
    severity: str = ""
    summary: str = ""
    started: float = 0.0  # when its condition began to hold
    metric: str | None = None  # mloop's rules: the metric, its value, the comparison and the threshold
    value: float | None = None
    op: str | None = None
    threshold: float | None = None
    labels: dict[str, str] = field(default_factory=dict)  # Alertmanager's: its labels and fingerprint
    fingerprint: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.source, self.alert

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)


@functools.cache
def _event_adapter() -> TypeAdapter[AlertEvent]:
    from pydantic import TypeAdapter

    return TypeAdapter(AlertEvent)


def _generations(path: Path) -> list[Path]:
    """The renamed generations of an alert log (``alerts.jsonl.1``, ``.2``, ...), oldest first."""
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)$")
    found = [(int(m.group(1)), p) for p in path.parent.glob(f"{path.name}.*") if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def read_alert_log(path: Path) -> list[AlertEvent]:
    """Every event in an alert log and its renamed generations, oldest first (a torn line, from a crash
    mid-write, is skipped)."""
    from pydantic import ValidationError

    adapter = _event_adapter()
    events = []
    for part in [*_generations(path), path]:
        try:
            lines = part.read_bytes().splitlines()
        except FileNotFoundError:  # renamed while we listed
            continue
        except OSError:  # not a file (a directory in its place): no history there; mloop doctor names it
            continue
        for line in lines:
            try:
                events.append(adapter.validate_json(line))
            except ValidationError:
                continue
    return events


def firing(events: list[AlertEvent]) -> dict[tuple[str, str], AlertEvent]:
    """The alerts firing after these events, by (source, alert name): the last firing event of each."""
    state: dict[tuple[str, str], AlertEvent] = {}
    for event in events:
        if event.status == "firing":
            state[event.key] = event
        else:
            state.pop(event.key, None)
    return state


def parse_alertmanager(payload: Any, model: str, now: float | None = None) -> list[AlertEvent]:
    """The events of an Alertmanager webhook payload (version 4); raises ValueError naming the wrong field."""
    from pydantic import BaseModel, ConfigDict, ValidationError

    class Labels(BaseModel):
        model_config = ConfigDict(extra="allow")
        alertname: str

    class Alert(BaseModel):
        status: Status
        labels: Labels
        annotations: dict[str, str] = {}
        startsAt: str | None = None  # noqa: N815 - Alertmanager's name
        fingerprint: str = ""

    class Payload(BaseModel):
        alerts: list[Alert]

    try:
        parsed = Payload.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        raise ValueError(f"not an Alertmanager webhook payload: {where or 'body'}: {first['msg']}"
                         " (expected {\"alerts\": [{\"status\": \"firing\"|\"resolved\", "
                         "\"labels\": {\"alertname\": ...}}, ...]})") from err
    now = time.time() if now is None else now
    events = []
    for alert in parsed.alerts:
        labels = {k: str(v) for k, v in alert.labels.model_dump().items()}
        events.append(AlertEvent(
            ts=now, alert=alert.labels.alertname, status=alert.status, model=labels.get("model", model),
            source="alertmanager", severity=labels.get("severity", ""), summary=alert.annotations.get("summary", ""),
            started=_parse_time(alert.startsAt) or now, labels=labels, fingerprint=alert.fingerprint))
    return events


class Alerting:
    """Evaluates ``rules`` for ``model``, receives Alertmanager's alerts, and logs (``log_path``, renamed past
    ``log_max_bytes``) and posts the events of both."""

    def __init__(self, rules: list[AlertRule], model: str, *, log_path: Path | None = None,
                 webhooks: list[str] | None = None, webhook_token: str = "",
                 log_max_bytes: int = ALERT_LOG_MAX_BYTES) -> None:
        self.rules = rules
        self.model = model
        self.log_path = log_path
        self.log_max_bytes = log_max_bytes
        self.pending: dict[str, float] = {}  # rule name -> when its condition began to hold
        self.active: dict[str, AlertEvent] = {}  # rule name -> its firing event
        self.webhooks = list(webhooks or [])
        self.webhook_token = webhook_token
        self._log_lock = threading.Lock()
        self._unwritten: deque[str] = deque(maxlen=UNWRITTEN_EVENTS)  # lines of events a failed append left
        self._log_trouble = WriteTrouble("the alert log")
        self._outbox: queue.Queue[AlertEvent | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        if log_path is not None:  # alerts still firing when the server stopped go on firing (or resolve)
            names = {rule.name for rule in rules}
            for (source, name), event in firing(read_alert_log(log_path)).items():
                if source == "mloop" and name in names and event.model == model:
                    self.active[name] = event

    # ----------------------------------------------------------------------------------- evaluation

    def evaluate(self, values: dict[str, float | None], now: float | None = None) -> list[AlertEvent]:
        """Advance every rule with the current metric values; returns the events it produced."""
        now = time.time() if now is None else now
        events = []
        for rule in self.rules:
            value = values.get(rule.metric)
            holds = value is not None and rule.breached(value)
            if holds:
                since = self.pending.setdefault(rule.name, now)
                if rule.name not in self.active and now - since >= rule.for_s:
                    event = self._event(rule, "firing", value, now, started=since)
                    self.active[rule.name] = event
                    events.append(event)
            else:
                self.pending.pop(rule.name, None)
                fired = self.active.pop(rule.name, None)
                if fired is not None:
                    events.append(self._event(rule, "resolved", value, now, started=fired.started))
        self._emit(events)
        return events

    def _event(self, rule: AlertRule, status: Status, value: float | None, now: float, *,
               started: float) -> AlertEvent:
        return AlertEvent(ts=now, alert=rule.name, status=status, model=self.model, severity=rule.severity,
                          summary=rule.summary or f"{rule.metric} {rule.op} {rule.threshold:g}", started=started,
                          metric=rule.metric, value=value, op=rule.op, threshold=rule.threshold)

    def state(self, now: float | None = None) -> tuple[list[str], dict[str, float]]:
        """Names of the firing rules, and of the pending ones with how long their condition has held."""
        now = time.time() if now is None else now
        return sorted(self.active), {name: round(now - since, 1) for name, since in self.pending.items()
                                     if name not in self.active}

    # ------------------------------------------------------------------------------ Alertmanager

    def receive(self, payload: Any) -> list[AlertEvent]:
        """Record the alerts of an Alertmanager webhook payload; raises ValueError naming what is wrong."""
        events = parse_alertmanager(payload, self.model)
        self._emit(events)
        return events

    # ------------------------------------------------------------------------------ log and delivery

    def _emit(self, events: list[AlertEvent]) -> None:
        if self.log_path is not None and (events or self._unwritten):
            self._log(self.log_path, events)
        if not events:
            return
        for event in events:
            print(json.dumps({"alert": event.alert, "status": event.status, "source": event.source,
                              "value": event.value}, default=str), file=sys.stderr, flush=True)
        if self.webhooks:
            if self._sender is None:
                self._sender = threading.Thread(target=self._deliver, name="mloop-alert-webhooks", daemon=True)
                self._sender.start()
            for event in events:
                self._outbox.put(event)

    def _log(self, path: Path, events: list[AlertEvent]) -> None:
        """Append the lines that wait, then ``events``; on a full disk they all wait (said once on stderr)."""
        with self._log_lock:
            self._unwritten.extend(event.to_json() + "\n" for event in events)
            try:
                append_synced(path, "".join(self._unwritten).encode())
            except OSError as err:
                self._log_trouble.failed(err, path, f"{len(self._unwritten):,} events kept in memory (the newest "
                                                    f"{UNWRITTEN_EVENTS:,} at most), retried every update")
                return
            self._unwritten.clear()
            self._log_trouble.worked(path)
            if path.stat().st_size > self.log_max_bytes:
                rotate(path, ALERT_LOG_KEEP)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop the sender."""
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join(timeout)

    def _deliver(self) -> None:
        import httpx

        from mloop._http import post_with_retries

        while True:
            event = self._outbox.get()
            if event is None:
                return
            body = json.dumps(webhook_payload([event]), default=str).encode()
            for url in self.webhooks:
                try:
                    post_with_retries(url, body, token=self.webhook_token)
                except httpx.HTTPError as err:
                    print(json.dumps({"webhook": url, "error": f"not delivered after retries: {err}"}),
                          file=sys.stderr, flush=True)


def webhook_payload(events: list[AlertEvent]) -> dict[str, Any]:
    """Events in Alertmanager's webhook format (version 4), so receivers of either source parse one shape."""
    alerts: list[dict[str, Any]] = []
    for event in events:
        labels = {"alertname": event.alert, "model": event.model, "severity": event.severity,
                  "source": event.source} | event.labels
        resolved = event.status == "resolved"
        alerts.append({
            "status": event.status, "labels": labels,
            "annotations": {"summary": event.summary, "value": "" if event.value is None else str(event.value),
                            "threshold": "" if event.threshold is None else str(event.threshold)},
            "startsAt": iso(event.started or event.ts),
            "endsAt": iso(event.ts) if resolved else "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": hashlib.sha256(
                f"{labels['alertname']}|{labels['model']}".encode()).hexdigest()[:16]})
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    first = alerts[0]["labels"]
    return {"version": "4", "status": status, "receiver": "mloop", "groupKey": f"mloop/{first['model']}",
            "truncatedAlerts": 0, "groupLabels": {"alertname": first["alertname"]}, "commonLabels": first,
            "commonAnnotations": {}, "externalURL": "", "alerts": alerts}


def _parse_time(value: str | None) -> float | None:
    if not value or value.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
