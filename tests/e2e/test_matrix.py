"""A matrix of small projects, each driven as a user drives it, through the CLI only: ``mloop run``
registers, ``mloop deploy`` serves (plain JSON, V2 JSON, V2 binary with BYTES for strings), a malformed
request is a 422 naming the feature, feedback scores live, ``mloop monitor status`` and
``monitor report --from`` answer, a second version is swapped in, and ``mloop undeploy`` stops it.

Binary with a random forest, multiclass with gradient boosting, regression with a random forest, a
churn table of string categories and missing values through a ColumnTransformer, XGBoost (multiclass)
and LightGBM (regression). The data comes from scikit-learn's bundled sets or is generated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.servers import MLOOP, free_port

pytestmark = pytest.mark.e2e

PIPELINE = '''
from __future__ import annotations

from pathlib import Path
from typing import Any

from mloop import ModelCandidate, log_metric, pipeline, step

TARGET = "target"
TASK = "{task}"


@step
def load_data(path: Path = Path("data/data.csv")) -> Any:
    import pandas as pd

    return pd.read_csv(path)


@step(outputs=("train", "test"))
def split(data: Any) -> tuple[Any, Any]:
    from sklearn.model_selection import train_test_split

    stratify = None if TASK == "regression" else data[TARGET]
    train, test = train_test_split(data, test_size=0.3, random_state=0, stratify=stratify)
    return train.reset_index(drop=True), test.reset_index(drop=True)


@step
def train(train: Any, size: int = 20) -> Any:
    features, target = train.drop(columns=[TARGET]), train[TARGET]
{build}


@step
def evaluate(model: Any, test: Any) -> dict[str, float]:
    predicted = model.predict(test.drop(columns=[TARGET]))
    if TASK == "regression":
        score = float(((predicted - test[TARGET]) ** 2).mean() ** 0.5)
        log_metric("rmse", score)
        return {{"rmse": score}}
    score = float((predicted == test[TARGET]).mean())
    log_metric("accuracy", score)
    return {{"accuracy": score}}


@pipeline
def training() -> ModelCandidate:
    train_set, test_set = split(load_data())
    model = train(train_set)
    return ModelCandidate(model=model, train=train_set, test=test_set, target=TARGET, metrics=evaluate(model, test_set))
'''

BUILDS = {
    "forest": ("binary", "accuracy", '''
    from sklearn.ensemble import RandomForestClassifier
    return RandomForestClassifier(n_estimators=size, random_state=0).fit(features, target)'''),
    "boosting": ("multiclass", "f1_macro", '''
    from sklearn.ensemble import GradientBoostingClassifier
    return GradientBoostingClassifier(n_estimators=size, random_state=0).fit(features, target)'''),
    "regression": ("regression", "rmse", '''
    from sklearn.ensemble import RandomForestRegressor
    return RandomForestRegressor(n_estimators=size, random_state=0).fit(features, target)'''),
    "churn": ("binary", "accuracy", '''
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    encode = ColumnTransformer([
        ("categories", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                                     OneHotEncoder(handle_unknown="ignore")), ["plan", "region"]),
        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "spend", "member"])])
    return make_pipeline(encode, LogisticRegression(C=size / 20, max_iter=1000)).fit(features, target)'''),
    "xgboost": ("multiclass", "f1_macro", '''
    from xgboost import XGBClassifier
    return XGBClassifier(n_estimators=size, max_depth=3).fit(features, target)'''),
    "lightgbm": ("regression", "rmse", '''
    from lightgbm import LGBMRegressor
    return LGBMRegressor(n_estimators=size, verbose=-1).fit(features, target)'''),
}


def _data(kind: str) -> pd.DataFrame:
    from sklearn import datasets

    if kind == "forest":
        frame = datasets.load_breast_cancer(as_frame=True).frame.iloc[:, list(range(8)) + [-1]]
    elif kind in ("boosting", "xgboost"):
        frame = datasets.load_wine(as_frame=True).frame
    elif kind in ("regression", "lightgbm"):
        frame = datasets.load_diabetes(as_frame=True).frame
    else:
        rng = np.random.default_rng(0)
        n = 500
        plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
        member = rng.random(n) < 0.4
        spend = rng.gamma(2.0, 50.0, n)
        age = rng.integers(18, 80, n)
        score = spend / 50 + (plan == "pro") * 2 + member - (age > 60) + rng.normal(0, 0.5, n)
        frame = pd.DataFrame({"plan": plan, "region": rng.choice(["north", "south", "east"], n), "age": age,
                              "spend": spend, "member": member,
                              "target": np.where(score > np.median(score), "churn", "stay")})
        frame.loc[rng.random(n) < 0.1, "region"] = None
        frame.loc[rng.random(n) < 0.1, "spend"] = np.nan
    frame.columns = [re.sub(r"\W+", "_", str(c)).strip("_") for c in frame.columns]
    return frame


def mloop(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([MLOOP, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def _post(url: str, body: bytes | dict, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def _plain(value):
    if not isinstance(value, str) and pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _v2_inputs(frame: pd.DataFrame) -> list[dict]:
    def datatype(series: pd.Series) -> str:
        if pd.api.types.is_bool_dtype(series):
            return "BOOL"
        if pd.api.types.is_integer_dtype(series):
            return "INT64"
        return "FP64" if pd.api.types.is_numeric_dtype(series) else "BYTES"

    return [{"name": c, "shape": [len(frame)], "datatype": datatype(frame[c]),
             "data": [_plain(v) for v in frame[c].astype(object)]} for c in frame.columns]


def _v2_binary(frame: pd.DataFrame) -> tuple[bytes, int]:
    """Every feature as a binary tensor: little-endian numbers, length-prefixed UTF-8 for strings."""
    inputs, blobs = [], []
    for tensor in _v2_inputs(frame):
        values = tensor.pop("data")
        if tensor["datatype"] == "BYTES":
            blob = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
        elif tensor["datatype"] == "BOOL":
            blob = np.asarray(values, dtype=np.bool_).tobytes()
        elif tensor["datatype"] == "INT64":
            blob = np.asarray(values, dtype="<i8").tobytes()
        else:
            blob = np.asarray(values, dtype="<f8").tobytes()
        inputs.append({**tensor, "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    header = json.dumps({"inputs": inputs}).encode()
    return header + b"".join(blobs), len(header)


@pytest.mark.parametrize("kind", list(BUILDS))
def test_a_project_runs_deploys_answers_monitors_swaps_and_stops(kind, tmp_path: Path, mlflow_db_template: Path):
    task, metric, build = BUILDS[kind]
    root = tmp_path / kind
    (root / "data").mkdir(parents=True)
    data = _data(kind)
    data.to_csv(root / "data" / "data.csv", index=False)
    (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE.format(task=task, build=textwrap.indent(
        textwrap.dedent(build).strip("\n"), "    "))))
    (root / "mloop.toml").write_text(f'[project]\nname = "{kind}"\ntask = "{task}"\n\n[promotion]\nmetric = "{metric}"\n\n'
                                     "[monitor]\ninterval = 1\nmin_samples = 20\n")
    (root / ".mloop").mkdir(exist_ok=True)
    shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")

    first = mloop("run", cwd=root)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"model {kind} v1 registered as challenger, champion" in first.stdout

    deployed = mloop("deploy", "--port", str(free_port()), cwd=root)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    url = re.search(r"on (http://127\.0\.0\.1:\d+)", deployed.stdout).group(1)
    try:
        features = data.drop(columns=["target"])
        rows = features.head(40)
        status, body, _ = _post(f"{url}/predict", {"instances": [{k: _plain(v) for k, v in row.items()}
                                                                 for row in rows.astype(object).to_dict("records")]},
                                {"x-request-id": "plain"})
        assert status == 200, body
        answers = json.loads(body)["predictions"]
        assert set(answers[0]) == ({"prediction"} if task == "regression" else {"label", "probabilities"})

        status, body, _ = _post(f"{url}/v2/models/{kind}/infer", {"id": "v2", "inputs": _v2_inputs(rows)})
        assert status == 200, body
        outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
        assert list(outputs) == (["prediction"] if task == "regression" else ["label", "probabilities"])
        first_output = outputs["prediction" if task == "regression" else "label"]["data"]
        assert first_output == [a.get("label", a.get("prediction")) for a in answers]  # both forms agree

        complete = rows.dropna()
        binary, header_length = _v2_binary(complete)
        status, body, headers = _post(f"{url}/v2/models/{kind}/infer", binary,
                                      {"inference-header-content-length": str(header_length),
                                       "content-type": "application/octet-stream"})
        assert status == 200, body

        numeric = next(c for c in features.columns if pd.api.types.is_float_dtype(features[c]))
        bad = {k: _plain(v) for k, v in rows.iloc[0].items()} | {numeric: "1.5"}
        status, body, _ = _post(f"{url}/predict", {"instances": [bad]})
        assert status == 422 and json.loads(body)["field"] == numeric, body

        truth = [_plain(v) for v in data["target"].head(40)]
        status, body, _ = _post(f"{url}/feedback", {"id": "plain", "labels": truth})
        assert status == 200, body
        scores = json.loads(body)
        assert {"mae", "rmse", "r2"} <= set(scores) if task == "regression" else {"accuracy", "f1"} <= set(scores)

        monitored = mloop("monitor", "status", cwd=root)
        for _ in range(20):  # the server writes its status every second
            if monitored.returncode == 0 and "live:" in monitored.stdout:
                break
            monitored = mloop("monitor", "status", cwd=root)
        assert monitored.returncode == 0 and "live:" in monitored.stdout, monitored.stdout + monitored.stderr

        report = mloop("monitor", "report", "--from", "data/data.csv", cwd=root)
        assert report.returncode == 0, report.stdout + report.stderr
        assert not re.search(r"^target ", report.stdout, re.M)  # the target column is not compared as a feature
        assert f"of {features.shape[1]} features drifted" in report.stdout

        second = mloop("run", "-p", "train.size=40", cwd=root)
        assert second.returncode == 0 and f"model {kind} v2 registered" in second.stdout, second.stdout + second.stderr
        swapped = mloop("deploy", f"{kind}/2", cwd=root)
        assert swapped.returncode == 0 and "swapped to" in swapped.stdout, swapped.stdout + swapped.stderr
        status, body, _ = _post(f"{url}/predict", {"instances": [{k: _plain(v) for k, v in rows.iloc[0].items()}]})
        assert status == 200 and json.loads(body)["version"] == "2"
    finally:
        stopped = mloop("undeploy", cwd=root)  # the deployment mloop deploy named after the model
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
