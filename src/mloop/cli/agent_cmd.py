"""``mloop agent ...`` and ``mloop history --at``: the continuous-training agent, printed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from mloop.cli.output import console, err_console, styled


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def run(*, port: int | None, once: bool, project: Path | None) -> None:
    from mloop.automation.agent import run_agent
    from mloop.config import load_project

    run_agent(load_project(project), port=port, once=once)


def start(*, port: int | None, project: Path | None) -> None:
    from mloop.automation import service
    from mloop.config import load_project

    state, started = service.start(load_project(project), port=port)
    console.print(f"agent {'started' if started else 'runs already'}: pid {state.pid}, {state.url}")


def stop(*, project: Path | None) -> None:
    from mloop.automation import service

    state = service.stop(service.find_home(project))
    console.print("no agent was running" if state is None else f"agent stopped (pid {state.pid})")


def status(*, as_json: bool, project: Path | None) -> None:
    from mloop.automation import service

    found = service.agent_status(service.find_home(project))
    if as_json:
        print(json.dumps({"running": found.running, "pid": found.state.pid if found.state else None,
                          "url": found.state.url if found.state else None, "status": found.live, "log": found.log,
                          "unfinished": found.unfinished, "stopped": found.stopped, "rollout": found.rollout,
                          "config_error": found.config_error or None, "journal_error": found.journal_error or None},
                         default=str))
        return
    summary = service.summarize(found)
    if summary.config_error:
        console.print(styled(("mloop.toml does not validate: ", "bold yellow"), summary.config_error,
                             "; a running agent keeps the settings it started with"), soft_wrap=True)
    if summary.journal_error:
        console.print(styled(("the journal cannot be read: ", "bold yellow"), summary.journal_error,
                             "; mloop doctor checks it"), soft_wrap=True)
    if summary.stopped_reason:
        console.print(styled(("the agent stopped itself: ", "bold red"), summary.stopped_reason,
                             f" ({_when(summary.stopped_at)}); look at mloop agent history, then: mloop agent start"),
                      soft_wrap=True)
    if summary.rollout:
        watched = ("the agent watches it" if summary.rollout.watched
                   else "NOTHING watches it: mloop agent start resumes the cycle")
        console.print(styled(("roll-out in progress: ", "bold yellow"),
                             f"v{summary.rollout.candidate} ({summary.rollout.share}); {watched}"), soft_wrap=True)
    if not summary.running:
        console.print(f"no agent runs; start it with: mloop agent start (log: {summary.log})")
        for cycle in summary.unfinished:
            console.print(f"cycle {cycle.id} is unfinished ({cycle.state}): the next start resumes it")
        return
    if summary.url is None:
        console.print(f"an agent runs (pid {summary.pid}) but its agent.json is gone; restart it: "
                      "mloop agent stop && mloop agent start")
        return
    console.print(f"agent runs: pid {summary.pid}, {summary.url}, since {_when(summary.since)}")
    for name, problem in summary.problems.items():
        console.print(styled((f"{name}: ", "yellow"), problem), soft_wrap=True)
    if summary.stopped_reason and found.live:
        console.print(styled(("stopped: ", "bold red"), summary.stopped_reason))
    for cycle in summary.under_way:
        console.print(f"cycle {cycle.id}: {cycle.state}" + (f", v{cycle.candidate}" if cycle.candidate else ""))
    if summary.pending:
        console.print(f"pending: {summary.pending} trigger(s), newest: {summary.pending_newest}; {summary.waiting}")
    elif not summary.under_way:
        console.print("idle" + (f"; next scheduled cycle {summary.next_schedule}" if summary.next_schedule else ""))


def trigger(reason: str, *, project: Path | None) -> None:
    from mloop.automation import service

    console.print(f"trigger: {service.trigger(service.find_home(project), reason)}")


def history(cycle_id: str | None, *, limit: int, as_json: bool, project: Path | None) -> None:
    from mloop.automation.history import cycles
    from mloop.config import load_project
    from mloop.errors import ConfigError

    from mloop.automation.agent import open_audit

    cfg = load_project(project)
    broken = open_audit(cfg).verify()
    for problem in broken[:5]:
        err_console.print(styled(("audit log: ", "bold red"), problem, " — it was changed after it was written"),
                          soft_wrap=True)
    found = cycles(cfg, limit=limit if cycle_id is None else 10_000)
    if cycle_id is not None:
        found = [(c, r) for c, r in found if c.id.startswith(cycle_id) or c.id.endswith(cycle_id)]
        if not found:
            raise ConfigError(f"no cycle {cycle_id!r}", hint="list them with: mloop agent history")
    if as_json:
        print(json.dumps([{**c.to_dict(), "audit": [r.__dict__ for r in records]} for c, records in found], default=str))
        return
    if not found:
        console.print("no cycles yet; start the agent (mloop agent start) or trigger one (mloop agent trigger)")
        return
    if cycle_id is None:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("cycle", "started", "state", "candidate", "champion", "triggers", "reason"):
            table.add_column(column, overflow="fold")
        for cycle, _ in found:
            kinds = sorted({t.get("kind", "?") for t in cycle.triggers})
            table.add_row(cycle.id, _when(cycle.created), cycle.state, f"v{cycle.candidate}" if cycle.candidate else "-",
                          f"v{cycle.champion}" if cycle.champion else "-", f"{len(cycle.triggers)} ({', '.join(kinds)})",
                          cycle.reason[:120])
        console.print(table)
        return
    for cycle, records in found:
        console.print(styled((f"cycle {cycle.id}", "bold"), f": {cycle.state}  {cycle.reason}"), soft_wrap=True)
        for t in cycle.triggers:
            console.print(f"  trigger {_when(t.get('at'))} {t.get('kind')}: {t.get('reason')}", soft_wrap=True)
        for record in records:
            console.print(f"  {_when(record.at)} {record.kind:<8} {record.summary}", soft_wrap=True)


def at(moment: str, *, as_json: bool, project: Path | None) -> None:
    from mloop.automation.history import parse_moment, served_at
    from mloop.config import load_project

    cfg = load_project(project)
    found = served_at(cfg, parse_moment(moment))
    if as_json:
        print(json.dumps(found.to_dict(), default=str))
        return
    console.print(f"at {_when(found.at)}, {found.model}:")
    if found.champion is None:
        console.print("  no champion yet")
    else:
        console.print(f"  champion v{found.champion} since {_when(found.champion_since)}", soft_wrap=True)
        console.print(f"  why: {found.why or 'not recorded'}", soft_wrap=True)
    if not found.deployments:
        console.print("  no deployment was serving (none recorded as serving then)")
    for name, shares in found.deployments.items():
        split = ", ".join(f"v{v} {w:.0%}" for v, w in sorted(shares.items(), key=lambda i: -i[1]))
        console.print(f"  deployment {name} served: {split}", soft_wrap=True)
    for record in found.events:
        console.print(f"  ({_when(record.at)} {record.kind}: {record.summary})", soft_wrap=True)


def promote(version: str, *, force: bool, reason: str, project: Path | None) -> None:
    from mloop.automation.override import promote as promote_version
    from mloop.config import load_project

    done = promote_version(load_project(project), version, force=force, reason=reason)
    if done.previous == done.version:
        console.print(f"{done.model} v{done.version} is the champion already")
        return
    served = f"; deployment {done.deployment} serves it" if done.deployment else ""
    console.print(f"{done.model} v{done.version} is the champion (was {'v' + done.previous if done.previous else 'none'})"
                  f"{' — override recorded' if done.forced else ''}{served}", soft_wrap=True)
