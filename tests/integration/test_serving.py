"""A real `mloop serve` process on 127.0.0.1 serving the registered reference model."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from tests.support.servers import MLOOP, free_port, post, start_server, stop

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def server(first_run):
    root, _ = first_run
    proc, url = start_server(root, "--name", "module-server")  # other tests serve the model beside it
    yield url, root
    stop(proc)


@pytest.fixture(scope="module")
def test_rows(first_run) -> pd.DataFrame:
    root, _ = first_run
    return pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"]).head(8)


def test_a_real_v2_client_reads_health_metadata_and_infers(server, test_rows, first_run):
    import tritonclient.http as httpclient

    url, _ = server
    client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("breast_cancer")
    metadata = client.get_model_metadata("breast_cancer")
    assert len(metadata["inputs"]) == 30 and metadata["versions"] == ["1"]

    rows = test_rows.to_numpy(dtype=np.float64)
    for binary in (False, True):
        tensor = httpclient.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput("label", binary_data=binary),
                   httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
        result = client.infer("breast_cancer", [tensor], outputs=outputs, request_id="req-7")
        labels, proba = result.as_numpy("label"), result.as_numpy("probabilities")
        assert labels.shape == (8,) and proba.shape == (8, 2)
        assert np.allclose(proba.sum(axis=1), 1.0)
        assert result.get_response()["id"] == "req-7"

    from mloop.registry.fetch import load_registered
    from mloop.config import load_project

    expected = load_registered(load_project(first_run[0]), "models:/breast_cancer@champion").estimator.predict(test_rows)
    assert labels.tolist() == expected.tolist(), "the server predicts what the registered model predicts"


def test_plain_json_prediction_for_people(server, test_rows):
    url, _ = server
    status, body = post(f"{url}/predict", json.dumps({"instances": test_rows.head(2).to_dict("records")}).encode())
    assert status == 200 and body["model"] == "breast_cancer" and body["version"] == "1"
    assert set(body["predictions"][0]["probabilities"]) == {"0", "1"}


@pytest.mark.parametrize(("body", "status", "field"), [
    (b'{"instances": [', 400, None),
    (b'{"instances": [{"mean_radius": 1}]}', 422, "mean_texture"),
    (b'{"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": [1]}]}', 422, None),
])
def test_client_mistakes_get_4xx_from_the_real_server(server, body, status, field):
    url, _ = server
    path = "/v2/models/breast_cancer/infer" if b'"datatype"' in body else "/predict"
    got, payload = post(f"{url}{path}", body)
    assert got == status and "error" in payload
    if field:
        assert payload["field"] == field


def test_metrics_are_prometheus_text(server):
    url, _ = server
    with urllib.request.urlopen(f"{url}/metrics") as response:
        text = response.read().decode()
    assert 'mloop_model_info{model="breast_cancer",version="1"} 1.0' in text
    assert "mloop_request_duration_seconds_bucket" in text


def test_token_guards_everything_but_health(first_run):
    root, _ = first_run
    proc, url = start_server(root, "--token", "t0ken", "--no-access-log")
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready") as response:
            assert response.status == 200
        status, _ = post(f"{url}/predict", b"{}")
        assert status == 401
        status, _ = post(f"{url}/predict", b'{"instances": [{}]}', {"authorization": "Bearer t0ken"})
        assert status == 422
    finally:
        stop(proc)


def test_refuses_a_public_address_without_a_token(first_run):
    root, _ = first_run
    done = subprocess.run([MLOOP, "serve", "--host", "0.0.0.0", "--port", str(free_port())], cwd=root,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "MLOOP_SERVING_TOKEN": ""})
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without a token" in done.stderr and "Traceback" not in done.stderr


def test_unknown_model_uri_is_a_clear_error(first_run):
    root, _ = first_run
    done = subprocess.run([MLOOP, "serve", "models:/breast_cancer@nope", "--port", str(free_port())], cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "models:/breast_cancer@nope" in done.stderr and "Traceback" not in done.stderr


def test_sigterm_shuts_down_gracefully(first_run):
    root, _ = first_run
    proc, url = start_server(root)
    post(f"{url}/predict", b'{"instances": [{}]}')
    err = stop(proc)
    # uvicorn drains, then re-raises the signal, which mloop handles as every command does: exit 143
    assert proc.returncode == 143 and err.rstrip().endswith("terminated"), err
    assert "Traceback" not in err and '"status":422' in err, "the access log has the request"


def test_drift_and_outliers_of_live_traffic_reach_the_metrics(first_run):
    root, _ = first_run
    proc, url = start_server(root, "--no-access-log", "--monitor-interval", "0.3")
    try:
        data = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"])
        shifted = data.copy()
        shifted[["mean_radius", "worst_area", "mean_texture"]] *= 3.0  # far outside training
        post(f"{url}/predict", json.dumps({"instances": shifted.to_dict("records")}).encode())

        def gauges() -> dict[str, float]:
            with urllib.request.urlopen(f"{url}/metrics") as response:
                lines = response.read().decode().splitlines()
            return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines
                    if line.startswith(("mloop_drifted_features_share", "mloop_outlier_ratio",
                                        "mloop_feature_drift_detected", "mloop_monitor_window_rows"))}

        deadline = time.time() + 20
        while time.time() < deadline and 'mloop_outlier_ratio{model="breast_cancer",version="1"}' not in gauges():
            time.sleep(0.2)
        found = gauges()
        assert found['mloop_monitor_window_rows{model="breast_cancer",version="1"}'] == len(data)
        assert found['mloop_feature_drift_detected{feature="mean_radius",model="breast_cancer",version="1"}'] == 1.0
        assert found['mloop_feature_drift_detected{feature="smoothness_error",model="breast_cancer",version="1"}'] == 0.0
        assert 0.05 < found['mloop_drifted_features_share{model="breast_cancer",version="1"}'] < 0.5
        from mloop.registry.fetch import load_registered
        from mloop.config import load_project

        detector = load_registered(load_project(root), "models:/breast_cancer@champion").outlier_detector
        baseline = float((detector.predict(data) == -1).mean())  # the same detector on unshifted rows
        assert found['mloop_outlier_ratio{model="breast_cancer",version="1"}'] > baseline + 0.1, baseline
    finally:
        stop(proc)
