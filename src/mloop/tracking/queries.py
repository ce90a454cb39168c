"""What the tracking store knows about a project's runs, as typed objects.

The CLI (``mloop runs``), the UI and the automation agent read runs through these functions and
never write MLflow filter strings or read tags themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.errors import TrackingError
from mloop.tracking.client import experiment_id, mlflow_client, tracking_error

if TYPE_CHECKING:
    from mloop.config import ProjectConfig

SUMMARY_METRICS = ("steps_", "duration_s")  # metrics mloop records about the run itself


@dataclass
class InputFile:
    uri: str
    sha256: str
    dvc: dict[str, str] = field(default_factory=dict)  # its DVC version (md5, commit, state, remote, ...) if tracked


@dataclass
class StepSummary:
    name: str
    state: str  # the engine's state: done, cached, failed, skipped
    cache_hit: bool
    duration_s: float
    params: dict[str, str]
    metrics: dict[str, float]
    error: str = ""
    start_ms: int = 0  # when it started (a cached step: when the cache was looked up)
    end_ms: int | None = None  # when it ended (a cached step: as it started); None while it runs


@dataclass
class RunSummary:
    """One pipeline run, as ``mloop runs`` lists it."""

    id: str
    name: str
    status: str  # MLflow's: FINISHED, FAILED, RUNNING, KILLED
    start_ms: int
    end_ms: int | None
    steps_done: int
    steps_cached: int
    steps_failed: int
    model_version: str | None
    metrics: dict[str, float]  # the pipeline's own metrics (``STEP.NAME``), not the run bookkeeping
    error: str = ""
    params: dict[str, str] = field(default_factory=dict)  # every step's parameters (``STEP.PARAM``)
    experiment_id: str = ""  # MLflow's (for links into the MLflow UI)

    @property
    def duration_s(self) -> float | None:
        return (self.end_ms - self.start_ms) / 1000 if self.end_ms else None


def key_metrics(metrics: dict[str, float], limit: int = 4) -> tuple[dict[str, float], int]:
    """The metrics worth showing first, by name, and how many others there are: a step's own metrics
    (``select.accuracy``) over the ones it logged per candidate (``evaluate.knn.f1``)."""
    fewest_dots = min((k.count(".") for k in metrics), default=0)
    ordered = sorted((kv for kv in metrics.items() if kv[0].count(".") == fewest_dots), key=lambda kv: kv[0])
    return dict(ordered[:limit]), len(metrics) - min(limit, len(ordered))


@dataclass
class RunDetail(RunSummary):
    """One run with its lineage and its steps, as ``mloop runs show`` prints it."""

    pipeline: str = ""
    source: str = ""
    git_commit: str = ""
    git_dirty: bool = False
    inputs: list[InputFile] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    promotion: str = ""
    steps: list[StepSummary] = field(default_factory=list)


def _summary(run: Any) -> RunSummary:
    metrics, tags = run.data.metrics, run.data.tags
    return RunSummary(
        id=run.info.run_id, name=run.info.run_name or "", status=run.info.status, start_ms=run.info.start_time or 0,
        end_ms=run.info.end_time, steps_done=int(metrics.get("steps_done", 0)),
        steps_cached=int(metrics.get("steps_cached", 0)), steps_failed=int(metrics.get("steps_failed", 0)),
        model_version=tags.get("mloop.model_version"),
        metrics={k: v for k, v in metrics.items() if not k.startswith(SUMMARY_METRICS)},
        error=tags.get("mloop.error", ""), params=dict(run.data.params), experiment_id=str(run.info.experiment_id))


def store_exists(cfg: ProjectConfig) -> bool:
    """False when the project's local store was never created (nothing tracked yet): asking MLflow would create
    and migrate one, seconds of work, to say that it is empty."""
    import os

    if not cfg.tracking_uri.startswith("sqlite:///"):
        return True
    return os.path.lexists(cfg.tracking_uri.removeprefix("sqlite:///"))  # a broken link is there: a damaged store


def project_experiment(cfg: ProjectConfig) -> str | None:
    """The MLflow id of the project's experiment (for links into the MLflow UI); None before the first run."""
    if not store_exists(cfg):
        return None
    return experiment_id(mlflow_client(cfg), cfg, create=False)


def _pipeline_runs(client: Any, experiment: str, limit: int) -> list[Any]:
    return list(client.search_runs([experiment], filter_string="tags.`mloop.kind` = 'pipeline'",
                                   max_results=limit, order_by=["attributes.start_time DESC"]))


def recent_runs(cfg: ProjectConfig, limit: int = 20) -> list[RunSummary]:
    """The project's latest pipeline runs, newest first (none when nothing was tracked yet). A run still
    RUNNING whose process is gone (killed) is recorded as FAILED on the way."""
    if not store_exists(cfg):
        return []
    client = mlflow_client(cfg)
    experiment = experiment_id(client, cfg, create=False)
    if experiment is None:
        return []
    try:
        return [_summary(_settled(client, run)) for run in _pipeline_runs(client, experiment, limit)]
    except Exception as err:
        raise tracking_error(cfg, err) from err


def settle_stale_runs(cfg: ProjectConfig, *, record: bool = True) -> list[str]:
    """The RUNNING pipeline runs whose process on this machine is gone, each recorded as FAILED first (unless
    ``record`` is False); their ids."""
    client = mlflow_client(cfg)
    experiment = experiment_id(client, cfg, create=False)
    if experiment is None:
        return []
    try:
        running = client.search_runs([experiment], max_results=10000,
                                     filter_string="tags.`mloop.kind` = 'pipeline' and attributes.status = 'RUNNING'")
        if not record:
            return [run.info.run_id for run in running if _orphaned(run)]
        return [run.info.run_id for run in running if _settled(client, run).info.status != "RUNNING"]
    except Exception as err:
        raise tracking_error(cfg, err) from err


def _orphaned(run: Any) -> bool:
    """Whether ``run`` is RUNNING but was started on this machine by a process that is gone."""
    import socket

    from mloop._proc import process_alive

    tags = run.data.tags
    if run.info.status != "RUNNING" or tags.get("mloop.host") != socket.gethostname():
        return False
    try:
        pid, started = int(tags["mloop.pid"]), float(tags.get("mloop.pid_started") or 0)
    except (KeyError, ValueError):
        return False  # not recorded (an older mloop) or not as mloop writes it: nothing to go by
    return not process_alive(pid, started_by=started)


def _settled(client: Any, run: Any) -> Any:
    """``run``, recorded as FAILED first if it is RUNNING but the process that ran it on this machine is
    gone: a ``mloop run`` killed with SIGKILL (or a machine that went down) cannot say so itself."""
    if not _orphaned(run):
        return run
    tags = run.data.tags
    reason = f"its process ({tags['mloop.pid']}) ended without finishing the run: killed, or the machine stopped"
    client.set_tag(run.info.run_id, "mloop.error", reason)
    client.set_terminated(run.info.run_id, "FAILED")
    for child in client.search_runs([run.info.experiment_id], max_results=1000,
                                    filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}' and "
                                                  "attributes.status = 'RUNNING'"):
        client.set_terminated(child.info.run_id, "FAILED")
    return client.get_run(run.info.run_id)


def find_run(cfg: ProjectConfig, prefix: str) -> RunDetail:
    """The pipeline run whose id starts with ``prefix``; TrackingError if none or several match."""
    client = mlflow_client(cfg)
    experiment = experiment_id(client, cfg, create=False)
    if experiment is None:
        raise TrackingError("no runs yet in this project", hint="start one with: mloop run")
    try:
        candidates = _by_full_id(client, experiment, prefix.lower()) or [
            r for r in _pipeline_runs(client, experiment, 5000) if r.info.run_id.startswith(prefix.lower())]
        if not candidates:
            raise TrackingError(f"no run {prefix!r} in this project", hint="list runs with: mloop runs")
        if len(candidates) > 1:
            raise TrackingError(f"{prefix!r} matches {len(candidates)} runs", hint="give more characters of the run id")
        run = _settled(client, candidates[0])
        children = list(client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'",
                                           max_results=1000, order_by=["attributes.start_time ASC"]))
    except TrackingError:
        raise
    except Exception as err:
        raise tracking_error(cfg, err) from err
    tags = run.data.tags
    inputs = []
    for dataset_input in (run.inputs.dataset_inputs if run.inputs else []):
        source = dataset_input.dataset.source
        parsed = json.loads(source) if source.startswith("{") else {"uri": source}
        inputs.append(InputFile(str(parsed.get("uri", "")), str(parsed.get("sha256", dataset_input.dataset.digest)),
                                dict(parsed.get("dvc") or {})))
    steps = [StepSummary(
        name=c.data.tags.get("mloop.step", c.info.run_name), state=c.data.tags.get("mloop.state", c.info.status),
        cache_hit=c.data.tags.get("mloop.cache_hit") == "true", duration_s=c.data.metrics.get("duration_s", 0.0),
        params={k: v for k, v in c.data.params.items() if not k.startswith("output.")},
        metrics={k: v for k, v in c.data.metrics.items() if k != "duration_s"}, error=c.data.tags.get("mloop.error", ""),
        start_ms=int(c.info.start_time or 0), end_ms=c.info.end_time,
    ) for c in children]
    return RunDetail(**vars(_summary(run)), pipeline=tags.get("mloop.pipeline", ""),
                     source=tags.get("mlflow.source.name", ""), git_commit=tags.get("mloop.git.commit", ""),
                     git_dirty=tags.get("mloop.git.dirty") == "true", inputs=inputs,
                     environment={k.removeprefix("mloop.env."): v for k, v in tags.items() if k.startswith("mloop.env.")},
                     promotion=tags.get("mloop.promotion", ""), steps=steps)


def _by_full_id(client: Any, experiment: str, run_id: str) -> list[Any]:
    """The pipeline run with exactly this id, fetched alone ([] when ``run_id`` is not a whole id, or not one of
    the project's pipeline runs): the UI names runs by their whole id, and a store of many runs need not be listed."""
    from mlflow.exceptions import MlflowException

    if len(run_id) != 32:
        return []
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return []
    if run.info.experiment_id != experiment or run.data.tags.get("mloop.kind") != "pipeline":
        return []
    return [run]


@dataclass
class ComparedRow:
    """One parameter (``STEP.PARAM``) or metric of the runs compared; ``values`` one per run, ``-`` where a run has
    none, metrics to 4 significant digits (as they are compared)."""

    kind: str  # param or metric
    name: str
    values: list[str]

    @property
    def differs(self) -> bool:
        return len(set(self.values)) > 1


@dataclass
class RunComparison:
    runs: list[RunDetail]
    rows: list[ComparedRow]  # the parameters, then the metrics; of each, the rows that differ first, by name

    @property
    def differing(self) -> list[ComparedRow]:
        return [row for row in self.rows if row.differs]


def compare_runs(cfg: ProjectConfig, run_ids: list[str]) -> RunComparison:
    """The parameters and metrics of two runs or more side by side (ids or unique prefixes); TrackingError for
    fewer than two, or a run not found."""
    if len(run_ids) < 2:
        raise TrackingError("compare needs two runs or more", hint="e.g. mloop runs compare 6f1c 0b9e")
    runs = [find_run(cfg, run_id) for run_id in run_ids]
    params = [{f"{step.name}.{k}": v for step in run.steps for k, v in step.params.items()} for run in runs]
    metrics = [{k: f"{v:.4g}" for k, v in run.metrics.items()} for run in runs]
    rows: list[ComparedRow] = []
    for kind, values in (("param", params), ("metric", metrics)):
        found = [ComparedRow(kind, name, [v.get(name, "-") for v in values]) for name in sorted(set().union(*values))]
        rows += [row for row in found if row.differs] + [row for row in found if not row.differs]
    return RunComparison(runs, rows)


def runs_reading(cfg: ProjectConfig, versions: list[str], limit: int = 10000) -> dict[str, list[RunSummary]]:
    """For each DVC version (a tracked file's or folder's md5), the pipeline runs that read it, newest first."""
    wanted: dict[str, list[RunSummary]] = {v: [] for v in versions if v}
    if not wanted or not store_exists(cfg):  # nothing tracked yet: no store is created (nor MLflow imported) to say so
        return wanted
    client = mlflow_client(cfg)
    experiment = experiment_id(client, cfg, create=False)
    if experiment is None:
        return wanted
    try:
        runs = client.search_runs([experiment], max_results=limit, order_by=["attributes.start_time DESC"],
                                  filter_string="tags.`mloop.kind` = 'pipeline' and tags.`mloop.data.versions` LIKE '%'")
    except Exception as err:
        raise tracking_error(cfg, err) from err
    for run in runs:
        read = set(run.data.tags.get("mloop.data.versions", "").split(",")) | set(
            run.data.tags.get("mloop.data.md5", "").split(","))
        for version in read & wanted.keys():
            wanted[version].append(_summary(run))
    return wanted


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")


@dataclass
class LoggedFile:
    """A file a step of a run logged (``mloop.log_figure``, ``mloop.log_file``), stored as an MLflow artifact."""

    step: str
    name: str  # its path among the step's artifacts
    run_id: str  # the step's own run (a child of the pipeline run)


def step_images(cfg: ProjectConfig, run_id: str) -> list[LoggedFile]:
    """The images (plots) the steps of pipeline run ``run_id`` logged, in the order the steps started."""
    client = mlflow_client(cfg)
    try:
        run = client.get_run(run_id)
        children = client.search_runs([run.info.experiment_id], max_results=1000,
                                      filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
                                      order_by=["attributes.start_time ASC"])
        found = []
        for child in children:
            step = child.data.tags.get("mloop.step", child.info.run_name or "")
            for entry in _artifact_files(client, child.info.run_id):
                if entry.lower().endswith(IMAGE_SUFFIXES):
                    found.append(LoggedFile(step, entry, child.info.run_id))
    except Exception as err:
        raise tracking_error(cfg, err) from err
    return found


def _artifact_files(client: Any, run_id: str, folder: str | None = None) -> list[str]:
    files: list[str] = []
    for entry in client.list_artifacts(run_id, folder):
        files.extend(_artifact_files(client, run_id, entry.path) if entry.is_dir else [entry.path])
    return files


def download_logged_file(cfg: ProjectConfig, logged: LoggedFile, folder: Path) -> Path:
    """Copy a logged file into ``folder`` (created if needed); its path there."""
    from mlflow.artifacts import download_artifacts

    folder.mkdir(parents=True, exist_ok=True)
    try:
        return Path(download_artifacts(run_id=logged.run_id, artifact_path=logged.name, dst_path=str(folder),
                                       tracking_uri=cfg.tracking_uri))
    except Exception as err:
        raise tracking_error(cfg, err) from err
