"""Alerts: the rules of ``[monitor] alerts`` evaluated by mloop, plus alerts received from Alertmanager.

``Alerting.evaluate`` runs after each monitoring update with the current value of every metric a rule
can name. A rule whose condition holds becomes *pending*, and *firing* once it has held for its
``for`` duration; it *resolves* when the condition no longer holds (or its metric has no value, as in
Prometheus). Firing and resolved events — mloop's own and those Alertmanager delivers to the
server's receiver — are appended to ``alerts.jsonl`` (one JSON object per line, flushed and synced)
and posted to the configured webhooks in Alertmanager's webhook format, so a consumer handles both
sources alike. Posting happens on a background thread with retries; it never blocks evaluation.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mloop.config import AlertRule


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def read_alert_log(path: Path) -> list[dict[str, Any]]:
    """Every event in an alert log, oldest first (a torn last line, from a crash mid-write, is skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def firing(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The alerts firing after these events, by (source, alert name): the last firing event of each."""
    state: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        key = (event.get("source", "mloop"), event.get("alert", ""))
        if event.get("status") == "firing":
            state[key] = event
        else:
            state.pop(key, None)
    return state


class Alerting:
    def __init__(self, rules: list[AlertRule], model: str, *, log_path: Path | None = None,
                 webhooks: list[str] | None = None, webhook_token: str = "") -> None:
        self.rules = rules
        self.model = model
        self.log_path = log_path
        self.pending: dict[str, float] = {}  # rule name -> when its condition began to hold
        self.active: dict[str, dict[str, Any]] = {}  # rule name -> its firing event
        self.webhooks = list(webhooks or [])
        self.webhook_token = webhook_token
        self._log_lock = threading.Lock()
        self._outbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        if log_path is not None:  # alerts still firing when the server stopped go on firing (or resolve)
            names = {rule.name for rule in rules}
            for (source, name), event in firing(read_alert_log(log_path)).items():
                if source == "mloop" and name in names and event.get("model") == model:
                    self.active[name] = event

    # ----------------------------------------------------------------------------------- evaluation

    def evaluate(self, values: dict[str, float | None], now: float | None = None) -> list[dict[str, Any]]:
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
                    events.append(self._event(rule, "resolved", value, now, started=fired["started"]))
        self._emit(events)
        return events

    def _event(self, rule: AlertRule, status: str, value: float | None, now: float, *, started: float) -> dict[str, Any]:
        return {"ts": now, "alert": rule.name, "status": status, "source": "mloop", "model": self.model,
                "severity": rule.severity, "metric": rule.metric, "value": value, "op": rule.op,
                "threshold": rule.threshold, "started": started,
                "summary": rule.summary or f"{rule.metric} {rule.op} {rule.threshold:g}"}

    def state(self, now: float | None = None) -> dict[str, Any]:
        """Firing and pending alerts, for the status file."""
        now = time.time() if now is None else now
        return {"firing": sorted(self.active), "pending": {name: round(now - since, 1) for name, since in
                                                            self.pending.items() if name not in self.active}}

    # ------------------------------------------------------------------------------ Alertmanager

    def receive(self, payload: Any) -> list[dict[str, Any]]:
        """Record the alerts of an Alertmanager webhook payload; raises ValueError naming what is wrong."""
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            raise ValueError("expected an Alertmanager webhook payload: an object with an 'alerts' list")
        now = time.time()
        events = []
        for index, alert in enumerate(payload["alerts"]):
            labels = alert.get("labels") if isinstance(alert, dict) else None
            status = alert.get("status") if isinstance(alert, dict) else None
            if not isinstance(labels, dict) or not isinstance(labels.get("alertname"), str) or \
                    status not in ("firing", "resolved"):
                raise ValueError(f"alerts[{index}] needs labels.alertname and a status of firing or resolved")
            annotations = alert.get("annotations") if isinstance(alert.get("annotations"), dict) else {}
            events.append({"ts": now, "alert": labels["alertname"], "status": status, "source": "alertmanager",
                           "model": labels.get("model", self.model), "severity": labels.get("severity", ""),
                           "labels": labels, "summary": annotations.get("summary", ""),
                           "started": _parse_time(alert.get("startsAt")) or now,
                           "fingerprint": alert.get("fingerprint", "")})
        self._emit(events)
        return events

    # ------------------------------------------------------------------------------ log and delivery

    def _emit(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        if self.log_path is not None:
            lines = "".join(json.dumps(event, default=str) + "\n" for event in events)
            with self._log_lock:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                with self.log_path.open("a+b") as fh:
                    if fh.tell() > 0:  # after a crash mid-line, start on a new line
                        fh.seek(-1, os.SEEK_END)
                        if fh.read(1) != b"\n":
                            lines = "\n" + lines
                    fh.write(lines.encode())
                    fh.flush()
                    os.fsync(fh.fileno())
        for event in events:
            print(json.dumps({"alert": event["alert"], "status": event["status"], "source": event["source"],
                              "value": event.get("value")}, default=str), file=sys.stderr, flush=True)
        if self.webhooks:
            if self._sender is None:
                self._sender = threading.Thread(target=self._deliver, name="mloop-alert-webhooks", daemon=True)
                self._sender.start()
            for event in events:
                self._outbox.put(event)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop the sender."""
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join(timeout)

    def _deliver(self) -> None:
        while True:
            event = self._outbox.get()
            if event is None:
                return
            body = json.dumps(webhook_payload([event]), default=str).encode()
            for url in self.webhooks:
                post_with_retries(url, body, self.webhook_token)


def post_with_retries(url: str, body: bytes, token: str = "", attempts: int = 4, backoff_s: float = 0.5) -> bool:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=10) as response:
                if response.status < 300:
                    return True
        except (urllib.error.URLError, OSError) as err:
            problem = str(err)
        else:
            problem = f"HTTP {response.status}"
        if attempt + 1 < attempts:
            time.sleep(backoff_s * 2 ** attempt)
    print(json.dumps({"webhook": url, "error": f"not delivered after {attempts} attempts: {problem}"}),
          file=sys.stderr, flush=True)
    return False


def webhook_payload(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Events in Alertmanager's webhook format (version 4), so receivers of either source parse one shape."""
    alerts = []
    for event in events:
        labels = {"alertname": event["alert"], "model": event.get("model", ""), "severity": event.get("severity", ""),
                  "source": event.get("source", "mloop")} | dict(event.get("labels") or {})
        resolved = event["status"] == "resolved"
        alerts.append({
            "status": event["status"], "labels": labels,
            "annotations": {"summary": event.get("summary", ""), "value": str(event.get("value", "")),
                            "threshold": str(event.get("threshold", ""))},
            "startsAt": iso(event.get("started", event["ts"])),
            "endsAt": iso(event["ts"]) if resolved else "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": hashlib.sha256(
                f"{labels['alertname']}|{labels['model']}".encode()).hexdigest()[:16]})
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    first = alerts[0]["labels"]
    return {"version": "4", "status": status, "receiver": "mloop", "groupKey": f"mloop/{first['model']}",
            "truncatedAlerts": 0, "groupLabels": {"alertname": first["alertname"]}, "commonLabels": first,
            "commonAnnotations": {}, "externalURL": "", "alerts": alerts}


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
