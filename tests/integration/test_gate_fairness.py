"""A fair comparison when the data grew: the new run's split puts rows the champion trained on into its test
set, and a model that memorises its training rows (a full-depth tree) is right on every one of them. Both
gates, the registration's rule and the agent's statistical gate, leave those rows out."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mloop.automation.gate import gate_versions, load_holdout
from mloop.config import GateRule, GateSection, load_project
from mloop.errors import ConfigError
from mloop.pipeline.runner import raise_for_failures
from mloop.project import run_project
from mloop.registry.fetch import load_sklearn_model
from mloop.registry.register import CANDIDATE_SCORE, CHAMPION_SCORE
from mloop.tracking.client import mlflow_client
from tests.support.projects import write_project

pytestmark = pytest.mark.integration

PIPELINE = """
from pathlib import Path

import pandas as pd
from mloop import ModelCandidate, pipeline, step
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier


@step(outputs=("train", "test"))
def split(path: Path = Path("data.csv")):
    frame = pd.read_csv(path)
    train, test = train_test_split(frame, test_size=0.3, random_state=0)
    return train.reset_index(drop=True), test.reset_index(drop=True)


@step
def fit(train):
    return DecisionTreeClassifier(random_state=0).fit(train.drop(columns=["target"]), train["target"])


@pipeline
def training():
    train, test = split()
    return ModelCandidate(model=fit(train), train=train, test=test, target="target")
"""


def noisy(rows: int, seed: int) -> pd.DataFrame:
    """A label a tree learns only partly (a quarter of them flipped): on its own training rows it is always right."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 4)).round(6), columns=["a", "b", "c", "d"])
    flip = rng.random(rows) < 0.25
    frame["target"] = ((frame.a + frame.b > 0) ^ flip).astype(int)
    return frame


@pytest.fixture(scope="module")
def grown(tmp_path_factory, mlflow_db_template):
    """v1 trained on 400 rows; then 400 more arrive and v2 trains on a new split of all 800."""
    root = write_project(tmp_path_factory.mktemp("fair") / "p", "p", PIPELINE,
                         toml='[executor]\nname = "inline"\n\n[registry]\nmodel_name = "fair"\n')
    (root / ".mloop").mkdir()
    shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")
    first = noisy(400, seed=1)
    first.to_csv(root / "data.csv", index=False)
    cfg = load_project(root)
    v1 = run_project(cfg)
    raise_for_failures(v1.result)
    assert v1.registration is not None and v1.registration.version == "1"
    v1_train = v1.result.value(v1.result.candidate.train)
    pd.concat([first, noisy(400, seed=2)]).to_csv(root / "data.csv", index=False)
    v2 = run_project(cfg)
    assert v2.registration is not None and v2.registration.version == "2"
    return root, v1_train, v2


def _fair_rows(test: pd.DataFrame, champion_train: pd.DataFrame) -> pd.DataFrame:
    """The test rows the champion did not train on, found by merging on all values (not by fingerprints)."""
    merged = test.merge(champion_train.drop_duplicates(), how="left", indicator=True)
    return test[(merged["_merge"] == "left_only").to_numpy()]


def test_registration_scores_both_models_on_the_test_rows_the_champion_did_not_train_on(grown):
    root, v1_train, v2 = grown
    cfg = load_project(root)
    test = v2.result.value(v2.result.candidate.test)
    fair = _fair_rows(test, v1_train)
    assert 50 < len(test) - len(fair) < len(test)  # the new split put many of v1's training rows into the test set
    models = {v: load_sklearn_model(Path(mlflow_client(cfg).get_model_version_download_uri("fair", v)
                                         .removeprefix("file://"))) for v in ("1", "2")}
    x, y = fair.drop(columns=["target"]), fair["target"]

    tags = mlflow_client(cfg).get_model_version("fair", "2").tags
    assert float(tags[CHAMPION_SCORE]) == pytest.approx(float(np.mean(models["1"].predict(x) == y)))
    assert float(tags[CANDIDATE_SCORE]) == pytest.approx(float(np.mean(models["2"].predict(x) == y)))
    assert (f"on the same {len(fair)} of this run's {len(test)} test rows (the {len(test) - len(fair)} others left out"
            in v2.registration.decision.reason)
    # on the whole test set the champion would have looked far better than it is
    whole = float(np.mean(models["1"].predict(test.drop(columns=["target"])) == test["target"]))
    assert whole > float(tags[CHAMPION_SCORE]) + 0.1


def test_the_agents_gate_leaves_out_the_rows_one_model_trained_on(grown):
    root, v1_train, v2 = grown
    cfg = load_project(root)
    gate = GateSection()
    holdout = load_holdout(cfg, gate, v2.result)
    fair = _fair_rows(v2.result.value(v2.result.candidate.test), v1_train)

    report = gate_versions(cfg, "fair", "2", "1", holdout, gate, [GateRule(metric="accuracy")])

    assert report.holdout.rows == len(fair) and report.holdout.left_out == holdout.rows - len(fair)
    assert f"{report.holdout.left_out} of the {holdout.rows} holdout rows left out" in report.notes[0]
    assert f"on {len(fair)} holdout rows ({report.holdout.left_out} others left out" in report.summary()
    tags = mlflow_client(cfg).get_model_version("fair", "2").tags
    (check,) = report.checks
    assert (check.candidate, check.champion) == (pytest.approx(float(tags[CANDIDATE_SCORE])),
                                                 pytest.approx(float(tags[CHAMPION_SCORE])))
    # the same gate with the champion's rows unknown (a bundle from before they were kept) says so
    folder = Path(mlflow_client(cfg).get_model_version_download_uri("fair", "1").removeprefix("file://"))
    kept = (folder / "mloop" / "train_rows.npy").read_bytes()
    (folder / "mloop" / "train_rows.npy").unlink()
    try:
        unknown = gate_versions(cfg, "fair", "2", "1", holdout, gate, [GateRule(metric="accuracy")])
    finally:
        (folder / "mloop" / "train_rows.npy").write_bytes(kept)
    assert unknown.holdout.rows == holdout.rows and unknown.holdout.left_out == 0
    assert "v1 does not record the rows trained on" in unknown.notes[0]


def test_a_holdout_only_one_model_trained_on_is_refused(grown):
    root, v1_train, v2 = grown
    cfg = load_project(root)
    gate = GateSection(holdout="only_v1_trained_on.csv")
    _fair_rows(v1_train, v2.result.value(v2.result.candidate.train)).to_csv(root / "only_v1_trained_on.csv", index=False)

    holdout = load_holdout(cfg, gate, None, target="target")
    with pytest.raises(ConfigError, match="trained on every row of the holdout"):
        gate_versions(cfg, "fair", "2", "1", holdout, gate, [GateRule(metric="accuracy")])


def test_a_new_or_a_dropped_column_is_compared_on_each_models_own_columns_or_said_to_be_incomparable(grown):
    root, _, _ = grown  # the last test of the module: it changes the project's data
    cfg = load_project(root)
    frame = pd.read_csv(root / "data.csv")
    frame.insert(4, "e", np.random.default_rng(3).normal(size=len(frame)).round(6))
    frame.to_csv(root / "data.csv", index=False)
    added = run_project(cfg)  # the champion takes a, b, c, d; this run's test set has e too
    assert added.registration is not None and "takes columns" not in added.registration.decision.reason
    assert "vs champion v" in added.registration.decision.reason
    report = gate_versions(cfg, "fair", added.registration.version, "1", load_holdout(cfg, GateSection(), added.result),
                           GateSection(), [GateRule(metric="accuracy")])
    assert report.checks[0].champion is not None, report.summary()  # scored on its own four columns

    frame.drop(columns=["d"]).to_csv(root / "data.csv", index=False)
    dropped = run_project(cfg)
    assert dropped.registration is not None and not dropped.registration.decision.promote
    champion = dropped.registration.decision.champion_version
    assert (f"the champion v{champion} takes columns this run's test set does not have (d), so the two cannot be "
            f"compared on it: not promoted") in dropped.registration.decision.reason
    report = gate_versions(cfg, "fair", dropped.registration.version, champion,
                           load_holdout(cfg, GateSection(), dropped.result), GateSection(), [GateRule(metric="accuracy")])
    assert report.verdict == "FAIL" and f"the champion, v{champion}, takes columns the holdout lacks: d" in report.summary()
