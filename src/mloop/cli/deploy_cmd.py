"""``mloop deploy``, ``deployments``, ``undeploy``, ``rollback``: deployments, printed from their results."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.table import Table

from mloop.cli.output import console, err_console, styled
from mloop.deploy import DeployOptions, DeployResult
from mloop.errors import DeployError


def describe(result: DeployResult) -> str:
    """One line saying what a deployment operation did."""
    what = f"{result.model} v{result.version}"
    if result.action == "started":
        return f"{result.name}: started {what} on {result.url} (pid {result.pid})"
    if result.action == "swapped":
        return f"{result.name}: swapped to {what} (v{result.previous_version} before)"
    if result.action == "unchanged":
        return f"{result.name} already serves {what}"
    if result.action == "rolled_back":
        return f"{result.name}: rolled back from v{result.previous_version} to v{result.version}"
    if result.action == "promoted":
        return f"{result.name}: promoted the roll-out's {what} (v{result.previous_version} before)"
    if result.action == "stopped":
        return f"{result.name}: stopped (log kept in {result.log})"
    folder = result.artifacts
    assert folder is not None
    return (f"wrote and validated Kubernetes artifacts for {what} in {folder}: image/Dockerfile, "
            "inferenceservice.yaml (KServe, V2 protocol), deployment.yaml (Deployment + Service); "
            f"see {folder / 'README.md'}")


def deploy(model: str | None, *, target: str, project: Path | None, options: DeployOptions) -> None:
    from mloop.automation import manual
    from mloop.config import check_renamed_variables, load_project
    from mloop.deploy import get_target
    from mloop.registry.fetch import model_uri

    check_renamed_variables()
    cfg = load_project(project)
    result = manual.audited(cfg, get_target(target, cfg).deploy(model_uri(model or cfg.model_name), options))
    console.print(describe(result), soft_wrap=True)
    if result.applied:
        console.print(result.applied, soft_wrap=True)


def deployments(*, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.deploy import local

    problems: list[DeployError] = []
    found = local.list_deployments(load_project(project), problems)
    for problem in problems:
        err_console.print(styled((f"{problem.message}; {problem.hint}", "yellow")), soft_wrap=True)
    if not found:
        if not problems:
            console.print("no deployments; start one with: mloop deploy")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("name", "model", "version", "url", "pid", "state", "since", "previous"):
        table.add_column(column)
    for item in found:
        d = item.deployment
        version = item.served_version or d.version
        table.add_row(d.name, d.model, f"v{version}", d.url, str(d.pid), item.state,
                      dt.datetime.fromtimestamp(d.started).strftime("%Y-%m-%d %H:%M"),
                      ", ".join(f"v{v}" for v in d.history[-3:]) or "-")
    console.print(table)


def undeploy(name: str | None, *, project: Path | None) -> None:
    from mloop.automation import manual
    from mloop.config import load_project
    from mloop.deploy import local

    cfg = load_project(project)
    result = manual.audited(cfg, local.undeploy(cfg, name or cfg.model_name), by="mloop undeploy")
    console.print(describe(result), soft_wrap=True)


def promote_rollout(name: str | None, *, project: Path | None) -> None:
    from mloop.automation import manual
    from mloop.config import load_project

    cfg = load_project(project)
    result = manual.promote_rollout(cfg, name or cfg.model_name, by="mloop rollout promote")
    console.print(describe(result), soft_wrap=True)


def abort_rollout(name: str | None, *, project: Path | None) -> None:
    from mloop.automation import manual
    from mloop.config import load_project

    cfg = load_project(project)
    name = name or cfg.model_name
    answer = manual.abort_rollout(cfg, name, by="mloop rollout abort")
    console.print(f"{name}: {answer.get('message', 'roll-out aborted')}", soft_wrap=True)


def rollback(name: str | None, *, project: Path | None) -> None:
    from mloop.automation import manual
    from mloop.config import load_project

    cfg = load_project(project)
    result = manual.rollback(cfg, name or cfg.model_name, by="mloop rollback")
    console.print(describe(result), soft_wrap=True)
