"""The candidate report's rendering and metric rows, from hand-built objects (no MLflow)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from mloop.bundle.format import BundleInfo
from mloop.registry.metrics import direction
from mloop.registry.promotion import decide
from mloop.registry.report import CandidateReport, MetricRow, ReportLineage, ReportPlot, metric_rows
from mloop.registry.report_render import markdown, marker, verdict
from mloop.tracking.queries import InputFile, LoggedFile


def report(**changes: object) -> CandidateReport:
    """A candidate (v3, a regressor) the gate kept out against champion v2; ``changes`` replace fields."""
    kept = CandidateReport(
        model="churn", candidate="3", champion="2", current_champion="2", passed=False,
        reason="rmse 3.5000 vs champion v2 3.0000 on the same test set: not promoted (needs to be lower by at least 0.1)",
        metric="rmse", direction="minimize", min_improvement=0.1,
        metrics=[MetricRow("test_rmse", 3.5, 3.0, "minimize", promotion=True),
                 MetricRow("test_r2", 0.7, 0.8, "maximize"),
                 MetricRow("n|rows", 100.0, 90.0, None)],
        lineage=ReportLineage("abc123", "training", "f00dfeedbeef0000", True,
                              [InputFile("data/train.csv", "ab" * 32)], ["ab" * 32]),
        plots=[ReportPlot("evaluate", "roc.png", "plots/evaluate/roc.png", LoggedFile("evaluate", "roc.png", "r1"))],
    )
    return dataclasses.replace(kept, **changes)  # type: ignore[arg-type]


def test_the_markdown_starts_with_a_marker_per_model_and_puts_the_versions_side_by_side():
    text = markdown(report())
    lines = text.splitlines()
    assert lines[0] == marker("churn") == "<!-- mloop-report: churn -->"
    assert lines[1] == "## mloop model report: churn v3 vs champion v2"
    assert "⛔ **Promotion gate kept the champion v2.**" in text
    assert "> rmse 3.5000 vs champion v2 3.0000" in text
    assert "Rule: rmse (lower is better, by at least 0.1; [promotion] in mloop.toml)." in text
    assert "| metric | v3 (candidate) | v2 (champion) | delta | better |" in lines
    assert "| **test_rmse** ★ | 3.5000 | 3.0000 | +0.5000 | champion |" in lines  # higher rmse: worse
    assert "| test_r2 | 0.7000 | 0.8000 | -0.1000 | champion |" in lines
    assert "| n\\|rows | 100.0000 | 90.0000 | +10.0000 | - |" in lines  # no direction known; the pipe escaped
    assert "- code: git `f00dfeedbeef (dirty: uncommitted changes)`" in lines
    assert f"- data: `data/train.csv` sha256 `{'ab' * 8}`" in lines
    assert "- evaluate: `roc.png`" in lines and "![" not in text  # not written beside it: no broken links


def test_plots_are_relative_image_links_when_saved_beside_the_report():
    text = markdown(report(), linked_plots=True)
    assert "![evaluate: roc.png](plots/evaluate/roc.png)" in text.splitlines()


def test_a_first_version_has_no_champion_column():
    first = report(champion=None, current_champion="3", passed=True, reason="no champion yet; rmse = 3.5000",
                   metrics=[MetricRow("test_rmse", 3.5, None, "minimize", promotion=True)], plots=[],
                   lineage=ReportLineage("abc123"))
    text = markdown(first)
    assert "churn v3: the first version (no champion before)" in text
    assert "passed: v3 is the champion (there was no champion before)" in text
    assert "| metric | v3 (candidate) | direction |" in text and "champion) |" not in text
    assert "| **test_rmse** ★ | 3.5000 | lower is better |" in text
    assert "- code: not in a git repository" in text and "- data: no input files recorded" in text
    assert "### Plots" not in text


def test_the_verdict_names_who_is_champion():
    assert verdict(report(passed=True, current_champion="3")) == "passed: v3 replaced v2 as the champion"
    assert verdict(report(current_champion="4")) == "not promoted against v2 (the champion is v4 now)"


def test_the_verdict_is_the_decision_at_registration_not_the_alias_now():
    # v1 passed and became champion, replaced later: still a pass, with who holds the alias now
    first = report(candidate="1", champion=None, current_champion="3", passed=True)
    assert verdict(first) == "passed: v1 became the champion (there was no champion before); the champion is v3 now"
    assert verdict(report(passed=True, current_champion="5")) == (
        "passed: v3 replaced v2 as the champion; the champion is v5 now")
    # passed the rule in a project whose agent owns the champion, not promoted (yet)
    assert verdict(report(passed=True, promoted=False, current_champion="2")) == (
        "passed the rule; left to the continuous-training agent, which has not promoted it; the champion is v2 now")


@pytest.mark.parametrize(("row", "better"), [
    (MetricRow("accuracy", 0.9, 0.8, "maximize"), "candidate"),
    (MetricRow("accuracy", 0.8, 0.9, "maximize"), "champion"),
    (MetricRow("mae", 0.8, 0.9, "minimize"), "candidate"),
    (MetricRow("mae", 0.9, 0.9, "minimize"), "same"),
    (MetricRow("mae", float("nan"), 0.9, "minimize"), None),
    (MetricRow("rows", 2.0, 1.0, None), None),
    (MetricRow("mae", 0.9, None, "minimize"), None),
])
def test_which_version_a_metric_favours_follows_its_direction(row, better):
    assert row.better == better


def test_metric_names_as_pipelines_log_them_get_their_direction():
    assert direction("test_rmse") == direction("knn.mae") == direction("val/log_loss") == "minimize"
    assert direction("logreg.accuracy") == direction("test_r2") == "maximize"
    assert direction("selected_knn") is None


def test_metric_rows_take_the_gates_scores_then_the_metrics_both_versions_have():
    candidate = BundleInfo("y", ["x"], metrics={"test_accuracy": 0.9, "f1": 0.8, "new_only": 1.0},
                           test_scores={"accuracy": 0.9, "recall": 0.7})
    champion = BundleInfo("y", ["x"], metrics={"test_accuracy": 0.95, "f1": 0.85},
                          test_scores={"accuracy": 0.95, "recall": 0.6})
    rows = metric_rows(candidate, champion, "accuracy", gate_candidate=0.9, gate_champion=0.85)
    assert [(r.name, r.candidate, r.champion, r.promotion) for r in rows] == [
        ("test_accuracy", 0.9, 0.85, True),  # the champion as the gate scored it, on the candidate's test set
        ("test_recall", 0.7, 0.6, False),
        ("f1", 0.8, 0.85, False),
    ]
    alone = metric_rows(candidate, None, "accuracy")
    assert [r.name for r in alone] == ["test_accuracy", "test_recall", "f1", "new_only"]
    assert all(r.champion is None for r in alone)


def test_a_decision_names_the_champion_it_was_compared_with():
    assert "vs champion v4" in decide("accuracy", "maximize", 0.0, 0.9, 0.95, "4").reason
    undefined = decide("precision", "maximize", 0.0, math.nan, 0.5, "2")
    assert not undefined.promote and "vs champion v2 0.5000" in undefined.reason
    assert "champion" not in decide("precision", "maximize", 0.0, math.nan, None).reason


def test_the_rules_outcome_is_read_from_the_version_tags_and_nothing_recorded_is_none():
    from mloop.registry.register import PROMOTION, RULE_PASSED
    from mloop.registry.report import rule_outcome

    assert rule_outcome({RULE_PASSED: "true", PROMOTION: "better by 0.01"}) == (True, "better by 0.01")
    assert rule_outcome({RULE_PASSED: "False", PROMOTION: "not promoted"}) == (False, "not promoted")
    assert rule_outcome({}) == (None, "")


def test_a_champion_the_gate_could_not_compare_shows_no_score_beside_the_candidates():
    candidate = BundleInfo(target="y", features=["a"], metrics={"test_accuracy": 0.8})
    champion = BundleInfo(target="y", features=["a", "b"], metrics={"test_accuracy": 0.95})  # on its own test set
    (row,) = metric_rows(candidate, champion, "accuracy", gate_candidate=0.8, gate_champion=None)
    assert row.promotion and (row.candidate, row.champion) == (0.8, None)
    (row,) = metric_rows(candidate, champion, "accuracy")  # nothing recorded by a gate: the bundles' scores
    assert (row.candidate, row.champion) == (0.8, 0.95)
