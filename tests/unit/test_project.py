"""Projects in one process: each pipeline loaded from its own file, under its own name, no shared import state."""

import sys
from pathlib import Path

import pytest

from mloop.config import load_project
from mloop.errors import ConfigError, PipelineError
from mloop.project import load_pipeline, module_name_for, run_project
from tests.support.projects import write_project

PIPELINE = """
from dataclasses import dataclass
from mloop import pipeline, step

@dataclass
class Settings:   # a dataclass in the pipeline file needs its module while the file runs
    factor: int = {factor}

@step
def {first}(n: int = 3) -> list:
    return [i * Settings().factor for i in range(n)]

@step
def total(values: list) -> int:
    return sum(values)

@pipeline
def training():
    return {{"total": total({first}())}}
"""


def project(root: Path, name: str, first: str, factor: int) -> Path:
    return write_project(root / name, name, "from __future__ import annotations\n"
                         + PIPELINE.format(first=first, factor=factor), toml='[executor]\nname = "inline"\n')


def test_two_projects_run_alternately_in_one_process_each_with_its_own_steps(tmp_path: Path):
    path, before = list(sys.path), set(sys.modules)
    a, b = project(tmp_path, "a", "make_a", 1), project(tmp_path, "b", "make_b", 100)
    for _ in range(2):
        for root, first, expected in ((a, "make_a", 3), (b, "make_b", 300)):
            cfg = load_project(root)
            outcome = run_project(cfg, track=False)
            assert set(outcome.result.steps) == {first, "total"}
            assert outcome.result.result("total") == expected
    assert not [m for m in set(sys.modules) - before if m.startswith("mloop_project_") or m == "pipeline"], \
        "no project module is left in sys.modules"
    assert sys.path == path, "no project folder is put on sys.path"
    assert module_name_for(a, "pipeline") != module_name_for(b, "pipeline")


def test_an_edited_pipeline_is_picked_up_by_the_next_run(tmp_path: Path):
    root = project(tmp_path, "p", "make", 1)
    cfg = load_project(root)
    assert run_project(cfg, track=False).result.result("total") == 3
    (root / "pipeline.py").write_text((root / "pipeline.py").read_text().replace("factor: int = 1", "factor: int = 5"))
    assert run_project(cfg, track=False).result.result("total") == 15


def test_a_step_is_named_after_the_unique_module(tmp_path: Path):
    root = project(tmp_path, "p", "make", 1)
    [first, _] = load_pipeline(load_project(root)).build()
    assert first.step.fn.__module__ == module_name_for(root, "pipeline")


def test_a_pipeline_in_a_package_folder_is_found(tmp_path: Path):
    root = write_project(tmp_path / "p", "p", PIPELINE.format(first="make", factor=2), module="flows.train")
    assert load_pipeline(load_project(root)).name == "training"


def test_a_missing_module_and_a_sibling_import_are_clear_errors(tmp_path: Path):
    root = write_project(tmp_path / "p", "p", "import helpers\n")
    (root / "helpers.py").write_text("X = 1\n")
    with pytest.raises(PipelineError, match="imports 'helpers', a module in the project folder") as info:
        load_pipeline(load_project(root))
    assert "pip install -e ." in (info.value.hint or "")
    (root / "mloop.toml").write_text('[project]\nname = "p"\npipeline = "nope:training"\n')
    with pytest.raises(ConfigError, match="pipeline module 'nope' not found"):
        load_pipeline(load_project(root))
