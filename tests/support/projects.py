"""Projects for tests: the reference project copied with a fresh store, and small projects written on the fly."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "breast_cancer"


def copy_project(source: Path, dest: Path, db_template: Path) -> Path:
    """A copy of ``source`` without its store, with an already migrated MLflow database."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".mloop", "__pycache__", "*.csv"))
    (dest / ".mloop").mkdir()
    shutil.copyfile(db_template, dest / ".mloop" / "mlflow.db")
    return dest


def with_monitor(project: Path, section: str) -> None:
    """Replace the ``[monitor]`` settings (the last section of the reference project's mloop.toml)."""
    path = project / "mloop.toml"
    text = path.read_text(encoding="utf-8")
    head = text.split("\n[monitor]")[0]
    path.write_text(head.rsplit("\n# Monitoring", 1)[0] + "\n" + section, encoding="utf-8")


def write_project(root: Path, name: str, pipeline: str, *, module: str = "pipeline", toml: str = "") -> Path:
    """A project folder with ``mloop.toml`` and the pipeline module's source (dedented)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mloop.toml").write_text(f'[project]\nname = "{name}"\npipeline = "{module}:training"\n{toml}')
    source = root / f"{module.replace('.', '/')}.py"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(textwrap.dedent(pipeline))
    return root
