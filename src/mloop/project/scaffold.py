"""``mloop init``: a new project that ``mloop run`` runs straight away."""

from __future__ import annotations

from pathlib import Path

from mloop._fs import atomic_write_text
from mloop.errors import ConfigError

_TEMPLATE_FILES = {
    "mloop.toml.tmpl": "mloop.toml",
    "pipeline.py.tmpl": "pipeline.py",
    "test_pipeline.py.tmpl": "tests/test_pipeline.py",
    "gitignore.tmpl": ".gitignore",
    "README.md.tmpl": "README.md",
}


def sample_data(rows: int = 300, seed: int = 0) -> str:
    """A small, separable two-class CSV so a new project has something real to train on."""
    import random

    rng = random.Random(seed)
    lines = ["x1,x2,x3,x4,target"]
    for _ in range(rows):
        x = [rng.gauss(0, 1) for _ in range(4)]
        target = int(1.5 * x[0] - x[1] + 0.5 * x[2] + rng.gauss(0, 0.5) > 0)
        lines.append(",".join(f"{v:.5f}" for v in x) + f",{target}")
    return "\n".join(lines) + "\n"


def create_project(name: str, parent: Path) -> Path:
    """A new project folder ``parent/name`` that ``mloop run`` runs straight away; returns its root."""
    import re
    from importlib import resources
    from string import Template

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name):
        raise ConfigError(f"project name {name!r} must start with a letter and use only letters, digits, _ and -",
                          hint="for example: mloop init churn_model")
    root = parent / name
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} exists and is not empty", hint="pick another name or remove the folder")
    templates = resources.files("mloop") / "templates" / "project"
    for source, target in _TEMPLATE_FILES.items():
        text = Template(templates.joinpath(source).read_text(encoding="utf-8")).safe_substitute(name=name)
        atomic_write_text(root / target, text)
    atomic_write_text(root / "data" / "data.csv", sample_data())
    return root
