"""The Deployments page: each local deployment's health (alive, ready), the version it serves, its address and,
during a roll-out, the traffic split; roll back, promote or abort a roll-out after a confirmation.

It reads what ``mloop deployments`` reads (``deploy.local.list_deployments``, ``rollout_state``) and acts through
``automation.manual``, as ``mloop rollback`` and ``mloop rollout promote|abort`` do: the admin calls carry the
deployment's admin token and each traffic change goes to the audit log. On the deployment the agent rolls out to
(``[automation]``), promoting or aborting its roll-out, or rolling back during it, is refused with the command that
does it the agent's way. A confirmed action is done only if the deployment is still as it was when asked.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import streamlit as st

from mloop.errors import MloopError
from mloop.ui.context import project

if TYPE_CHECKING:
    from mloop.config import ProjectConfig
    from mloop.deploy.local import Status
    from mloop.monitor.status import RolloutStatus

BY = "mloop ui"  # who made a change, in the audit log
PENDING = "deployments_pending"  # session state: the action waiting for its confirmation
DONE = "deployments_done"  # session state: what the last confirmed action did (shown after the rerun)
ROLLOUT_TIMEOUT_S = 5.0  # how long the page waits for a deployment to say its roll-out


@dataclass(frozen=True)
class Action:
    """An action waiting for its confirmation, with the state the question was asked about: on Confirm it is done
    only if the deployment still serves ``served``, with the roll-out of ``candidate`` (None: no roll-out) and
    ``back_to`` the version a rollback goes back to."""

    label: str  # "rollback", "promote" or "abort": names its confirm button
    name: str  # the deployment
    question: str  # what the confirmation asks
    served: str  # the version the deployment served when asked
    candidate: str | None  # the candidate of its roll-out when asked; None when none was under way
    back_to: str | None  # the version it served before (a rollback's target) when asked
    do: Callable[[ProjectConfig, str], str]  # does it on deployment ``name``: what happened, in words


def page() -> None:
    from mloop.deploy import local
    from mloop.errors import DeployError

    cfg = project()
    st.title("Deployments")
    done = st.session_state.pop(DONE, None)
    if done is not None:
        (st.success if done[0] else st.error)(done[1])
    problems: list[DeployError] = []
    found = local.list_deployments(cfg, problems)
    pending = st.session_state.get(PENDING)
    if isinstance(pending, Action) and pending.name not in {item.deployment.name for item in found if item.running}:
        del st.session_state[PENDING]  # its deployment stopped (or was forgotten) since the question
    for problem in problems:
        st.warning(f"{problem.message}\n\n**Fix:** {problem.hint}")
    if not found:
        if not problems:
            st.info("No deployment runs: start one with `mloop deploy`. (One stopped with `mloop undeploy` is "
                    "forgotten here; what it served stays on the Monitoring page.)")
        return
    for item in found:
        with st.container(border=True):
            _deployment(cfg, item)


def _deployment(cfg: ProjectConfig, item: Status) -> None:
    from mloop.automation.manual import ROLLBACK_UNDER_AGENT, agent_owns_rollouts

    d = item.deployment
    version = item.served_version or d.version
    st.subheader(d.name)
    state, serves, previous = st.columns(3)
    state.metric("State", item.state, help="alive: its process runs; ready: it answers /v2/health/ready")
    serves.metric("Serves", f"v{version}", help=f"model {d.model}")
    previous.metric("Served before", ", ".join(f"v{v}" for v in d.history[-3:]) or "-",
                    help="rolling back goes to the last of these")
    st.markdown(f"model **{d.model}** · alive: **{'yes' if item.running else 'no'}** · ready: "
                f"**{'yes' if item.healthy else 'no'}** · URL: {d.url} · pid {d.pid} · started "
                f"{dt.datetime.fromtimestamp(d.started):%Y-%m-%d %H:%M}")
    if not item.running:
        st.warning(f"{d.name} is not running. Start it again with `mloop deploy models:/{d.model}/{d.version} "
                   f"--name {d.name}`, or forget it with `mloop undeploy {d.name}`.")
        return
    # a server that failed its health probe is not asked its roll-out (it could hold the page): its state is unknown
    rollout, known = _rollout(cfg, d.name) if item.healthy else (None, False)
    if rollout is not None:
        show_rollout(rollout)
    owned = agent_owns_rollouts(cfg, d.name)
    candidate = rollout.candidate.version if rollout is not None else None
    columns = st.columns(3)
    under_agent = owned and rollout is not None
    back_to = d.history[-1] if d.history else None
    if columns[0].button("Roll back", key=f"rollback-{d.name}", disabled=not d.history or under_agent,
                         help=(f"the agent is rolling out v{candidate} here: {ROLLBACK_UNDER_AGENT}" if under_agent
                               else f"serve v{d.history[-1]} again (what mloop rollback {d.name} does)" if d.history
                               else f"{d.name} has served only v{d.version}: nothing to roll back to")):
        _ask(Action("rollback", d.name, f"Roll back {d.name} from v{version} to v{back_to}?", version,
                    candidate, back_to, partial(_rollback, expect=(version, back_to or ""))))
    if rollout is not None and candidate is not None:
        refused = ("the agent owns this deployment's roll-outs: mloop agent status says how its watch goes; "
                   "mloop agent stop gives the champion all the traffic back") if owned else None
        if columns[1].button(f"Promote v{candidate}", key=f"promote-{d.name}", disabled=owned,
                             help=refused or f"v{candidate} serves alone from now on"):
            _ask(Action("promote", d.name, f"Promote v{candidate}: {d.name} serves it alone from now on? "
                                           f"{_gate_note(cfg, d.model, candidate)}", version,
                        candidate, back_to, _promote))
        if columns[2].button("Abort roll-out", key=f"abort-{d.name}", disabled=owned,
                             help=refused or f"v{rollout.champion.version} answers every request again"):
            _ask(Action("abort", d.name, f"Abort the roll-out of v{candidate}: v{rollout.champion.version} answers "
                                         "every request again?", version, candidate, back_to, _abort))
        if owned:
            st.caption("The agent owns this deployment's roll-outs ([automation] in mloop.toml): let its watch decide "
                       "(`mloop agent status`), or stop it (`mloop agent stop` gives the champion all the traffic "
                       "back) and promote a version with `mloop models promote VERSION`. Rolling back waits for "
                       "the roll-out to end, too.")
    _confirmation(cfg, d.name, (version, candidate, back_to) if known else None)


def read_rollout(cfg: ProjectConfig, name: str) -> tuple[RolloutStatus | None, str]:
    """The roll-out under way on deployment ``name`` as ``GET /admin/rollout`` says it (None without one; what
    ``mloop deployments`` reads), and why it could not be read ("" when it could)."""
    from mloop.deploy.local import rollout_state
    from mloop.monitor.status import parse_rollout

    try:
        return parse_rollout(rollout_state(cfg, name, timeout=ROLLOUT_TIMEOUT_S)), ""
    except MloopError as err:
        return None, err.message


def _rollout(cfg: ProjectConfig, name: str) -> tuple[RolloutStatus | None, bool]:
    """The roll-out under way on deployment ``name`` (None without one), and whether its state could be read."""
    rollout, trouble = read_rollout(cfg, name)
    if trouble:
        st.warning(f"Its roll-out state cannot be read: {trouble}")
    return rollout, not trouble


def rollout_rows(rollout: RolloutStatus) -> list[dict[str, Any]]:
    """The traffic split of a roll-out, one row per version (what ``mloop monitor status`` prints)."""
    rows = []
    for version in (rollout.champion, rollout.candidate):
        if rollout.strategy == "canary":
            share = rollout.weight if version.role == "candidate" else 1.0 - rollout.weight
        else:  # shadow: the champion answers everything, the candidate scores every request and answers none
            share = 1.0 if version.role == "champion" else 0.0
        rows.append({"version": f"v{version.version}", "role": version.role, "share of requests": f"{share:.0%}",
                     "requests": version.requests, "rows": version.rows, "server errors": version.server_errors,
                     "p50 ms": _ms(version.p50_latency_ms), "p99 ms": _ms(version.p99_latency_ms),
                     "labelled": version.labelled,
                     "live scores": ", ".join(f"{k} {v:.3f}" for k, v in version.scores.items()) or "-"})
    return rows


def show_rollout(rollout: RolloutStatus) -> None:
    """A roll-out in progress: what it is, and the table of both versions since it started."""
    ago = max(time.time() - rollout.started_at, 0.0)
    share = f", answering {rollout.weight:.0%} of requests" if rollout.strategy == "canary" else \
        " (scores every request, answers none)"
    st.markdown(f"**Roll-out:** {rollout.strategy} of v{rollout.candidate.version}{share}, started {ago:.0f} s ago")
    st.dataframe(rollout_rows(rollout), hide_index=True, width="stretch")
    shadow = rollout.shadow
    if shadow is not None:
        rate = "-" if shadow.disagreement_rate is None else f"{shadow.disagreement_rate:.1%}"
        st.caption(f"shadow: disagreed on {shadow.disagreed_rows} of {shadow.compared_rows} rows ({rate})"
                   + (f"; {shadow.dropped_rows} rows dropped, {shadow.failed_rows} failed"
                      if shadow.dropped_rows or shadow.failed_rows else ""))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _gate_note(cfg: ProjectConfig, model: str, version: str) -> str:
    """What the registry recorded of ``version``'s gate, and where the champion alias stays: said before a
    version is put in front of all the traffic by hand."""
    from mloop.registry.aliases import champion_version, version_tags
    from mloop.registry.report import rule_outcome

    try:
        tags, champion = version_tags(cfg, model, version), champion_version(cfg, model)
    except MloopError:
        return "(Its gate decision could not be read.)"
    passed, reason = rule_outcome(tags)
    gate = ("It passed the gate at registration" if passed
            else f"**It did not pass the gate at registration** ({reason or 'no reason recorded'})"
            if passed is False else "No gate decision is recorded for it")
    alias = (f"; the champion alias stays on v{champion} (`mloop models promote {version}` moves it)"
             if champion and champion != version else "")
    return f"{gate}{alias}."


def _ask(action: Action) -> None:
    st.session_state[PENDING] = action
    st.rerun()


def _confirmation(cfg: ProjectConfig, name: str, now: tuple[str, str | None, str | None] | None) -> None:
    """The confirmation step of the action waiting on deployment ``name``, and the action once confirmed if the
    deployment is as it was when asked: ``now`` is (the version it serves, its roll-out's candidate or None, the
    version it served before or None) as read on this rerun, None when it could not be read. Otherwise nothing is done and the user is told to ask
    again."""
    action = st.session_state.get(PENDING)
    if not isinstance(action, Action) or action.name != name:
        return
    st.warning(action.question)
    confirm, cancel, _ = st.columns([1, 1, 4])
    if cancel.button("Cancel", key=f"cancel-{name}"):
        del st.session_state[PENDING]
        st.rerun()
    if confirm.button("Confirm", key=f"confirm-{action.label}-{name}", type="primary"):
        del st.session_state[PENDING]
        if now is None:
            st.session_state[DONE] = (False, f"{name}: its state cannot be read now, so whether it changed since you "
                                             "asked cannot be told; nothing was done. Ask again once it answers.")
        elif now != (action.served, action.candidate, action.back_to):
            served, candidate, _ = now
            state = f"v{served}" + (f", rolling out v{candidate}" if candidate else "")
            st.session_state[DONE] = (False, f"{name}: the deployment changed since you asked (it serves {state} "
                                             "now); nothing was done. Ask again.")
        else:
            with st.spinner(f"{action.label} of {name}..."):
                st.session_state[DONE] = _act(cfg, action)
        st.rerun()


def _act(cfg: ProjectConfig, action: Action) -> tuple[bool, str]:
    """Do ``action``: (whether it worked, what happened in words)."""
    try:
        return True, action.do(cfg, action.name)
    except MloopError as err:
        return False, f"{err.message}" + (f"\n\n**Fix:** {err.hint}" if err.hint else "")


def _rollback(cfg: ProjectConfig, name: str, *, expect: tuple[str, str]) -> str:
    from mloop.automation import manual

    result = manual.rollback(cfg, name, by=BY, expect=expect)  # checked again under the deployment's lock
    return f"{result.name}: rolled back from v{result.previous_version} to v{result.version}"


def _promote(cfg: ProjectConfig, name: str) -> str:
    from mloop.automation import manual

    result = manual.promote_rollout(cfg, name, by=BY)
    return f"{result.name}: promoted v{result.version} (v{result.previous_version} before)"


def _abort(cfg: ProjectConfig, name: str) -> str:
    from mloop.automation import manual

    answer = manual.abort_rollout(cfg, name, by=BY)
    return f"{name}: {answer.get('message', 'roll-out aborted')}"
