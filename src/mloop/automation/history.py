"""What served when, and why: the audit log read as a timeline (``mloop history --at``, ``mloop agent history``).

The audit log holds every traffic change the agent made and every deploy, rollback and override made
by hand through the CLI; the registry holds, per version, when it became champion at registration
(``mloop.promoted.at``) and the gate's reasons. Together they answer "which version served at that
moment, and why was it promoted". ``cycles`` and ``timeline`` give the agent's cycles with their records,
each as phases in time (``mloop agent history``, the web app's Continuous training page).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mloop.automation.agent import Stored, open_audit, read_journal
from mloop.automation.audit import AuditRecord
from mloop.automation.journal import Cycle, Journal
from mloop.errors import ConfigError

if TYPE_CHECKING:
    from mloop.config import ProjectConfig
    from mloop.deploy import DeployResult

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)(?:\s+ago)?$")


def parse_moment(text: str, *, now: float | None = None) -> float:
    """``now``, an ISO 8601 time (without a zone: this machine's), or a while ago (``90m``, ``2h ago``, ``3d``)."""
    now = time.time() if now is None else now
    value = text.strip().lower()
    if value == "now":
        return now
    ago = _AGO.match(value)
    if ago:
        return now - float(ago.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[ago.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as err:
        raise ConfigError(f"--at {text!r} is not a moment mloop can read",
                          hint="give an ISO time (2026-11-27T14:30, 2026-11-27 14:30+01:00), 'now', or a while "
                               "ago (90m, 2h ago, 3d)") from err
    return moment.timestamp()  # a naive time is this machine's local time


@dataclass
class ServedAt:
    at: float
    model: str
    champion: str | None
    champion_since: float | None
    why: str  # why the champion of that moment was promoted
    deployments: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> version -> share
    events: list[AuditRecord] = field(default_factory=list)  # the records that decided it

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "model": self.model, "champion": self.champion, "champion_since": self.champion_since,
                "why": self.why, "deployments": self.deployments,
                "events": [{"at": r.at, "kind": r.kind, "summary": r.summary, "cycle": r.cycle} for r in self.events]}


def served_at(cfg: ProjectConfig, at: float, model: str | None = None) -> ServedAt:
    from mloop.registry.aliases import promotions, version_tags

    model = model or cfg.model_name
    records = [r for r in open_audit(cfg).records(model=model) if r.at <= at]
    champion: str | None = None
    since: float | None = None
    why = ""
    deciding: dict[str, AuditRecord] = {}
    for version, promoted, reason in promotions(cfg, model):  # at registration (mloop run, CI)
        if promoted <= at and (since is None or promoted > since):
            champion, since, why = version, promoted, reason
    shares: dict[str, dict[str, float]] = {}
    for record in records:
        deployment = str(record.data.get("deployment", ""))
        if record.kind in ("promote", "override") and record.version and (since is None or record.at >= since):
            champion, since, why = record.version, record.at, record.summary
            deciding["champion"] = record
        if record.kind == "traffic" and deployment and record.data.get("stopped"):
            shares.pop(deployment, None)
        elif record.kind == "traffic" and deployment:
            weight = float(record.data.get("weight", 1.0))
            base = str(record.data.get("champion") or "")
            split = {record.version: weight} | ({base: 1.0 - weight} if base and weight < 1.0 else {})
            shares[deployment] = {v: w for v, w in split.items() if w > 0} or {base: 1.0}
            deciding[f"traffic/{deployment}"] = record
        if record.kind in ("promote", "rollback") and deployment:
            serving = record.version if record.kind == "promote" else str(record.data.get("champion") or "")
            if serving:
                shares[deployment] = {serving: 1.0}
                deciding[f"traffic/{deployment}"] = record
    if champion is not None and deciding.get("champion") is None:
        tags = version_tags(cfg, model, champion)
        why = tags.get("mloop.promotion", why)
    events = sorted({r.seq: r for r in deciding.values()}.values(), key=lambda r: r.seq)
    return ServedAt(at, model, champion, since, why, shares, events)


# The steps of a cycle as the journal names them, in the order they run (automation/cycle.py).
CYCLE_STEPS = ("snapshot", "train", "gate", "infra", "rollout", "watch")


@dataclass
class Phase:
    """One bar of a cycle's timeline: the trigger(s), a journalled step, or the outcome."""

    name: str  # "trigger", one of CYCLE_STEPS, or "outcome"
    start: float
    end: float
    state: str  # a step's "done", "failed" or "started" (under way); the trigger's "taken"; the cycle's state
    detail: str  # what it did, in words


def timeline(cycle: Cycle, *, now: float | None = None) -> list[Phase]:
    """A cycle as phases in time order: trigger → snapshot → train → gate → infra → roll-out → watch → outcome
    (the steps it reached; a step under way ends ``now``)."""
    now = time.time() if now is None else now
    moments = [float(t["at"]) for t in cycle.triggers if isinstance(t.get("at"), (int, float))]
    said = "; ".join(f"{t.get('kind', '?')}: {t.get('reason', '')}" for t in cycle.triggers[:5])
    more = f" (and {len(cycle.triggers) - 5} more)" if len(cycle.triggers) > 5 else ""
    phases = [Phase("trigger", min(moments, default=cycle.created), cycle.created, "taken", said + more)]
    for name in CYCLE_STEPS:
        step = cycle.steps.get(name)
        if step is None:
            continue
        end = step.ended if step.ended is not None else (cycle.updated if cycle.final else now)
        phases.append(Phase(name, step.began, max(end, step.began), step.state, _step_detail(name, step.result)))
    last = max((p.end for p in phases), default=cycle.created)
    phases.append(Phase("outcome", last, max(cycle.updated, last) if cycle.final else now, cycle.state,
                        cycle.reason if cycle.final else f"under way: {cycle.state}"))
    return phases


def _step_detail(name: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    if result.get("outcome"):
        return f"{result['outcome']}: {result.get('reason', '')}"
    if name == "train" and result.get("version"):
        return f"v{result['version']}" + (f" ({result['reason']})" if result.get("reason") else "")
    if name == "rollout" and result.get("strategy"):
        weight = result.get("weight")
        return f"{result['strategy']}" + (f" at {float(weight):.0%}" if isinstance(weight, (int, float)) else "")
    if name == "watch" and result.get("verdict"):
        return f"{result['verdict']}: {result.get('reason', '')}"
    for key in ("summary", "reason", "skipped", "path"):
        if result.get(key):
            return str(result[key])
    return ""


@contextmanager
def _reading(cfg: Stored, journal: Journal | None) -> Iterator[Journal | None]:
    """``journal`` as it is (its opener closes it), or the journal opened read-only for this read and closed after;
    None when no agent ever ran."""
    if journal is not None:
        yield journal
        return
    opened = read_journal(cfg)
    try:
        yield opened
    finally:
        if opened is not None:
            opened.close()


def queued_triggers(cfg: ProjectConfig, *, journal: Journal | None = None) -> list[dict[str, Any]]:
    """The triggers waiting for the agent to take them (``mloop agent trigger`` while no agent ran), oldest first.
    Read only (``read_journal``, or ``journal`` when given); JournalError when the journal is damaged or locked."""
    with _reading(cfg, journal) as found:
        return [] if found is None else found.queued(cfg.model_name)


def cycles(cfg: ProjectConfig, *, limit: int = 20,
           journal: Journal | None = None) -> list[tuple[Cycle, list[AuditRecord]]]:
    """The newest cycles first, each with its audit records; none when no agent ever ran (no journal is created).
    Read only (``read_journal``, or ``journal`` when given); JournalError when the journal is damaged or locked."""
    with _reading(cfg, journal) as found:
        if found is None:
            return []
        newest = found.cycles(cfg.model_name, limit=limit)
    records = open_audit(cfg).records(model=cfg.model_name)
    by_cycle: dict[str, list[AuditRecord]] = {}
    for record in records:
        if record.cycle:
            by_cycle.setdefault(record.cycle, []).append(record)
    return [(cycle, by_cycle.get(cycle.id, [])) for cycle in newest]


def record_deploy(cfg: ProjectConfig, result: DeployResult, *, by: str = "mloop deploy") -> None:
    """A deploy, rollback, undeploy or roll-out promotion made by hand, in the audit log (so ``history --at`` sees
    it)."""
    if result.action not in ("started", "swapped", "rolled_back", "promoted", "stopped") or not result.name:
        return
    model = result.model or cfg.model_name
    open_audit(cfg).append("traffic", model, f"{by}: {result.name} {result.action.replace('_', ' ')} "
                           + (f"v{result.version}" if result.version else ""),
                           version=str(result.version or ""), deployment=result.name, weight=1.0, by=by,
                           stopped=result.action == "stopped")
