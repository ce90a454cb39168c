"""One place that builds the MLflow client for a project (SQLite under ``.mloop/`` by default)."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mloop.config import ProjectConfig


def mlflow_client(cfg: ProjectConfig) -> MlflowClient:
    """A client on the project's store; a tracking server is probed first so a dead one fails fast
    (MLflow itself retries for minutes).

    A SQLite store is opened under the project's ``mlflow-db`` lock: opening a fresh database runs
    MLflow's schema migrations, and two processes migrating at once corrupt it (``mloop run`` twice
    at once on a new project). The first opener migrates; the others wait, then find it ready.
    """
    if cfg.tracking_uri.startswith(("http://", "https://")):
        check_server(cfg.tracking_uri)
    from mlflow import MlflowClient

    with contextlib.suppress(OSError):  # a read-only checkout has it, or the command that writes says why
        cfg.store.mkdir(parents=True, exist_ok=True)
    if not cfg.tracking_uri.startswith("sqlite:"):
        return MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    _check_database_file(cfg)
    with _lock_unless_read_only(cfg):
        try:
            client = MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)  # the tracking store
            client._get_registry_client().store  # type: ignore[no-untyped-call]  # the registry store, now
        except Exception as err:
            raise tracking_error(cfg, err) from err
    return client


def _check_database_file(cfg: ProjectConfig) -> None:
    """A database path that cannot be a database (a folder, a broken link, an empty file where a store was
    created before) stops here, at once: SQLite would retry for minutes, or start a new, empty history."""
    path = Path(cfg.tracking_uri.removeprefix("sqlite:///"))
    fix = (f"restore it from a backup, or move it aside to start a new history (runs and versions are lost): "
           f"mv {path} {path}.damaged")
    if path.is_symlink() and not path.exists():
        raise TrackingError(f"the MLflow database {path} is a link to nothing ({os.readlink(path)})", hint=fix)
    if path.exists() and not path.is_file():
        raise TrackingError(f"the MLflow database {path} is not a file", hint=fix)
    if path.is_file() and path.stat().st_size == 0 and any(cfg.store.glob("mlartifacts/*")):
        raise TrackingError(f"the MLflow database {path} is empty, but this project tracked runs before "
                            "(.mloop/mlartifacts): it was truncated", hint=fix)


def _lock_unless_read_only(cfg: ProjectConfig) -> contextlib.AbstractContextManager[None]:
    """The ``mlflow-db`` lock; none where the store cannot be written (a read-only checkout), where no one
    can create or migrate the database either, so reading needs no lock."""
    from mloop._fs import file_lock

    lock = cfg.lock_path("mlflow-db")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(lock, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as err:
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return contextlib.nullcontext()
        raise
    return file_lock(lock)


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Raise TrackingError unless the tracking server at ``uri`` answers its health check."""
    import httpx

    from mloop._http import client

    try:
        with client(timeout=timeout) as http:
            response = http.get(uri.rstrip("/") + "/health")
        if response.status_code < 400:
            return
        problem = f"HTTP {response.status_code}"
    except httpx.HTTPError as err:
        problem = str(err) or type(err).__name__
    raise TrackingError(
        f"the tracking server {uri} is not reachable ({problem})",
        hint="start it, or fix [tracking] uri in mloop.toml / MLOOP_TRACKING_URI (empty means the local store)",
    )


def experiment_id(client: MlflowClient, cfg: ProjectConfig, *, create: bool = True) -> str | None:
    """The project's experiment id, created on first use with its artifacts under ``.mloop/``."""
    try:
        experiment = client.get_experiment_by_name(cfg.experiment)
        if experiment is not None:
            return str(experiment.experiment_id)
        if not create:
            return None
        location = None if cfg.settings.tracking.uri else cfg.artifact_location
        return str(client.create_experiment(cfg.experiment, artifact_location=location))
    except Exception as err:
        raise tracking_error(cfg, err) from err


def tracking_error(cfg: ProjectConfig, err: BaseException) -> TrackingError:
    from mloop.errors import MloopError

    if isinstance(err, MloopError):
        return TrackingError(err.message, hint=err.hint)
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    said = " | ".join(str(e) for e in _chain(err)).lower()
    if cfg.tracking_uri.startswith("sqlite:"):
        path = cfg.tracking_uri.removeprefix("sqlite:///")
        if "disk is full" in said or "no space left" in said or _errno(err) in (errno.ENOSPC, errno.EDQUOT):
            return TrackingError(f"the disk holding the MLflow database {path} is full ({first[:200]})",
                                 hint=f"free space on it (df -h {Path(path).parent}), then run the command again")
        if "not a database" in said or "malformed" in said or "no such table" in said:
            return TrackingError(f"the MLflow database {path} is damaged ({first[:200]})",
                                 hint=f"restore it from a backup, or move it aside to start a new history (runs and "
                                      f"versions are lost): mv {path} {path}.damaged; mloop doctor checks it")
        if "database is locked" in said:
            return TrackingError(f"the MLflow database {path} stayed locked by another process ({first[:200]})",
                                 hint="run the command again when the other mloop command has finished")
        return TrackingError(f"the MLflow database {path} failed: {first[:300]}",
                             hint="mloop doctor checks it; --verbose shows the whole error")
    return TrackingError(
        f"tracking store {cfg.tracking_uri} failed: {first[:300]}",
        hint="check [tracking] uri in mloop.toml or MLOOP_TRACKING_URI, and that the server is up",
    )


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the errors it was raised from (SQLAlchemy wraps sqlite3's, MLflow wraps SQLAlchemy's)."""
    found: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in found and len(found) < 10:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _errno(err: BaseException) -> int | None:
    return next((e.errno for e in _chain(err) if isinstance(e, OSError)), None)


def short(value: Any, limit: int = 6000) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ui_command(cfg: ProjectConfig, port: int) -> list[str]:
    """The command that serves the MLflow UI on the project's store, on 127.0.0.1."""
    import sys

    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", cfg.tracking_uri,
            "--default-artifact-root", cfg.artifact_location, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1"]
