"""``mloop models``: registered models, their versions and aliases."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.table import Table

from mloop.cli.output import console


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
