"""``mloop models``: registered models, their versions and aliases."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.table import Table

from mloop.cli.output import console, styled


def list_models(*, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.registry.queries import registered_models

    found = registered_models(load_project(project))
    if not found:
        console.print("no registered models yet; 'mloop run' registers the pipeline's model")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("model", "version", "aliases", "created", "run", "promotion"):
        table.add_column(column)
    for model in found:
        for v in model.versions:
            created = dt.datetime.fromtimestamp(v.created_ms / 1000).strftime("%Y-%m-%d %H:%M")
            table.add_row(v.model, v.version, ", ".join(v.aliases), created, (v.run_id or "-")[:8], v.promotion)
    console.print(table)


def show_model(model: str, *, project: Path | None) -> None:
    """One version: what it takes (types, ranges, categories), how it scored, the gate's decision, its lineage."""
    from mloop.config import load_project
    from mloop.registry.queries import version_detail

    detail = version_detail(load_project(project), model)
    v, info = detail.summary, detail.info
    created = dt.datetime.fromtimestamp(v.created_ms / 1000).strftime("%Y-%m-%d %H:%M") if v.created_ms else "-"
    console.print(styled((f"{v.model} v{v.version}", "bold"), f"  {', '.join(v.aliases) or 'no alias'}  created {created}  "
                                                             f"run {(v.run_id or '-')[:8]}"))
    task = info.task or ("regression" if not info.classes else "classification")
    console.print(f"task       {task}, predicts {info.target!r}"
                  + (f" (classes {', '.join(map(str, info.classes))})" if info.classes else ""))
    console.print(f"promotion  {v.promotion or '-'}", soft_wrap=True)
    if info.metrics:
        console.print("metrics    " + "  ".join(f"{k}={val:.4g}" for k, val in sorted(info.metrics.items())), soft_wrap=True)
    if info.test_scores:  # what live scores and worse_than_test alert rules are compared with
        console.print("test set   " + "  ".join(f"{k}={val:.4g}" for k, val in info.test_scores.items()), soft_wrap=True)
    lineage = info.lineage
    code = f"git {lineage.git_commit[:12]}" + (" (dirty)" if lineage.git_dirty else "") if lineage.git_commit else "-"
    console.print(f"lineage    pipeline {lineage.pipeline or '-'}, code {code}, data sha256 "
                  f"{', '.join(d[:12] for d in lineage.data_sha256) or '-'}", soft_wrap=True)
    table = Table(title="input", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("feature", "type", "missing", "training range / categories"):
        table.add_column(column)
    for spec in info.schema:
        if spec.categories:
            top = list(spec.categories)[:6]
            values = ", ".join(top) + (f" (+{len(spec.categories) - len(top)})" if len(spec.categories) > len(top) else "")
        elif spec.min is not None:
            values = f"{spec.min:.4g} .. {spec.max:.4g}"
        else:
            values = "-"
        table.add_row(spec.name, spec.type, "allowed" if spec.nullable else "no", values)
    if info.schema:
        console.print(table)
    else:
        console.print(f"input      {', '.join(info.features)} (registered before mloop recorded feature types)",
                      soft_wrap=True)


def gate(*, project: Path | None) -> None:
    """The latest tracked run's candidate against the gate: its version champion, or GateFailed (exit 4)."""
    from mloop.config import load_project
    from mloop.errors import GateFailed, RegistryError
    from mloop.registry.queries import registered_models
    from mloop.tracking.queries import recent_runs

    cfg = load_project(project)
    runs = recent_runs(cfg, limit=1)
    if not runs:
        raise RegistryError("no tracked run yet: no candidate was put to the gate", hint="run the pipeline: mloop run")
    run = runs[0]
    if run.status != "FINISHED" or not run.model_version:
        said = f": {run.error}" if run.error else ""
        raise RegistryError(f"the latest run {run.id[:8]} ({run.status}) registered no candidate{said}",
                            hint=f"see it with: mloop runs show {run.id[:8]}")
    name = cfg.model_name
    found = [v for m in registered_models(cfg) if m.name == name for v in m.versions if v.version == run.model_version]
    if not found:
        raise RegistryError(f"the latest run {run.id[:8]} registered {name} v{run.model_version}, which is gone",
                            hint="list the versions: mloop models")
    version = found[0]
    what = f"{name} v{version.version} (run {run.id[:8]})"
    if "champion" not in version.aliases:
        raise GateFailed(f"{what} did not pass the promotion gate: {version.promotion or 'no decision recorded'}",
                         hint=f"the champion keeps its place; compare them: mloop models show {name}/{version.version}")
    console.print(f"{what} passed the promotion gate and is the champion: {version.promotion}", soft_wrap=True)
