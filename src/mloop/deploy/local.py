"""Local deployments: ``mloop serve`` as a managed background process, with hot swap and rollback.

Each deployment lives in ``.mloop/deployments/<name>/``: ``state.json`` (pid, port, the version
served and the ones before it, a per-deployment admin token; mode 0600) and ``server.log``.
Changing the version of a running deployment asks the server to load and warm the new version
while the old one keeps serving, then switch (``POST /admin/model``); a version that fails is
refused and nothing changes.

A roll-out (``start_rollout``: canary or shadow, then ``set_rollout_weight`` step by step, and
``promote_rollout`` or ``abort_rollout``) is held by the running server (``/admin/rollout``); the
state file changes only when a candidate is promoted, which is recorded as a deploy would be (so
``rollback`` goes back to the version served before it). A server that restarts serves the recorded
version alone: a roll-out does not survive it.

Operations on one deployment are serialized by a lock (``.mloop/locks/deploy-<name>.lock``): two
``mloop deploy`` of one name at once start one server, the second finds it running. A server's state
is saved the moment it is started, before it is ready, so a ``mloop deploy`` killed while waiting
leaves a deployment that ``deployments`` lists and ``undeploy`` stops; one that fails or is
interrupted stops its server and forgets it. Each deployment's server monitors into its own folder,
``.mloop/monitor/<name>/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mloop._fs import atomic_write_text, file_lock
from mloop._proc import process_alive, started_at
from mloop.config import ProjectConfig
from mloop.deploy import DeployOptions, DeployResult, DeployTarget
from mloop.errors import DeployError, did_you_mean

READY_TIMEOUT_S = 180.0
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass
class Deployment:
    name: str
    model: str
    version: str
    host: str
    port: int
    pid: int
    admin_token: str
    started: float
    history: list[str] = field(default_factory=list)  # versions served before, oldest first
    log: str = ""  # the server's output

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class Status:
    deployment: Deployment
    running: bool
    healthy: bool
    served_version: str | None

    @property
    def state(self) -> str:
        """``healthy`` (alive and ready), ``running, not ready`` or ``stopped``."""
        return "healthy" if self.healthy else ("running, not ready" if self.running else "stopped")


def deployments_dir(cfg: ProjectConfig) -> Path:
    return cfg.store / "deployments"


def check_name(name: str) -> str:
    """``name`` if it is a plain name (it names a folder under ``.mloop/``), else a DeployError."""
    if not PLAIN_NAME.fullmatch(name):
        raise DeployError(f"{name!r} is not a plain deployment name",
                          hint="use up to 100 letters, digits, '.', '_' and '-', starting with a letter or digit: "
                               "mloop deploy MODEL --name NAME")
    return name


def _state_path(cfg: ProjectConfig, name: str) -> Path:
    return deployments_dir(cfg) / check_name(name) / "state.json"


def _lock(cfg: ProjectConfig, name: str) -> AbstractContextManager[None]:
    return file_lock(cfg.lock_path(f"deploy-{check_name(name)}"))


def load_state(cfg: ProjectConfig, name: str) -> Deployment | None:
    path = _state_path(cfg, name)
    try:
        return _typed(Deployment(**json.loads(path.read_text(encoding="utf-8"))))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, UnicodeDecodeError, OSError) as err:
        raise DeployError(f"the state of deployment {name!r} ({path}) is unreadable: {err}",
                          hint=f"stop its process by hand if it runs (mloop doctor lists servers of this project), "
                               f"then delete {path}") from err


def _typed(deployment: Deployment) -> Deployment:
    """``deployment`` if each field has its type (TypeError otherwise: a state file edited or damaged)."""
    kinds: dict[str, type | tuple[type, ...]] = {"name": str, "model": str, "version": str, "host": str, "port": int, "pid": int, "admin_token": str,
             "started": (int, float), "history": list, "log": str}
    wrong = [name for name, kind in kinds.items() if not isinstance(getattr(deployment, name), kind)
             or isinstance(getattr(deployment, name), bool)]
    if wrong or deployment.pid <= 0 or not all(isinstance(v, str) for v in deployment.history):
        raise TypeError(f"wrong values for {', '.join(wrong) or 'pid or history'}")
    return deployment


def _save_state(cfg: ProjectConfig, deployment: Deployment) -> None:
    # 0600 from the start: it holds the admin token
    atomic_write_text(_state_path(cfg, deployment.name), json.dumps(asdict(deployment), indent=1), mode=0o600)


def _alive(deployment: Deployment) -> bool:
    return process_alive(deployment.pid, started_by=deployment.started)


def status(deployment: Deployment) -> Status:
    import httpx

    from mloop._http import get_json

    running = _alive(deployment)
    healthy, served = False, None
    if running:
        try:
            healthy = bool(get_json(f"{deployment.url}/v2/health/ready", timeout=2.0).get("ready"))
            served = str(get_json(f"{deployment.url}/v2/models/{deployment.model}", timeout=2.0)["versions"][0])
        except (httpx.HTTPError, ValueError, KeyError, IndexError, AttributeError):
            healthy = False
    return Status(deployment, running, healthy, served)


def running_address(cfg: ProjectConfig, model: str) -> str | None:
    """``host:port`` of a running local deployment serving ``model`` (the one named after it first)."""
    candidates = sorted(list_deployments(cfg), key=lambda s: s.deployment.name != model)
    for found in candidates:
        if found.running and found.deployment.model == model:
            return f"{found.deployment.host}:{found.deployment.port}"
    return None


def list_deployments(cfg: ProjectConfig, problems: list[DeployError] | None = None) -> list[Status]:
    """Every deployment of the project; one whose state is unreadable is left out (and added to
    ``problems`` when given), so one damaged file does not hide the others."""
    root = deployments_dir(cfg)
    names = sorted(p.parent.name for p in root.glob("*/state.json")) if root.exists() else []
    found = []
    for name in names:
        try:
            deployment = load_state(cfg, name)
        except DeployError as err:
            if problems is not None:
                problems.append(err)
            continue
        if deployment is not None:
            found.append(status(deployment))
    return found


class LocalTarget(DeployTarget):
    """``mloop serve`` as a managed background process on this machine."""

    def deploy(self, uri: str, options: DeployOptions) -> DeployResult:
        return deploy(self.cfg, uri, name=options.name, port=options.port, host=options.host)


def _result(action: str, deployment: Deployment, previous: str | None = None) -> DeployResult:
    return DeployResult("local", action, deployment.name, deployment.model, deployment.version,  # type: ignore[arg-type]
                        previous_version=previous, url=deployment.url, pid=deployment.pid,
                        log=Path(deployment.log) if deployment.log else None)


def deploy(cfg: ProjectConfig, uri: str, *, name: str | None = None, port: int | None = None,
           host: str = "127.0.0.1") -> DeployResult:
    """Start a deployment of ``uri``, or move a running one to it."""
    from mloop.registry.fetch import parse_model_uri

    model, _, _ = parse_model_uri(uri)
    if name is None and not PLAIN_NAME.fullmatch(model):
        raise DeployError(f"model {model!r} needs a plain deployment name", hint=f"name it: mloop deploy {uri} --name NAME")
    name = check_name(model if name is None else name)
    with _lock(cfg, name):
        return _deploy(cfg, uri, model, name, port, host)


def _deploy(cfg: ProjectConfig, uri: str, model: str, name: str, port: int | None, host: str) -> DeployResult:
    from mloop.registry.fetch import resolve_version

    current = load_state(cfg, name)
    running = current is not None and _alive(current)
    if current is not None and running and current.model != model:
        raise DeployError(f"deployment {name!r} serves model {current.model!r}, not {model!r}",
                          hint=f"deploy it under another name: mloop deploy {uri} --name {model}")
    version = resolve_version(cfg, uri)  # a version that does not exist is refused before anything changes
    if current is not None and running:
        if current.version == version:
            return _result("unchanged", current)
        previous = current.version
        _swap(current, f"models:/{model}/{version}")
        current.history.append(previous)
        current.version = version
        _save_state(cfg, current)
        return _result("swapped", current, previous)
    if port is None and current is not None and current.host == host and _port_free(host, current.port):
        port = current.port  # a redeploy after a crash keeps its address, so its clients find it again
    return _result("started", _start(cfg, name, model, version, host, port))


def rollback(cfg: ProjectConfig, name: str, *, expect: tuple[str, str] | None = None) -> DeployResult:
    """Swap a running deployment back to the version it served before. With ``expect`` (the served version and
    the one to go back to, as someone was asked to confirm), DeployError unless the deployment is still in
    that state, checked under the deployment's lock."""
    with _lock(cfg, name):
        return _rollback(cfg, name, expect)


def _rollback(cfg: ProjectConfig, name: str, expect: tuple[str, str] | None = None) -> DeployResult:
    current = _running(cfg, name)
    if expect is not None and (current.version, current.history[-1] if current.history else None) != expect:
        raise DeployError(f"deployment {name!r} changed since the rollback from v{expect[0]} to v{expect[1]} was asked: "
                          f"it serves v{current.version} now; nothing was done",
                          hint=f"ask again: mloop deployments shows what it serves, mloop rollback {name} rolls back")
    if not current.history:
        raise DeployError(f"deployment {name!r} has served only v{current.version}; there is nothing to roll back to",
                          hint=f"deploy another version: mloop deploy models:/{current.model}/VERSION --name {name}")
    previous = current.history[-1]
    _swap(current, f"models:/{current.model}/{previous}")
    undone = current.version
    current.history.pop()
    current.version = previous
    _save_state(cfg, current)
    return _result("rolled_back", current, undone)


def undeploy(cfg: ProjectConfig, name: str, *, timeout: float = 30.0) -> DeployResult:
    """Stop a deployment (SIGTERM: in-flight requests are answered first) and forget it."""
    with _lock(cfg, name):
        current = load_state(cfg, name)
        if current is None:
            known = [s.deployment.name for s in list_deployments(cfg)]
            raise DeployError(f"no deployment {name!r}; {did_you_mean(name, known)}",
                              hint="list them with: mloop deployments")
        _stop(current, timeout)
        _state_path(cfg, name).unlink(missing_ok=True)
        return _result("stopped", current)


def _stop(deployment: Deployment, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; only the process the deployment started (a recycled pid is
    someone else's)."""
    if not _alive(deployment):
        return
    os.kill(deployment.pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while _alive(deployment) and time.time() < deadline:
        time.sleep(0.1)
    if _alive(deployment):
        os.kill(deployment.pid, signal.SIGKILL)


def _running(cfg: ProjectConfig, name: str) -> Deployment:
    current = load_state(cfg, name)
    if current is None or not _alive(current):
        raise DeployError(f"deployment {name!r} is not running", hint="start it with: mloop deploy")
    return current


def _swap(deployment: Deployment, uri: str) -> None:
    _admin(deployment, "POST", "/admin/model", {"uri": uri}, refused=f"refused {uri}",
           hint="the previous version keeps serving; see its log in .mloop/deployments/")


def _admin(deployment: Deployment, method: str, path: str, body: dict[str, Any] | None = None, *,
           refused: str = "refused", hint: str = "", timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
    """A call to the deployment's admin API with its admin token; its JSON answer, or a DeployError with the
    server's reason."""
    import httpx

    from mloop._http import client

    try:
        with client(timeout=timeout, token=deployment.admin_token) as http:
            response = http.request(method, f"{deployment.url}{path}", json=body)
    except httpx.HTTPError as err:
        raise DeployError(f"{deployment.name} did not answer on {deployment.url}: {err}",
                          hint=f"check it with: mloop deployments; restart with: mloop undeploy {deployment.name}") from err
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code >= 300 or not isinstance(answer, dict):
        message = answer.get("error", "") if isinstance(answer, dict) else f"HTTP {response.status_code}"
        raise DeployError(f"{deployment.name} {refused}: {message}",
                          hint=hint or f"see its log: {deployment.log or '.mloop/deployments/'}")
    return answer


# ------------------------------------------------------------------------------------------ roll-outs


def start_rollout(cfg: ProjectConfig, name: str, uri: str, strategy: str, weight: float | None = None, *,
                  tolerance: float | None = None) -> dict[str, Any]:
    """Start a roll-out of ``uri`` (``models:/NAME/VERSION`` or ``@ALIAS``, a version of the deployment's model)
    in the running deployment ``name``: ``strategy`` ``"canary"`` answers ``weight`` (0..1) of the requests with
    it, ``"shadow"`` scores every request with it without answering any (``weight`` None or 0;
    ``tolerance``: how far apart a regressor's answers may be and agree). The candidate is loaded while
    the served version keeps serving; a roll-out in progress is replaced. Returns the roll-out's state
    (as ``rollout_state``); DeployError if the deployment is not running or the server refuses."""
    from mloop.registry.fetch import parse_model_uri, resolve_version

    with _lock(cfg, name):
        current = _running(cfg, name)
        model, _, _ = parse_model_uri(uri)
        if model != current.model:
            raise DeployError(f"deployment {name!r} serves model {current.model!r}, not {model!r}",
                              hint=f"roll out a version of {current.model}: models:/{current.model}/VERSION")
        version = resolve_version(cfg, uri)  # a version that does not exist is refused before the server is asked
        body: dict[str, Any] = {"uri": f"models:/{model}/{version}", "strategy": strategy}
        if weight is not None:
            body["weight"] = weight
        if tolerance is not None:
            body["tolerance"] = tolerance
        return _admin(current, "POST", "/admin/rollout", body, refused=f"refused the {strategy} of v{version}",
                      hint=f"v{current.version} keeps serving as before")


def set_rollout_weight(cfg: ProjectConfig, name: str, weight: float) -> dict[str, Any]:
    """The share of requests (0..1) the candidate of deployment ``name``'s canary answers from now on; returns
    the roll-out's state. DeployError without a canary in progress."""
    with _lock(cfg, name):
        return _admin(_running(cfg, name), "POST", "/admin/rollout/weight", {"weight": weight},
                      refused=f"refused weight {weight}")


def promote_rollout(cfg: ProjectConfig, name: str) -> DeployResult:
    """Make the candidate of deployment ``name``'s roll-out its only served version (no reload, no request
    dropped), recorded as a deploy: ``rollback`` then goes back to the version served before."""
    with _lock(cfg, name):
        current = _running(cfg, name)
        try:
            answer = _admin(current, "POST", "/admin/rollout/promote", refused="could not promote",
                            hint="start a roll-out first: start_rollout (GET /admin/rollout shows the state)")
        except DeployError:
            _record_served(cfg, current)  # a promotion whose answer was lost is still recorded
            raise
        promoted, previous = str(answer["serving"]["version"]), str(answer["previous"]["version"])
        _record(cfg, current, promoted, previous)
        return _result("promoted", current, previous)


def abort_rollout(cfg: ProjectConfig, name: str) -> dict[str, Any]:
    """Drop the candidate of deployment ``name``'s roll-out: the served version answers every request. Without a
    roll-out nothing changes (``"aborted": false``)."""
    with _lock(cfg, name):
        return _admin(_running(cfg, name), "POST", "/admin/rollout/abort", refused="could not abort its roll-out")


def rollout_state(cfg: ProjectConfig, name: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """The roll-out of deployment ``name`` (``GET /admin/rollout``): strategy, weight, versions, and per version
    requests, rows, server errors, latency and live scores since it started; ``"active": false`` without one.
    DeployError when the server does not answer within ``timeout``."""
    return _admin(_running(cfg, name), "GET", "/admin/rollout", refused="could not say its roll-out", timeout=timeout)


def _record(cfg: ProjectConfig, current: Deployment, version: str, previous: str) -> None:
    """``version`` serves now, ``previous`` before it (state.json, as a deploy records a swap)."""
    if version == current.version:
        return
    current.history.append(previous)
    current.version = version
    _save_state(cfg, current)


def _record_served(cfg: ProjectConfig, current: Deployment) -> None:
    """Record the version the server says it serves, if it differs from the state (best effort)."""
    try:
        served = _admin(current, "GET", "/admin/rollout", timeout=10.0).get("serving_version")
    except DeployError:
        return
    if isinstance(served, str) and served != current.version:
        _record(cfg, current, served, current.version)


def _ready(deployment: Deployment) -> bool:
    import httpx

    from mloop._http import get_json

    try:
        return bool(get_json(f"{deployment.url}/v2/health/ready", timeout=1.0).get("ready"))
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _start(cfg: ProjectConfig, name: str, model: str, version: str, host: str, port: int | None) -> Deployment:
    folder = deployments_dir(cfg) / name
    folder.mkdir(parents=True, exist_ok=True)
    port = port or _free_port(host)
    token = secrets.token_urlsafe(24)
    log_path = folder / "server.log"
    command = [sys.executable, "-m", "mloop.cli.main", "serve", f"models:/{model}/{version}", "--name", name,
               "--host", host, "--port", str(port), "--project", str(cfg.root)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cfg.root, start_new_session=True,
                                env={**os.environ, "MLOOP_SERVING_ADMIN_TOKEN": token})
    try:
        started = started_at(proc.pid)
    except Exception:  # noqa: BLE001 (psutil: it exited already; the loop below says why)
        started = time.time()
    deployment = Deployment(name, model, version, host, port, proc.pid, token, started, log=str(log_path))
    ready = False
    try:
        _save_state(cfg, deployment)  # from now on it is managed, whatever happens to this process
        deadline = time.time() + READY_TIMEOUT_S
        while time.time() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
                raise DeployError(f"the server for {model} v{version} exited with code {proc.returncode}: "
                                  + " | ".join(tail), hint=f"full log: {log_path}")
            if _ready(deployment):
                ready = True
                return deployment
            time.sleep(0.2)
        raise DeployError(f"the server for {model} v{version} was not ready after {READY_TIMEOUT_S:.0f} s",
                          hint=f"see {log_path}")
    finally:
        if not ready:  # failed, timed out or interrupted (Ctrl-C, SIGTERM): nothing is left behind
            proc.kill()
            proc.wait()
            _state_path(cfg, name).unlink(missing_ok=True)
