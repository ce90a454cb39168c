"""What starts a continuous-training cycle, and the rules that turn a stream of triggers into cycles.

A ``Trigger`` is one reason to retrain: a firing alert (``alert_triggers``: mloop's own webhooks and
Alertmanager's, one payload shape), the ``Schedule`` coming due, a new version of a pipeline input or a
version registered by someone else (the watchers of ``mloop.automation.watchers``), or a person
(``manual_trigger``). Each has a ``key``, its identity: the same alert delivered twice, the same data
version seen twice, is one trigger.

``Coalescer`` decides when a cycle starts, per model, with no clock of its own (every call is given
``now``), so the agent's loop can sleep until ``next_due`` and its state survives a restart
(``to_dict``/``from_dict``, kept in the agent's journal):

- at most one cycle runs and one is pending; every trigger that comes while one is pending, or while
  one runs, joins the pending one, which lists every trigger it absorbed (one per key) and whose
  *primary* trigger is the newest;
- the pending cycle starts once ``debounce`` has passed since the last trigger it absorbed (a burst of
  alerts is one cycle), ``cooldown`` has passed since the last cycle ended, and fewer than
  ``max_cycles_per_day`` cycles started in the last 24 hours (a rolling window: the same in every
  time zone and with no reset at midnight to burst through);
- a manual trigger skips the debounce and the cooldown and is not held by the daily cap, nor counted
  in it (a person asked); it still waits for the running cycle to end;
- a key the agent's own cycles produced (``own``: its registered versions, its data snapshots) never
  starts a cycle; alerts are never the agent's own, even about a model it deployed. A key already
  handled by a cycle that ended in the last 24 hours is a duplicate (Alertmanager repeats a firing
  alert every ``repeat_interval``).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast, get_args
from zoneinfo import ZoneInfo

from mloop.config import check_cron, check_timezone
from mloop.errors import ConfigError

if TYPE_CHECKING:
    from mloop.config import TriggerSection
    from mloop.monitor.alerts import AlertEvent

Kind = Literal["alert", "schedule", "data", "registry", "manual"]
KINDS: tuple[str, ...] = get_args(Kind)
AGENT_CYCLE_TAG = "mloop.agent.cycle"  # on a model version the agent registered: the cycle that made it
DAY_S = 86_400.0
KEYS_KEPT = 10_000  # own keys and handled keys remembered at most (the oldest go first)
STATE_VERSION = 1


def iso(ts: float) -> str:
    """A UTC instant as ISO 8601 with a Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------------------- trigger


@dataclass(frozen=True)
class Trigger:
    """One reason to start a cycle.

    ``at`` is when mloop saw it (seconds since the epoch); ``key`` its identity for deduplication (an
    alert's fingerprint and start, a data version's md5, a model version); ``detail`` what a person
    reading the cycle's history wants to know (the alert's labels, the file and its versions, ...).
    """

    kind: Kind
    reason: str
    at: float
    key: str
    detail: dict[str, str] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason, "at": self.at, "key": self.key, "detail": dict(self.detail)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trigger:
        """The trigger ``to_dict`` wrote; ValueError naming what is missing or wrong."""
        try:
            kind, reason, at, key = data["kind"], data["reason"], data["at"], data["key"]
        except KeyError as err:
            raise ValueError(f"a trigger needs kind, reason, at and key; {err.args[0]!r} is missing") from None
        if kind not in KINDS:
            raise ValueError(f"trigger kind {kind!r} is not one of {', '.join(KINDS)}")
        detail = data.get("detail") or {}
        return cls(kind=cast(Kind, kind), reason=str(reason), at=float(at), key=str(key),
                   detail={str(k): str(v) for k, v in detail.items()})


def data_key(digest: str) -> str:
    """The key of a data version (its md5): what the agent marks ``own`` for a snapshot it wrote."""
    return f"data:{digest}"


def version_key(model: str, version: str | int) -> str:
    """The key of a registered model version: what the agent marks ``own`` for a version it registered."""
    return f"registry:{model}/{version}"


def manual_trigger(reason: str, now: float, *, by: str = "") -> Trigger:
    """A person's request for a cycle (``mloop agent trigger --reason``)."""
    detail = {"by": by} if by else {}
    return Trigger("manual", reason or "started by hand", now, f"manual:{iso(now)}:{reason}", detail)


# ----------------------------------------------------------------------------------------- coalescer


OfferOutcome = Literal["new", "merged", "own", "duplicate"]


@dataclass(frozen=True)
class Offer:
    """What the coalescer did with an offered trigger: started a pending cycle (``new``), joined it
    (``merged``), or ignored it as the agent's own or a duplicate; ``why`` says it in words."""

    outcome: OfferOutcome
    why: str
    trigger: Trigger

    @property
    def accepted(self) -> bool:
        return self.outcome in ("new", "merged")


@dataclass(frozen=True)
class PendingCycle:
    """The cycle that starts when it is due: every trigger it absorbed (arrival order, one per key), when
    the first and the last were absorbed."""

    triggers: tuple[Trigger, ...]
    since: float
    last: float

    @property
    def primary(self) -> Trigger:
        """The newest trigger (the latest ``at``; of equals, the one that came last)."""
        return max(reversed(self.triggers), key=lambda t: t.at)

    @property
    def manual(self) -> bool:
        return any(t.kind == "manual" for t in self.triggers)

    def ordered(self) -> list[Trigger]:
        """The primary trigger first, then the others in the order they came."""
        primary = self.primary
        return [primary, *(t for t in self.triggers if t is not primary)]


@dataclass(frozen=True)
class RunningCycle:
    """The cycle taken from the coalescer: its id ('' between ``take`` and ``started``), since when, and
    the triggers that started it (the primary first)."""

    cycle_id: str
    since: float
    triggers: tuple[Trigger, ...]
    manual: bool = False


class Coalescer:
    """Per model, at most one running and one pending cycle; see the module docstring for the rules.

    Not thread-safe: one loop owns it. Times are seconds since the epoch; ``timezone`` is only where
    ``why_waiting`` prints its clock times.
    """

    def __init__(self, *, debounce_s: float = 10.0, cooldown_s: float = 0.0, max_cycles_per_day: int = 24,
                 timezone: str = "UTC") -> None:
        if debounce_s < 0 or cooldown_s < 0 or max_cycles_per_day < 1:
            raise ValueError("debounce and cooldown must be >= 0 and max_cycles_per_day >= 1")
        self.debounce_s = debounce_s
        self.cooldown_s = cooldown_s
        self.max_cycles_per_day = max_cycles_per_day
        self.zone = ZoneInfo(check_timezone(timezone))
        self._pending: dict[str, Trigger] = {}  # key -> trigger, in arrival order
        self._pending_since = self._pending_last = 0.0
        self._running: RunningCycle | None = None
        self._starts: list[float] = []  # when the automatic cycles of the last 24 hours started
        self._last_finished: float | None = None
        self._handled: dict[str, tuple[float, str]] = {}  # key -> (when its cycle ended, the cycle's id)
        self._own: dict[str, None] = {}  # keys of what the agent's own cycles made, oldest first

    @classmethod
    def from_section(cls, section: TriggerSection) -> Coalescer:
        return cls(debounce_s=section.debounce_s, cooldown_s=section.cooldown_s,
                   max_cycles_per_day=section.max_cycles_per_day, timezone=section.timezone)

    # ------------------------------------------------------------------------------------ triggers

    def own(self, key: str) -> None:
        """Mark ``key`` as made by the agent's own cycle: offered later, it is ignored; already pending, it is
        withdrawn (a watcher may see the agent's version before the agent says it is its own)."""
        self._own.pop(key, None)
        self._own[key] = None
        while len(self._own) > KEYS_KEPT:
            del self._own[next(iter(self._own))]
        if self._pending.pop(key, None) is not None and not self._pending:
            self._pending_since = self._pending_last = 0.0

    def is_own(self, key: str) -> bool:
        return key in self._own

    def offer(self, trigger: Trigger, now: float) -> Offer:
        """Add ``trigger`` to the pending cycle (making one if there is none), unless it is the agent's own or
        a duplicate of one pending, running, or handled by a cycle that ended in the last 24 hours."""
        key = trigger.key
        if key in self._own:
            return Offer("own", "made by the agent's own cycle: it never starts one", trigger)
        if key in self._pending:
            return Offer("duplicate", "already in the pending cycle", trigger)
        if self._running is not None and any(t.key == key for t in self._running.triggers):
            return Offer("duplicate", f"already in the running cycle {self._running.cycle_id}".rstrip(), trigger)
        self._forget_old(now)
        if key in self._handled:
            ended, cycle_id = self._handled[key]
            return Offer("duplicate", f"already handled by cycle {cycle_id} (ended {self._clock(ended, now)})", trigger)
        outcome: OfferOutcome = "merged" if self._pending else "new"
        if not self._pending:
            self._pending_since = now
        self._pending[key] = trigger
        self._pending_last = now
        if outcome == "new":
            return Offer("new", f"a new pending cycle: {self.why_waiting(now)}", trigger)
        return Offer("merged", f"merged into the pending cycle ({len(self._pending)} triggers)", trigger)

    # ------------------------------------------------------------------------------------- cycles

    @property
    def pending(self) -> PendingCycle | None:
        if not self._pending:
            return None
        return PendingCycle(tuple(self._pending.values()), self._pending_since, self._pending_last)

    @property
    def running(self) -> RunningCycle | None:
        return self._running

    def take(self, now: float) -> list[Trigger] | None:
        """The pending cycle's triggers, the primary first, if it is due now (it is then the running cycle,
        with no id until ``started``); None otherwise."""
        pending = self.pending
        if pending is None or self._running is not None:
            return None
        due = self._due_at(pending, now)
        if due > now:
            return None
        triggers = pending.ordered()
        self._running = RunningCycle("", now, tuple(triggers), pending.manual)
        if not pending.manual:
            self._starts.append(now)
        self._pending.clear()
        self._pending_since = self._pending_last = 0.0
        return triggers

    def started(self, cycle_id: str, now: float) -> None:
        """The cycle ``take`` gave is running as ``cycle_id``. ValueError without a taken cycle, or when
        another cycle is running."""
        running = self._running
        if running is None:
            raise ValueError(f"cycle {cycle_id!r} started, but no cycle was taken: call take() first")
        if running.cycle_id not in ("", cycle_id):
            raise ValueError(f"cycle {cycle_id!r} started while cycle {running.cycle_id!r} runs: one at a time")
        self._running = RunningCycle(cycle_id, now, running.triggers, running.manual)

    def finished(self, cycle_id: str, now: float) -> None:
        """The running cycle ``cycle_id`` ended (whatever its outcome): the cooldown starts, and its triggers
        stay handled for 24 hours. ValueError when ``cycle_id`` is not the running cycle."""
        running = self._running
        if running is None or running.cycle_id != cycle_id:
            raise ValueError(f"cycle {cycle_id!r} finished, but the running cycle is "
                             f"{running.cycle_id if running is not None else 'none'!r}")
        self._running = None
        self._last_finished = now
        for trigger in running.triggers:
            self._handled.pop(trigger.key, None)
            self._handled[trigger.key] = (now, cycle_id)
        self._forget_old(now)

    def next_due(self, now: float) -> float | None:
        """When the pending cycle is due (at or before ``now``: ``take`` returns it now); None when nothing is
        pending, or a cycle runs (its end is what to wait for)."""
        pending = self.pending
        if pending is None or self._running is not None:
            return None
        return self._due_at(pending, now)

    def why_waiting(self, now: float) -> str:
        """Why the pending cycle has not started, for ``mloop agent status``: ``debounce 4 s left``,
        ``cooldown until 14:02:05 CET``, ``daily cap 24 reached, next at ...``; ``due now`` when it has not."""
        pending = self.pending
        running = self._running
        if running is not None:
            name = f"cycle {running.cycle_id}" if running.cycle_id else "a cycle"
            waiting = f"; {len(pending.triggers)} trigger(s) wait for it to end" if pending else ""
            return f"{name} running since {self._clock(running.since, now)}{waiting}"
        if pending is None:
            return "no cycle pending"
        if pending.manual:
            return "due now (manual)"
        reasons = []
        left = pending.last + self.debounce_s - now
        if left > 0:
            reasons.append(f"debounce {math.ceil(left)} s left")
        if self._last_finished is not None and self._last_finished + self.cooldown_s > now:
            reasons.append(f"cooldown until {self._clock(self._last_finished + self.cooldown_s, now)}")
        capped = self._cap_lifts_at(now)
        if capped is not None:
            reasons.append(f"daily cap {self.max_cycles_per_day} reached, next at {self._clock(capped, now)}")
        return "; ".join(reasons) or "due now"

    def _due_at(self, pending: PendingCycle, now: float) -> float:
        if pending.manual:
            return now
        due = pending.last + self.debounce_s
        if self._last_finished is not None:
            due = max(due, self._last_finished + self.cooldown_s)
        capped = self._cap_lifts_at(now)
        return due if capped is None else max(due, capped)

    def _cap_lifts_at(self, now: float) -> float | None:
        """When fewer than the cap will have started in the 24 hours before (None: fewer already)."""
        recent = sorted(t for t in self._starts if t > now - DAY_S)
        if len(recent) < self.max_cycles_per_day:
            return None
        return recent[len(recent) - self.max_cycles_per_day] + DAY_S

    def _forget_old(self, now: float) -> None:
        self._starts = [t for t in self._starts if t > now - DAY_S]
        for key in [k for k, (ended, _) in self._handled.items() if ended <= now - DAY_S]:
            del self._handled[key]
        while len(self._handled) > KEYS_KEPT:
            del self._handled[next(iter(self._handled))]

    def _clock(self, ts: float, now: float) -> str:
        local = datetime.fromtimestamp(ts, self.zone)
        same_day = local.date() == datetime.fromtimestamp(now, self.zone).date()
        return local.strftime("%H:%M:%S %Z" if same_day else "%Y-%m-%d %H:%M:%S %Z")

    # -------------------------------------------------------------------------------- persistence

    def to_dict(self) -> dict[str, Any]:
        """The state, as JSON-able data (the settings are not in it: they come from the config)."""
        running = self._running
        return {
            "version": STATE_VERSION,
            "pending": [t.to_dict() for t in self._pending.values()],
            "pending_since": self._pending_since,
            "pending_last": self._pending_last,
            "running": None if running is None else {
                "cycle_id": running.cycle_id, "since": running.since, "manual": running.manual,
                "triggers": [t.to_dict() for t in running.triggers]},
            "starts": list(self._starts),
            "last_finished": self._last_finished,
            "handled": {key: [ended, cycle_id] for key, (ended, cycle_id) in self._handled.items()},
            "own": list(self._own),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], section: TriggerSection) -> Coalescer:
        """The coalescer ``to_dict`` saved, with the settings of ``section``; ValueError for other data."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"coalescer state version {data.get('version')!r} is not {STATE_VERSION}")
        made = cls.from_section(section)
        try:
            for item in data["pending"]:
                trigger = Trigger.from_dict(item)
                made._pending[trigger.key] = trigger
            made._pending_since, made._pending_last = float(data["pending_since"]), float(data["pending_last"])
            running = data["running"]
            if running is not None:
                made._running = RunningCycle(str(running["cycle_id"]), float(running["since"]),
                                             tuple(Trigger.from_dict(t) for t in running["triggers"]),
                                             bool(running["manual"]))
            made._starts = [float(t) for t in data["starts"]]
            finished = data["last_finished"]
            made._last_finished = None if finished is None else float(finished)
            made._handled = {str(k): (float(v[0]), str(v[1])) for k, v in data["handled"].items()}
            made._own = dict.fromkeys(str(k) for k in data["own"])
        except (KeyError, TypeError, IndexError) as err:
            raise ValueError(f"coalescer state is incomplete or malformed ({type(err).__name__}: {err})") from err
        return made


# ------------------------------------------------------------------------------------------ schedule


_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


class Schedule:
    """A cron schedule in a time zone.

    Instants are computed in the zone, so ``0 9 * * *`` in Europe/Paris is 08:00 UTC in winter and 07:00
    UTC in summer. Across a change of the clocks it follows cron: a time skipped when the clocks go
    forward runs once, as they jump (02:30 on the spring night runs at 03:00); a time that happens twice
    when they go back runs once, the first time, for a job at fixed times, while a job whose minute or
    hour field starts with ``*`` (``*/15 * * * *``) runs by the real clock, in both passes.

    ConfigError naming the fix for an expression or a zone that is not valid.
    """

    def __init__(self, expr: str, tz: str = "UTC") -> None:
        try:
            self.expr = check_cron(expr)
            self.timezone = check_timezone(tz)
        except ValueError as err:
            raise ConfigError(f"schedule {expr!r} in {tz!r}: {err}",
                              hint="fix schedule or timezone in [automation] of mloop.toml") from None
        self.zone = ZoneInfo(self.timezone)
        fields = _MACROS.get(self.expr, self.expr).split()
        self._fixed_time = not (fields[0].startswith("*") or fields[1].startswith("*"))

    def __repr__(self) -> str:
        return f"Schedule({self.expr!r}, {self.timezone!r})"

    def next_after(self, t: float) -> float:
        """The first instant of the schedule strictly after ``t``."""
        return next(self._instants(t, forward=True))

    def latest_at_or_before(self, t: float) -> float:
        """The last instant of the schedule at or before ``t``."""
        return next(i for i in self._instants(t + 1, forward=False) if i <= t)

    def due_between(self, t0: float, t1: float) -> list[float]:
        """The instants in ``(t0, t1]`` as one catch-up: the latest of them, or none. Runs missed while the
        agent was down start one cycle, not one per missed run."""
        if t1 <= t0:
            return []
        latest = self.latest_at_or_before(t1)
        return [latest] if latest > t0 else []

    def _instants(self, start: float, *, forward: bool) -> Iterator[float]:
        from croniter import croniter

        it = croniter(self.expr, datetime.fromtimestamp(start, self.zone))
        while True:
            instant = float(it.get_next(float) if forward else it.get_prev(float))
            if not (self._fixed_time and self._second_pass(instant)):
                yield instant

    def _second_pass(self, instant: float) -> bool:
        """Whether ``instant`` is a local time's second occurrence, when the clocks went back."""
        local = datetime.fromtimestamp(instant, self.zone)
        return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()

    def trigger(self, instant: float, now: float) -> Trigger:
        """The trigger of the run due at ``instant``, seen at ``now``."""
        local = datetime.fromtimestamp(instant, self.zone)
        late = now - instant > 60
        reason = (f"schedule {self.expr!r} due at {local.strftime('%Y-%m-%d %H:%M %Z')}"
                  + (" (caught up: the agent was not running then)" if late else ""))
        return Trigger("schedule", reason, now, f"schedule:{iso(instant)}",
                       {"schedule": self.expr, "timezone": self.timezone, "due": iso(instant),
                        "due_local": local.isoformat(), "late": str(late).lower()})


# -------------------------------------------------------------------------------------------- alerts


def alert_triggers(payload: Any, names: list[str] | None, *, model: str | None = None,
                   now: float | None = None) -> list[Trigger]:
    """The triggers of the firing alerts in a webhook payload; resolved alerts are ignored.

    ``payload`` is Alertmanager's webhook JSON (version 4: ``{"alerts": [...]}``), which mloop's own
    webhooks post too (their alerts carry the label ``source="mloop"``), or one of mloop's alert events
    (``AlertEvent`` as a dict: a line of ``alerts.jsonl``). ``names``: the alert names that start a cycle
    (None: every one; []: none). ``model``: keep only the alerts about this model (an alert with no
    ``model`` label is kept). ValueError naming the problem for any other payload.
    """
    from mloop.monitor.alerts import parse_alertmanager

    now = time.time() if now is None else now
    if isinstance(payload, Mapping) and "alerts" in payload:
        version = payload.get("version", "4")
        if str(version) != "4":
            raise ValueError(f"Alertmanager webhook payload version {version!r}: only version 4 is understood")
        events = parse_alertmanager(payload, "", now)
        raw = payload["alerts"]
        starts = [str(a.get("startsAt") or "") if isinstance(a, Mapping) else "" for a in raw]
    elif isinstance(payload, Mapping) and "alert" in payload and "status" in payload:
        events = [_alert_event(payload)]
        starts = [iso(events[0].started) if events[0].started else ""]
    else:
        shape = f"an object with keys {', '.join(sorted(map(str, payload)))}" if isinstance(payload, Mapping) \
            else f"a {type(payload).__name__}"
        raise ValueError(f"not an alert payload ({shape}): expected Alertmanager's webhook JSON, version 4 "
                         "({\"version\": \"4\", \"alerts\": [{\"status\": \"firing\", \"labels\": {\"alertname\": "
                         "...}, ...}]}), which mloop's webhooks post too, or an mloop alert event ({\"alert\": ..., "
                         "\"status\": \"firing\", \"model\": ..., ...})")
    triggers = []
    for event, started in zip(events, starts, strict=True):
        if not _wanted(event, names, model):
            continue
        triggers.append(_alert_trigger(event, started, now))
    return triggers


def _alert_event(payload: Mapping[str, Any]) -> AlertEvent:
    from pydantic import TypeAdapter, ValidationError

    from mloop.monitor.alerts import AlertEvent

    try:
        return TypeAdapter(AlertEvent).validate_python(dict(payload))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ValueError(f"not an mloop alert event: {where}: {first['msg']}") from err


def _wanted(event: AlertEvent, names: list[str] | None, model: str | None) -> bool:
    if event.status != "firing":
        return False
    if names is not None and event.alert not in names:
        return False
    return not (model and event.model and event.model != model)


def _alert_trigger(event: AlertEvent, started: str, now: float) -> Trigger:
    labels = dict(event.labels)
    source = labels.get("source") or event.source  # mloop's webhooks post Alertmanager's shape, labelled
    fingerprint = event.fingerprint or hashlib.sha256(
        "|".join(f"{k}={v}" for k, v in sorted({**labels, "alertname": event.alert, "model": event.model}.items()))
        .encode()).hexdigest()[:16]
    key = f"alert:{fingerprint}" + (f"@{started}" if started and not started.startswith("0001-") else "")
    about = f" on {event.model}" if event.model else ""
    reason = f"alert {event.alert} firing{about}" + (f": {event.summary}" if event.summary else "")
    detail = {"alert": event.alert, "model": event.model, "source": source, "severity": event.severity,
              "summary": event.summary, "fingerprint": fingerprint, "starts_at": started}
    if event.value is not None:
        detail["value"] = f"{event.value:g}"
    if event.threshold is not None:
        detail["threshold"] = f"{event.op or ''}{event.threshold:g}"
    return Trigger("alert", reason, now, key, detail)
