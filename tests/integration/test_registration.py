"""Registration through small tracked projects: only a ModelCandidate registers, and each failure has its own
error type and hint, with the run recorded as failed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from mloop.config import load_project
from mloop.errors import ModelError, ModelSerializationError, ModelSignatureError, TrackingError
from mloop.project import run_project
from mloop.registry.fetch import load_registered
from tests.support.projects import write_project

pytestmark = pytest.mark.integration

HEAD = """
import numpy as np
import pandas as pd
from mloop import ModelCandidate, pipeline, step
from sklearn.linear_model import LogisticRegression

@step(outputs=("train", "test"))
def data():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    frame["target"] = (frame["a"] > 0).astype(int)
    return frame.iloc[:150].reset_index(drop=True), frame.iloc[150:].reset_index(drop=True)
"""


def tracked(tmp_path: Path, db: Path, body: str) -> Path:
    root = write_project(tmp_path / "p", "p", HEAD + body, toml='[executor]\nname = "inline"\n')
    (root / ".mloop").mkdir()
    shutil.copyfile(db, root / ".mloop" / "mlflow.db")
    return root


def last_run(root: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{root / '.mloop' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("p")
    [run] = client.search_runs([experiment.experiment_id], filter_string="tags.`mloop.kind` = 'pipeline'")
    return client, run


def test_a_pipeline_returning_a_model_in_a_dict_runs_and_registers_nothing(tmp_path, mlflow_db_template):
    root = tracked(tmp_path, mlflow_db_template, """
@step
def fit(train):
    return LogisticRegression().fit(train[["a", "b", "c"]], train["target"])

@pipeline
def training():
    train, test = data()
    return {"model": fit(train), "rows": 150}
""")
    outcome = run_project(load_project(root))
    assert outcome.registration is None and outcome.result.ok
    assert hasattr(outcome.result.result("model"), "predict") and outcome.result.result("rows") == 150
    client, run = last_run(root)
    assert run.info.status == "FINISHED" and client.search_registered_models() == []


UNPREDICTABLE = """
class Picky:
    classes_ = np.array([0, 1])

    def fit(self, x, y):
        return self

    def predict(self, x):
        if {when}:
            raise ValueError("cannot predict these rows")
        return np.zeros(len(x), dtype=int)

@step
def fit(train):
    return Picky()

@pipeline
def training():
    train, test = data()
    return ModelCandidate(model=fit(train), train=train, test=test)
"""


@pytest.mark.parametrize(("when", "error", "message"), [
    ("True", ModelError, "cannot be scored with 'accuracy' on its test set"),
    ("len(x) == 5", ModelSignatureError, "failed to predict on 5 of its own training rows"),
])
def test_a_model_that_fails_to_predict_is_a_model_error_and_the_run_failed(tmp_path, mlflow_db_template, when,
                                                                             error, message):
    root = tracked(tmp_path, mlflow_db_template, UNPREDICTABLE.format(when=when))
    with pytest.raises(error, match=message) as info:
        run_project(load_project(root))
    assert not isinstance(info.value, TrackingError) and "tracking" not in (info.value.hint or "")
    client, run = last_run(root)
    assert run.info.status == "FAILED" and "registration failed" in run.data.tags["mloop.error"]
    assert client.search_registered_models() == []


def test_a_detector_class_of_the_pipeline_file_is_bundled_by_value(tmp_path, mlflow_db_template):
    root = tracked(tmp_path, mlflow_db_template, """
class Detector:  # defined in the project's file, which no other process can import
    def score_samples(self, rows):
        return np.zeros(len(rows))

@step
def fit(train):
    return LogisticRegression().fit(train[["a", "b", "c"]], train["target"])

@step
def detector():
    return Detector()

@pipeline
def training():
    train, test = data()
    return ModelCandidate(model=fit(train), train=train, test=test, outlier_detector=detector())
""")
    outcome = run_project(load_project(root))
    assert outcome.registration is not None
    model = load_registered(load_project(root), "models:/p/1")
    assert type(model.outlier_detector).__name__ == "Detector"
    assert list(model.outlier_detector.score_samples(np.zeros((2, 3)))) == [0.0, 0.0]


def test_a_model_class_of_the_pipeline_file_is_a_serialization_error_and_the_run_failed(tmp_path, mlflow_db_template):
    root = tracked(tmp_path, mlflow_db_template, """
class Majority:
    classes_ = np.array([0, 1])

    def predict(self, x):
        return np.ones(len(x), dtype=int)

@step
def fit(train):
    return Majority()

@pipeline
def training():
    train, test = data()
    return ModelCandidate(model=fit(train), train=train, test=test)
""")
    with pytest.raises(ModelSerializationError, match=r"Majority.*cannot be saved and loaded back") as info:
        run_project(load_project(root))
    assert "installed package" in info.value.hint
    client, run = last_run(root)
    assert run.info.status == "FAILED" and client.search_registered_models() == []
