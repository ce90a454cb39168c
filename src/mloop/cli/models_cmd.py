"""``mloop models``: registered models, their versions and aliases."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from mloop.cli.output import console, styled

if TYPE_CHECKING:
    from rich.console import RenderableType

    from mloop.registry.report import CandidateReport


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
    from mloop.registry.report_render import dvc_note

    for version in lineage.data_versions:
        console.print(f"           {version.get('path', '')}{dvc_note(version)}", soft_wrap=True)
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
    from mloop.errors import GateFailed
    from mloop.registry.queries import latest_candidate

    cfg = load_project(project)
    found = latest_candidate(cfg)
    version = found.version
    what = f"{version.model} v{version.version} (run {found.run.id[:8]})"
    deferred = "left to the agent's gate" in (version.promotion or "")
    if deferred and "not promoted" not in version.promotion:  # the rule passed (its failures say "not promoted")
        console.print(f"{what} passed the promotion rule; the agent gates, rolls out and promotes it: "
                      f"{version.promotion}", soft_wrap=True)
        return
    if "champion" not in version.aliases:
        raise GateFailed(f"{what} did not pass the promotion gate: {version.promotion or 'no decision recorded'}",
                         hint="the champion keeps its place; compare them: mloop models report")
    console.print(f"{what} passed the promotion gate and is the champion: {version.promotion}", soft_wrap=True)


def report(model: str | None, *, markdown: bool, out: Path | None, project: Path | None) -> None:
    """The latest candidate next to the champion it was compared with: to the terminal, as Markdown, or
    written with its plots into ``out``."""
    from mloop.config import load_project
    from mloop.registry.report import candidate_report, save_report
    from mloop.registry.report_render import markdown as render_markdown

    cfg = load_project(project)
    found = candidate_report(cfg, model)
    if out is None:
        if markdown:
            sys.stdout.write(render_markdown(found))
        else:
            for part in _report_parts(found):
                console.print(part)
        return
    if markdown:
        text, filename = render_markdown(found, linked_plots=True), "report.md"
    else:
        from io import StringIO

        from rich.console import Console

        buffer = StringIO()
        plain = Console(file=buffer, width=120, color_system=None, highlight=False, markup=False)
        for part in _report_parts(found, plot_files=True):
            plain.print(part)
        text, filename = buffer.getvalue(), "report.txt"
    path = save_report(cfg, found, out, filename, text)
    plots = f" and {len(found.plots)} plot{'s' if len(found.plots) != 1 else ''}" if found.plots else ""
    console.print(f"wrote {path}{plots}", soft_wrap=True)


def _report_parts(found: CandidateReport, *, plot_files: bool = False) -> list[RenderableType]:
    """The report as rich renderables: headline, decision, metrics table, lineage, plots."""
    from mloop.registry.report_render import (PROMOTION_MARK, better_word, code_version, direction_word, dvc_note,
                                              number, rule, signed, title, verdict)

    parts: list[RenderableType] = [styled((title(found), "bold"))]
    parts.append(styled("gate     ", (verdict(found), "green" if found.passed else "yellow")))
    parts.append(Text(f"reason   {found.reason}"))
    parts.append(Text(f"rule     {rule(found)}"))
    if found.champion_missing:
        parts.append(Text(f"         champion v{found.champion} is no longer in the registry: its metrics are not shown"))
    table = Table(title="metrics", title_justify="left", box=None, header_style="bold", pad_edge=False)
    compare = not found.first and not found.champion_missing
    table.add_column("metric")
    table.add_column(f"v{found.candidate} (candidate)", justify="right")
    if compare:
        table.add_column(f"v{found.champion} (champion)", justify="right")
        table.add_column("delta", justify="right")
        table.add_column("better")
    else:
        table.add_column("direction")
    for row in found.metrics:
        name = f"{row.name} {PROMOTION_MARK}" if row.promotion else row.name
        if compare:
            better = better_word(row)
            table.add_row(name, number(row.candidate), number(row.champion), signed(row.delta),
                          Text(better, style={"candidate": "green", "champion": "red"}.get(better, "")))
        else:
            table.add_row(name, number(row.candidate), direction_word(row.direction) or "-")
    parts.append(table if found.metrics else Text("metrics  none recorded"))
    if any(row.promotion for row in found.metrics):
        parts.append(Text(f"{PROMOTION_MARK} the promotion metric"
                          + ("" if found.first else " (both scored by the gate on the candidate's test set, less rows only one of the two trained on)")))
    lineage = found.lineage
    parts.append(Text(f"run      {lineage.run_id or '-'}" + (f" (pipeline {lineage.pipeline})" if lineage.pipeline else "")))
    parts.append(Text(f"code     {'git ' if lineage.git_commit else ''}{code_version(found)}"))
    if lineage.inputs:
        parts += [Text(f"data     {f.uri} sha256 {f.sha256[:16]}{dvc_note(f.dvc)}") for f in lineage.inputs]
    else:
        parts.append(Text("data     " + (", ".join(f"sha256 {d[:16]}" for d in lineage.data_sha256) or "no input files recorded")))
    for plot in found.plots:
        parts.append(Text(f"plot     {plot.file if plot_files else f'{plot.step}: {plot.name}'}"))
    return parts
