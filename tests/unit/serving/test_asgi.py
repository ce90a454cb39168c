"""The ASGI app in memory (httpx's ASGI transport): routes, status codes, auth, limits, metrics."""

import orjson
import pyarrow as pa
import pytest

from mloop.config import MonitorSection
from tests.support.asgi import app_for, call

ROW = {"a": 1.0, "b": 2.0, "c": 3.0}


@pytest.fixture
def app(small_model):
    return app_for(small_model)


def test_health_metadata_and_readiness(app):
    assert call(app, "GET", "/v2/health/live").status_code == 200
    assert call(app, "GET", "/v2/health/ready").json() == {"ready": True}
    assert call(app, "GET", "/v2").json()["extensions"] == ["binary_tensor_data"]
    meta = call(app, "GET", "/v2/models/toy").json()
    assert [i["name"] for i in meta["inputs"]] == ["a", "b", "c"] and meta["versions"] == ["3"]
    assert call(app, "GET", "/v2/models/toy/versions/3/ready").status_code == 200
    assert call(app, "GET", "/v2/models/toy/versions/4").status_code == 404


def test_infer_and_predict_answer_with_the_request_id(app):
    response = call(app, "POST", "/v2/models/toy/versions/3/infer", headers={"x-request-id": "abc-1"},
                    json={"id": "q", "inputs": [{"name": "in", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]})
    assert response.status_code == 200 and response.headers["x-request-id"] == "abc-1"
    body = response.json()
    assert body["model_name"] == "toy" and body["id"] == "q"
    assert {o["name"] for o in body["outputs"]} == {"label", "probabilities"}
    plain = call(app, "POST", "/predict", json={"instances": [ROW]}).json()
    assert plain["predictions"][0]["label"] == body["outputs"][0]["data"][0]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("POST", "/predict", {"content": b"{not json"}, 400),
    ("POST", "/predict", {"json": {"instances": [{"a": 1}]}}, 422),
    ("GET", "/predict", {}, 405),
    ("POST", "/nowhere", {}, 404),
    ("POST", "/v2/models/other/infer", {"json": {}}, 404),
    ("POST", "/v2/models/toy/infer", {"content": b"{}", "headers": {"inference-header-content-length": "x"}}, 400),
])
def test_client_mistakes_are_4xx_with_a_json_error(app, method, path, kwargs, status):
    response = call(app, method, path, **kwargs)
    assert response.status_code == status
    assert "error" in response.json()


def test_body_over_the_limit_is_413(small_model):
    app = app_for(small_model, max_body_mb=100 / 2**20)
    response = call(app, "POST", "/predict", json={"instances": [ROW] * 20})
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_token_is_required_except_on_health(small_model):
    app = app_for(small_model, token="s3cret")
    assert call(app, "GET", "/v2/health/ready").status_code == 200
    denied = call(app, "POST", "/predict", json={"instances": [ROW]})
    assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
    assert call(app, "GET", "/metrics", headers={"authorization": "Bearer nope"}).status_code == 401
    ok = call(app, "POST", "/predict", json={"instances": [ROW]}, headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_metrics_count_requests_batches_predictions_and_the_model(app):
    call(app, "POST", "/predict", json={"instances": [ROW, ROW]})
    call(app, "POST", "/predict", json={"instances": [{"a": 1}]})
    text = call(app, "GET", "/metrics").text
    assert 'mloop_requests_total{code="200",route="predict"} 1.0' in text
    assert 'mloop_requests_total{code="422",route="predict"} 1.0' in text
    assert 'mloop_model_info{model="toy",version="3"} 1.0' in text
    assert "mloop_batch_rows_sum 2.0" in text
    assert 'mloop_predictions_total{label="1",model="toy",version="3"}' in text or 'mloop_predictions_total{label="0",model="toy",version="3"}' in text
    assert "mloop_request_duration_seconds_bucket" in text


def test_one_json_log_line_per_request(small_model):
    import io

    log = io.StringIO()
    app = app_for(small_model, access_log=log)
    call(app, "POST", "/predict", json={"instances": [ROW]}, headers={"x-request-id": "r-9"})
    [line] = log.getvalue().splitlines()
    entry = orjson.loads(line)
    assert entry["id"] == "r-9" and entry["status"] == 200 and entry["rows"] == 1 and entry["version"] == "3"
    assert entry["latency_ms"] > 0


def test_a_model_failure_is_a_500_and_the_server_keeps_serving(small_model):
    class Broken:
        def predict_proba(self, rows):
            raise RuntimeError("boom")

    from dataclasses import replace

    app = app_for(replace(small_model, estimator=Broken()), access_log=None)
    response = call(app, "POST", "/predict", json={"instances": [ROW]})
    assert response.status_code == 500 and "RuntimeError" in response.json()["error"]
    assert call(app, "GET", "/v2/health/live").status_code == 200


def test_batch_csv_is_scored_row_for_row_with_extra_columns_kept(app, small_model):
    import io

    import pandas as pd

    frame = pd.DataFrame({"id": range(25_000), "a": 1.0, "b": -3.0, "c": 0.5})
    response = call(app, "POST", "/predict/batch", content=frame.to_csv(index=False).encode(),
                    headers={"content-type": "text/csv"})
    assert response.status_code == 200 and response.headers["x-rows-scored"] == "25000"
    scored = pd.read_csv(io.BytesIO(response.content))
    assert list(scored.columns) == ["id", "a", "b", "c", "prediction", "probability_0", "probability_1"]
    assert scored["id"].tolist() == list(range(25_000)), "rows come back in order across chunks"
    expected = small_model.predict(frame[["a", "b", "c"]].to_numpy()[:1])[0][0]
    assert (scored["prediction"] == expected).all()


def test_batch_parquet_roundtrip(app):
    import io

    import pandas as pd

    frame = pd.DataFrame({"a": [1.0, -1.0], "b": [1.0, -1.0], "c": [0.0, 0.0]})
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    response = call(app, "POST", "/predict/batch?format=parquet", content=buffer.getvalue())
    assert response.status_code == 200
    scored = pd.read_parquet(io.BytesIO(response.content))
    assert scored["prediction"].tolist() == [1, 0]


@pytest.mark.parametrize(("content", "headers", "status", "message"), [
    (b"a,b\n1,2\n", {"content-type": "text/csv"}, 422, "column 'c' is missing"),
    (b"a,b,c\n1,x,2\n", {"content-type": "text/csv"}, 422, "column 'b' has a value that is not a number (row 0)"),
    (b"a,b,c\n1,2,3\n", {"content-type": "application/json"}, 415, "not a batch format"),
    (b"not parquet", {"content-type": "application/vnd.apache.parquet"}, 400, "cannot be read"),
    (b"a,b,c\n", {"content-type": "text/csv"}, 422, "no rows"),
    (b"a,b,c\n1,2,3\n", {"content-type": "text/csv", "x": "y"}, 200, ""),
])
def test_batch_mistakes_are_4xx(app, content, headers, status, message):
    response = call(app, "POST", "/predict/batch", content=content, headers=headers)
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["error"]


def parquet(columns: dict, names: list[str] | None = None) -> bytes:
    """A Parquet file of ``columns`` (Arrow arrays or lists), named ``names`` if given (duplicates allowed)."""
    import io

    import pyarrow.parquet as pq

    table = pa.table(columns) if names is None else pa.table(list(columns.values()), names=names)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


PARQUET, CSV = {"content-type": "application/vnd.apache.parquet"}, {"content-type": "text/csv"}
ONE_ROW = {"a": [1.0], "b": [2.0], "c": [3.0]}


@pytest.mark.parametrize(("content", "headers", "status", "message"), [
    (lambda: parquet({"a": [1.0], "b": [2.0], "c": [3.0], "a2": [4.0]}, ["a", "b", "c", "a"]), PARQUET, 422,
     "more than one column named 'a'; every column needs a name of its own: rename or drop the duplicates"),
    (lambda: parquet({**ONE_ROW, "x": [1], "x2": [2], "b2": [2.0]}, ["a", "b", "c", "x", "x", "b"]), PARQUET, 422,
     "more than one column named 'b', 'x'"),
    (lambda: b"a,b,c,a\n1,2,3,4\n", CSV, 422, "more than one column named 'a'"),
    (lambda: b"", PARQUET, 400, "the Parquet file cannot be read"),
    (lambda: b"", CSV, 400, "the CSV cannot be read"),
    (lambda: parquet({name: pa.array([], pa.float64()) for name in "abc"}), PARQUET, 422, "no rows to score"),
    (lambda: b"a,b,c\n1,2,3\n", PARQUET, 400, "the Parquet file cannot be read: Parquet magic bytes not found"),
    (lambda: parquet({"a": [[1.0, 2.0]], "b": [2.0], "c": [3.0]}), PARQUET, 422,
     "column 'a' holds list<element: double> values; a feature takes one value per row"),
    (lambda: parquet({"a": [{"x": 1.0}], "b": [2.0], "c": [3.0]}), PARQUET, 422, "column 'a' holds struct<x: double>"),
    (lambda: b"a,b,c\n1,2,3,4,5\n", CSV, 400, "rows have more values than its header has names (3)"),
    (lambda: "a,b,c\n1,2,\u00e9\n".encode("latin-1"), CSV, 400, "not UTF-8 text"),
], ids=["parquet-duplicate-feature", "parquet-duplicates", "csv-duplicate-header", "empty-parquet", "empty-csv",
        "parquet-zero-rows", "csv-sent-as-parquet", "parquet-list-feature", "parquet-struct-feature", "csv-ragged",
        "csv-latin-1"])
def test_malformed_uploads_are_4xx_saying_what_to_fix(app, content, headers, status, message):
    response = call(app, "POST", "/predict/batch", content=content(), headers=headers)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_batch_parquet_keeps_the_types_of_other_columns_across_chunks(app):
    import io

    import pyarrow.parquet as pq

    rows = 25_000  # three chunks; the integer column has a null in the second only
    ids = pa.array([None if i == 15_000 else i for i in range(rows)], pa.int64())
    tags = pa.array([[i, i] for i in range(rows)], pa.list_(pa.int64()))  # nested, but not a feature: passes through
    content = parquet({"id": ids, "tags": tags, "a": [1.0] * rows, "b": [-1.0] * rows, "c": [0.0] * rows})
    response = call(app, "POST", "/predict/batch", content=content, headers=PARQUET)
    assert response.status_code == 200, response.text
    scored = pq.read_table(io.BytesIO(response.content))
    assert scored.schema.field("id").type == pa.int64() and scored.column("id").null_count == 1
    assert scored.column("tags").to_pylist()[7] == [7, 7]
    assert scored.num_rows == rows and scored.column("prediction").null_count == 0


def test_missing_values_are_refused_when_the_model_cannot_take_them(app, small_model):
    # "c" had missing values in training, but this logistic regression cannot predict on NaN.
    assert not any(f.allow_missing for f in small_model.features)
    response = call(app, "POST", "/predict", json={"instances": [{"a": 1, "b": 2, "c": None}]})
    assert response.status_code == 422 and response.json()["field"] == "c"
    batch = call(app, "POST", "/predict/batch", content=b"a,b,c\n1,2,\n", headers={"content-type": "text/csv"})
    assert batch.status_code == 422 and "row 0" in batch.json()["error"]


def test_admin_swap_switches_versions_and_refuses_a_broken_one(small_model):
    from dataclasses import replace

    versions = {"models:/toy/4": replace(small_model, version="4")}

    def loader(uri):
        if uri not in versions:
            raise ValueError(f"no such version {uri}")
        return versions[uri]

    app = app_for(small_model, admin_token="adm", loader=loader)
    auth = {"authorization": "Bearer adm"}
    assert call(app, "POST", "/admin/model", json={"uri": "models:/toy/4"}).status_code == 401
    swapped = call(app, "POST", "/admin/model", json={"uri": "models:/toy/4"}, headers=auth)
    assert swapped.status_code == 200 and swapped.json()["previous"]["version"] == "3"
    assert call(app, "POST", "/predict", json={"instances": [ROW]}).json()["version"] == "4"
    refused = call(app, "POST", "/admin/model", json={"uri": "models:/toy/9"}, headers=auth)
    assert refused.status_code == 422 and "still serving toy v4" in refused.json()["error"]
    assert call(app, "POST", "/predict", json={"instances": [ROW]}).json()["version"] == "4"
    assert 'mloop_model_info{model="toy",version="4"} 1.0' in call(app, "GET", "/metrics").text


def test_admin_route_does_not_exist_without_an_admin_token(app):
    assert call(app, "POST", "/admin/model", json={"uri": "x"}).status_code == 404


def test_the_missing_value_probe_holds_even_with_sklearn_finiteness_checks_off(small_model):
    """The server sets assume_finite=True; a model loaded later (a hot swap) must still be probed properly."""
    from dataclasses import replace

    import sklearn

    from mloop.bundle.loaded import Feature

    features = [Feature("a", "float", False), Feature("b", "float", False), Feature("c", "float", True)]
    with sklearn.config_context(assume_finite=True):
        swapped_in = replace(small_model, features=features)
    assert not swapped_in.features[2].allow_missing


def test_monitoring_reports_drift_of_recent_traffic(small_model):
    import numpy as np

    app = app_for(small_model, monitor=MonitorSection(interval=0))
    rng = np.random.default_rng(0)
    stable = [{"a": float(a), "b": float(b), "c": float(c)} for a, b, c in rng.normal(size=(300, 3))]
    assert call(app, "POST", "/predict", json={"instances": stable}).status_code == 200
    app.dataplane.update_monitoring()
    text = call(app, "GET", "/metrics").text
    assert 'mloop_monitor_window_rows{model="toy",version="3"} 300.0' in text
    assert 'mloop_drifted_features_share{model="toy",version="3"} 0.0' in text
    shifted = [{"a": float(a) + 3, "b": float(b), "c": float(c)} for a, b, c in rng.normal(size=(300, 3))]
    app.dataplane.monitor.window.clear()
    call(app, "POST", "/predict", json={"instances": shifted})
    app.dataplane.update_monitoring()
    text = call(app, "GET", "/metrics").text
    assert 'mloop_feature_drift_detected{feature="a",model="toy",version="3"} 1.0' in text
    assert 'mloop_feature_drift_detected{feature="b",model="toy",version="3"} 0.0' in text
    assert 'mloop_drifted_features_share{model="toy",version="3"} 0.3333333333333333' in text


def test_feedback_gives_live_accuracy_on_the_metrics(app):
    first = call(app, "POST", "/predict", json={"instances": [ROW, ROW]}, headers={"x-request-id": "p-1"})
    predicted = [p["label"] for p in first.json()["predictions"]]
    wrong = 1 - predicted[1]
    answer = call(app, "POST", "/v2/models/toy/feedback", json={"id": "p-1", "labels": [predicted[0], wrong]})
    assert answer.status_code == 200 and answer.json()["labelled"] == 2 and answer.json()["accuracy"] == 0.5
    text = call(app, "GET", "/metrics").text
    assert 'mloop_live_score{metric="accuracy",model="toy",of="",version="3"} 0.5' in text
    assert 'mloop_labelled_predictions_total{model="toy",version="3"} 2.0' in text
    v2 = call(app, "POST", "/v2/models/toy/infer", headers={"x-request-id": "v-1"},
              json={"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]})
    label = v2.json()["outputs"][0]["data"][0]
    assert call(app, "POST", "/feedback", json={"items": [{"id": "v-1", "labels": [label]}]}).json()["labelled"] == 1


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"id": "never", "labels": [1]}, 404, "body.id"),
    ({"id": "p-2", "labels": [7]}, 422, "body.labels"),
    ({"id": "p-2", "labels": [1, 0, 1]}, 422, "body.labels"),
    ({"labels": [1]}, 422, "body.id"),
    ({"items": []}, 422, "items"),
])
def test_bad_feedback_is_4xx_naming_the_field(app, body, status, field):
    call(app, "POST", "/predict", json={"instances": [ROW]}, headers={"x-request-id": "p-2"})
    response = call(app, "POST", "/feedback", json=body)
    assert response.status_code == status and response.json()["field"] == field


def test_the_openapi_document_is_derived_from_the_route_table(small_model):
    from mloop.serving.asgi import ROUTES, Auth

    plain = call(app_for(small_model), "GET", "/openapi.json").json()
    documented = {(path, method.upper()) for path, ops in plain["paths"].items() for method in ops}
    assert documented == {(r.path, r.method) for r in ROUTES if r.operation is not None}
    assert ("/admin/model", "POST") not in documented  # internal: mloop deploy's hot swap
    assert all("security" not in op for ops in plain["paths"].values() for op in ops.values())
    only_alerts = call(app_for(small_model, alert_token="am"), "GET", "/openapi.json").json()["paths"]
    assert only_alerts["/alerts/webhook"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in only_alerts["/predict"]["post"]
    secured = call(app_for(small_model, token="t"), "GET", "/openapi.json",
                   headers={"authorization": "Bearer t"}).json()["paths"]
    public = {r.path for r in ROUTES if r.auth is Auth.PUBLIC}
    for path, ops in secured.items():
        for op in ops.values():
            assert ("security" in op) is (path not in public), path
            assert ("401" in op["responses"]) is (path not in public or path == "/alerts/webhook")


def test_every_model_route_of_the_table_is_routed(small_model):
    from mloop.serving.asgi import ROUTES, Router

    router = Router(ROUTES)
    for route in ROUTES:
        path = route.path.replace("{model_name}", "toy").replace("{model_version}", "3")
        assert router.match(route.method, path)[0] is route


def test_a_wrong_method_is_405_naming_the_allowed_one(app):
    response = call(app, "DELETE", "/v2/models/toy/infer")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert call(app, "HEAD", "/v2/health/ready").status_code == 200


def test_live_scores_are_per_served_version_and_labels_for_the_old_one_are_still_taken(small_model, tmp_path):
    from dataclasses import replace

    new = replace(small_model, version="4")
    app = app_for(small_model, monitor=MonitorSection(interval=0), monitor_dir=tmp_path, admin_token="adm",
                  loader=lambda uri: new)
    old = call(app, "POST", "/predict", json={"instances": [ROW, ROW]}, headers={"x-request-id": "old"}).json()
    wrong = [1 - p["label"] for p in old["predictions"]]
    assert call(app, "POST", "/feedback", json={"id": "old", "labels": wrong}).json()["accuracy"] == 0.0
    late = call(app, "POST", "/predict", json={"instances": [ROW]}, headers={"x-request-id": "late"}).json()
    assert call(app, "POST", "/admin/model", json={"uri": "models:/toy/4"},
                headers={"authorization": "Bearer adm"}).status_code == 200
    answer = call(app, "POST", "/feedback", json={"id": "late", "labels": [1 - late["predictions"][0]["label"]]})
    assert answer.status_code == 200 and answer.json() == {"labelled": 1, "version": "4", "total_labelled": 0}
    fresh = call(app, "POST", "/predict", json={"instances": [ROW]}, headers={"x-request-id": "fresh"}).json()
    right = call(app, "POST", "/feedback", json={"id": "fresh", "labels": [fresh["predictions"][0]["label"]]})
    assert right.json()["accuracy"] == 1.0 and right.json()["total_labelled"] == 1  # version 4's own
    app.dataplane.update_monitoring()
    again = app_for(new, monitor=MonitorSection(interval=0), monitor_dir=tmp_path)  # a restart on version 4
    assert again.dataplane.monitor.feedback.labelled_total == 1
    assert again.dataplane.update_monitoring().feedback.scores["accuracy"] == 1.0


def test_feedback_for_several_requests_is_all_or_nothing(app):
    call(app, "POST", "/predict", json={"instances": [ROW]}, headers={"x-request-id": "one"})
    refused = call(app, "POST", "/feedback", json={"items": [{"id": "one", "labels": [1]},
                                                             {"id": "missing", "labels": [1]}]})
    assert refused.status_code == 404 and refused.json()["field"] == "items[1].id"
    twice = call(app, "POST", "/feedback", json={"items": [{"id": "one", "labels": [1]}, {"id": "one", "labels": [0]}]})
    assert twice.status_code == 422 and "appears twice" in twice.json()["error"]
    assert call(app, "POST", "/feedback", json={"id": "one", "labels": [1]}).status_code == 200  # nothing was applied


def test_low_accuracy_fires_relative_to_the_served_versions_own_test_score(small_model):
    from dataclasses import replace

    scored = replace(small_model, info=replace(small_model.info, test_scores={"accuracy": 0.8}))
    app = app_for(scored, monitor=MonitorSection(interval=0))
    answer = call(app, "POST", "/predict", json={"instances": [ROW] * 10}, headers={"x-request-id": "r"}).json()
    labels = [p["label"] for p in answer["predictions"]]
    truth = [1 - label if i < 3 else label for i, label in enumerate(labels)]  # 70 %: worse than 0.8 - 10 %
    assert call(app, "POST", "/feedback", json={"id": "r", "labels": truth}).json()["accuracy"] == 0.7
    status = app.dataplane.update_monitoring()
    assert status.alerts.firing == ["LowAccuracy"]
    assert 'mloop_test_score{metric="accuracy",model="toy",version="3"} 0.8' in call(app, "GET", "/metrics").text
    unscored = app_for(small_model, monitor=MonitorSection(interval=0))  # no test scores: the rule cannot apply
    assert "LowAccuracy" not in [r.name for r in unscored.dataplane.monitor.alerting.rules]


def test_request_ids_are_unguessable_and_a_clients_id_never_replaces_another_requests_record(app):
    first = call(app, "POST", "/predict", json={"instances": [ROW]})
    second = call(app, "POST", "/predict", json={"instances": [ROW]})
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and ids[0][:8] != ids[1][:8]  # 128 random bits
    mine = call(app, "POST", "/predict", json={"instances": [ROW, ROW]}, headers={"x-request-id": "mine"})
    assert mine.headers["x-request-id"] == "mine"
    # The same id again (a retry, or someone guessing): answered, but under an id of its own.
    again = call(app, "POST", "/predict", json={"instances": [ROW]}, headers={"x-request-id": "mine"})
    assert again.status_code == 200 and len(again.headers["x-request-id"]) == 32
    v2 = call(app, "POST", "/v2/models/toy/infer", json={"id": ids[0], "inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]})
    assert v2.status_code == 200 and v2.json()["id"] == ids[0]  # echoed, as the protocol says
    assert v2.headers["x-request-id"] not in ids  # but not recorded over the other request's prediction
    labels = [p["label"] for p in mine.json()["predictions"]]
    assert call(app, "POST", "/feedback", json={"id": "mine", "labels": labels}).json()["labelled"] == 2
    assert call(app, "POST", "/feedback", json={"id": ids[0], "labels": [0]}).json()["labelled"] == 1
    fixed = [call(app, "POST", "/v2/models/toy/infer", json={"id": "1", "inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}) for _ in range(2)]
    assert [r.status_code for r in fixed] == [200, 200]  # a client that always sends the same id still works
    assert fixed[0].headers["x-request-id"] == "1" and fixed[1].headers["x-request-id"] != "1"


def test_with_a_token_a_stranger_learns_nothing_not_even_which_routes_exist(small_model):
    app = app_for(small_model, token="t")
    for method, path in (("GET", "/nothing"), ("GET", "/v2/models/other"), ("DELETE", "/predict"),
                         ("GET", "/v2/models/toy/versions/9")):
        answer = call(app, method, path)
        assert answer.status_code == 401 and "toy" not in answer.text, (path, answer.text)
    assert call(app, "GET", "/nothing", headers={"authorization": "Bearer t"}).status_code == 404
    assert call(app, "GET", "/v2/health/ready").status_code == 200  # health stays public
