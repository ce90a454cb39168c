"""``mloop init NAME``: scaffold a project that ``mloop run`` runs straight away (``mloop.project.create_project``),
in a git repository with its data versioned by DVC."""

from __future__ import annotations

from pathlib import Path

from mloop.cli.output import console


def init(name: str, *, parent: Path, task: str = "binary", version_data: bool = True) -> Path:
    from mloop.project import create_project

    root = create_project(name, parent, task=task)
    console.print(f"created a {task} project {name} in {root}", soft_wrap=True)
    if version_data:
        from mloop.config import load_project
        from mloop.data.repo import add, git, git_root, init_repository

        cfg = load_project(root)
        done = init_repository(cfg)
        add(cfg, [root / "data" / "data.csv"])
        git(root, "add", "--", ".")
        made = "a git repository" if done.git_created else f"inside the git repository {git_root(root)}"
        console.print(f"  {made}, data versioned with DVC (remote {done.remote}); staged for the first commit",
                      soft_wrap=True)
        console.print(f"  next: cd {root} && git commit -m 'new mloop project' && mloop run", soft_wrap=True)
    else:
        console.print(f"  next: cd {root} && mloop run", soft_wrap=True)
    return root
