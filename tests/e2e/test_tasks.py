"""`mloop init --task` for each task, run, registered and served: the answers, the gate and the live
scores fit the task."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mloop.config import load_project
from mloop.project import create_project, run_project
from mloop.registry.fetch import load_registered
from tests.support.asgi import app_for, call

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("task", "metric", "scores"), [
    ("binary", "accuracy", {"accuracy", "precision", "recall", "f1"}),
    ("multiclass", "f1_macro", {"accuracy", "precision", "recall", "f1"}),
    ("regression", "rmse", {"mae", "rmse", "r2"}),
])
def test_a_new_project_of_each_task_runs_registers_and_serves(tmp_path: Path, mlflow_db_template: Path, task, metric,
                                                              scores):
    from mloop.config import MonitorSection

    root = create_project(f"p_{task}", tmp_path, task=task)
    (root / ".mloop").mkdir(exist_ok=True)
    shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")
    cfg = load_project(root)
    assert cfg.settings.project.task == task and cfg.settings.promotion.metric == metric
    outcome = run_project(cfg)
    assert outcome.registration is not None and metric in outcome.registration.decision.reason
    model = load_registered(cfg, f"models:/p_{task}@champion")
    assert model.task == task
    assert [(f.name, f.type, f.allow_missing) for f in model.features] == [(f"x{i}", "float", False) for i in range(1, 5)]
    from mloop.registry.queries import version_detail

    detail = version_detail(cfg, f"p_{task}")
    assert detail.summary.version == "1" and detail.info.task == task
    assert [s.name for s in detail.info.schema] == ["x1", "x2", "x3", "x4"] and detail.info.schema[0].min < 0
    data = pd.read_csv(root / "data" / "data.csv")
    rows = data.drop(columns=["target"]).head(20)
    app = app_for(model, monitor=MonitorSection(interval=0))
    plain = call(app, "POST", "/predict", json={"instances": rows.to_dict(orient="records")},
                 headers={"x-request-id": "r"}).json()
    first = plain["predictions"][0]
    if task == "regression":
        assert set(first) == {"prediction"}
    else:
        assert set(first) == {"label", "probabilities"} and len(first["probabilities"]) == len(model.classes)
    v2 = call(app, "POST", f"/v2/models/p_{task}/infer", json={"inputs": [
        {"name": "x", "shape": [20, 4], "datatype": "FP64", "data": rows.to_numpy().ravel().tolist()}]}).json()
    assert [o["name"] for o in v2["outputs"]] == (["prediction"] if task == "regression" else ["label", "probabilities"])
    document = call(app, "GET", "/openapi.json").json()
    item = document["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
    assert item["properties"]["labels"]["items"] == (
        {"type": "number"} if task == "regression" else {"type": "integer", "enum": model.classes})
    truth = data["target"].head(20).tolist()
    answer = call(app, "POST", "/feedback", json={"id": "r", "labels": truth})
    assert answer.status_code == 200 and scores <= set(answer.json()), answer.json()
    status = app.dataplane.update_monitoring()
    assert set(status.feedback.scores) == scores and set(status.feedback.definitions) == scores
    if task == "regression":
        predictions = status.drift.predictions  # the predicted values against the training target (20 rows: no verdict)
        assert predictions is not None and set(predictions.training) == {"mean", "p25", "p50", "p75"}
        assert np.isfinite(status.feedback.scores["rmse"])


def test_a_metric_that_does_not_fit_the_task_is_a_config_error_before_anything_runs(tmp_path: Path):
    from mloop.errors import ConfigError

    root = create_project("p", tmp_path, task="regression")
    text = (root / "mloop.toml").read_text().replace('metric = "rmse"', 'metric = "accuracy"')
    (root / "mloop.toml").write_text(text)
    with pytest.raises(ConfigError, match="metric 'accuracy' does not fit \\[project\\] task 'regression'; "
                                          "use one of: r2, mae, mse, rmse"):
        load_project(root)
