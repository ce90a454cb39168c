"""The polled sources of triggers: the schedule, the pipeline's input data, the model registry.

The agent's loop calls ``poll(now)`` on each; it returns the new ``Trigger``\\ s (``mloop.automation.
triggers``) and remembers what it saw in a JSON-able state (``to_dict``; handed back as ``state=`` after
a restart). A first poll, with no state, only records: what was there before the agent started is not
news. A source that cannot be read (a pipeline file mid-edit, a tracking store that is down) is a
``problem`` of the watcher, shown by ``mloop agent status``, never an exception out of ``poll``: the
agent goes on, and the next poll that can read the source compares with what was seen before.

Alerts are not polled: they are delivered to the agent (``triggers.alert_triggers``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mloop.automation.triggers import AGENT_CYCLE_TAG, Schedule, Trigger, data_key, version_key
from mloop.config import ProjectConfig
from mloop.errors import MloopError


class ScheduleWatcher:
    """The ``Schedule``'s runs as they come due; runs missed while the agent was down are one catch-up
    trigger (the latest of them), and none for the time before the agent first ran."""

    def __init__(self, schedule: Schedule, *, state: Mapping[str, Any] | None = None) -> None:
        self.schedule = schedule
        self.checked: float | None = None if not state or state.get("checked") is None else float(state["checked"])
        self.problem = ""

    def poll(self, now: float) -> list[Trigger]:
        if self.checked is None:
            self.checked = now
            return []
        due = self.schedule.due_between(self.checked, now)
        self.checked = max(self.checked, now)
        return [self.schedule.trigger(instant, now) for instant in due]

    def next_at(self, now: float) -> float:
        """When the next run is due (the loop's wake-up time for the schedule)."""
        return self.schedule.next_after(now if self.checked is None else max(self.checked, now))

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked}


def pipeline_inputs(cfg: ProjectConfig) -> list[Path]:
    """The files the project's pipeline reads: its ``pathlib.Path`` parameters, with ``[params]`` of
    ``mloop.toml`` applied (absolute paths; what the runner hashes into the cache key and the tracker
    logs as the run's inputs). Loads the pipeline file: PipelineError or ConfigError when it cannot."""
    from mloop.pipeline.cache import is_file_param
    from mloop.project import load_pipeline, merged_params

    graph = load_pipeline(cfg).build(merged_params(cfg, None))
    found: list[Path] = []
    for node in graph:
        hints = node.step.hints()
        for name, value in node.params.items():
            if is_file_param(value, hints.get(name)):
                path = Path(value)
                path = path if path.is_absolute() else cfg.root / path
                if path not in found:
                    found.append(path)
    return found


class DataWatcher:
    """A trigger when a pipeline input gets a new version.

    A file DVC tracks has a new version when its ``.dvc`` record changes (``mloop data add``, a ``git
    pull`` of a new record); an edit not yet added is not a version. A file DVC does not track has one
    when its content changes. Both are named by their md5 (DVC's hash; the same bytes have the same md5
    whether DVC tracks them or not, so tracking a file is not news), a folder DVC does not track by the
    SHA-256 of its files. The trigger's key is ``data_key(md5)``: the agent marks its own snapshots
    ``own`` with it. A file that disappears is not news (its last version is kept); a file that becomes
    an input (the pipeline was edited) is recorded, not reported.

    ``inputs`` gives the files to watch (default: ``pipeline_inputs``, read again when the pipeline file
    changes).
    """

    def __init__(self, cfg: ProjectConfig, *, inputs: Callable[[], Sequence[Path]] | None = None,
                 state: Mapping[str, Any] | None = None) -> None:
        self.cfg = cfg
        self._inputs_of = inputs
        self._inputs: list[Path] | None = None
        self._pipeline_stamp: tuple[int, int] | None = None
        state = state or {}
        seen = state.get("seen")
        self.seen: dict[str, str] | None = None if seen is None else {str(k): str(v) for k, v in seen.items()}
        self._stats: dict[str, tuple[int, int, str]] = {  # untracked files: size, mtime_ns, md5 (no re-hash)
            str(k): (int(v[0]), int(v[1]), str(v[2])) for k, v in (state.get("stats") or {}).items()}
        self.problem = ""

    def poll(self, now: float) -> list[Trigger]:
        try:
            inputs = self.inputs()
        except MloopError as err:
            self.problem = f"the pipeline's input files cannot be listed: {err.message}"
            return []
        current: dict[str, tuple[str, str]] = {}  # name -> (digest, dvc or file)
        unreadable = []
        for path in inputs:
            name = self._name(path)
            try:
                found = self._version(path, name)
            except OSError as err:
                unreadable.append(f"{name} ({err.strerror or err})")
                continue
            if found is not None:
                current[name] = found
        self.problem = f"cannot read {', '.join(unreadable)}" if unreadable else ""
        first = self.seen is None
        seen = self.seen or {}
        triggers = []
        if not first:
            for name, (digest, source) in current.items():
                before = seen.get(name)
                if before is not None and before != digest:
                    triggers.append(self._trigger(name, before, digest, source, now))
        names = {self._name(p) for p in inputs}
        self.seen = {name: current[name][0] if name in current else seen[name]
                     for name in sorted(names) if name in current or name in seen}
        self._stats = {name: stat for name, stat in self._stats.items() if name in names}
        return triggers

    def inputs(self) -> list[Path]:
        """The files watched; the pipeline is loaded again only when its file changed."""
        if self._inputs_of is not None:
            return list(self._inputs_of())
        stamp = self._pipeline_file_stamp()
        if self._inputs is None or stamp is None or stamp != self._pipeline_stamp:
            self._inputs = pipeline_inputs(self.cfg)
            self._pipeline_stamp = stamp
        return self._inputs

    def to_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "stats": {name: list(stat) for name, stat in self._stats.items()}}

    def _pipeline_file_stamp(self) -> tuple[int, int] | None:
        module = self.cfg.settings.project.pipeline.partition(":")[0].replace(".", "/")
        for candidate in (self.cfg.root / f"{module}.py", self.cfg.root / module / "__init__.py"):
            try:
                stat = candidate.stat()
            except OSError:
                continue
            return stat.st_mtime_ns, stat.st_size
        return None

    def _name(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.cfg.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def _version(self, path: Path, name: str) -> tuple[str, str] | None:
        """(digest, 'dvc' or 'file') of the input's current version; None when it does not exist."""
        from mloop.data.versions import md5_of, recorded_md5

        recorded = recorded_md5(self.cfg.root, path)
        if recorded:
            return recorded, "dvc"
        if not path.exists():
            return None
        if path.is_dir():
            from mloop.pipeline.artifacts import file_digest

            return file_digest(path), "file"
        stat = path.stat()
        known = self._stats.get(name)
        if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
            return known[2], "file"
        digest = md5_of(path)
        self._stats[name] = (stat.st_size, stat.st_mtime_ns, digest)
        return digest, "file"

    def _trigger(self, name: str, before: str, digest: str, source: str, now: float) -> Trigger:
        how = "DVC version" if source == "dvc" else "content"
        return Trigger("data", f"new {how} of {name}: {before[:8]} -> {digest[:8]}", now, data_key(digest),
                       {"path": name, "md5": digest, "previous": before, "source": source})


class RegistryWatcher:
    """A trigger for each version of ``model_name`` registered since the last poll by someone else: a plain
    ``mloop run``, CI. A version tagged ``mloop.agent.cycle`` (``AGENT_CYCLE_TAG``) is the agent's own and
    is skipped; the agent should set that tag when it creates the version (``create_model_version(...,
    tags=...)``), or mark the version ``own`` in the coalescer, which withdraws it if it was seen first."""

    def __init__(self, cfg: ProjectConfig, model_name: str, *, state: Mapping[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.model_name = model_name
        last = (state or {}).get("last_version")
        self.last_version: int | None = None if last is None else int(last)
        self.problem = ""

    def poll(self, now: float) -> list[Trigger]:
        from mloop.registry.queries import model_versions

        try:
            versions = model_versions(self.cfg, self.model_name)
        except MloopError as err:
            self.problem = f"the model registry cannot be read: {err.message}"
            return []
        except OSError as err:  # the store's folder or lock file
            self.problem = f"the model registry cannot be read: {err}"
            return []
        self.problem = ""
        newest = max((int(v.version) for v in versions), default=0)
        if self.last_version is None:
            self.last_version = newest
            return []
        triggers = [
            Trigger("registry", f"version {v.version} of {v.model} registered outside the agent"
                    + (f" (run {v.run_id[:8]})" if v.run_id else ""), now, version_key(v.model, v.version),
                    {"model": v.model, "version": v.version, "run_id": v.run_id,
                     "created": datetime.fromtimestamp(v.created_ms / 1000, UTC).isoformat().replace("+00:00", "Z"),
                     "promotion": v.tags.get("mloop.promotion", "")})
            for v in versions if int(v.version) > self.last_version and AGENT_CYCLE_TAG not in v.tags]
        self.last_version = max(self.last_version, newest)
        return triggers

    def to_dict(self) -> dict[str, Any]:
        return {"last_version": self.last_version}
