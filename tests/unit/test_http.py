"""mloop._http: one client factory, and retries with backoff for what is worth retrying."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from mloop._http import get_json, post_with_retries


class _Flaky(BaseHTTPRequestHandler):
    answers: list[int] = []
    seen: list[str] = []

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["content-length"]))
        _Flaky.seen.append(self.headers.get("authorization", ""))
        self.send_response(_Flaky.answers.pop(0) if _Flaky.answers else 200)
        self.end_headers()

    def do_GET(self):  # noqa: N802
        body = b'{"ready": true}'
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Flaky.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_server_errors_are_retried_with_the_token(url):
    _Flaky.answers[:] = [503, 500]
    assert post_with_retries(url, b"{}", token="t", backoff_s=0.01).status_code == 200
    assert _Flaky.seen == ["Bearer t"] * 3


def test_a_client_error_is_not_retried_and_the_last_error_is_raised(url):
    _Flaky.answers[:] = [400]
    with pytest.raises(httpx.HTTPStatusError):
        post_with_retries(url, b"{}", backoff_s=0.01)
    assert len(_Flaky.seen) == 1
    _Flaky.answers[:] = [500] * 5
    with pytest.raises(httpx.HTTPStatusError):
        post_with_retries(url, b"{}", attempts=3, backoff_s=0.01)


def test_get_json_and_a_dead_address(url):
    assert get_json(f"{url}/health") == {"ready": True}
    with pytest.raises(httpx.TransportError):
        get_json("http://127.0.0.1:9/", timeout=1)
