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
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mloop.config import ProjectConfig
from mloop.errors import DeployError
from mloop.pipeline.artifacts import atomic_write_text

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
    path = _state_path(cfg, deployment.name)
    atomic_write_text(path, json.dumps(asdict(deployment), indent=1))
    os.chmod(path, 0o600)  # it holds the admin token


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running mloop process (not a recycled pid of another program)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a recycled pid belongs to some other program
        return b"mloop" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def _get(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def status(deployment: Deployment) -> Status:
    running = process_alive(deployment.pid)
    healthy, served = False, None
    if running:
        try:
            healthy = bool(_get(f"{deployment.url}/v2/health/ready").get("ready"))
            served = str(_get(f"{deployment.url}/v2/models/{deployment.model}")["versions"][0])
        except (OSError, ValueError, KeyError, IndexError):
            healthy = False
    return Status(deployment, running, healthy, served)


def list_deployments(cfg: ProjectConfig) -> list[Status]:
    root = deployments_dir(cfg)
    names = sorted(p.parent.name for p in root.glob("*/state.json")) if root.exists() else []
    return [status(d) for d in (load_state(cfg, n) for n in names) if d is not None]


def deploy(cfg: ProjectConfig, uri: str, *, name: str | None = None, port: int | None = None,
           host: str = "127.0.0.1") -> tuple[Deployment, str]:
    """Start a deployment of ``uri``, or move a running one to it. Returns (deployment, what happened)."""
    from mloop.models.fetch import parse_model_uri, resolve_version

    model, _, _ = parse_model_uri(uri)
    version = resolve_version(cfg, uri)
    name = name or model
    current = load_state(cfg, name)
    if current is not None and process_alive(current.pid):
        if current.model != model:
            raise DeployError(f"deployment {name!r} serves model {current.model!r}, not {model!r}",
                              hint=f"deploy it under another name: mloop deploy {uri} --name {model}")
        if current.version == version:
            return current, f"{name} already serves {model} v{version}"
        _swap(current, f"models:/{model}/{version}")
        current.history.append(current.version)
        current.version = version
        _save_state(cfg, current)
        return current, f"{name}: swapped to {model} v{version} (v{current.history[-1]} before)"
    deployment = _start(cfg, name, model, version, host, port)
    return deployment, f"{name}: started {model} v{version} on {deployment.url} (pid {deployment.pid})"


def rollback(cfg: ProjectConfig, name: str) -> tuple[Deployment, str]:
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
    return current, f"{name}: rolled back from v{undone} to v{previous}"


def undeploy(cfg: ProjectConfig, name: str, *, timeout: float = 30.0) -> str:
    """Stop a deployment (SIGTERM: in-flight requests are answered first) and forget it."""
    current = load_state(cfg, name)
    if current is None:
        known = [s.deployment.name for s in list_deployments(cfg)]
        from mloop.errors import did_you_mean

        raise DeployError(f"no deployment {name!r}; {did_you_mean(name, known)}", hint="list them with: mloop deployments")
    if process_alive(current.pid):
        os.kill(current.pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while process_alive(current.pid) and time.time() < deadline:
            time.sleep(0.1)
        if process_alive(current.pid):
            os.kill(current.pid, signal.SIGKILL)
    _state_path(cfg, name).unlink(missing_ok=True)
    return f"{name}: stopped (log kept in {deployments_dir(cfg) / name / 'server.log'})"


def _running(cfg: ProjectConfig, name: str) -> Deployment:
    current = load_state(cfg, name)
    if current is None or not process_alive(current.pid):
        raise DeployError(f"deployment {name!r} is not running", hint="start it with: mloop deploy")
    return current


def _swap(deployment: Deployment, uri: str) -> None:
    request = urllib.request.Request(
        f"{deployment.url}/admin/model", data=json.dumps({"uri": uri}).encode(), method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {deployment.admin_token}"})
    try:
        with urllib.request.urlopen(request, timeout=READY_TIMEOUT_S):
            return
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("error", "")
        except ValueError:
            message = f"HTTP {err.code}"
        raise DeployError(f"{deployment.name} refused {uri}: {message}",
                          hint="the previous version keeps serving; see its log in .mloop/deployments/") from err
    except OSError as err:
        raise DeployError(f"{deployment.name} did not answer on {deployment.url}: {err}",
                          hint=f"check it with: mloop deployments; restart with: mloop undeploy {deployment.name}") from err


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
                                env={**os.environ, "MLOOP_ADMIN_TOKEN": token})
    deployment = Deployment(name, model, version, host, port, proc.pid, token, time.time())
    deadline = time.time() + READY_TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
            raise DeployError(f"the server for {model} v{version} exited with code {proc.returncode}: "
                              + " | ".join(tail), hint=f"full log: {log_path}")
        try:
            if _get(f"{deployment.url}/v2/health/ready", timeout=1.0).get("ready"):
                _save_state(cfg, deployment)
                return deployment
        except (OSError, ValueError):
            time.sleep(0.2)
    proc.kill()
    raise DeployError(f"the server for {model} v{version} was not ready after {READY_TIMEOUT_S:.0f} s",
                      hint=f"see {log_path}")
