"""``mloop runs`` and ``mloop runs show``: what MLflow recorded, read through an explicit client."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from mloop.cli.output import console, seconds
from mloop.errors import TrackingError

_HIDDEN_METRICS = ("steps_", "duration_s")


def _when(ms: int | None) -> str:
    return dt.datetime.fromtimestamp((ms or 0) / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _pipeline_runs(client: Any, experiment_id: str, limit: int) -> list[Any]:
    return list(client.search_runs([experiment_id], filter_string="tags.`mloop.kind` = 'pipeline'",
                                   max_results=limit, order_by=["attributes.start_time DESC"]))


def _key_metrics(metrics: dict[str, float], limit: int = 4) -> str:
    """A step's own metrics (``select.accuracy``) over ones it logged per candidate (``evaluate.knn.f1``)."""
    shown = {k: v for k, v in metrics.items() if not k.startswith(_HIDDEN_METRICS)}
    fewest_dots = min((k.count(".") for k in shown), default=0)
    ordered = sorted((kv for kv in shown.items() if kv[0].count(".") == fewest_dots), key=lambda kv: kv[0])
    more = len(shown) - min(limit, len(ordered))
    text = "  ".join(f"{k}={v:.4g}" for k, v in ordered[:limit])
    return text + (f"  (+{more})" if more > 0 else "")


def list_runs(*, limit: int, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.tracking.client import experiment_id, mlflow_client, tracking_error

    cfg = load_project(project)
    client = mlflow_client(cfg)
    exp = experiment_id(client, cfg, create=False)
    if exp is None:
        console.print(f"no runs yet in {cfg.tracking_uri}; start one with: mloop run")
        return
    try:
        found = _pipeline_runs(client, exp, limit)
    except Exception as err:
        raise tracking_error(cfg, err) from err
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("run", "started", "status", "time", "steps", "model", "metrics"):
        table.add_column(column)
    for run in found:
        m, t = run.data.metrics, run.data.tags
        steps = f"{int(m.get('steps_done', 0))} ran, {int(m.get('steps_cached', 0))} cached"
        if m.get("steps_failed"):
            steps += f", {int(m['steps_failed'])} failed"
        took = seconds((run.info.end_time - run.info.start_time) / 1000) if run.info.end_time else "-"
        model = f"v{t['mloop.model_version']}" if "mloop.model_version" in t else "-"
        table.add_row(run.info.run_id[:8], _when(run.info.start_time), run.info.status, took, steps, model,
                      _key_metrics(m))
    console.print(table if found else "no runs yet; start one with: mloop run")


def _find_run(client: Any, experiment_id: str, prefix: str) -> Any:
    candidates = [r for r in _pipeline_runs(client, experiment_id, 5000) if r.info.run_id.startswith(prefix.lower())]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise TrackingError(f"no run {prefix!r} in this project", hint="list runs with: mloop runs")
    raise TrackingError(f"{prefix!r} matches {len(candidates)} runs", hint="give more characters of the run id")


def show_run(run_id: str, *, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.tracking.client import experiment_id, mlflow_client

    cfg = load_project(project)
    client = mlflow_client(cfg)
    exp = experiment_id(client, cfg, create=False)
    if exp is None:
        raise TrackingError("no runs yet in this project", hint="start one with: mloop run")
    run = _find_run(client, exp, run_id)
    info, tags, metrics = run.info, run.data.tags, run.data.metrics
    took = seconds((info.end_time - info.start_time) / 1000) if info.end_time else "running"
    console.print(f"[bold]run {info.run_id}[/]  {info.run_name}  {info.status}  {_when(info.start_time)}  ({took})")
    console.print(f"pipeline   {tags.get('mloop.pipeline', '-')} ({tags.get('mlflow.source.name', '-')})")
    commit = tags.get("mloop.git.commit")
    console.print(f"code       {('git ' + commit[:12] + (' (dirty)' if tags.get('mloop.git.dirty') == 'true' else '')) if commit else 'not in a git repository'}")
    for ds in (run.inputs.dataset_inputs if run.inputs else []):
        source = json.loads(ds.dataset.source) if ds.dataset.source.startswith("{") else {"uri": ds.dataset.source}
        console.print(f"data       {source.get('uri')}  sha256 {source.get('sha256', ds.dataset.digest)}")
    env = {k.removeprefix("mloop.env."): v for k, v in tags.items() if k.startswith("mloop.env.")}
    console.print("env        " + "  ".join(f"{k} {v}" for k, v in sorted(env.items())))
    if "mloop.model_version" in tags:
        console.print(f"model      {cfg.model_name} v{tags['mloop.model_version']}  {tags.get('mloop.promotion', '')}")

    children = list(client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{info.run_id}'",
                                       max_results=1000, order_by=["attributes.start_time ASC"]))
    table = Table(title="steps", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("step", "state", "cache", "time", "params", "metrics"):
        table.add_column(column)
    for child in children:
        ct, cm, cp = child.data.tags, child.data.metrics, child.data.params
        table.add_row(
            ct.get("mloop.step", child.info.run_name), ct.get("mloop.state", child.info.status),
            "hit" if ct.get("mloop.cache_hit") == "true" else "miss",
            seconds(cm.get("duration_s", 0.0)),
            " ".join(f"{k}={v}" for k, v in sorted(cp.items()) if not k.startswith("output.")),
            _key_metrics(cm, limit=5) + (f" {ct['mloop.error']}" if "mloop.error" in ct else ""),
        )
    console.print(table)
    shown = {k: v for k, v in metrics.items() if not k.startswith(_HIDDEN_METRICS)}
    if shown:
        console.print("metrics    " + "  ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items())), soft_wrap=True)
