"""The README never lies: its pipeline example runs, tracked and registered, on the data `mloop init` writes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mloop.project import create_project
from mloop.config import load_project
from mloop.project import run_project

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_pipeline_runs_and_registers_its_model(tmp_path: Path, mlflow_db_template: Path):
    [example] = re.findall(r"A pipeline is plain Python.*?```python\n(.*?)```", README.read_text(), re.S)
    root = create_project("readme", tmp_path)
    (root / "pipeline.py").write_text(example)
    (root / ".mloop").mkdir(exist_ok=True)
    shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")
    outcome = run_project(load_project(root))
    assert outcome.result.ok and set(outcome.result.steps) == {"load_data", "split", "train"}
    assert outcome.result.steps["train"].metrics["train_accuracy"] > 0.8
    assert outcome.registration is not None and outcome.registration.version == "1"
    again = run_project(load_project(root), params={"train": {"C": "0.5"}})
    assert {n: r.state for n, r in again.result.steps.items()} == {"load_data": "cached", "split": "cached",
                                                                   "train": "done"}
