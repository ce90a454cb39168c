"""The continuous-training agent: takes triggers, coalesces them, and drives one cycle at a time.

Triggers come from the journal's inbox (``mloop agent trigger``, an alert posted to the agent's
``/alerts`` by Alertmanager or by mloop's own webhooks), from the deployment's alert log (mloop's rules,
read as the server writes them: no webhook to configure), from the cron schedule, from new versions of
the pipeline's input data and from model versions registered by someone else (CI). The coalescer lets
one cycle run and one wait per model; a burst of triggers becomes one cycle that lists them all.

``run_agent`` is the process's entrypoint (``mloop agent run``, or the background service that
``mloop agent start`` launches): it holds the agent's lock (one agent per project), handles SIGTERM, and
on start resumes every cycle the journal shows unfinished before it takes new triggers.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mloop._fs import atomic_write_text, hold_lock, rotate
from mloop.automation.audit import AuditLog
from mloop.automation.cycle import CycleContext, CycleRunner
from mloop.automation.journal import Cycle, Journal
from mloop.errors import ConfigError, MloopError

if TYPE_CHECKING:
    from mloop.automation.triggers import Coalescer, Trigger
    from mloop.config import ProjectConfig

COALESCER_KEY = "coalescer"


class Watcher(Protocol):
    problem: str

    def poll(self, now: float) -> list[Trigger]: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class ScheduleWatcherLike(Protocol):
    def next_at(self, now: float) -> float: ...
MAX_BODY = 1 << 20


class Stored(Protocol):
    """What finds the agent's files: a ``ProjectConfig``, or only the project's store (``service.AgentHome``,
    while ``mloop.toml`` does not validate)."""

    @property
    def store(self) -> Path: ...


def automation_dir(cfg: Stored) -> Path:
    return cfg.store / "automation"


def open_journal(cfg: Stored) -> Journal:
    return Journal(automation_dir(cfg) / "journal.db")


def read_journal(cfg: Stored) -> Journal | None:
    """The journal opened read-only (``Journal.open_read_only``: nothing written, moved or waited on for long), or
    None when no agent ever ran (no journal is created). JournalError when it is damaged or locked."""
    path = automation_dir(cfg) / "journal.db"
    return Journal.open_read_only(path) if path.exists() else None


def open_audit(cfg: Stored) -> AuditLog:
    return AuditLog(automation_dir(cfg) / "audit.jsonl")


AGENT_LOG_MAX_BYTES = 10 * 1024 * 1024  # agent.log is rotated past this size,
AGENT_LOG_KEEP = 3  # and agent.log.1 (the newest) ... agent.log.3 kept
LOG_CHECK_S = 10.0  # how often a running agent looks at its log's size


def log_path(cfg: Stored) -> Path:
    """The managed agent's output (``mloop agent start``)."""
    return automation_dir(cfg) / "agent.log"


def rotate_log(path: Path, *, max_bytes: int = AGENT_LOG_MAX_BYTES, fds: tuple[int, ...] = ()) -> bool:
    """Rotate ``path`` (``_fs.rotate``, ``AGENT_LOG_KEEP`` kept) once it passed ``max_bytes``; the descriptors
    ``fds`` (open on it: a running agent's stdout and stderr) then write to a new ``path``. Whether it rotated."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    rotate(path, AGENT_LOG_KEEP)
    if fds:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for target in fds:
                os.dup2(fd, target)
        finally:
            os.close(fd)
    return True


def _open_on(path: Path, fds: tuple[int, ...]) -> tuple[int, ...]:
    """Those of ``fds`` that write to the file ``path`` (none when the agent runs in a terminal)."""
    try:
        found = path.stat()
        return tuple(fd for fd in fds if os.path.samestat(os.fstat(fd), found))
    except OSError:
        return ()


def deployment_name(cfg: ProjectConfig) -> str:
    return cfg.settings.automation.deployment or cfg.model_name


@dataclass
class AgentState:
    """``agent.json``: the running agent's process and address, and what it works on (so that stop, status
    and trigger need no valid ``mloop.toml``)."""

    pid: int
    started: float
    host: str
    port: int
    model: str = ""
    deployment: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def state_path(cfg: Stored) -> Path:
    return automation_dir(cfg) / "agent.json"


def read_state(cfg: Stored) -> AgentState | None:
    try:
        return AgentState(**json.loads(state_path(cfg).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


class _Intake(ThreadingHTTPServer):
    request_queue_size = 128  # a burst of alerts is queued, not refused (the default backlog is 5)
    daemon_threads = True


class Agent:
    """The controller of one project's model; ``loop`` until ``stop`` is set."""

    def __init__(self, cfg: ProjectConfig) -> None:
        from mloop.automation.triggers import Coalescer, Schedule
        from mloop.automation.watchers import DataWatcher, RegistryWatcher, ScheduleWatcher

        self.cfg = cfg
        self.settings = cfg.settings.automation
        self.model = cfg.model_name
        self.deployment = deployment_name(cfg)
        self.journal = open_journal(cfg)
        self.audit = open_audit(cfg)
        self.stop = threading.Event()
        self.wake = threading.Event()
        triggers = self.settings.triggers
        saved = self.journal.get(COALESCER_KEY)
        try:
            self.coalescer: Coalescer = (Coalescer.from_dict(saved, triggers) if saved
                                         else Coalescer.from_section(triggers))
        except (ValueError, TypeError, KeyError) as err:  # a damaged record: what was pending is lost, said so
            self._say(f"the saved trigger state is damaged ({err}); starting with none pending")
            self.coalescer = Coalescer.from_section(triggers)
        self.watchers: dict[str, Watcher] = {}
        if triggers.schedule:
            self.watchers["schedule"] = ScheduleWatcher(Schedule(triggers.schedule, triggers.timezone),
                                                        state=self.journal.get("watch/schedule"))
        if triggers.data:
            self.watchers["data"] = DataWatcher(cfg, state=self.journal.get("watch/data"))
        if triggers.registry:
            self.watchers["registry"] = RegistryWatcher(cfg, self.model, state=self.journal.get("watch/registry"))
        self.alerts_seen = float(self.journal.get("watch/alerts") or time.time())
        self.alert_log_seen: tuple[int, int] | None = None  # the alert log's size and mtime when last read
        self.worker: threading.Thread | None = None
        self.last_poll = 0.0
        self.lock = threading.RLock()  # the coalescer and the journal's copy of it: HTTP threads, the loop, the cycle
        self.problems: dict[str, str] = {}
        self.said: dict[str, str] = {}  # each watcher's problem as last written to the log (said once, not per poll)
        self._check_deployment()

    def _check_deployment(self) -> None:
        """Say so when the deployment the agent rolls out to does not exist but others serve the model."""
        from mloop.deploy.local import deployments_dir, load_state
        from mloop.errors import DeployError

        try:
            if load_state(self.cfg, self.deployment) is not None:
                return
            folder = deployments_dir(self.cfg)
            others = [] if not folder.is_dir() else [
                d.name for d in folder.iterdir() if (d / "state.json").exists()
                and (found := load_state(self.cfg, d.name)) is not None and found.model == self.model]
        except DeployError:
            return
        if others:
            self.problems["deployment"] = (f"no deployment {self.deployment!r}, but {', '.join(others)} serve "
                                           f"{self.model}: cycles will move the alias without rolling out; set "
                                           f"[automation] deployment = {others[0]!r}")
            self._say(self.problems["deployment"])

    # ------------------------------------------------------------------------------------------ triggers

    def offer(self, trigger: Trigger, now: float | None = None) -> str:
        now = time.time() if now is None else now
        with self.lock:
            offer = self.coalescer.offer(trigger, now)
            self.journal.put(COALESCER_KEY, self.coalescer.to_dict())
        if offer.accepted:
            self.audit.append("trigger", self.model, f"{trigger.kind}: {trigger.reason}", at=trigger.at,
                              key=trigger.key, detail=trigger.detail, offer=offer.why)
        self.wake.set()
        return offer.why

    def poll(self, now: float) -> None:
        """Take the inbox; look at the schedule, the alert log, the data and the registry."""
        from mloop.automation.triggers import Trigger

        for model, raw in self.journal.drain():
            if model == self.model:
                self.offer(Trigger.from_dict(raw), now)
        schedule = self.watchers.get("schedule")
        if schedule is not None:
            self._poll_watcher("schedule", schedule, now)
        if now - self.last_poll < self.settings.poll_s:
            return
        self.last_poll = now
        for trigger in self._alert_log_triggers(now):
            self.offer(trigger, now)
        for name in ("data", "registry"):
            if name in self.watchers:
                self._poll_watcher(name, self.watchers[name], now)

    def _poll_watcher(self, name: str, watcher: Watcher, now: float) -> None:
        for trigger in watcher.poll(now):
            self.offer(trigger, now)
        if watcher.problem != self.said.get(name, ""):
            self._say(f"{name}: {watcher.problem}" if watcher.problem else f"{name}: problem gone")
            self.said[name] = watcher.problem
        self.journal.put(f"watch/{name}", watcher.to_dict())

    def _alert_log_triggers(self, now: float) -> list[Trigger]:
        from mloop.automation.triggers import alert_triggers
        from mloop.monitor.alerts import ALERT_LOG, webhook_payload
        from mloop.monitor.queries import alert_history

        folder = self.cfg.store / "monitor" / self.deployment
        try:  # the log only grows (or rotates): unchanged since the last look, nothing to read
            stat = (folder / ALERT_LOG).stat()
            seen = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            return []
        if seen == self.alert_log_seen:
            return []
        self.alert_log_seen = seen
        events = [e for e in alert_history(folder, since=self.alerts_seen).events
                  if e.ts > self.alerts_seen and e.status == "firing"]
        if not events:
            return []
        self.alerts_seen = max(e.ts for e in events)
        self.journal.put("watch/alerts", self.alerts_seen)
        return alert_triggers(webhook_payload(events), self.settings.triggers.alerts, now=now)

    # ------------------------------------------------------------------------------------------- cycles

    def stopped_by_rollbacks(self) -> dict[str, Any] | None:
        found = self.journal.get("stopped")
        return found if isinstance(found, dict) else None

    def start_due_cycle(self, now: float) -> Cycle | None:
        if self.worker is not None and self.worker.is_alive():
            return None
        if self.stopped_by_rollbacks():
            return None
        with self.lock:
            triggers = self.coalescer.take(now)
            if not triggers:
                return None
            cycle = self.journal.new_cycle(self.model, [t.to_dict() for t in triggers], now=now)
            self.coalescer.started(cycle.id, now)
            self.journal.put(COALESCER_KEY, self.coalescer.to_dict())
        self.audit.append("cycle", self.model, f"cycle started by {len(triggers)} trigger(s): "
                          + "; ".join(t.reason for t in triggers[:5]) + (" ..." if len(triggers) > 5 else ""),
                          cycle=cycle.id, triggers=len(triggers))
        self._run_in_worker(cycle)
        return cycle

    def _run_in_worker(self, cycle: Cycle) -> None:
        def work() -> None:
            done = CycleRunner(self._context()).drive(cycle)
            if done.final:
                with self.lock:
                    self.coalescer.finished(cycle.id, time.time())
                    self.journal.put(COALESCER_KEY, self.coalescer.to_dict())
            self._say(f"cycle {cycle.id}: {done.state}: {done.reason}")
            self.wake.set()

        self.worker = threading.Thread(target=work, name=f"cycle-{cycle.id}", daemon=True)
        self.worker.start()

    def _context(self) -> CycleContext:
        """A cycle reads mloop.toml as it is when it starts (parameters, gate, roll-out and watch edited while the
        agent runs apply to the next cycle); while the file does not read, cycles keep the settings the agent
        started with, and the agent's log says why."""
        from mloop.config import load_project

        try:
            cfg = load_project(self.cfg.root)
        except MloopError as err:
            self._say(f"mloop.toml does not read ({err.message}); this cycle uses the settings the agent started with")
            cfg = self.cfg
        return CycleContext(cfg, self.journal, self.audit, self.model, self.deployment, stop=self.stop,
                            own=self._own, on_alert=self._raise_alert, superseded=self._newer_candidate)

    def _newer_candidate(self) -> str:
        """A version registered outside the agent waiting for the next cycle ('' if none): the watch of the
        cycle running gives way to it, as Argo Rollouts restarts an analysis for a new revision."""
        with self.lock:
            pending = self.coalescer.pending
            ordered = pending.ordered() if pending else []
        for trigger in ordered:
            if trigger.kind == "registry":
                return trigger.reason
        return ""

    def _own(self, key: str) -> None:
        with self.lock:
            self.coalescer.own(key)
            self.journal.put(COALESCER_KEY, self.coalescer.to_dict())

    def _save_coalescer(self) -> None:
        with self.lock:
            self.journal.put(COALESCER_KEY, self.coalescer.to_dict())

    def resume(self) -> list[Cycle]:
        """Drive every unfinished cycle to a final state, oldest first (in this thread: before new triggers)."""
        unfinished = sorted(self.journal.cycles(self.model, open_only=True, limit=1000), key=lambda c: c.created)
        done = []
        for cycle in unfinished:
            self.audit.append("agent", self.model, f"resuming cycle {cycle.id} from {cycle.state}", cycle=cycle.id)
            running = self.coalescer.running
            if running is not None and running.cycle_id == "":  # killed between taking it and naming it
                self.coalescer.started(cycle.id, cycle.created)
            finished = CycleRunner(self._context()).drive(cycle)
            running = self.coalescer.running
            if finished.final and running is not None and running.cycle_id == cycle.id:
                self.coalescer.finished(cycle.id, time.time())
            done.append(finished)
        self.journal.put(COALESCER_KEY, self.coalescer.to_dict())
        return done

    def _raise_alert(self, name: str, summary: str) -> None:
        from mloop.monitor.alerts import ALERT_LOG, AlertEvent

        event = AlertEvent(time.time(), name, "firing", self.model, severity="critical", summary=summary)
        from mloop._fs import append_synced

        append_synced(automation_dir(self.cfg) / ALERT_LOG, (event.to_json() + "\n").encode())
        self.audit.append("agent", self.model, f"alert {name}: {summary}")
        self._say(f"ALERT {name}: {summary}")
        self._notify([event])

    def _notify(self, events: list[Any]) -> None:
        """The agent's own alerts go where the monitor's go: ``[monitor] webhooks`` (Alertmanager's format)."""
        import httpx

        from mloop._http import post_with_retries
        from mloop.monitor.alerts import webhook_payload

        from mloop.config import load_project

        try:
            monitor = load_project(self.cfg.root).settings.monitor  # the webhooks as mloop.toml says now
        except MloopError:
            monitor = self.cfg.settings.monitor
        body = json.dumps(webhook_payload(events)).encode()
        for url in monitor.webhooks:
            try:
                post_with_retries(url, body, token=monitor.webhook_token.get_secret_value())
            except httpx.HTTPError as err:
                self._say(f"alert not delivered to {url}: {err}")

    def loop(self, *, once: bool = False) -> None:
        """Take triggers and run cycles until stopped (``once``: until nothing is pending or running)."""
        while not self.stop.is_set():
            if self.stopped_by_rollbacks() and not (self.worker and self.worker.is_alive()):
                self._say(f"stopped: {self.stopped_by_rollbacks()}")
                return
            now = time.time()
            self.poll(now)
            self.start_due_cycle(now)
            busy = self.worker is not None and self.worker.is_alive()
            if once and not busy and self.coalescer.pending is None:
                return
            due = self.coalescer.next_due(now)
            waits = [self.settings.poll_s - (now - self.last_poll), 1.0]
            if due is not None:
                waits.append(due - now)
            self.wake.wait(max(0.05, min(waits)))
            self.wake.clear()

    def status(self) -> dict[str, Any]:
        now = time.time()
        running = [c.to_dict() for c in self.journal.cycles(self.model, open_only=True, limit=5)]
        with self.lock:
            pending = self.coalescer.pending
            waiting = self.coalescer.why_waiting(now)
        schedule = self.watchers.get("schedule")
        return {"model": self.model, "deployment": self.deployment, "running": running,
                "pending": [t.to_dict() for t in pending.ordered()] if pending else [],
                "waiting": waiting,
                "next_schedule": schedule.next_at(now) if isinstance(schedule, ScheduleWatcherLike) else None,
                "timezone": self.settings.triggers.timezone,
                "problems": {**self.problems, **{name: w.problem for name, w in self.watchers.items() if w.problem}},
                "stopped": self.stopped_by_rollbacks()}

    @staticmethod
    def _say(message: str) -> None:
        print(json.dumps({"at": time.time(), "agent": message}), flush=True)


# ------------------------------------------------------------------------------------------ HTTP intake


def _handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            if self.path == "/health":
                self._answer(200, {"ok": True})
            elif self.path == "/status":
                self._answer(200, agent.status())
            else:
                self._answer(404, {"error": f"no route {self.path}; try /status, POST /alerts or POST /trigger"})

        def do_POST(self) -> None:  # noqa: N802
            from mloop.automation.triggers import alert_triggers, manual_trigger

            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self._answer(413, {"error": f"body over {MAX_BODY} bytes"})
                return
            try:
                payload = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._answer(400, {"error": "the body is not JSON"})
                return
            if self.path in ("/alerts", "/alerts/webhook"):
                try:
                    found = alert_triggers(payload, agent.settings.triggers.alerts, model=agent.model)
                except ValueError as err:
                    self._answer(422, {"error": str(err)})
                    return
                answers = [agent.offer(t) for t in found]
                self._answer(200, {"triggers": len(found), "offers": answers})
            elif self.path == "/trigger":
                reason = str(payload.get("reason") or "by hand") if isinstance(payload, dict) else "by hand"
                now = time.time()
                why = agent.offer(manual_trigger(reason, now), now)
                self._answer(200, {"offer": why})
            else:
                self._answer(404, {"error": f"no route {self.path}"})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the standard library's name)
            pass

    return Handler


def run_agent(cfg: ProjectConfig, *, port: int | None = None, once: bool = False) -> None:
    """The agent's process: one per project (a lock), SIGTERM stops it after the step under way. ``once``:
    the triggers waiting now (and those their cycles bring) are handled, then it returns."""
    folder = automation_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    held = hold_lock(folder / "agent.lock")
    if held is None:
        holder = (folder / "agent.lock").read_text(encoding="utf-8", errors="replace").strip()
        raise ConfigError(f"an agent runs for this project already (pid {holder or '?'})",
                          hint="see it with: mloop agent status; stop it with: mloop agent stop")
    agent = Agent(cfg)
    port = cfg.settings.automation.port if port is None else port
    try:
        server = _Intake(("127.0.0.1", port), _handler(agent))
    except OSError as err:
        raise ConfigError(f"the agent cannot listen on 127.0.0.1:{port}: {err.strerror}",
                          hint="set another [automation] port in mloop.toml, or --port") from err
    server.daemon_threads = True
    agent._say(f"agent for {agent.model} (deployment {agent.deployment!r}) takes alerts and triggers on "
               f"http://127.0.0.1:{server.server_address[1]}")

    def stop(signum: int, frame: FrameType | None) -> None:
        agent.stop.set()
        agent.wake.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=server.serve_forever, name="agent-http", daemon=True).start()

    def keep_the_log_small() -> None:  # the process's stdout and stderr, when they are agent.log (mloop agent start)
        while not agent.stop.wait(LOG_CHECK_S):
            fds = _open_on(log_path(cfg), (1, 2))
            if fds:
                sys.stdout.flush()
                sys.stderr.flush()
                rotate_log(log_path(cfg), fds=fds)

    threading.Thread(target=keep_the_log_small, name="agent-log", daemon=True).start()
    from mloop._proc import started_at

    atomic_write_text(state_path(cfg), json.dumps({"pid": os.getpid(), "started": started_at(), "host": "127.0.0.1",
                                                   "port": server.server_address[1], "model": agent.model,
                                                   "deployment": agent.deployment}), mode=0o600)
    agent.audit.append("agent", agent.model, f"agent started (pid {os.getpid()}, port {server.server_address[1]})")
    if agent.stopped_by_rollbacks():  # a person starts it again: the rollbacks were looked at
        agent.journal.put("stopped", None)
        agent.journal.put("rollbacks_in_a_row", 0)
    try:
        agent.resume()
        agent.loop(once=once)
        if agent.worker is not None:
            agent.worker.join(timeout=60)
    finally:
        server.shutdown()
        agent.audit.append("agent", agent.model, "agent stopped")
        state_path(cfg).unlink(missing_ok=True)
        agent.journal.close()
