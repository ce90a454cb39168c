"""Local deployments: ``mloop serve`` as a managed background process, with hot swap and rollback.

Each deployment lives in ``.mloop/deployments/<name>/``: ``state.json`` (pid, port, the version
served and the ones before it, a per-deployment admin token; mode 0600) and ``server.log``.
Changing the version of a running deployment asks the server to load and warm the new version
while the old one keeps serving, then switch (``POST /admin/model``); a version that fails is
refused and nothing changes.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mloop._fs import atomic_write_text
from mloop._proc import process_alive
from mloop.config import ProjectConfig
from mloop.deploy import DeployOptions, DeployResult, DeployTarget
from mloop.errors import DeployError, did_you_mean

READY_TIMEOUT_S = 180.0


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


def deployments_dir(cfg: ProjectConfig) -> Path:
    return cfg.store / "deployments"


def _state_path(cfg: ProjectConfig, name: str) -> Path:
    return deployments_dir(cfg) / name / "state.json"


def load_state(cfg: ProjectConfig, name: str) -> Deployment | None:
    path = _state_path(cfg, name)
    try:
        return Deployment(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as err:
        raise DeployError(f"the state of deployment {name!r} ({path}) is unreadable: {err}",
                          hint=f"stop its process by hand if it runs, then delete {path.parent}") from err


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


def list_deployments(cfg: ProjectConfig) -> list[Status]:
    root = deployments_dir(cfg)
    names = sorted(p.parent.name for p in root.glob("*/state.json")) if root.exists() else []
    return [status(d) for d in (load_state(cfg, n) for n in names) if d is not None]


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
    from mloop.registry.fetch import parse_model_uri, resolve_version

    model, _, _ = parse_model_uri(uri)
    name = name or model
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
    return _result("started", _start(cfg, name, model, version, host, port))


def rollback(cfg: ProjectConfig, name: str) -> DeployResult:
    """Swap a running deployment back to the version it served before."""
    current = _running(cfg, name)
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
    current = load_state(cfg, name)
    if current is None:
        known = [s.deployment.name for s in list_deployments(cfg)]
        raise DeployError(f"no deployment {name!r}; {did_you_mean(name, known)}", hint="list them with: mloop deployments")
    if _alive(current):
        os.kill(current.pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while _alive(current) and time.time() < deadline:
            time.sleep(0.1)
        if _alive(current):
            os.kill(current.pid, signal.SIGKILL)
    _state_path(cfg, name).unlink(missing_ok=True)
    return _result("stopped", current)


def _running(cfg: ProjectConfig, name: str) -> Deployment:
    current = load_state(cfg, name)
    if current is None or not _alive(current):
        raise DeployError(f"deployment {name!r} is not running", hint="start it with: mloop deploy")
    return current


def _swap(deployment: Deployment, uri: str) -> None:
    import httpx

    from mloop._http import client

    try:
        with client(timeout=READY_TIMEOUT_S, token=deployment.admin_token) as http:
            response = http.post(f"{deployment.url}/admin/model", json={"uri": uri})
    except httpx.HTTPError as err:
        raise DeployError(f"{deployment.name} did not answer on {deployment.url}: {err}",
                          hint=f"check it with: mloop deployments; restart with: mloop undeploy {deployment.name}") from err
    if response.status_code >= 300:
        try:
            message = response.json().get("error", "")
        except ValueError:
            message = f"HTTP {response.status_code}"
        raise DeployError(f"{deployment.name} refused {uri}: {message}",
                          hint="the previous version keeps serving; see its log in .mloop/deployments/")


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


def _start(cfg: ProjectConfig, name: str, model: str, version: str, host: str, port: int | None) -> Deployment:
    folder = deployments_dir(cfg) / name
    folder.mkdir(parents=True, exist_ok=True)
    port = port or _free_port(host)
    token = secrets.token_urlsafe(24)
    log_path = folder / "server.log"
    command = [sys.executable, "-m", "mloop.cli.main", "serve", f"models:/{model}/{version}",
               "--host", host, "--port", str(port), "--project", str(cfg.root)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cfg.root, start_new_session=True,
                                env={**os.environ, "MLOOP_SERVING_ADMIN_TOKEN": token})
    deployment = Deployment(name, model, version, host, port, proc.pid, token, time.time(), log=str(log_path))
    deadline = time.time() + READY_TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
            raise DeployError(f"the server for {model} v{version} exited with code {proc.returncode}: "
                              + " | ".join(tail), hint=f"full log: {log_path}")
        if _ready(deployment):
            _save_state(cfg, deployment)
            return deployment
        time.sleep(0.2)
    proc.kill()
    raise DeployError(f"the server for {model} v{version} was not ready after {READY_TIMEOUT_S:.0f} s",
                      hint=f"see {log_path}")
