"""``mloop runs`` and ``mloop runs show``: what the tracking store recorded (``mloop.tracking.queries``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.table import Table

from mloop.cli.output import console, seconds, styled


def _when(ms: int | None) -> str:
    return dt.datetime.fromtimestamp((ms or 0) / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _key_metrics(metrics: dict[str, float], limit: int = 4) -> str:
    from mloop.tracking.queries import key_metrics

    shown, more = key_metrics(metrics, limit)
    text = "  ".join(f"{k}={v:.4g}" for k, v in shown.items())
    return text + (f"  (+{more})" if more > 0 else "")


def list_runs(*, limit: int, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.tracking.queries import recent_runs

    cfg = load_project(project)
    found = recent_runs(cfg, limit)
    if not found:
        console.print(f"no runs yet in {cfg.tracking_uri}; start one with: mloop run")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("run", "started", "status", "time", "steps", "model", "metrics"):
        table.add_column(column)
    for run in found:
        steps = f"{run.steps_done} ran, {run.steps_cached} cached"
        if run.steps_failed:
            steps += f", {run.steps_failed} failed"
        took = seconds(run.duration_s) if run.duration_s is not None else "-"
        model = f"v{run.model_version}" if run.model_version else "-"
        table.add_row(run.id[:8], _when(run.start_ms), run.status, took, steps, model, _key_metrics(run.metrics))
    console.print(table)


def show_run(run_id: str, *, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.tracking.queries import find_run

    cfg = load_project(project)
    run = find_run(cfg, run_id)
    took = seconds(run.duration_s) if run.duration_s is not None else "running"
    console.print(styled((f"run {run.id}", "bold"), f"  {run.name}  {run.status}  {_when(run.start_ms)}  ({took})"))
    if run.error:
        console.print(f"error      {run.error}", soft_wrap=True)
    console.print(f"pipeline   {run.pipeline or '-'} ({run.source or '-'})")
    code = (f"git {run.git_commit[:12]}" + (" (dirty)" if run.git_dirty else "")) if run.git_commit else \
        "not in a git repository"
    console.print(f"code       {code}")
    for data in run.inputs:
        console.print(f"data       {data.uri}  sha256 {data.sha256}", soft_wrap=True)
        if data.dvc:
            version = data.dvc
            where = f"commit {version.get('commit', '')[:12]}" if version.get("commit") else version.get("state", "")
            console.print(f"           DVC md5 {version.get('md5', '')} ({where}) in {version.get('tracked_by', '')}"
                          + (f"; remote {version['object_url']}" if version.get("object_url") else ""), soft_wrap=True)
    console.print("env        " + "  ".join(f"{k} {v}" for k, v in sorted(run.environment.items())))
    if run.model_version:
        console.print(f"model      {cfg.model_name} v{run.model_version}  {run.promotion}")
    table = Table(title="steps", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("step", "state", "cache", "time", "params", "metrics"):
        table.add_column(column)
    for step in run.steps:
        table.add_row(step.name, step.state, "hit" if step.cache_hit else "miss", seconds(step.duration_s),
                      " ".join(f"{k}={v}" for k, v in sorted(step.params.items())),
                      _key_metrics(step.metrics, limit=5) + (f" {step.error}" if step.error else ""))
    console.print(table)
    if run.metrics:
        console.print("metrics    " + "  ".join(f"{k}={v:.4g}" for k, v in sorted(run.metrics.items())), soft_wrap=True)


def compare_runs(run_ids: list[str], *, project: Path | None, all_rows: bool = False) -> None:
    """Parameters and metrics of runs side by side; rows that differ first and marked (``all_rows``: also the same)."""
    from mloop.config import load_project
    from mloop.errors import TrackingError
    from mloop.tracking.queries import compare_runs as compared

    if len(run_ids) < 2:  # said before the project is read
        raise TrackingError("compare needs two runs or more", hint="e.g. mloop runs compare 6f1c 0b9e")
    found = compared(load_project(project), run_ids)
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("")
    for run in found.runs:
        table.add_column(f"{run.id[:8]}" + (f" (v{run.model_version})" if run.model_version else ""))
    rows = [row for row in found.rows if all_rows or row.differs]
    for row in rows:
        table.add_row(f"{'* ' if row.differs else '  '}{row.kind} {row.name}", *row.values)
    console.print(table if rows else "the runs have the same parameters and metrics")
    if not all_rows:
        console.print(styled(("* differs; --all shows the rows that are the same too", "dim")))
