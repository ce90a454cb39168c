"""Hostile and slow clients against a real `mloop serve` on 127.0.0.1, over raw sockets: the header,
body and keep-alive deadlines and the connection limit of [serving], and normal traffic beside them."""

from __future__ import annotations

import http.client
import io
import json
import socket
import time

import pandas as pd
import pytest

from tests.support.servers import start_server, stop

pytestmark = pytest.mark.integration

DEADLINES = {"MLOOP_SERVING_HEADER_TIMEOUT": "1", "MLOOP_SERVING_BODY_TIMEOUT": "1",
             "MLOOP_SERVING_KEEP_ALIVE_TIMEOUT": "1"}
HEALTH = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def server(first_run):
    root, _ = first_run
    proc, url = start_server(root, "--no-access-log", "--name", "connections", env=DEADLINES)
    host, port = url.removeprefix("http://").split(":")
    yield host, int(port)
    stop(proc)


def read_until_closed(sock: socket.socket, limit: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (time.monotonic)."""
    sock.settimeout(limit)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received, time.monotonic()


def read_response(sock: socket.socket) -> bytes:
    """One whole response (headers and its content-length of body) from a kept-alive connection."""
    sock.settimeout(10)
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = int(headers[b"content-length"])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def error_of(answer: bytes) -> str:
    return str(json.loads(answer.partition(b"\r\n\r\n")[2])["error"])


def test_a_client_sending_its_headers_a_byte_at_a_time_gets_408_and_is_disconnected(server):
    with socket.create_connection(server) as sock:
        started = time.monotonic()
        request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\n\r\n"
        try:
            for byte in request:  # 0.25 s a byte: ~15 s for the whole request, against a 1 s deadline
                sock.sendall(bytes([byte]))
                time.sleep(0.25)
        except OSError:  # the server closed the connection while the client was still sending
            pass
        answer, closed = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in answer and "header_timeout" in error_of(answer)
    assert 0.9 < closed - started < 4


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(server):
    with socket.create_connection(server) as sock:
        started = time.monotonic()
        answer, closed = read_until_closed(sock)
    assert answer == b"", "no request came, so no answer goes"
    assert 0.9 < closed - started < 4


def test_a_stalled_body_gets_408_and_the_connection_closes(server):
    with socket.create_connection(server) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"instances\": [")
        started = time.monotonic()
        answer, closed = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in answer and "body_timeout" in error_of(answer)
    assert 0.9 < closed - started < 4


def test_a_body_that_keeps_coming_slowly_may_take_longer_than_the_body_timeout(server, first_run):
    """The body timeout is idle time between parts, not the time of the whole upload."""
    root, _ = first_run
    row = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"]).head(1)
    body = json.dumps({"instances": row.to_dict(orient="records")}).encode()
    part = -(-len(body) // 8)
    with socket.create_connection(server) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        started = time.monotonic()
        for offset in range(0, len(body), part):  # 8 parts 0.5 s apart: 3.5 s in all, against a 1 s body timeout
            sock.sendall(body[offset:offset + part])
            time.sleep(0.5)
        answer, _ = read_until_closed(sock)
    assert time.monotonic() - started > 3
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(server):
    with socket.create_connection(server) as sock:
        sock.sendall(HEALTH)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.5)  # within the keep-alive timeout the connection serves another request
        sock.sendall(HEALTH)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        idle_from = time.monotonic()
        answer, closed = read_until_closed(sock)
    assert answer == b""
    assert 0.9 < closed - idle_from < 3


def test_a_body_trickled_after_its_request_was_answered_does_not_hold_the_connection(server):
    # Health does not read a body: it answers at once, and the rest of the request trickles in afterwards.
    with socket.create_connection(server) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        try:
            for _ in range(40):  # 0.25 s a byte, each of which would stop uvicorn's keep-alive timer
                sock.sendall(b"x")
                time.sleep(0.25)
        except OSError:
            pass
        _, closed = read_until_closed(sock)
    assert closed - started < 4


def test_a_multi_megabyte_upload_and_keep_alive_requests_work_beside_the_deadlines(server, first_run):
    root, _ = first_run
    features = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"])
    big = pd.concat([features] * 60, ignore_index=True)  # ~34,000 rows, ~7 MB of CSV
    buffer = io.StringIO()
    big.to_csv(buffer, index=False)
    body = buffer.getvalue().encode()
    assert len(body) > 5_000_000
    conn = http.client.HTTPConnection(*server, timeout=60)
    conn.request("POST", "/predict/batch", body, {"content-type": "text/csv"})
    response = conn.getresponse()
    scored = response.read()
    assert response.status == 200 and response.getheader("x-rows-scored") == str(len(big))
    assert len(scored) > len(body)
    for _ in range(3):  # the same connection, kept alive
        conn.request("POST", "/predict", json.dumps({"instances": features.head(2).to_dict(orient="records")}),
                     {"content-type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and len(json.loads(response.read())["predictions"]) == 2
    conn.close()


def test_a_connection_beyond_the_limit_gets_503_and_the_ones_within_it_are_served(first_run):
    root, _ = first_run
    proc, url = start_server(root, "--no-access-log", env={**DEADLINES, "MLOOP_SERVING_HEADER_TIMEOUT": "5",
                                                           "MLOOP_SERVING_KEEP_ALIVE_TIMEOUT": "5",
                                                           "MLOOP_SERVING_MAX_CONNECTIONS": "3"})
    host, port = url.removeprefix("http://").split(":")
    address = (host, int(port))
    try:
        time.sleep(0.5)  # the readiness probe's connection is closed on the server's side too
        held = [socket.create_connection(address) for _ in range(3)]
        for sock in held:
            sock.sendall(HEALTH)
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        with socket.create_connection(address) as extra:
            extra.sendall(HEALTH)
            answer, _ = read_until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert b"retry-after: 1" in answer and "max_connections" in error_of(answer)
        for sock in held:  # the connections within the limit still serve
            sock.sendall(HEALTH)
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        held.pop().close()
        time.sleep(0.3)
        with socket.create_connection(address) as again:  # a place is free again
            again.sendall(HEALTH)
            assert read_response(again).startswith(b"HTTP/1.1 200 ")
        for sock in held:
            sock.close()
    finally:
        stop(proc)


def test_a_client_that_stops_reading_its_answer_is_cut_off_and_the_server_serves_on(server, first_run):
    root, _ = first_run
    features = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"])
    buffer = io.StringIO()
    pd.concat([features] * 60, ignore_index=True).to_csv(buffer, index=False)
    body = buffer.getvalue().encode()  # ~7 MB, and its scored answer more: far beyond the socket buffers
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connecting: the window stays small
    sock.connect(server)
    sock.sendall(b"POST /predict/batch HTTP/1.1\r\nHost: x\r\ncontent-type: text/csv\r\n"
                 b"content-length: %d\r\n\r\n" % len(body) + body)
    time.sleep(8)  # scored, then the answer stalls: nothing is read for far longer than the 1 s body timeout
    received, _ = read_until_closed(sock)
    sock.close()
    assert received.startswith(b"HTTP/1.1 200")
    assert len(received) < len(body), "the whole answer came: the connection was not cut off"
    probe = socket.create_connection(server)
    probe.sendall(HEALTH)
    assert read_response(probe).startswith(b"HTTP/1.1 200")
    probe.close()
