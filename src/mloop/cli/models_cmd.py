"""``mloop models``: registered models, their versions and aliases."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.table import Table

from mloop.cli.output import console


def list_models(*, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.tracking.client import mlflow_client, tracking_error

    cfg = load_project(project)
    client = mlflow_client(cfg)
    try:
        registered = list(client.search_registered_models(max_results=1000))
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("model", "version", "aliases", "created", "run", "promotion"):
            table.add_column(column)
        for model in registered:
            aliases_by_version: dict[str, list[str]] = {}
            for alias, version in (model.aliases or {}).items():
                aliases_by_version.setdefault(str(version), []).append(alias)
            versions = sorted(client.search_model_versions(f"name = '{model.name}'"), key=lambda v: -int(v.version))
            for v in versions:
                created = dt.datetime.fromtimestamp(v.creation_timestamp / 1000).strftime("%Y-%m-%d %H:%M")
                table.add_row(model.name, str(v.version), ", ".join(sorted(aliases_by_version.get(str(v.version), []))),
                              created, (v.run_id or "-")[:8], (v.tags or {}).get("mloop.promotion", ""))
    except Exception as err:
        raise tracking_error(cfg, err) from err
    console.print(table if registered else "no registered models yet; 'mloop run' registers the pipeline's model")
