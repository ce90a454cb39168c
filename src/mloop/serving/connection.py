"""The server's HTTP connections: uvicorn's httptools protocol with the deadlines and the limit it lacks.

uvicorn closes a connection only after ``timeout_keep_alive`` of silence *after a response*: a client
that connects and sends nothing, sends its headers a byte every few seconds (slowloris) or stops in the
middle of its body holds a connection forever. Its ``limit_concurrency`` answers a plain-text 503
(mloop's errors are JSON), logs a warning per refusal and counts the connection asking (a limit of N
serves N-1). Here, per connection (``[serving]`` settings):

- headers: a request's headers must be complete ``header_timeout`` seconds after its first byte (after
  the connection opened, for its first request); bytes sent after a request was answered (the rest of
  a body the app did not read, such as a 401's) count as the next request's.
- body: while the app waits for a body, ``body_timeout`` seconds may pass between two parts of it:
  idle time, so a large upload on a slow link takes as long as it needs while it keeps coming.
- keep-alive: uvicorn's timer, from a response until the next byte (``keep_alive_timeout``).
- answer: a client that stops reading its answer (the server's send buffer full, writing paused) for
  ``body_timeout`` seconds has its connection aborted, so the app sending to it is released.
- limit: the requests of a connection opened beyond ``max_connections`` are answered 503 (JSON,
  ``Retry-After``) and it is closed.

A late request gets a JSON 408 and the connection is closed (a connection that sent nothing is just
closed). These 408s are answered here, below the app: the app sees the client gone, and they are not in
the request metrics. While the server itself is not reading (uvicorn's flow control), no client is
late. The request path pays no timer and no task: one timer per connection checks the deadlines and
sleeps until the next one; per chunk received the protocol only reads the clock. This reads the state
of uvicorn's protocol and request cycle (written against uvicorn 0.54; the raw-socket tests in
``tests/integration/test_serving_connections.py`` say if a new version changes it).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from mloop.config import ServingSection


def http_protocol(settings: ServingSection) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn (``http=``) for a server with these ``[serving]`` settings."""

    class Configured(LimitedHttpToolsProtocol):
        limits = settings

    return Configured


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, with the header and body deadlines and the connection limit (see the module)."""

    limits: ClassVar[ServingSection]

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # uvicorn's Config takes whole seconds; its timer takes any
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        self._received_at = 0.0  # when bytes last came (the loop's clock)
        self._headers_since: float | None = None  # when the headers now awaited began (None: none awaited)
        self._request_begun = False  # part of those headers (or the request line) has come
        self._deadlines: asyncio.TimerHandle | None = None
        self._write_paused_at: float | None = None  # since when the client has not taken what was sent

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.app = self._refuse
        self._received_at = self._headers_since = self.loop.time()
        self._deadlines = self.loop.call_at(self._received_at + self._period, self._check_deadlines)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadlines is not None:
            self._deadlines.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._received_at = now = self.loop.time()
        cycle = self.cycle
        if self._headers_since is None and (cycle is None or cycle.response_complete or not cycle.more_body):
            self._headers_since = now  # not the body of a request being answered: the next request's start
        super().data_received(data)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._write_paused_at = self.loop.time()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._write_paused_at = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_begun = True
        if self._headers_since is None:  # a request right behind the previous one, in the same bytes
            self._headers_since = self._received_at

    def on_headers_complete(self) -> None:
        self._headers_since, self._request_begun = None, False
        super().on_headers_complete()

    @property
    def _period(self) -> float:
        return min(self.limits.header_timeout, self.limits.body_timeout)

    def _check_deadlines(self) -> None:
        """Close the connection if it is late with its headers or its body; else sleep until the next deadline."""
        if self.transport.is_closing():
            return
        now, limits, cycle = self.loop.time(), self.limits, self.cycle
        if self._write_paused_at is not None and now >= self._write_paused_at + limits.body_timeout:
            self.transport.abort()  # it stopped reading its answer: the app's send is released (connection lost)
            return
        if self.flow.read_paused:
            # The server is not reading (the app is slow to take a body, or requests queue behind one being
            # answered): the client is not the one late, so its clocks start again.
            self._received_at = now
            if self._headers_since is not None:
                self._headers_since = now
            due = now + self._period
        elif self._headers_since is not None:
            due = self._headers_since + limits.header_timeout
            if now >= due:
                self._close(f"the request's headers did not all arrive within {limits.header_timeout:g} s ([serving] "
                            "header_timeout, MLOOP_SERVING_HEADER_TIMEOUT); send the request line and headers at once",
                            answer=self._request_begun and (cycle is None or cycle.response_complete))
                return
        elif cycle is not None and cycle.more_body and not cycle.response_started:
            due = self._received_at + limits.body_timeout
            if now >= due:
                cycle.disconnected = True  # the app waiting for the body sees the client gone, and sends nothing
                cycle.message_event.set()
                self._close(f"the body stopped coming: nothing for {limits.body_timeout:g} s ([serving] body_timeout, "
                            "MLOOP_SERVING_BODY_TIMEOUT)", answer=True)
                return
        else:
            due = now + self._period
        if self._write_paused_at is not None:
            due = min(due, self._write_paused_at + limits.body_timeout)
        self._deadlines = self.loop.call_at(due, self._check_deadlines)

    def _close(self, error: str, *, answer: bool) -> None:
        if answer:
            body = orjson.dumps({"error": error})
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        self.transport.close()

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        """The app of a connection beyond the limit: 503, and uvicorn closes the connection after it."""
        body = orjson.dumps({"error": f"the server has its limit of {self.limits.max_connections} connections open "
                                      "([serving] max_connections, MLOOP_SERVING_MAX_CONNECTIONS); retry shortly"})
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
