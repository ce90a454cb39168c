"""The agent's statistical gate on two real registered versions of the reference project."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from mloop.automation.gate import gate_versions, load_holdout
from mloop.config import GateRule, GateSection, load_project
from mloop.errors import ConfigError, RegistryError
from mloop.project import ProjectRun, run_project
from mloop.registry.register import CANDIDATE_SCORE, CHAMPION_SCORE
from mloop.tracking.client import mlflow_client

pytestmark = pytest.mark.integration

MODEL = "breast_cancer"


@pytest.fixture(scope="module")
def two_versions(first_run, tmp_path_factory) -> tuple[Path, ProjectRun]:
    """A copy of the reference project with a second, weaker version registered (v2, compared with v1)."""
    root, _ = first_run
    copy = Path(shutil.copytree(root, tmp_path_factory.mktemp("gate") / "breast_cancer",
                                ignore=shutil.ignore_patterns("__pycache__", "deployments")))
    outcome = run_project(load_project(copy), params={"logreg": {"C": "0.0005"}, "knn": {"n_neighbors": "150"}})
    assert outcome.registration is not None and outcome.registration.version == "2"
    return copy, outcome


def test_the_gate_scores_two_registered_versions_on_the_runs_test_frame(two_versions):
    root, outcome = two_versions
    cfg = load_project(root)
    gate = GateSection()
    holdout = load_holdout(cfg, gate, outcome.result)
    candidate = outcome.result.candidate
    assert candidate is not None
    test_ref = outcome.result.ref(candidate.test)
    assert test_ref is not None and holdout.digest == test_ref.digest
    assert holdout.target_name == "target" and holdout.rows == 143 and "target" not in holdout.features.columns

    report = gate_versions(cfg, MODEL, "2", "1", holdout, gate, gate.effective_rules(cfg.settings.promotion))

    # the same scores as the registry's own promotion gate found when it registered v2 against v1
    tags = mlflow_client(cfg).get_model_version(MODEL, "2").tags
    (check,) = report.checks
    assert (check.metric, check.candidate, check.champion) == (
        "accuracy", float(tags[CANDIDATE_SCORE]), float(tags[CHAMPION_SCORE]))
    assert check.candidate is not None and check.champion is not None and check.candidate < check.champion
    assert report.verdict == "FAIL" and report.test == "mcnemar" and report.champion_version == "1"
    assert report.holdout.source == f"ModelCandidate.test of run {outcome.tracking_id}"

    backwards = gate_versions(cfg, MODEL, "1", "2", holdout, gate, [GateRule(metric="accuracy"),
                                                                    GateRule(metric="roc_auc", floor=0.9)])
    assert backwards.verdict == "PASS" and backwards.checks[0].test is not None  # p = 0.02 on 143 rows
    assert backwards.checks[0].p_value is not None and 0.01 < backwards.checks[0].p_value < 0.05
    strict = gate_versions(cfg, MODEL, "1", "2", holdout, GateSection(alpha=0.01), [GateRule(metric="accuracy")])
    assert strict.verdict == "INCONCLUSIVE" and "never promotes" in strict.notes[-1]

    alone = gate_versions(cfg, MODEL, "2", None, holdout, gate, [GateRule(metric="accuracy", floor=0.5)])
    assert alone.verdict == "PASS" and alone.notes == ["no champion: only the floors apply"]


def test_a_holdout_file_is_read_checked_and_digested(two_versions):
    root, outcome = two_versions
    cfg = load_project(root)
    candidate = outcome.result.candidate
    assert candidate is not None
    frame = outcome.result.value(candidate.test)
    columns = list(frame.columns)
    path = root / "data" / "holdout.csv"
    frame.assign(note="kept aside")[columns[::-1] + ["note"]].to_csv(path, index=False)  # other order, one more column

    gate = GateSection(holdout="data/holdout.csv")
    holdout = load_holdout(cfg, gate, outcome.result)
    assert holdout.digest == hashlib.sha256(path.read_bytes()).hexdigest() and holdout.source == "data/holdout.csv"
    assert list(holdout.features.columns) == [c for c in columns if c != "target"]
    from_file = gate_versions(cfg, MODEL, "2", "1", holdout, gate, [GateRule(metric="accuracy")])
    from_run = gate_versions(cfg, MODEL, "2", "1", load_holdout(cfg, GateSection(), outcome.result), gate,
                             [GateRule(metric="accuracy")])
    assert from_file.checks[0].candidate == from_run.checks[0].candidate
    assert from_file.checks[0].champion == from_run.checks[0].champion

    without_champion_run = load_holdout(cfg, gate, None)  # target and features from the champion's bundle
    assert without_champion_run.target_name == "target" and without_champion_run.rows == 143

    frame.drop(columns=["mean_radius", "target"]).to_csv(root / "data" / "broken.csv", index=False)
    with pytest.raises(ConfigError, match="no target column 'target'"):
        load_holdout(cfg, GateSection(holdout="data/broken.csv"), outcome.result)
    frame.drop(columns=["mean_radius"]).to_csv(root / "data" / "broken.csv", index=False)
    with pytest.raises(ConfigError, match="lacks 1 feature column.*: mean_radius"):
        load_holdout(cfg, GateSection(holdout="data/broken.csv"), outcome.result)
    with pytest.raises(ConfigError, match="holdout 'data/missing.parquet' does not exist"):
        load_holdout(cfg, GateSection(holdout="data/missing.parquet"), outcome.result)


def test_a_version_that_does_not_exist_is_a_registry_error(two_versions):
    root, outcome = two_versions
    cfg = load_project(root)
    holdout = load_holdout(cfg, GateSection(), outcome.result)
    with pytest.raises(RegistryError, match="breast_cancer/99"):
        gate_versions(cfg, MODEL, "2", "99", holdout, GateSection(), [GateRule(metric="accuracy")])
