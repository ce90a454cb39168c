"""``mloop deploy``, ``deployments``, ``undeploy``, ``rollback``: managed local deployments."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.table import Table

from mloop.cli.output import console
from mloop.errors import ConfigError


TARGETS = ("local", "kubernetes")


def deploy(model: str | None, *, target: str, name: str | None, port: int | None, project: Path | None,
           out: Path | None = None, image: str = "", replicas: int = 1, apply: bool = False) -> None:
    from mloop.config import load_project
    from mloop.errors import did_you_mean

    if target not in TARGETS:
        raise ConfigError(f"unknown deploy target {target!r}; {did_you_mean(target, TARGETS)}",
                          hint="use --target local or --target kubernetes")
    cfg = load_project(project)
    uri = model or f"models:/{cfg.model_name}@champion"
    if target == "kubernetes":
        from mloop.deploy import kubernetes

        folder = kubernetes.write(cfg, uri, out, kubernetes.KubernetesOptions(image=image, replicas=replicas),
                                  name=name)
        console.print(f"wrote and validated Kubernetes artifacts in {folder}: image/Dockerfile, "
                      "inferenceservice.yaml (KServe, V2 protocol), deployment.yaml (Deployment + Service); "
                      f"see {folder / 'README.md'}", soft_wrap=True)
        if apply:
            console.print(kubernetes.apply(folder), soft_wrap=True)
        return
    from mloop.deploy import local

    _, message = local.deploy(cfg, uri, name=name, port=port)
    console.print(message, soft_wrap=True)


def deployments(*, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.deploy import local

    found = local.list_deployments(load_project(project))
    if not found:
        console.print("no deployments; start one with: mloop deploy")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("name", "model", "version", "url", "pid", "state", "since", "previous"):
        table.add_column(column)
    for item in found:
        d = item.deployment
        state = "healthy" if item.healthy else ("running, not ready" if item.running else "stopped")
        version = item.served_version or d.version
        table.add_row(d.name, d.model, f"v{version}", d.url, str(d.pid), state,
                      dt.datetime.fromtimestamp(d.started).strftime("%Y-%m-%d %H:%M"),
                      ", ".join(f"v{v}" for v in d.history[-3:]) or "-")
    console.print(table)


def undeploy(name: str, *, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.deploy import local

    console.print(local.undeploy(load_project(project), name), soft_wrap=True)


def rollback(name: str, *, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.deploy import local

    _, message = local.rollback(load_project(project), name)
    console.print(message, soft_wrap=True)
