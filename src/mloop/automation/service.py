"""``mloop agent start|stop|status|trigger``: the agent as a managed background process.

The process is ``mloop agent run`` in its own session, logging to ``.mloop/automation/agent.log``;
``agent.json`` (written by the process itself once it listens) says where it is. Whether it runs is
the kernel's answer for that pid *and* a start time no later than the file's (a recycled pid is not it).
Stop, status and trigger need only the project's root and ``.mloop/`` (an ``AgentHome``): the running agent
tolerates an ``mloop.toml`` that does not validate, so the commands that reach it must too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop._proc import process_alive
from mloop.automation.agent import (
    AgentState,
    Stored,
    automation_dir,
    log_path,
    open_journal,
    read_journal,
    read_state,
    rotate_log,
    state_path,
)
from mloop.errors import ConfigError, MloopError

if TYPE_CHECKING:
    from mloop.automation.journal import Journal
    from mloop.config import ProjectConfig

START_TIMEOUT_S = 60.0
ROLLOUT_TIMEOUT_S = 5.0  # how long status waits for the deployment to say its roll-out


@dataclass
class AgentHome:
    """A project's agent files, found from the project's root alone; ``cfg`` is None (and ``config_error``
    says why) while ``mloop.toml`` does not validate."""

    root: Path
    cfg: ProjectConfig | None
    config_error: str = ""

    @property
    def store(self) -> Path:
        from mloop.config import STORE_DIR

        return self.root / STORE_DIR


def find_home(project: Path | None = None) -> AgentHome:
    """The agent's home of the project at or above ``project`` (ProjectNotFound without an ``mloop.toml``),
    with its settings when they validate."""
    from mloop.config import find_project_root, load_project

    root = find_project_root(project)
    try:
        return AgentHome(root, load_project(root))
    except MloopError as err:
        return AgentHome(root, None, err.message)


@dataclass
class AgentStatus:
    running: bool
    state: AgentState | None
    live: dict[str, Any] | None  # what the agent says of itself (GET /status), when it answers
    log: str
    unfinished: list[dict[str, Any]] = field(default_factory=list)  # cycles the journal shows under way
    stopped: dict[str, Any] | None = None  # why the agent stopped itself (too many rollbacks), if it did
    rollout: dict[str, Any] | None = None  # the deployment's roll-out in progress, if any
    config_error: str = ""  # why mloop.toml does not validate ('' when it does)
    journal_error: str = ""  # why the journal could not be read now (damaged, locked; '' when it could)


@dataclass(frozen=True)
class CycleLine:
    """A cycle not final yet: under way in the running agent, or left unfinished for the next start to resume."""

    id: str
    state: str
    candidate: str | None = None


@dataclass(frozen=True)
class RolloutLine:
    """The roll-out in progress on the agent's deployment."""

    candidate: str  # the candidate's version
    share: str  # of the requests it answers: "20%", or "shadow" (it answers none)
    watched: bool  # by a running agent; else nothing watches it until mloop agent start resumes the cycle


@dataclass
class AgentSummary:
    """What ``mloop agent status`` and the web app's Continuous training page say of the agent: typed, the
    moments left as timestamps, the schedule already written in its own zone. Both only format it."""

    running: bool
    pid: int | None  # of the running agent
    url: str | None  # where it listens; None while it runs without its agent.json (restart it)
    since: float | None  # when it started
    log: str
    config_error: str = ""  # why mloop.toml does not validate ('' when it does)
    journal_error: str = ""  # why the journal cannot be read now ('' when it can, or there is none)
    stopped_reason: str = ""  # why the agent stopped itself (too many rollbacks in a row); '' when it did not
    stopped_at: float | None = None
    rollout: RolloutLine | None = None  # a roll-out in progress that a cycle left (watched or not)
    unfinished: list[CycleLine] = field(default_factory=list)  # no agent runs: what its next start resumes
    under_way: list[CycleLine] = field(default_factory=list)  # the running agent's cycles
    problems: dict[str, str] = field(default_factory=dict)  # a watcher's (or the agent's) problem, by name
    pending: int = 0  # triggers the running agent holds back (debounce, a cycle under way)
    pending_newest: str = ""  # the newest one's reason
    waiting: str = ""  # why they wait
    next_schedule: str = ""  # the next scheduled cycle in the schedule's zone ('' without a schedule)

    @property
    def answers(self) -> bool:
        """An agent runs and says where (its agent.json is there)."""
        return self.running and self.url is not None


def zoned(ts: float, zone: str) -> str:
    """``ts`` in the IANA zone ``zone``, named: 2026-11-28 09:00 Asia/Tokyo (UTC if the zone is unknown)."""
    import datetime as dt
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return f"{dt.datetime.fromtimestamp(ts, ZoneInfo(zone)):%Y-%m-%d %H:%M} {zone}"
    except (ZoneInfoNotFoundError, ValueError):
        return f"{dt.datetime.fromtimestamp(ts, dt.UTC):%Y-%m-%d %H:%M} UTC"


def summarize(found: AgentStatus) -> AgentSummary:
    """``found`` as the typed summary the faces format (the agent's own answer read here, once)."""
    state = found.state if found.running else None
    live: dict[str, Any] = found.live or {}
    stopped = found.stopped or (live.get("stopped") if isinstance(live.get("stopped"), dict) else None) or {}
    rollout = None
    if found.rollout:
        share = (f"{float(found.rollout.get('weight') or 0):.0%}" if found.rollout.get("strategy") == "canary"
                 else "shadow")
        rollout = RolloutLine(str(found.rollout.get("candidate_version") or "?"), share, found.running)
    pending = live.get("pending") or []
    schedule = live.get("next_schedule")
    return AgentSummary(
        running=found.running, pid=state.pid if state else None,
        url=state.url if state is not None and state.port else None, since=state.started if state else None,
        log=found.log, config_error=found.config_error, journal_error=found.journal_error,
        stopped_reason=str(stopped.get("reason", "")) if stopped else "",
        stopped_at=float(stopped["at"]) if isinstance(stopped.get("at"), (int, float)) else None,
        rollout=rollout,
        unfinished=[CycleLine(str(c["id"]), str(c["state"])) for c in found.unfinished] if not found.running else [],
        under_way=[CycleLine(str(c["id"]), str(c["state"]), str(c["candidate"]) if c.get("candidate") else None)
                   for c in live.get("running", [])],
        problems={str(name): str(problem) for name, problem in (live.get("problems") or {}).items()},
        pending=len(pending), pending_newest=str(pending[-1].get("reason", "")) if pending else "",
        waiting=str(live.get("waiting") or ""),
        next_schedule=zoned(float(schedule), live.get("timezone") or "UTC") if isinstance(schedule, (int, float))
        else "")


def agent_summary(home: AgentHome, *, journal: Journal | None = None) -> AgentSummary:
    """``agent_status`` summarized (``summarize``)."""
    return summarize(agent_status(home, journal=journal))


def _lock_holder(cfg: Stored) -> int | None:
    """The pid holding the agent's lock (an agent runs), or None: the lock file, not agent.json, is the truth."""
    import fcntl

    path = automation_dir(cfg) / "agent.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def running_agent(cfg: Stored) -> AgentState | None:
    state = read_state(cfg)
    if state is not None and process_alive(state.pid, started_by=state.started):
        return state
    holder = _lock_holder(cfg)
    if holder is not None and holder > 0 and process_alive(holder):  # running, its agent.json gone
        from mloop._proc import started_at

        return AgentState(holder, started_at(holder), "127.0.0.1", 0)
    return None


def agent_status(home: AgentHome, *, journal: Journal | None = None) -> AgentStatus:
    """Whether the agent runs and what it says of itself; else the cycles it left unfinished, why it stopped
    itself, and a roll-out that nothing watches. Reads only ``.mloop/`` when ``mloop.toml`` does not validate
    (then the roll-out is looked for only in the deployment a running agent names). The journal is only read
    (``journal`` when given, else opened read-only here): one that is damaged or locked is named in
    ``journal_error``, never moved or waited on."""
    import httpx

    from mloop._http import get_json
    from mloop.automation.agent import deployment_name
    from mloop.automation.journal import JournalError

    state = running_agent(home)
    live = None
    if state is not None and state.port:
        try:
            live = get_json(f"{state.url}/status", timeout=3.0)
        except (httpx.HTTPError, ValueError):
            live = None
    found = AgentStatus(state is not None, state, live, str(log_path(home)),
                        config_error=home.config_error)
    cfg = home.cfg
    try:
        reading = journal if journal is not None else read_journal(home)
    except JournalError as err:
        found.journal_error = err.message
        return found
    if reading is None:  # no agent ever ran
        return found
    try:  # one model per project: without settings, the journal's cycles are that model's
        found.unfinished = [c.to_dict() for c in reading.cycles(cfg.model_name if cfg else None, open_only=True,
                                                                limit=5)]
        stopped = reading.get("stopped")
        found.stopped = stopped if isinstance(stopped, dict) else None
    except JournalError as err:  # locked or damaged after it opened
        found.journal_error = err.message
    finally:
        if journal is None:
            reading.close()
    if (found.unfinished or found.stopped) and cfg is not None:
        from mloop.deploy.local import load_state, rollout_state
        from mloop.errors import DeployError

        deployment = load_state(cfg, deployment_name(cfg))
        if deployment is not None and process_alive(deployment.pid, started_by=deployment.started):
            try:
                rolling = rollout_state(cfg, deployment.name, timeout=ROLLOUT_TIMEOUT_S)
                found.rollout = rolling if rolling.get("active") else None
            except DeployError:
                pass
    return found


def start(cfg: ProjectConfig, *, port: int | None = None) -> tuple[AgentState, bool]:
    """Start the agent in the background unless it runs: (its state, whether it was started now)."""
    found = running_agent(cfg)
    if found is not None:
        return found, False
    folder = automation_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    state_path(cfg).unlink(missing_ok=True)
    log = log_path(cfg)
    rotate_log(log)  # the running agent rotates it too (past the same size)
    command = [sys.executable, "-m", "mloop.cli.main", "agent", "run", "--project", str(cfg.root)]
    if port is not None:
        command += ["--port", str(port)]
    with log.open("ab") as output:
        proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cfg.root, start_new_session=True)
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
            raise ConfigError(f"the agent exited at once (code {proc.returncode}): " + " | ".join(tail),
                              hint=f"full log: {log}")
        state = read_state(cfg)
        if state is not None and state.pid == proc.pid:
            return state, True
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise ConfigError(f"the agent did not start within {START_TIMEOUT_S:.0f} s", hint=f"see {log}")


def stop(cfg: Stored, *, timeout: float = 90.0) -> AgentState | None:
    """SIGTERM the agent (it finishes the step under way, gives the champion all traffic back if it was
    watching) and wait; SIGKILL after ``timeout``. None when no agent ran."""
    state = running_agent(cfg)
    if state is None:
        return None
    try:
        os.kill(state.pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    deadline = time.time() + timeout
    while time.time() < deadline and process_alive(state.pid, started_by=state.started):
        time.sleep(0.1)
    if process_alive(state.pid, started_by=state.started):
        os.kill(state.pid, signal.SIGKILL)
    state_path(cfg).unlink(missing_ok=True)
    return state


def trigger(home: AgentHome, reason: str) -> str:
    """A manual trigger: into the journal's inbox (taken when the agent next looks, even if it is not
    running now), and the running agent woken to take it at once. ConfigError when no agent runs to take it
    and ``mloop.toml`` does not validate (no agent can start, and the model it would be for is unknown)."""
    import httpx

    from mloop.automation.triggers import manual_trigger

    now = time.time()
    state = running_agent(home)
    if state is not None and state.port:
        try:
            response = httpx.post(f"{state.url}/trigger", json={"reason": reason}, timeout=5.0)
            response.raise_for_status()
            return str(response.json().get("offer", "taken"))
        except (httpx.HTTPError, ValueError):
            pass
    model = home.cfg.model_name if home.cfg is not None else (state.model if state is not None else "")
    if not model:
        raise ConfigError(f"no agent can take the trigger: {home.config_error}",
                          hint="fix mloop.toml, then: mloop agent start; mloop agent trigger")
    journal = open_journal(home)
    try:
        journal.push(model, manual_trigger(reason, now).to_dict())
    finally:
        journal.close()
    return "queued: the agent takes it when it " + ("next looks" if state else "starts (mloop agent start)")
