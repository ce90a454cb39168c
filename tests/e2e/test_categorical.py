"""A model of string categories, booleans, integers and missing values, with string class labels: run,
registered, and served for real — plain JSON and V2 (BYTES and BOOL tensors, JSON and binary) answer
exactly what the estimator answers on the training frame's dtypes, wrong types are 422s that name the
feature, and the categories reach the prediction log, drift and live accuracy."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from mloop.config import MonitorSection, load_project
from mloop.project import run_project
from mloop.registry.fetch import load_registered
from tests.support.asgi import app_for, call
from tests.support.churn import PIPELINE
from tests.support.projects import write_project

pytestmark = pytest.mark.e2e

KINDS = {  # name: [params] of the project
    "onehot": {},
    "hist": {"load_data": {"category_dtype": True}, "train": {"kind": "hist"}},
    "lightgbm": {"load_data": {"category_dtype": True}, "train": {"kind": "lightgbm"}},
    "xgboost": {"load_data": {"category_dtype": True, "numeric_target": True}, "train": {"kind": "xgboost"}},
}


@pytest.fixture(scope="module")
def served(tmp_path_factory, mlflow_db_template: Path):
    """kind -> (the registered model loaded as the server loads it, the test split with the training dtypes,
    the project's root)."""
    import importlib.util

    found = {}
    for kind, params in KINDS.items():
        root = write_project(tmp_path_factory.mktemp(kind), "churn", PIPELINE)
        (root / ".mloop").mkdir(exist_ok=True)
        shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")
        cfg = load_project(root)
        outcome = run_project(cfg, params=params)
        assert outcome.registration is not None, outcome
        spec = importlib.util.spec_from_file_location(f"churn_{kind}", root / "pipeline.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _, test = module.split(module.load_data(**params.get("load_data", {})))  # steps called outside a run
        found[kind] = (load_registered(cfg, "models:/churn@champion"), test, root)
    return found


def _plain(value):
    if not isinstance(value, str) and pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as a client sends them (full precision): NaN is null, categories strings, booleans true/false."""
    return [{k: _plain(v) for k, v in row.items()} for row in frame.astype(object).to_dict(orient="records")]


def v2_inputs(frame: pd.DataFrame) -> list[dict]:
    kinds = {"plan": "BYTES", "region": "BYTES", "age": "INT64", "spend": "FP64", "member": "BOOL"}
    return [{"name": c, "shape": [len(frame)], "datatype": kinds[c], "data": [_plain(v) for v in frame[c].astype(object)]}
            for c in frame.columns]


@pytest.mark.parametrize("kind", list(KINDS))
def test_served_answers_equal_the_estimators_on_the_training_dtypes(served, kind):
    model, test, _ = served[kind]
    features = test.drop(columns=["outcome"])
    assert [(f.name, f.type, f.allow_missing) for f in model.features] == [
        ("plan", "categorical", False), ("region", "categorical", True), ("age", "integer", False),
        ("spend", "float", True), ("member", "boolean", False)]
    expected_labels = model.estimator.predict(features).tolist()
    expected_proba = model.estimator.predict_proba(features)
    app = app_for(model)
    plain = call(app, "POST", "/predict", json={"instances": records(features)})
    assert plain.status_code == 200, plain.text
    answers = plain.json()["predictions"]
    assert [a["label"] for a in answers] == expected_labels
    assert np.allclose([list(a["probabilities"].values()) for a in answers], expected_proba)
    v2 = call(app, "POST", "/v2/models/churn/infer", json={"inputs": v2_inputs(features)})
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert outputs["label"]["data"] == expected_labels
    assert outputs["label"]["datatype"] == ("INT64" if kind == "xgboost" else "BYTES")
    assert np.allclose(np.reshape(outputs["probabilities"]["data"], (-1, 2)), expected_proba)


def test_categories_travel_as_v2_binary_bytes_both_ways(served):
    model, test, _ = served["onehot"]
    features = test.drop(columns=["outcome"]).head(5)
    plan = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in features["plan"])
    inputs = [i for i in v2_inputs(features) if i["name"] != "plan"]
    inputs.append({"name": "plan", "shape": [5], "datatype": "BYTES", "parameters": {"binary_data_size": len(plan)}})
    header = orjson.dumps({"inputs": inputs, "outputs": [{"name": "label", "parameters": {"binary_data": True}}]})
    answer = call(app_for(model), "POST", "/v2/models/churn/infer", content=header + plan,
                  headers={"inference-header-content-length": str(len(header))})
    assert answer.status_code == 200, answer.text
    json_length = int(answer.headers["inference-header-content-length"])
    head, blob = orjson.loads(answer.content[:json_length]), answer.content[json_length:]
    assert head["outputs"][0]["datatype"] == "BYTES"
    labels, offset = [], 0
    while offset < len(blob):
        (size,) = struct.unpack_from("<I", blob, offset)
        labels.append(blob[offset + 4:offset + 4 + size].decode())
        offset += 4 + size
    assert labels == model.estimator.predict(features).tolist()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("spend", "120.5", 'expects a number, got "120.5"'),
    ("spend", True, "expects a number, got true"),
    ("age", 30.5, "expects a whole number, got 30.5"),
    ("member", "yes", 'expects true or false, got "yes"'),
    ("plan", 1, "expects a string (a category such as 'basic'), got 1"),
    ("plan", None, "is missing (null); the model was trained without missing values there"),
])
def test_a_value_of_the_wrong_type_is_a_422_naming_the_feature(served, field, value, message):
    model, _, _ = served["onehot"]
    row = {"plan": "pro", "region": None, "age": 30, "spend": 10.0, "member": True} | {field: value}
    answer = call(app_for(model), "POST", "/predict", json={"instances": [row]})
    assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    assert message in answer.json()["error"]


def test_one_matrix_tensor_is_refused_for_a_model_with_categories_and_metadata_says_what_it_takes(served):
    model, _, _ = served["lightgbm"]
    app = app_for(model)
    answer = call(app, "POST", "/v2/models/churn/infer", json={"inputs": [
        {"name": "x", "shape": [1, 5], "datatype": "FP64", "data": [1, 2, 3, 4, 5]}]})
    assert answer.status_code == 422 and "send one tensor per feature (BYTES for those)" in answer.json()["error"]
    metadata = call(app, "GET", "/v2/models/churn").json()
    inputs = {i["name"]: i for i in metadata["inputs"]}
    assert [inputs[n]["datatype"] for n in ("plan", "region", "age", "spend", "member")] == [
        "BYTES", "BYTES", "INT64", "FP64", "BOOL"]
    assert inputs["plan"]["parameters"]["categories"] == ["basic", "plus", "pro"]  # the dtype's own order
    assert inputs["region"]["parameters"]["nullable"] is True


def test_unseen_categories_are_served_logged_and_drift_with_string_labels_scoring_live(served, tmp_path: Path):
    model, test, _ = served["onehot"]
    features = test.drop(columns=["outcome"])
    app = app_for(model, monitor=MonitorSection(interval=0, min_samples=50), monitor_dir=tmp_path)
    shifted = features.assign(plan="pro", region="gold")  # one category only, and one training never saw
    answer = call(app, "POST", "/v2/models/churn/infer", json={"id": "shifted", "inputs": v2_inputs(shifted)})
    assert answer.status_code == 200 and answer.json()["id"] == "shifted", answer.text
    truth = test["outcome"].tolist()
    wrong = call(app, "POST", "/feedback", json={"id": "shifted", "labels": ["maybe"] * len(truth)})
    assert wrong.status_code == 422 and "among the model's classes ['churn', 'stay']" in wrong.json()["error"]
    feedback = call(app, "POST", "/feedback", json={"id": "shifted", "labels": truth})
    assert feedback.status_code == 200, feedback.text
    status = app.dataplane.update_monitoring()
    assert {"plan", "region"} <= set(status.drift.drifted), status.drift
    assert set(status.feedback.scores) == {"accuracy", "precision", "recall", "f1"}
    log = pd.read_parquet(tmp_path / "predictions")
    assert log["plan"].unique().tolist() == ["pro"] and log["region"].unique().tolist() == ["gold"]
    assert log["prediction"].isin(["churn", "stay"]).all() and len(log) == len(features)


def test_the_openapi_document_types_each_feature_and_the_labels(served):
    model, _, _ = served["onehot"]
    document = call(app_for(model), "GET", "/openapi.json").json()
    predict = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    row = predict["properties"]["instances"]["items"]["properties"]
    assert row["plan"]["type"] == "string" and "'basic'" in row["plan"]["description"] and "nullable" not in row["plan"]
    assert row["region"] == {**row["region"], "type": "string", "nullable": True}
    assert (row["age"], row["spend"], row["member"]) == (
        {"type": "integer"}, {"type": "number", "nullable": True}, {"type": "boolean"})
    feedback = document["paths"]["/feedback"]["post"]
    labels = feedback["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]["properties"]["labels"]
    assert labels["items"] == {"type": "string", "enum": ["churn", "stay"]} and "409" in feedback["responses"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_file_of_categories_and_missing_values_is_scored_row_for_row(served, fmt):
    import io

    model, test, _ = served["onehot"]
    features = test.drop(columns=["outcome"]).assign(customer=range(len(test)))
    buffer = io.BytesIO()
    features.to_csv(buffer, index=False) if fmt == "csv" else features.to_parquet(buffer)
    answer = call(app_for(model), "POST", f"/predict/batch?format={fmt}", content=buffer.getvalue(),
                  headers={"content-type": "text/csv" if fmt == "csv" else "application/octet-stream"})
    assert answer.status_code == 200, answer.text
    scored = pd.read_csv(io.BytesIO(answer.content)) if fmt == "csv" else pd.read_parquet(io.BytesIO(answer.content))
    assert scored["customer"].tolist() == list(range(len(test)))
    expected = model.estimator.predict(test.drop(columns=["outcome"]))
    assert (scored["prediction"].to_numpy() == expected).mean() > 0.99  # (the CSV rounds floats at the last digit)
    bad = features.assign(age=features["age"].astype(float) + 0.5).head(3)
    refused = call(app_for(model), "POST", "/predict/batch", content=bad.to_csv(index=False).encode(),
                   headers={"content-type": "text/csv"})
    assert refused.status_code == 422 and refused.json()["field"] == "age" and "whole number" in refused.json()["error"]


def test_fuzzing_the_categorical_models_openapi_document_finds_no_server_error(served, tmp_path):
    import subprocess
    import sys
    import urllib.request

    from tests.support.servers import start_server, stop

    proc, url = start_server(served["lightgbm"][2], "--no-access-log", "--max-body-mb", "1")
    try:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/openapi.json", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance",
             "--max-examples", "30", "--seed", "7", "--generation-deterministic"],
            capture_output=True, text=True, timeout=280, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-4000:]
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
        assert not [line for line in metrics.splitlines() if line.startswith("mloop_requests_total") and 'code="5' in line]
    finally:
        err = stop(proc)
    assert "Traceback" not in err
