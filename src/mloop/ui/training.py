"""The Continuous training page: the agent's status (running or not, what it waits for, why it stopped itself) and
its cycles as timelines (trigger → snapshot → train → gate → infra → roll-out → watch → outcome), each with its
audit records and whether the audit log's hash chain verifies.

It reads what ``mloop agent status`` and ``mloop agent history`` read: ``automation.service.agent_summary``,
``automation.history.cycles`` and ``timeline``, and the audit log's ``verify``. The agent's journal is opened read
only, once per rerun (``automation.agent.read_journal``): the page never writes to it, moves it or waits long on
it; a damaged or locked journal is said, with its fix.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import streamlit as st

from mloop.errors import MloopError
from mloop.ui.charts import time_x
from mloop.ui.context import project, stop_with

if TYPE_CHECKING:
    from mloop.automation.audit import AuditRecord
    from mloop.automation.journal import Cycle
    from mloop.automation.service import AgentSummary
    from mloop.config import ProjectConfig

CYCLES_SHOWN = 20
OUTCOME_ICONS = {"promoted": ":material/check_circle:", "rejected": ":material/block:",
                 "held": ":material/pause_circle:", "rolled_back": ":material/undo:", "unchanged": ":material/remove:",
                 "failed": ":material/error:", "abandoned": ":material/delete:"}
UNDER_WAY = ":material/hourglass_top:"
# The timeline's colours, fixed so they mean the same on every render: the steps in blues and purples, the outcome
# by what it means (green: promoted; red: failed or rolled back; amber: held or rejected at the gate; grey: nothing
# changed or the cycle was given up; light blue: still under way).
PHASE_COLOURS = {"trigger": "#90caf9", "snapshot": "#4fc3f7", "train": "#1e88e5", "gate": "#5e35b1",
                 "infra": "#7986cb", "rollout": "#ab47bc", "watch": "#283593"}
OUTCOME_COLOURS = {"promoted": "#2e7d32", "rolled_back": "#e53935", "failed": "#b71c1c", "rejected": "#f9a825",
                   "held": "#ffb300", "unchanged": "#9e9e9e", "abandoned": "#616161", "under way": "#bbdefb"}


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def page() -> None:
    cfg = project()
    st.title("Continuous training")
    try:
        _page(cfg)
    except MloopError as err:
        stop_with(err)


def _page(cfg: ProjectConfig) -> None:
    from mloop.automation.agent import read_journal
    from mloop.automation.history import cycles, queued_triggers
    from mloop.automation.service import AgentHome, agent_summary

    journal = read_journal(cfg)  # read only, once per rerun; None when no agent ever ran
    try:
        found = agent_summary(AgentHome(cfg.root, cfg), journal=journal)
        history = cycles(cfg, limit=CYCLES_SHOWN, journal=journal)
        queued = queued_triggers(cfg, journal=journal)
    finally:
        if journal is not None:
            journal.close()
    if not cfg.settings.agent_owns_champion and not history and not found.running and not queued:
        st.info("No continuous-training agent here: this project's mloop.toml has no [automation] table and no agent "
                "ever ran. Add an [automation] table (the agent then gates, rolls out and promotes new versions), "
                "then start the agent with `mloop agent start`.")
        return
    _status(found)
    if queued:
        st.info(f"{len(queued)} trigger(s) queued, the newest: {queued[-1].get('kind', '?')}: "
                f"{queued[-1].get('reason', '')}; the agent takes them when it next looks"
                + ("" if found.running else " (`mloop agent start`)") + ".")
    st.subheader("Cycles")
    _audit(cfg)
    if not history:
        st.info("No cycle yet: the agent starts one on a trigger" + ("" if queued else "; trigger one by hand with "
                                                                    "`mloop agent trigger`") + ".")
        return
    _overview(history)
    for cycle, records in history:
        _cycle(cycle, records)


def _audit(cfg: ProjectConfig) -> None:
    """Whether the audit log's hash chain verifies; that there is none yet, plainly."""
    from mloop.automation.agent import open_audit

    audit = open_audit(cfg)
    broken = audit.verify()
    if broken:
        st.error("The audit log was changed after it was written:\n\n" + "\n\n".join(f"- {p}" for p in broken[:10]))
        return
    count = len(audit.records())
    if count == 0:
        st.info("No audit records yet: the agent writes one for each step of a cycle, and `mloop deploy`, "
                "`mloop rollback` and the Deployments page one for each traffic change.")
    else:
        st.success(f"Audit log verified: its hash chain is intact ({count} records).")


def _status(found: AgentSummary) -> None:
    st.subheader("Agent")
    if found.config_error:
        st.warning(f"mloop.toml does not validate: {found.config_error}; a running agent keeps the settings it "
                   "started with.")
    if found.journal_error:
        st.warning(f"The agent's journal cannot be read now: {found.journal_error}. `mloop doctor` checks it.")
    if found.stopped_reason:
        st.error(f"The agent stopped itself: {found.stopped_reason} ({_when(found.stopped_at)}). "
                 "Look at the cycles below, then `mloop agent start`.")
    if found.rollout:
        watched = ("the agent watches it" if found.rollout.watched
                   else "NOTHING watches it: `mloop agent start` resumes the cycle")
        st.warning(f"Roll-out in progress: v{found.rollout.candidate} ({found.rollout.share}); {watched}.")
    if not found.running:
        st.info(f"No agent runs; start it with `mloop agent start` (its log: {found.log}).")
        for cycle in found.unfinished:
            st.markdown(f"- cycle {cycle.id} is unfinished ({cycle.state}): the next start resumes it")
        return
    if found.url is None:
        st.warning(f"An agent runs (pid {found.pid}) but its agent.json is gone; restart it: "
                   "`mloop agent stop && mloop agent start`.")
        return
    st.success(f"The agent runs: pid {found.pid}, {found.url}, since {_when(found.since)}.")
    for name, problem in found.problems.items():
        st.warning(f"{name}: {problem}")
    for cycle in found.under_way:
        st.markdown(f"- cycle {cycle.id}: {cycle.state}" + (f", candidate v{cycle.candidate}" if cycle.candidate
                                                            else ""))
    if found.pending:
        st.markdown(f"Pending: {found.pending} trigger(s), the newest: {found.pending_newest}; {found.waiting}")
    elif not found.under_way:
        st.markdown("Idle" + (f"; next scheduled cycle {found.next_schedule}" if found.next_schedule else "") + ".")


def _overview(history: list[tuple[Cycle, list[AuditRecord]]]) -> None:
    """Every cycle shown as one Gantt chart: a row per cycle, a bar per step coloured by the step, and a diamond
    at the cycle's end coloured by the outcome (``OUTCOME_COLOURS``: a bar of an instant would be a sliver); a
    failed step is outlined in red."""
    import altair as alt
    import pandas as pd

    from mloop.automation.history import timeline

    rows = [{"cycle": cycle.id, "phase": phase.name, "start": pd.Timestamp(phase.start, unit="s"),
             "end": pd.Timestamp(max(phase.end, phase.start + 0.2), unit="s"), "state": phase.state,
             "outcome": (phase.state if cycle.final else "under way") if phase.name == "outcome" else None,
             "detail": phase.detail} for cycle, _ in history for phase in timeline(cycle)]
    frame = pd.DataFrame(rows)
    legend = alt.Legend(orient="bottom", direction="horizontal", columns=4)  # at the side of one cycle: cut off
    y = alt.Y("cycle:N", title=None, sort="-x")
    tooltip = ["cycle:N", "phase:N", "state:N", "start:T", "end:T", "detail:N"]
    steps = alt.Chart().mark_bar().transform_filter(alt.datum.phase != "outcome").encode(
        x=time_x(frame), x2="end:T", y=y, tooltip=tooltip,
        color=alt.Color("phase:N", title="step", legend=legend, scale=alt.Scale(domain=list(PHASE_COLOURS),
                                                                                range=list(PHASE_COLOURS.values()))),
        stroke=alt.condition(alt.datum.state == "failed", alt.value("#b71c1c"), alt.value(None)))
    outcomes = alt.Chart().mark_point(shape="diamond", filled=True, size=160, opacity=1).transform_filter(
        alt.datum.phase == "outcome").encode(
        x="end:T", y=y, tooltip=tooltip,
        color=alt.Color("outcome:N", title="outcome", legend=legend,
                        scale=alt.Scale(domain=list(OUTCOME_COLOURS), range=list(OUTCOME_COLOURS.values()))))
    chart = alt.layer(steps, outcomes, data=frame, title="The agent's cycles").resolve_scale(color="independent")
    st.altair_chart(chart, width="stretch")


def _cycle(cycle: Cycle, records: list[AuditRecord]) -> None:
    from mloop.automation.history import timeline

    versions = (f" · candidate v{cycle.candidate}" if cycle.candidate else "") + \
        (f" · champion before v{cycle.champion}" if cycle.champion else "")
    with st.expander(f"cycle {cycle.id}: {cycle.state}{versions}", expanded=not cycle.final,
                     icon=OUTCOME_ICONS.get(cycle.state, UNDER_WAY)):
        if cycle.reason:
            st.markdown(f"**{cycle.state}**: {cycle.reason}")
        st.dataframe([{"step": phase.name, "state": phase.state, "started": _when(phase.start),
                       "took": f"{phase.end - phase.start:.1f} s", "what": phase.detail}
                      for phase in timeline(cycle)], hide_index=True, width="stretch")
        if records:
            st.markdown("**Audit records**")
            st.dataframe([{"#": r.seq, "time": _when(r.at), "kind": r.kind, "version": r.version or "-",
                           "summary": r.summary, "hash": r.hash[:12]} for r in records], hide_index=True,
                         width="stretch")
        else:
            st.caption("No audit record names this cycle.")
