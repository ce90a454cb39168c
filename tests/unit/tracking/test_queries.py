"""The run queries' own logic, on hand-built runs (no MLflow): which metrics come first, when there is no store,
and how two runs are compared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mloop.config import load_project
from mloop.errors import TrackingError
from mloop.tracking import queries
from mloop.tracking.queries import RunDetail, StepSummary, compare_runs, key_metrics, store_exists


def test_key_metrics_are_a_steps_own_over_the_ones_it_logged_per_candidate():
    metrics = {"select.f1": 0.9, "select.accuracy": 0.95, "evaluate.knn.f1": 0.8, "evaluate.logreg.f1": 0.85}
    assert key_metrics(metrics) == ({"select.accuracy": 0.95, "select.f1": 0.9}, 2)
    assert key_metrics(metrics, limit=1) == ({"select.accuracy": 0.95}, 3)
    assert key_metrics({}) == ({}, 0)


def project(root: Path) -> Path:
    root.mkdir()
    (root / "mloop.toml").write_text('[project]\nname = "p"\n')
    return root


def test_a_store_is_there_once_its_database_is_even_a_broken_one(tmp_path: Path):
    cfg = load_project(project(tmp_path / "p"))
    assert not store_exists(cfg)
    db = cfg.store / "mlflow.db"
    db.parent.mkdir(exist_ok=True)
    os.symlink(tmp_path / "nowhere.db", db)  # damaged: said by the query that opens it, not taken for "no runs"
    assert store_exists(cfg)


def run(run_id: str, params: dict[str, dict[str, str]], metrics: dict[str, float]) -> RunDetail:
    steps = [StepSummary(name, "done", False, 1.0, values, {}) for name, values in params.items()]
    return RunDetail(run_id, "", "FINISHED", 0, 1, len(steps), 0, 0, None, metrics, steps=steps)


def test_compared_runs_put_the_rows_that_differ_first_parameters_then_metrics(tmp_path: Path, monkeypatch):
    runs = {"a": run("a", {"knn": {"k": "5", "w": "uniform"}, "split": {"seed": "42"}}, {"acc": 0.91234, "f1": 0.9}),
            "b": run("b", {"knn": {"k": "9", "w": "uniform"}}, {"acc": 0.91231, "f1": 0.8})}
    monkeypatch.setattr(queries, "find_run", lambda cfg, run_id: runs[run_id])
    found = compare_runs(load_project(project(tmp_path / "p")), ["a", "b"])
    assert [r.id for r in found.runs] == ["a", "b"]
    assert [(r.kind, r.name, r.values, r.differs) for r in found.rows] == [
        ("param", "knn.k", ["5", "9"], True),
        ("param", "split.seed", ["42", "-"], True),  # one run has no such parameter
        ("param", "knn.w", ["uniform", "uniform"], False),
        ("metric", "f1", ["0.9", "0.8"], True),
        ("metric", "acc", ["0.9123", "0.9123"], False),  # the same to 4 significant digits
    ]
    assert [r.name for r in found.differing] == ["knn.k", "split.seed", "f1"]


def test_comparing_needs_two_runs(tmp_path: Path):
    with pytest.raises(TrackingError, match="two runs or more"):
        compare_runs(load_project(project(tmp_path / "p")), ["a"])
