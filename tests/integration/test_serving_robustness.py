"""The server under abuse: an OpenAPI-driven fuzz run, malformed bodies and raw sockets, SIGTERM mid-request."""

from __future__ import annotations

import http.client
import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.support.servers import start_server, stop

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(first_run):
    root, _ = first_run
    proc, url = start_server(root, "--no-access-log", "--max-body-mb", "1", "--name", "robustness")
    yield url
    stop(proc)


def health_and_no_5xx(url: str) -> None:
    with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    five_xx = [line for line in metrics.splitlines() if line.startswith("mloop_requests_total") and 'code="5' in line]
    assert five_xx == [], five_xx


def test_fuzzing_from_the_openapi_document_finds_no_server_error(server, tmp_path):
    schemathesis = str(Path(sys.executable).with_name("schemathesis"))
    done = subprocess.run(
        [schemathesis, "run", f"{server}/openapi.json", "--checks", "all",
         # a schema cannot say "shape must match data": valid-looking bodies are rightly refused
         "--exclude-checks", "positive_data_acceptance",
         "--max-examples", "40", "--seed", "7", "--generation-deterministic"],
        capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "passed" in done.stdout
    health_and_no_5xx(server)


MALFORMED = [
    ("/predict", b""), ("/predict", b"null"), ("/predict", b"[]"), ("/predict", b'"text"'), ("/predict", b"{"),
    ("/predict", b"\xff\xfe\x00garbage"), ("/predict", b'{"instances": [[]]}'), ("/predict", b'{"instances": [null]}'),
    ("/predict", b'{"instances": [{"mean_radius": 1e400}]}'), ("/predict", b"[" * 5000 + b"]" * 5000),
    ("/predict", b'{"inputs": {"mean_radius": "x"}}'), ("/predict", b'{"columns": 5, "data": 7}'),
    ("/v2/models/breast_cancer/infer", b'{"inputs": null}'), ("/v2/models/breast_cancer/infer", b'{"inputs": [null]}'),
    ("/v2/models/breast_cancer/infer", b'{"inputs": [{"name": "x", "shape": [99999999, 99999999], '
                                       b'"datatype": "FP64", "data": [1]}]}'),
    ("/v2/models/breast_cancer/infer", b'{"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", '
                                       b'"data": [[1, [2]], 3]}]}'),
    ("/v2/models/breast_cancer/infer", b'{"inputs": [{"name": "x", "shape": "1,30", "datatype": "FP64", "data": []}]}'),
    ("/v2/models/breast_cancer/infer", b'{"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", '
                                       b'"data": [1], "parameters": {"binary_data_size": -5}}]}'),
    ("/predict/batch", b"a,b\n1,2"), ("/predict/batch", b"\x00\x01\x02"),
]


@pytest.mark.parametrize(("path", "body"), MALFORMED, ids=[f"{p}:{b[:24]!r}" for p, b in MALFORMED])
def test_malformed_bodies_get_4xx(server, path, body):
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    content_type = "text/csv" if path.endswith("batch") else "application/json"
    conn.request("POST", path, body, {"content-type": content_type})
    response = conn.getresponse()
    payload = response.read()
    assert 400 <= response.status < 500, (response.status, payload[:200])
    assert "error" in json.loads(payload)


def test_raw_socket_abuse_leaves_the_server_healthy(server):
    host, port = server.removeprefix("http://").split(":")
    abuses = [
        b"GARBAGE\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"instances\"",  # then hang up
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
    ]
    for payload in abuses:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass
    # Over --max-body-mb: refused from the Content-Length alone, before the body is read. (A client still
    # uploading may then see the connection close, so only the headers are sent here.)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1200000\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    health_and_no_5xx(server)


def test_sigterm_answers_the_request_in_flight_before_exiting(first_run):
    root, _ = first_run
    proc, url = start_server(root, "--no-access-log")
    features = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"])
    big = pd.concat([features] * 700, ignore_index=True)  # ~400k rows: scoring takes a while
    buffer = io.StringIO()
    big.to_csv(buffer, index=False)
    body = buffer.getvalue().encode()
    outcome: dict[str, object] = {}

    def batch_request() -> None:
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        conn.request("POST", "/predict/batch", body, {"content-type": "text/csv"})
        response = conn.getresponse()
        outcome["status"] = response.status
        outcome["rows"] = response.getheader("x-rows-scored")
        outcome["bytes"] = len(response.read())
        outcome["done_at"] = time.time()

    thread = threading.Thread(target=batch_request)
    thread.start()
    time.sleep(1.0)  # the upload is in and scoring has begun
    signalled_at = time.time()
    proc.send_signal(signal.SIGTERM)
    thread.join(timeout=120)
    proc.wait(timeout=60)
    assert outcome.get("status") == 200, outcome
    assert float(outcome["done_at"]) > signalled_at, "the request was not in flight when SIGTERM came: make it bigger"
    assert outcome["rows"] == str(len(big)) and int(outcome["bytes"]) > len(body)
    assert proc.returncode == 143  # drained, then SIGTERM handled as by every mloop command
