"""The Predict page against real deployments (``mloop serve`` processes on 127.0.0.1): the form generated from
the served model's bundle, a row sent and its answer explained, and a file checked and scored in batch.

Two deployments are shared by the module: the reference breast-cancer model (30 numeric features, a
logistic regression) and a churn model of string categories, booleans, integers and missing values (a
k-nearest-neighbours pipeline: a model family the explanation does not cover)."""

from __future__ import annotations

import io
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mloop.config import load_project
from mloop.deploy import local
from mloop.project import create_project, run_project
from mloop.registry.fetch import load_registered
from mloop.ui import predict
from tests.support.churn import PIPELINE
from tests.support.projects import write_project
from tests.support.ui import app_test, texts

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployed(first_run, tmp_path_factory, mlflow_db_template):
    """{"breast_cancer": root, "churn": root, "prices": root}, each project with its champion deployed (stopped
    after); prices is a regression project of `mloop init --task regression`."""
    source, _ = first_run
    cancer = Path(shutil.copytree(source, tmp_path_factory.mktemp("predict") / "breast_cancer",
                                  ignore=shutil.ignore_patterns("__pycache__", "deployments", "monitor")))
    churn = write_project(tmp_path_factory.mktemp("predict") / "churn", "churn", PIPELINE)
    (churn / ".mloop").mkdir(exist_ok=True)
    shutil.copyfile(mlflow_db_template, churn / ".mloop" / "mlflow.db")
    outcome = run_project(load_project(churn), params={"train": {"kind": "knn"}})
    assert outcome.registration is not None, outcome
    prices = create_project("prices", tmp_path_factory.mktemp("predict"), task="regression")
    (prices / ".mloop").mkdir(exist_ok=True)
    shutil.copyfile(mlflow_db_template, prices / ".mloop" / "mlflow.db")
    assert run_project(load_project(prices)).registration is not None
    roots = {"breast_cancer": cancer, "churn": churn, "prices": prices}
    failures: list[BaseException] = []

    def start(root: Path, model: str) -> None:
        try:
            local.deploy(load_project(root), f"models:/{model}@champion")
        except BaseException as err:  # noqa: BLE001 (re-raised below, in the test's thread)
            failures.append(err)

    threads = [threading.Thread(target=start, args=(root, model)) for model, root in roots.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not failures, failures
        yield roots
    finally:
        for model, root in roots.items():
            if local.load_state(load_project(root), model) is not None:
                local.undeploy(load_project(root), model)


def _inputs(at, kind: str) -> dict:
    return {widget.label: widget for widget in getattr(at, kind)}


def _cancer_train(root: Path) -> pd.DataFrame:
    """The training split of the reference project, as its pipeline makes it (mloop.toml: 0.25, seed 42)."""
    from sklearn.model_selection import train_test_split

    data = pd.read_csv(root / "data" / "breast_cancer.csv")
    train, _ = train_test_split(data, test_size=0.25, random_state=42, stratify=data["target"])
    return train.drop(columns=["target"])


def test_without_a_running_deployment_the_page_says_how_to_start_one(tmp_path: Path):
    (tmp_path / "mloop.toml").write_text('[project]\nname = "empty"\n')
    at = app_test(tmp_path, "predict").run()
    assert not at.exception, at.exception
    assert "No deployment of empty is running" in texts(at) and "`mloop deploy`" in texts(at)
    assert not at.number_input and not at.button


def test_the_form_bounds_each_number_to_its_training_range_with_the_median(deployed):
    at = app_test(deployed["breast_cancer"], "predict").run()
    assert not at.exception, at.exception
    train = _cancer_train(deployed["breast_cancer"])
    numbers = _inputs(at, "number_input")
    assert sorted(numbers) == sorted(train.columns)  # (laid out in three columns)
    for name, widget in numbers.items():
        assert (widget.min, widget.max) == pytest.approx((train[name].min(), train[name].max())), name
        decimals = int(widget.proto.format.strip("%.f"))  # the median as its box shows it
        assert widget.value == round(widget.value, decimals), name
        assert widget.value == pytest.approx(train[name].median(), abs=10.0 ** -decimals), name
    assert not at.selectbox[1:] and [c.label for c in at.checkbox] == []  # no categories, nothing may be missing


def test_the_form_of_categories_booleans_integers_and_missing_values(deployed):
    at = app_test(deployed["churn"], "predict").run()
    assert not at.exception, at.exception
    model = load_registered(load_project(deployed["churn"]), "models:/churn@champion")
    train = _churn_train(deployed["churn"])
    boxes = _inputs(at, "selectbox")
    assert set(boxes["plan"].options) == {"basic", "plus", "pro"}  # plan was never missing: no "missing" choice
    assert boxes["plan"].value == train["plan"].mode()[0]
    assert boxes["region"].options == [*model.features[1].categories, "(missing)"]
    numbers = _inputs(at, "number_input")
    assert numbers["age"].value == int(round(train["age"].median())) and isinstance(numbers["age"].value, int)
    assert (numbers["age"].min, numbers["age"].max) == (train["age"].min(), train["age"].max())
    assert numbers["spend"].value == pytest.approx(train["spend"].median(), abs=0.1)  # as its box shows it
    checks = _inputs(at, "checkbox")
    assert set(checks) == {"member", "spend missing"}
    assert checks["member"].value == bool(train["member"].mode()[0])
    at.button(key="predict_load_example").click().run()  # the first training row of the input example
    assert _inputs(at, "number_input")["age"].value == train["age"].iloc[0]
    at.button(key="predict_reset").click().run()
    assert _inputs(at, "number_input")["age"].value == int(round(train["age"].median()))


def test_a_missing_value_of_an_example_row_ticks_missing_and_leaves_no_stale_number_in_the_box(deployed):
    from streamlit.testing.v1 import AppTest

    def script(root: str) -> None:
        import streamlit as st

        from mloop.ui.predict import _fill, form_fields, loaded, registered_at, widget_key

        model = loaded(root, "churn", "1", registered_at(root, "churn", "1"))[0]
        fields = form_fields(model)
        if "filled" not in st.session_state:  # the last row's number, then a row without one
            st.session_state[widget_key(model, "spend")] = 300.0
            _fill(model, fields, [{"plan": "pro", "region": None, "age": 30, "spend": None, "member": True}], "t")
            st.session_state["filled"] = True
        st.session_state["median"] = next(f.default for f in fields if f.name == "spend")

    at = AppTest.from_function(script, args=(str(deployed["churn"]),), default_timeout=60).run()
    assert not at.exception, at.exception
    train = _churn_train(deployed["churn"])
    assert at.session_state["predict:churn:1:spend:missing"] is True
    assert at.session_state["predict:churn:1:spend"] == at.session_state["median"]  # not the stale 300
    assert at.session_state["median"] == pytest.approx(train["spend"].median(), abs=0.05)
    assert at.session_state["predict:churn:1:region"] == "(missing)"


def test_no_default_reads_as_negative_zero(deployed):
    import math
    import re

    at = app_test(deployed["prices"], "predict").run()
    assert not at.exception, at.exception
    for name, widget in _inputs(at, "number_input").items():
        shown = widget.proto.format % widget.value
        assert not re.fullmatch(r"-0\.?0*", shown), (name, shown)  # "-0.000"
        assert math.copysign(1.0, widget.value) > 0 or widget.value < 0, name
        assert not re.search(r"median -0(?![.\d])", widget.help), (name, widget.help)
    # the prices project has a feature centred on 0 whose median is a hair below it
    model = load_registered(load_project(deployed["prices"]), "models:/prices@champion")
    assert any(-0.0005 < (model.profile.median(name) or 1.0) < 0 for name in model.feature_names)


def _churn_train(root: Path) -> pd.DataFrame:
    import importlib.util

    spec = importlib.util.spec_from_file_location("churn_pipeline_for_ui", root / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train, _ = module.split(module.load_data())
    return train.drop(columns=["outcome"])


def test_a_row_sent_to_the_deployment_answers_with_label_probabilities_outlier_score_and_why(deployed):
    root = deployed["breast_cancer"]
    model = load_registered(load_project(root), "models:/breast_cancer@champion")
    at = app_test(root, "predict").run()
    at.button(key="predict_load_example").click().run()  # the model's input example: its first training row
    assert "Example row 1 of 5" in texts(at)
    shown = {name: widget.value for name, widget in _inputs(at, "number_input").items()}
    at.form_submit_button[0].click().run()
    assert not at.exception, at.exception
    row = pd.DataFrame([{name: shown[name] for name in model.feature_names}])
    expected = model.estimator.predict_proba(row)[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Label"] == str(int(np.argmax(expected))) and metrics["Version"] == "v1"
    assert float(metrics["Outlier score"]) == pytest.approx(model.outlier_detector.score_samples(row)[0], abs=1e-4)
    assert len(at.get("vega_lite_chart")) == 2  # the class probabilities, the features that pushed most
    probabilities = at.dataframe[0].value  # as numbers, the predicted class first
    label = int(np.argmax(expected))
    assert probabilities["class"].tolist() == [str(label), str(1 - label)]
    assert probabilities["probability"].tolist() == pytest.approx([expected[label], expected[1 - label]], abs=1e-6)
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)  # a bar per class, its name level on the y axis
    assert spec["encoding"]["y"]["field"] == "class" and spec["encoding"]["y"]["sort"] == [str(label), str(1 - label)]
    table = at.dataframe[1].value
    assert len(table) == 30 and set(table["feature"]) == set(model.feature_names)
    assert "SHAP (kernel explainer" in texts(at) and "probability of class" in texts(at)
    assert "Request id" in texts(at)


def test_a_row_of_categories_with_a_missing_value_answers_and_says_why_it_is_not_explained(deployed):
    at = app_test(deployed["churn"], "predict").run()
    at.selectbox(key="predict:churn:1:region").select("(missing)")
    at.checkbox(key="predict:churn:1:spend:missing").check()
    at.form_submit_button[0].click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Label"] in {"churn", "stay"}
    assert "KNeighborsClassifier" in texts(at) and "tree ensembles and linear models" in texts(at)
    assert "Outlier score" not in metrics and "no outlier detector" in texts(at)
    assert len(at.get("vega_lite_chart")) == 1  # the class probabilities


def test_a_refused_row_shows_the_servers_message_and_an_unreachable_server_the_fix(deployed):
    from streamlit.testing.v1 import AppTest

    def script(root: str, row: dict, port: int | None) -> None:
        from pathlib import Path

        from mloop.config import load_project
        from mloop.deploy.local import load_state
        from mloop.ui.predict import loaded, predict_row, registered_at

        cfg = load_project(Path(root))
        deployment = load_state(cfg, "churn")
        if port is not None:
            deployment.port = port
        created = registered_at(root, "churn", deployment.version)
        predict_row(cfg, deployment, loaded(root, "churn", deployment.version, created)[0], row)

    row = {"plan": "pro", "region": None, "age": 30.5, "spend": 10.0, "member": True}
    at = AppTest.from_function(script, args=(str(deployed["churn"]), row, None), default_timeout=60).run()
    assert "churn answered HTTP 422" in at.error[0].value and "expects a whole number, got 30.5" in at.error[0].value
    assert "(field: age)" in at.error[0].value
    from tests.support.servers import free_port

    at = AppTest.from_function(script, args=(str(deployed["churn"]), row, free_port()), default_timeout=60).run()
    assert "does not answer at http://127.0.0.1:" in at.error[0].value
    assert "**Fix:**" in at.error[0].value and "mloop deploy churn/1 --name churn" in at.error[0].value


def _upload(at, name: str, content: bytes, mime: str):
    at.file_uploader(key="predict_batch_file").set_value((name, content, mime))
    return at.run()


def test_a_file_with_problems_lists_each_by_row_and_column_and_scores_nothing(deployed):
    root = deployed["churn"]
    rows = _churn_train(root).head(12).astype(object)
    rows.loc[2, "age"] = "thirty"
    rows.loc[5, "plan"] = None  # plan takes no missing value
    rows.loc[5, "member"] = "maybe"
    rows.loc[7, "region"] = "atlantis"  # a category training never saw: taken, noted
    at = _upload(app_test(root, "predict").run(), "customers.csv", rows.to_csv(index=False).encode(), "text/csv")
    assert not at.exception, at.exception
    problems = at.dataframe[0].value
    assert sorted(zip(problems["row"], problems["column"], strict=True)) == [("2", "age"), ("5", "member"),
                                                                            ("5", "plan")]
    assert "3 problems:" in texts(at) and "nothing was sent" in texts(at)
    assert "atlantis" in texts(at)
    assert not [b for b in at.button if b.key == "predict_batch_score"] and not at.download_button
    missing = rows.drop(columns=["spend"]).to_csv(index=False).encode()
    at = _upload(at, "short.csv", missing, "text/csv")
    [problem] = at.dataframe[0].value.to_dict("records")
    assert "column 'spend' is missing" in problem["problem"] and problem["row"] == "-"  # a whole column: no row


def test_a_semicolon_separated_file_is_one_problem_saying_so_and_the_server_says_the_same(deployed):
    from tests.support.servers import post

    root = deployed["breast_cancer"]
    data = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"]).head(20)
    content = data.to_csv(index=False, sep=";", decimal=",").encode()  # as a spreadsheet saves it in many locales
    at = _upload(app_test(root, "predict").run(), "patients.csv", content, "text/csv")
    assert not at.exception, at.exception
    [problem] = at.dataframe[0].value.to_dict("records")
    assert (problem["row"], problem["column"]) == ("-", "(the file)")  # not "None"
    assert "the file looks ';'-separated" in problem["problem"] and "save it comma-separated" in problem["problem"]
    assert "1 problem:" in texts(at) and not at.warning  # no header shown as one unknown column
    deployment = local.load_state(load_project(root), "breast_cancer")
    status, body = post(f"{deployment.url}/predict/batch", content, {"content-type": "text/csv"})
    assert status == 400 and body["error"] == problem["problem"]
    at = _upload(at, "empty.csv", b"", "text/csv")
    [problem] = at.dataframe[0].value.to_dict("records")
    assert (problem["row"], problem["column"]) == ("-", "(the file)")


def test_a_good_file_is_scored_in_chunks_previewed_and_offered_in_its_own_format(deployed):
    root = deployed["breast_cancer"]
    model = load_registered(load_project(root), "models:/breast_cancer@champion")
    data = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"]).head(120)
    data.insert(0, "patient", [f"p{i:03d}" for i in range(len(data))])
    at = _upload(app_test(root, "predict").run(), "patients.csv", data.to_csv(index=False).encode(), "text/csv")
    assert "120 rows, every value of the type its feature takes" in texts(at)
    assert "'patient' is not a feature of the model; it is passed through" in texts(at)
    at.button(key="predict_batch_score").click().run()
    assert not at.exception, at.exception
    scored = at.session_state["predict_batch_result"]
    result = pd.read_csv(io.BytesIO(scored.content))
    expected = model.estimator.predict_proba(data.drop(columns=["patient"]))
    assert scored.rows == 120 and result["patient"].tolist() == data["patient"].tolist()  # 3 requests of 50, 50, 20
    assert np.allclose(result[["probability_0", "probability_1"]], expected)
    assert len(at.dataframe[0].value) == 100
    [download] = at.download_button
    assert download.label == "Download the scored file"


def test_a_parquet_file_of_categories_comes_back_as_parquet(deployed):
    root = deployed["churn"]
    data = _churn_train(root).head(60)
    sink = io.BytesIO()
    data.to_parquet(sink)
    at = _upload(app_test(root, "predict").run(), "customers.parquet", sink.getvalue(), "application/octet-stream")
    at.button(key="predict_batch_score").click().run()
    assert not at.exception, at.exception
    result = pd.read_parquet(io.BytesIO(at.session_state["predict_batch_result"].content))
    model = load_registered(load_project(root), "models:/churn@champion")
    assert result["prediction"].tolist() == model.estimator.predict(data).tolist()
    assert result["region"].isna().tolist() == data["region"].isna().tolist()


def _second_version(root: Path, model: str) -> str:
    """Another version of ``model`` holding the same model as v1 (registered without training; no alias moves)."""
    from mloop.tracking.client import mlflow_client

    client = mlflow_client(load_project(root))
    first = client.get_model_version(model, "1")
    return str(client.create_model_version(model, source=first.source, run_id=first.run_id, tags=first.tags,
                                           model_id=first.model_id).version)


def test_during_a_rollout_the_page_says_which_version_answers_how_much(deployed):
    root = deployed["churn"]
    cfg = load_project(root)
    candidate = _second_version(root, "churn")
    predict._cached_rollout.clear()  # an earlier test's page read "no roll-out" less than 5 s ago
    try:
        local.start_rollout(cfg, "churn", f"models:/churn/{candidate}", "canary", 0.3)
        at = app_test(root, "predict").run()
        assert not at.exception, at.exception
        assert f"Canary under way: v{candidate} answers 30% of requests, v1 the rest" in texts(at)
        local.start_rollout(cfg, "churn", f"models:/churn/{candidate}", "shadow")
        assert "Canary under way" in texts(at.run())  # the state read 5 s ago: not asked again on every rerun
        predict._cached_rollout.clear()  # (what 5 s would do)
        at.run()
        assert (f"v{candidate} scores every request in shadow; answers come from v1" in texts(at)
                and "Canary" not in texts(at))
    finally:
        local.abort_rollout(cfg, "churn")
    predict._cached_rollout.clear()
    assert "under way" not in texts(at.run())


def test_a_regressors_answer_is_its_value_without_class_probabilities_and_is_explained(deployed):
    root = deployed["prices"]
    model = load_registered(load_project(root), "models:/prices@champion")
    at = app_test(root, "predict").run()
    at.button(key="predict_load_example").click().run()
    shown = {name: widget.value for name, widget in _inputs(at, "number_input").items()}
    at.form_submit_button[0].click().run()
    assert not at.exception, at.exception
    expected = model.estimator.predict(pd.DataFrame([{name: shown[name] for name in model.feature_names}]))[0]
    metrics = {m.label: m.value for m in at.metric}
    assert "Label" not in metrics and float(metrics["Prediction"]) == pytest.approx(expected, rel=1e-3, abs=1e-2)
    assert "Class probabilities" not in texts(at)
    assert "Contributions to the prediction" in texts(at)  # a random forest: a tree ensemble, explained

def test_monitoring_a_regressor_charts_its_mean_absolute_error_in_the_page_and_the_report(deployed, tmp_path):
    """Last in the file: it stops the prices deployment (its logs are written when it stops)."""
    import json
    import subprocess

    from tests.support.servers import MLOOP, post

    root = deployed["prices"]
    cfg = load_project(root)
    deployment = local.load_state(cfg, "prices")
    data = pd.read_csv(root / "data" / "data.csv").head(40)
    for i in range(4):
        part = data.iloc[i * 10:(i + 1) * 10]
        status, _ = post(f"{deployment.url}/predict",
                         json.dumps({"instances": part.drop(columns=["target"]).to_dict("records")}).encode(),
                         {"x-request-id": f"p{i}"})
        assert status == 200
        status, _ = post(f"{deployment.url}/feedback",
                         json.dumps({"id": f"p{i}", "labels": part["target"].tolist()}).encode())
        assert status == 200
    local.undeploy(cfg, "prices")
    at = app_test(root, "monitoring").run()
    assert not at.exception, at.exception
    titles = " ".join(str(json.loads(chart.proto.spec).get("title")) for chart in at.get("vega_lite_chart"))
    assert "Mean absolute error over time" in titles and "Accuracy over time" not in titles
    report = tmp_path / "report.html"
    done = subprocess.run([MLOOP, "monitor", "report", "--since", "1h", "--out", str(report)], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    page = report.read_text()
    assert "Mean absolute error over time" in page and "Accuracy over time" not in page
