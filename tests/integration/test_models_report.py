"""`mloop models report`: the latest candidate next to the champion the gate compared it with, on real
tracked projects (the reference project for plots, small ones for a second run and for a regressor)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mloop.config import load_project
from mloop.project import run_project
from mloop.registry.report import CandidateReport, candidate_report
from mloop.registry.report_render import markdown, marker, verdict
from tests.integration.test_concurrency import PIPELINE
from tests.support.projects import write_project
from tests.support.servers import MLOOP

pytestmark = pytest.mark.integration

REGRESSION = '''
from typing import Any

from mloop import ModelCandidate, pipeline, step


@step(outputs=("train", "test"))
def split(rows: int = 300) -> tuple[Any, Any]:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    data = load_diabetes(as_frame=True).frame
    train, test = train_test_split(data, test_size=0.3, random_state=0)
    return train.head(rows).reset_index(drop=True), test.reset_index(drop=True)


@step
def train(train: Any, alpha: float = 1.0) -> Any:
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha).fit(train.drop(columns=["target"]), train["target"])


@pipeline
def training() -> ModelCandidate:
    train_set, test_set = split()
    return ModelCandidate(model=train(train_set), train=train_set, test=test_set, target="target")
'''


def report_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MLOOP, "models", "report", *args], cwd=root, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "COLUMNS": "200"})


def fresh(root: Path, db: Path) -> Path:
    (root / ".mloop").mkdir()
    shutil.copyfile(db, root / ".mloop" / "mlflow.db")
    return root


def row(report: CandidateReport, name: str):
    return next(r for r in report.metrics if r.name == name)


def test_first_run_has_no_champion_and_its_plots_are_written_beside_the_markdown(first_run, tmp_path: Path):
    root, _ = first_run
    report = candidate_report(load_project(root))
    assert report.first and report.passed and report.champion is None and report.candidate == "1"
    assert "no champion yet" in report.reason
    promotion = report.metrics[0]
    assert promotion.promotion and promotion.name == "test_accuracy" and promotion.champion is None
    assert all(r.champion is None and r.better is None for r in report.metrics)
    assert report.lineage.run_id and report.lineage.inputs and report.lineage.inputs[0].sha256
    assert {p.name for p in report.plots} >= {"logreg_roc_curve.png", "knn_confusion_matrix.png"}
    assert {p.step for p in report.plots} == {"evaluate"}

    shown = report_cli(root)  # the terminal rendering
    assert shown.returncode == 0, shown.stderr
    assert "first version (no champion before)" in shown.stdout and "test_accuracy ★" in shown.stdout
    assert "candidate)" in shown.stdout and "champion)" not in shown.stdout

    out = tmp_path / "report"
    written = report_cli(root, "--markdown", "--out", str(out))
    assert written.returncode == 0, written.stderr
    text = (out / "report.md").read_text()
    assert text.startswith("<!-- mloop-report: breast_cancer -->\n")
    assert "| metric | v1 (candidate) | direction |" in text
    links = [line.split("](", 1)[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(links) == len(report.plots) >= 4
    for link in links:
        assert not Path(link).is_absolute() and (out / link).stat().st_size > 1000
        assert (out / link).read_bytes().startswith(b"\x89PNG")

    plain = report_cli(root, "--out", str(tmp_path / "text"))
    assert plain.returncode == 0, plain.stderr
    assert "passed: v1 is the champion" in (tmp_path / "text" / "report.txt").read_text()


def test_a_candidate_that_beat_the_champion_and_one_the_gate_kept_out(tmp_path: Path, mlflow_db_template: Path):
    root = fresh(write_project(tmp_path / "gated", "race", PIPELINE, toml='task = "binary"\n'), mlflow_db_template)
    nothing = report_cli(root)
    assert nothing.returncode == 2 and "no tracked run yet" in nothing.stderr and "mloop run" in nothing.stderr
    assert "Traceback" not in nothing.stderr

    cfg = load_project(root)
    run_project(cfg, params={"split": {"rows": 40}, "train": {"C": 0.01}})
    run_project(load_project(root), params={"split": {"rows": 398}, "train": {"C": 1.0}})  # better: champion
    better = candidate_report(load_project(root))
    assert (better.candidate, better.champion, better.current_champion, better.passed) == ("2", "1", "2", True)
    assert "vs champion v1" in better.reason and not better.first
    gate_row = row(better, "test_accuracy")
    assert gate_row.promotion and gate_row.delta is not None and gate_row.delta > 0 and gate_row.better == "candidate"
    assert [r.name for r in better.metrics][:2] == ["test_accuracy", "test_f1"]  # the gate's first, mloop's next
    assert "accuracy" in {r.name for r in better.metrics}  # and the pipeline's own
    assert "replaced v1 as the champion" in markdown(better)
    replaced = candidate_report(load_project(root), "race/1")  # the decision at registration, not the alias now
    assert (replaced.passed, replaced.promoted, replaced.current_champion) == (True, True, "2")
    assert verdict(replaced) == "passed: v1 became the champion (there was no champion before); the champion is v2 now"

    run_project(load_project(root), params={"split": {"rows": 20}, "train": {"C": 0.001}})  # worse: kept out
    kept = candidate_report(load_project(root))
    assert (kept.candidate, kept.champion, kept.current_champion, kept.passed) == ("3", "2", "2", False)
    assert "vs champion v2" in kept.reason and "not promoted" in kept.reason
    gate_row = row(kept, "test_accuracy")
    assert gate_row.candidate < gate_row.champion and gate_row.better == "champion"  # type: ignore[operator]
    assert gate_row.delta == pytest.approx(gate_row.candidate - gate_row.champion)  # type: ignore[operator]

    shown = report_cli(root, "--markdown")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert text.splitlines()[0] == marker("race") == "<!-- mloop-report: race -->"
    assert "race v3 vs champion v2" in text and "kept the champion v2" in text
    assert "| metric | v3 (candidate) | v2 (champion) | delta | better |" in text
    assert f"| **test_accuracy** ★ | {gate_row.candidate:.4f} | {gate_row.champion:.4f} | {gate_row.delta:+.4f} | champion |" in text
    assert "by any margin" in text and "- run: `" in text

    earlier = candidate_report(load_project(root), "race/2")  # a version by name: the same decision as then
    assert (earlier.candidate, earlier.champion, earlier.passed) == ("2", "1", True)
    missing = report_cli(root, "race/9")
    assert missing.returncode == 2 and "race/9" in missing.stderr


def test_a_regressor_lower_rmse_is_better(tmp_path: Path, mlflow_db_template: Path):
    toml = 'task = "regression"\n\n[promotion]\nmetric = "rmse"\nmin_improvement = 0.5\n'
    root = fresh(write_project(tmp_path / "diabetes", "diabetes", REGRESSION, toml=toml), mlflow_db_template)
    run_project(load_project(root), params={"train": {"alpha": 0.01}})
    run_project(load_project(root), params={"train": {"alpha": 100.0}})  # a much worse ridge: higher rmse
    report = candidate_report(load_project(root))
    assert (report.candidate, report.champion, report.passed) == ("2", "1", False)
    assert report.direction == "minimize" and report.min_improvement == 0.5
    rmse = row(report, "test_rmse")
    assert rmse.promotion and rmse.direction == "minimize"
    assert rmse.delta is not None and rmse.delta > 0 and rmse.better == "champion"
    assert row(report, "test_r2").direction == "maximize" and row(report, "test_r2").better == "champion"
    text = markdown(report)
    assert "rmse (lower is better, by at least 0.5" in text and "needs to be lower by at least 0.5" in text


def test_a_project_whose_latest_run_registered_nothing(tmp_path: Path, mlflow_db_template: Path):
    broken = PIPELINE.replace("def evaluate(model: Any, test: Any) -> dict:\n",
                              "def evaluate(model: Any, test: Any) -> dict:\n    raise ValueError('broken')\n")
    root = fresh(write_project(tmp_path / "broken", "race", broken, toml='task = "binary"\n'), mlflow_db_template)
    run_project(load_project(root))  # a failed step: recorded, nothing registered
    said = report_cli(root, "--markdown")
    assert said.returncode == 2 and "registered no candidate" in said.stderr and "mloop runs show" in said.stderr
    assert said.stdout == ""
