"""``mloop doctor``: check a project's stores and processes, and repair what can be repaired safely.

Each check returns findings: ``ok``, ``repaired`` (what was done) or ``problem`` (what is wrong and the
command that fixes it). Repairs never destroy data: a damaged file is moved to a ``quarantine/``
folder beside it, a run whose process is gone is recorded as failed, a leftover temporary file older
than an hour (no write takes that long) is removed. Processes that might serve traffic are never
stopped by the doctor; it names them and says how.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mloop._fs import move_aside
from mloop.config import ProjectConfig

STALE_TEMP_S = 3600.0  # a temporary file older than this belongs to a write that died

State = Literal["ok", "repaired", "problem"]


@dataclass
class Finding:
    check: str
    state: State
    detail: str
    fix: str = ""


Check = Callable[[ProjectConfig, bool], list[Finding]]


def diagnose(cfg: ProjectConfig, *, repair: bool = True, more: Sequence[Check] = ()) -> list[Finding]:
    """Every check of the project, in order, then ``more`` (checks of the layers above, passed in by the caller:
    the agent's files); with ``repair=False`` nothing is changed."""
    if cfg.store.exists() and not cfg.store.is_dir():
        return [Finding("layout", "problem", f"{cfg.store} is not a folder",
                        f"move it aside (mloop makes a new store): mv {cfg.store} {cfg.store}.damaged")]
    findings: list[Finding] = []
    for check in (*CHECKS, *more):
        if check in NEEDS_DATABASE and any(f.check == "mlflow database" and f.state == "problem" for f in findings):
            continue  # each would fail with the database's own problem again
        try:
            findings.extend(check(cfg, repair))
        except Exception as err:  # noqa: BLE001 (one check that cannot run must not hide the others)
            findings.append(Finding(check.__name__.removeprefix("_").removeprefix("check_").replace("_", " "), "problem",
                                    f"the check could not run: {getattr(err, 'message', None) or err}",
                                    getattr(err, "hint", None) or "the other checks ran; please report this one"))
    return findings


def _files(folder: Path, skip: tuple[str, ...] = ()) -> Iterator[Path]:
    if folder.is_dir():
        for path in folder.rglob("*"):
            if path.is_file() and not (set(path.relative_to(folder).parts[:-1]) & set(skip)):
                yield path


# ---------------------------------------------------------------------------------------------- checks

FOLDERS = ("cache", "objects", "deployments", "monitor", "locks", "logs", "tmp", "mlartifacts")


def _check_layout(cfg: ProjectConfig, repair: bool) -> list[Finding]:
    """Files where folders belong and folders where files belong (what no reader can use): moved aside."""
    wrong: list[Path] = [cfg.store / name for name in FOLDERS if (cfg.store / name).exists()
                         and not (cfg.store / name).is_dir()]
    expected_files = [*cfg.store.glob("objects/??/*"), *cfg.store.glob("cache/??/*"), *cfg.store.glob("locks/*"),
                      *cfg.store.glob("deployments/*/state.json"), *cfg.store.glob("deployments/*/server.log"),
                      *cfg.store.glob("monitor/*/status.json"), *cfg.store.glob("monitor/*/alerts.jsonl*"),
                      *cfg.store.glob("monitor/*/server.lock"), *cfg.store.glob("monitor/*/*/*.parquet")]
    wrong += [path for path in expected_files if path.is_dir() and path.name != "quarantine"]
    wrong += [path for log in ("predictions", "feedback", "shadow") for path in cfg.store.glob(f"monitor/*/{log}")
              if not path.is_dir()]
    if not wrong:
        return [Finding("layout", "ok", "every file and folder of the store is of its kind")]
    if repair:
        moved = []
        for path in wrong:
            target = path.with_name(f"{path.name}.damaged-{int(time.time())}")
            os.replace(path, target)
            moved.append(target)
        return [Finding("layout", "repaired", f"{len(wrong)} paths of the wrong kind moved aside: "
                        + ", ".join(str(p) for p in moved[:4]))]
    return [Finding("layout", "problem", f"{len(wrong)} paths of the wrong kind: " + ", ".join(str(p) for p in wrong[:4]),
                    "mloop doctor (moves them aside)")]


def _check_store(cfg: ProjectConfig, repair: bool) -> list[Finding]:
    """Every stored object still hashes to its name; cache entries parse; no old temporary files."""
    from mloop.pipeline.artifacts import ArtifactStore
    from mloop.pipeline.cache import CacheEntry

    store = ArtifactStore(cfg.store / "objects")
    checked, damaged = 0, []
    for path in _files(store.root, skip=("tmp", "quarantine")):
        checked += 1
        if not store.intact(path):
            damaged.append(store.quarantine(path) if repair else path)
    findings = []
    if damaged:
        where = ", ".join(str(p) for p in damaged[:3]) + (" ..." if len(damaged) > 3 else "")
        findings.append(Finding("store", "repaired" if repair else "problem",
                                f"{len(damaged)} of {checked} objects did not match their digest"
                                + (f"; moved to quarantine: {where}" if repair else f": {where}"),
                                "" if repair else "mloop doctor (moves them aside; the next run rebuilds them)"))
    else:
        findings.append(Finding("store", "ok", f"{checked} objects match their digests"))
    broken = []
    for path in _files(cfg.store / "cache", skip=("quarantine",)):
        try:
            CacheEntry.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            broken.append(move_aside(path, cfg.store / "cache" / "quarantine") if repair else path)
    if broken:
        findings.append(Finding("step cache", "repaired" if repair else "problem",
                                f"{len(broken)} unreadable cache entries" + (" moved aside (their steps run again)"
                                                                             if repair else "")
                                + ": " + ", ".join(str(p) for p in broken[:3]),
                                "" if repair else "mloop doctor"))
    temporary = [p for p in _files(cfg.store, skip=("tmp",)) if p.name.startswith(".") and p.name.endswith(".tmp")]
    for scratch in (cfg.store / "tmp", cfg.store / "objects" / "tmp"):  # whole folders of temporary things
        temporary += scratch.iterdir() if scratch.is_dir() else []
    stale = [p for p in temporary if time.time() - p.stat().st_mtime > STALE_TEMP_S or _abandoned(p)]
    if stale:
        size = sum(_size(p) for p in stale)
        if repair:
            for path in stale:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            if any(p.name.startswith("reproduce-") for p in stale):  # git forgets the worktrees it lost
                import subprocess

                subprocess.run(["git", "-C", str(cfg.root), "worktree", "prune"], capture_output=True, timeout=60)
        findings.append(Finding("temporary files", "repaired" if repair else "problem",
                                f"{len(stale)} left by writes that died ({size / 1e6:.1f} MB)"
                                + (", removed" if repair else ""), "" if repair else "mloop doctor"))
    return findings


def _abandoned(path: Path) -> bool:
    """A ``mloop reproduce`` folder whose process is gone (killed before it could remove its worktree)."""
    import json

    from mloop._proc import process_alive

    if not path.name.startswith("reproduce-"):
        return False
    try:
        owner = json.loads((path / "owner.json").read_text(encoding="utf-8"))
        return not process_alive(int(owner["pid"]), started_by=float(owner["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not written yet (just started) or unreadable: the age rule applies


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in _files(path)) if path.is_dir() else path.stat().st_size


def _check_database(cfg: ProjectConfig, repair: bool) -> list[Finding]:
    """SQLite's own integrity check of the MLflow database (a remote tracking server checks itself)."""
    path = cfg.store / "mlflow.db"
    if cfg.settings.tracking.uri or not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
            answer = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as err:
        answer = [str(err)]
    if answer == ["ok"]:
        return [Finding("mlflow database", "ok", f"{path} passes SQLite's integrity check")]
    return [Finding("mlflow database", "problem", f"{path} is damaged: {'; '.join(answer[:3])}",
                    f"restore it from a backup, or move it aside and re-run the pipeline (history is lost): "
                    f"mv {path} {path}.damaged")]


def _check_runs(cfg: ProjectConfig, repair: bool) -> list[Finding]:
    """Runs recorded RUNNING whose process is gone (killed: it could not say so itself)."""
    from mloop.tracking.queries import settle_stale_runs

    stale = settle_stale_runs(cfg, record=repair)
    if not stale:
        return [Finding("runs", "ok", "no run is left RUNNING by a process that is gone")]
    listed = ", ".join(run[:8] for run in stale[:5])
    if repair:
        return [Finding("runs", "repaired", f"{len(stale)} runs whose process was gone recorded as FAILED: {listed}")]
    return [Finding("runs", "problem", f"{len(stale)} runs RUNNING whose process is gone: {listed}", "mloop doctor")]


def _check_registry(cfg: ProjectConfig, repair: bool) -> list[Finding]:
    """Versions registered without their gate decision (a registration cut short)."""
    from mloop.registry.register import DECIDED
    from mloop.tracking.client import mlflow_client

    client = mlflow_client(cfg)
    name = cfg.model_name
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        return []
    undecided = [str(v.version) for v in client.search_model_versions(f"name = '{name}'")
                 if client.get_model_version(name, v.version).tags.get(DECIDED) == "false"]
    if not undecided:
        return [Finding("registry", "ok", f"every version of {name} has its gate decision")]
    return [Finding("registry", "problem",
                    f"{name} v{', v'.join(undecided)} registered without a gate decision (a registration in "
                    "progress, or one that was cut short)", "the next mloop run of the model completes it")]


def _check_deployments(cfg: ProjectConfig, repair: bool) -> list[Finding]:
    """Deployments whose state is unreadable or whose server is gone, and servers no deployment lists."""
    from mloop.deploy import local
    from mloop.errors import DeployError

    findings = []
    listed_pids = set()
    for state in sorted(local.deployments_dir(cfg).glob("*/state.json")):
        name = state.parent.name
        try:
            deployment = local.load_state(cfg, name)
        except DeployError as err:
            if repair:
                os.replace(state, state.with_name("state.json.damaged"))
            findings.append(Finding("deployments", "repaired" if repair else "problem",
                                    f"{state} is unreadable" + ("; moved to state.json.damaged" if repair else ""),
                                    "" if repair else "mloop doctor"))
            continue
        if deployment is None:
            continue
        listed_pids.add(deployment.pid)
        if not local.status(deployment).running:
            findings.append(Finding("deployments", "problem", f"{name}: its server (pid {deployment.pid}) is gone",
                                    f"start it again: mloop deploy {deployment.model}/{deployment.version} --name {name}"
                                    f"; or forget it: mloop undeploy {name}"))
    for pid, line in _servers_of(cfg):
        if pid not in listed_pids and _parent_is_init(pid):
            findings.append(Finding("processes", "problem",
                                    f"a server of this project that no deployment lists runs as pid {pid}: {line}",
                                    f"stop it if it is not yours to keep: kill {pid}"))
    if not findings:
        findings.append(Finding("deployments", "ok", "every deployment's server runs, and no server runs unlisted"))
    return findings


def _servers_of(cfg: ProjectConfig) -> list[tuple[int, str]]:
    import psutil

    found = []
    root = str(cfg.root)
    for process in psutil.process_iter(["pid", "cmdline"]):
        line = process.info["cmdline"] or []
        if "serve" in line and "mloop.cli.main" in line and root in line and process.info["pid"] != os.getpid():
            found.append((int(process.info["pid"]), " ".join(line[line.index("serve"):])[:120]))
    return found


def _parent_is_init(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).ppid() == 1)
    except psutil.Error:
        return False


def _check_orphans(cfg: ProjectConfig, repair: bool) -> list[Finding]:
    """Fork servers and step workers of runs of this project whose run is gone (they do nothing but wait)."""
    import psutil

    orphans = []
    for process in psutil.process_iter(["pid", "ppid", "cmdline", "cwd"]):
        line = " ".join(process.info["cmdline"] or [])
        if ("multiprocessing.forkserver" in line or "multiprocessing.resource_tracker" in line) \
                and process.info["ppid"] == 1 and process.info["cwd"] and \
                Path(process.info["cwd"]).is_relative_to(cfg.root):
            orphans.append(process)
    if not orphans:
        return [Finding("processes", "ok", "no worker process outlived its run")]
    if repair:
        for process in orphans:
            for member in [*process.children(recursive=True), process]:
                try:
                    member.kill()
                except psutil.Error:
                    pass
    return [Finding("processes", "repaired" if repair else "problem",
                    f"{len(orphans)} worker processes outlived their run (pids "
                    f"{', '.join(str(p.pid) for p in orphans)})" + ("; stopped" if repair else ""),
                    "" if repair else "mloop doctor")]


def _check_monitoring(cfg: ProjectConfig, repair: bool) -> list[Finding]:
    """Each monitoring folder: status.json, the prediction and feedback logs, alerts.jsonl."""
    import pyarrow.parquet as pq

    from mloop.errors import DataError
    from mloop.monitor.predlog import HOUR, PART
    from mloop.monitor.status import read_status

    root = cfg.store / "monitor"
    findings = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        try:
            read_status(folder)
        except DataError as err:
            findings.append(Finding("monitoring", "problem", err.message,
                                    "the server rewrites it at its next update; if none runs, delete the file"))
        for log in ("predictions", "feedback", "shadow"):
            bad = []
            for path in sorted((folder / log).glob("*.parquet")):
                if not (PART.match(path.name) or HOUR.match(path.name)):
                    continue
                try:
                    pq.ParquetFile(path).metadata  # noqa: B018 (reads the footer: a damaged file fails here)
                except Exception:  # noqa: BLE001 (pyarrow raises several types for damaged files)
                    bad.append(move_aside(path, folder / "quarantine" / log) if repair else path)
            if bad:
                findings.append(Finding("monitoring", "repaired" if repair else "problem",
                                        f"{folder.name}: {len(bad)} unreadable {log} files"
                                        + (f" moved to {folder / 'quarantine' / log}" if repair else
                                           " (readers skip them): " + ", ".join(p.name for p in bad[:3])),
                                        "" if repair else "mloop doctor"))
        alerts = folder / "alerts.jsonl"
        if alerts.exists():
            findings.extend(_check_alert_log(alerts, repair))
    if not findings and root.is_dir():
        findings.append(Finding("monitoring", "ok", "status, logs and alerts of every monitored model are readable"))
    return findings


def _check_alert_log(path: Path, repair: bool) -> list[Finding]:
    """Lines of an alert log that are not events: readers skip them; with no server writing to the folder
    (its lock is free, and held while we rewrite) they are moved to ``quarantine/alerts.jsonl``."""
    from pydantic import TypeAdapter, ValidationError

    from mloop._fs import append_synced, atomic_write_bytes, hold_lock
    from mloop.monitor.alerts import AlertEvent

    adapter, good, bad = TypeAdapter(AlertEvent), [], []
    for line in path.read_bytes().splitlines():
        try:
            adapter.validate_json(line)
            good.append(line)
        except ValidationError:
            if line.strip():
                bad.append(line)
    if not bad:
        return []
    what = f"{path}: {len(bad)} lines are not alert events (readers skip them)"
    held = hold_lock(path.parent / "server.lock") if repair else None
    if held is None:
        return [Finding("monitoring", "problem", what + ("; its server runs, so they stay" if repair else ""),
                        "mloop doctor, when no server monitors into that folder")]
    try:
        append_synced(path.parent / "quarantine" / path.name, b"\n".join(bad) + b"\n")
        atomic_write_bytes(path, b"".join(line + b"\n" for line in good))
    finally:
        os.close(held)
    return [Finding("monitoring", "repaired", f"{what}; moved to {path.parent / 'quarantine' / path.name}")]


def _check_permissions(cfg: ProjectConfig, repair: bool) -> list[Finding]:
    """The store holds data, tokens and models: only its owner may enter it."""
    mode = cfg.store.stat().st_mode & 0o777 if cfg.store.exists() else 0o700
    if not mode & 0o077:
        return [Finding("permissions", "ok", f"{cfg.store} is private ({oct(mode)})")]
    if repair:
        cfg.store.chmod(0o700)
    return [Finding("permissions", "repaired" if repair else "problem",
                    f"{cfg.store} was {oct(mode)}" + ("; now 0o700" if repair else ", others can read it"),
                    "" if repair else f"chmod 700 {cfg.store}")]


CHECKS: tuple[Check, ...] = (
    _check_layout, _check_permissions, _check_store, _check_database, _check_runs, _check_registry, _check_deployments,
    _check_orphans, _check_monitoring)
NEEDS_DATABASE = (_check_runs, _check_registry)
