"""``mloop init NAME``: scaffold a project that ``mloop run`` runs straight away (``mloop.project.create_project``)."""

from __future__ import annotations

from pathlib import Path

from mloop.cli.output import console


def init(name: str, *, parent: Path, task: str = "binary") -> Path:
    from mloop.project import create_project

    root = create_project(name, parent, task=task)
    console.print(f"created a {task} project {name} in {root}\n  next: cd {root} && mloop run")
    return root
