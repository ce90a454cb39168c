"""The HTTP face of the model server: a raw ASGI app (no framework on the request path) over the dataplane.

One table, ``ROUTES``, lists every route (path, method, handler, who may call it, its OpenAPI
operation); routing, authentication and the OpenAPI document (``/openapi.json``) are all derived from
it, so a route cannot be served without being documented or checked. Routes (Open Inference / KServe
V2 plus plain JSON):

    GET  /v2                                        server metadata
    GET  /v2/health/live, /v2/health/ready, /health  health (never need the token)
    GET  /v2/models/{name}[/versions/{v}]           model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready     model readiness
    POST /v2/models/{name}[/versions/{v}]/infer     inference (JSON or binary tensor data)
    POST /v2/models/{name}[/versions/{v}]/feedback  true labels for served requests (live accuracy)
    POST /predict                                   plain JSON inference
    POST /predict/batch                             a CSV or Parquet file scored in chunks
    POST /feedback                                  as the V2 feedback route
    POST /alerts/webhook                            Alertmanager's webhook receiver (needs a token)
    GET  /metrics                                   Prometheus metrics
    GET  /openapi.json                              this API as OpenAPI 3
    POST /admin/model                               hot swap (managed deployments, admin token only)
    POST /admin/rollout                             start a canary or shadow roll-out of a candidate (admin)
    GET  /admin/rollout                             the roll-out's state and per-version figures (admin)
    POST /admin/rollout/weight                      a canary's share of requests for the candidate (admin)
    POST /admin/rollout/promote                     the candidate becomes the served version (admin)
    POST /admin/rollout/abort                       drop the candidate (admin)

Every prediction answer says which version answered in ``x-model-version``.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, Any, TextIO

import orjson

from mloop._version import __version__
from mloop.bundle.loaded import LoadedModel
from mloop.serving import openapi, protocol
from mloop.serving.dataplane import DataPlane
from mloop.serving.protocol import RequestError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"


class Auth(enum.Enum):
    PUBLIC = "public"  # health: never needs a token
    CLIENT = "client"  # the server's token, when it has one
    ALERTS = "alerts"  # the alert receiver's token; without one the route is off (403)
    ADMIN = "admin"  # the admin token of a managed deployment; without one the route does not exist


class ClientGone(Exception):
    """The client disconnected before sending its whole body."""


class StreamedFile:
    """A response body read from an open file in chunks (batch scoring results)."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self.handle, self.size = handle, size


class Response:
    __slots__ = ("status", "body", "content_type", "headers", "rows")

    def __init__(self, status: int, body: bytes | StreamedFile, content_type: bytes = JSON,
                 headers: list[tuple[bytes, bytes]] | None = None, rows: int = 0) -> None:
        self.status, self.body, self.content_type, self.headers, self.rows = status, body, content_type, headers or [], rows


@dataclass
class Request:
    scope: Scope
    headers: dict[bytes, bytes]
    receive: Receive
    request_id: str  # the client's x-request-id, or one the server made (a prediction may get another)
    model_name: str = ""
    model_version: str | None = None
    client_id: str = ""  # the x-request-id the client sent, if any
    answered_by: LoadedModel | None = None  # during a roll-out: the version picked to answer


Handler = Callable[["ServerApp", Request], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    path: str  # an OpenAPI path template
    method: str  # GET (HEAD too) or POST
    name: str  # the route label of the request metrics
    handler: Handler
    auth: Auth
    operation: openapi.Operation | None  # its OpenAPI operation; None: not in the document
    segments: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.path.strip("/").split("/")))

    @property
    def fixed(self) -> bool:
        return "{" not in self.path


# ------------------------------------------------------------------------------------------ handlers


async def server_metadata(app: ServerApp, request: Request) -> Response:
    return Response(200, orjson.dumps({"name": "mloop", "version": __version__, "extensions": ["binary_tensor_data"]}))


async def live(app: ServerApp, request: Request) -> Response:
    return Response(200, b'{"live":true}')


async def ready(app: ServerApp, request: Request) -> Response:
    return Response(200 if app.dataplane.ready else 503, orjson.dumps({"ready": app.dataplane.ready}))


async def model_ready(app: ServerApp, request: Request) -> Response:
    dataplane = app.dataplane
    return Response(200 if dataplane.ready else 503, orjson.dumps({"name": dataplane.model.name,
                                                                    "ready": dataplane.ready}))


async def model_metadata(app: ServerApp, request: Request) -> Response:
    dataplane = app.dataplane
    rollout = dataplane.rollout
    if rollout is None or not rollout.serves(rollout.candidate.version):
        return Response(200, orjson.dumps(protocol.model_metadata(dataplane.model)))
    # a canary answers with both versions; /versions/V describes that one
    pinned = request.model_version is not None and rollout.serves(request.model_version)
    metadata = protocol.model_metadata(rollout.candidate if pinned else dataplane.model)
    metadata["versions"] = [dataplane.model.version, rollout.candidate.version]
    return Response(200, orjson.dumps(metadata))


async def infer(app: ServerApp, request: Request) -> Response:
    body = await app.read_body(request)
    dataplane = app.dataplane
    if dataplane.rollout is not None:
        request.answered_by = dataplane.answering(request.model_version)
    answer = await dataplane.infer(body, request.client_id,
                                   _int_header(request.headers, b"inference-header-content-length"), request.answered_by)
    request.request_id = answer.request_id
    version = (b"x-model-version", answer.version.encode())
    if answer.json_length is None:
        return Response(200, answer.body, headers=[version], rows=answer.rows)
    return Response(200, answer.body, b"application/octet-stream",
                    [(b"inference-header-content-length", str(answer.json_length).encode()), version], rows=answer.rows)


async def predict(app: ServerApp, request: Request) -> Response:
    body = await app.read_body(request)
    dataplane = app.dataplane
    if dataplane.rollout is not None:
        request.answered_by = dataplane.answering(None)
    answer = await dataplane.predict(body, request.client_id, request.answered_by)
    request.request_id = answer.request_id
    return Response(200, answer.body, headers=[(b"x-model-version", answer.version.encode())], rows=answer.rows)


async def predict_batch(app: ServerApp, request: Request) -> Response:
    from pathlib import Path

    from mloop.serving import batch_scoring

    fmt = batch_scoring.detect_format(request.headers.get(b"content-type", b"").decode("latin-1"),
                                      request.scope.get("query_string", b"").decode("latin-1"))
    upload = tempfile.NamedTemporaryFile(prefix="mloop-upload-")  # noqa: SIM115 - closed below
    result = tempfile.TemporaryFile(prefix="mloop-scored-")  # noqa: SIM115 - closed once streamed
    try:
        await app.read_body(request, into=upload, limit=app.max_upload_bytes)
        upload.flush()
        rows, version = await app.dataplane.score_file(Path(upload.name), fmt, result)
    except BaseException:
        result.close()
        raise
    finally:
        upload.close()
    size = result.seek(0, 2)
    result.seek(0)
    return Response(200, StreamedFile(result, size), batch_scoring.FORMATS[fmt].encode(),
                    [(b"x-rows-scored", str(rows).encode()), (b"x-model-version", version.encode())], rows=rows)


async def feedback(app: ServerApp, request: Request) -> Response:
    payload = protocol.parse_json(await app.read_body(request))
    return Response(200, orjson.dumps(app.dataplane.feedback(payload)))


async def alert_receiver(app: ServerApp, request: Request) -> Response:
    payload = protocol.parse_json(await app.read_body(request))
    return Response(200, orjson.dumps({"received": app.dataplane.receive_alerts(payload)}))


async def metrics(app: ServerApp, request: Request) -> Response:
    return Response(200, app.dataplane.metrics.expose(), app.dataplane.metrics.content_type.encode())


async def openapi_document(app: ServerApp, request: Request) -> Response:
    return Response(200, orjson.dumps(app.openapi()))


async def admin_swap(app: ServerApp, request: Request) -> Response:
    payload = protocol.parse_json(await app.read_body(request))
    uri = payload.get("uri") if isinstance(payload, dict) else None
    if not isinstance(uri, str) or not uri:
        raise RequestError('send {"uri": "models:/NAME/VERSION"}', field="uri")
    swapped = await app.dataplane.swap(uri)
    return Response(200, orjson.dumps({
        "serving": {"name": swapped.serving.name, "version": swapped.serving.version},
        "previous": {"name": swapped.previous.name, "version": swapped.previous.version}}))


async def admin_rollout_start(app: ServerApp, request: Request) -> Response:
    payload = protocol.parse_json(await app.read_body(request))
    return Response(200, orjson.dumps(await app.dataplane.start_rollout(payload)))


async def admin_rollout_state(app: ServerApp, request: Request) -> Response:
    return Response(200, orjson.dumps(app.dataplane.rollout_state()))


async def admin_rollout_weight(app: ServerApp, request: Request) -> Response:
    payload = protocol.parse_json(await app.read_body(request))
    return Response(200, orjson.dumps(app.dataplane.set_rollout_weight(payload)))


async def admin_rollout_promote(app: ServerApp, request: Request) -> Response:
    await app.read_body(request)
    promoted = await app.dataplane.promote()
    return Response(200, orjson.dumps({
        "serving": {"name": promoted.serving.name, "version": promoted.serving.version},
        "previous": {"name": promoted.previous.name, "version": promoted.previous.version}}))


async def admin_rollout_abort(app: ServerApp, request: Request) -> Response:
    await app.read_body(request)
    return Response(200, orjson.dumps(await app.dataplane.abort_rollout()))


_MODEL = "/v2/models/{model_name}"
_VERSION = "/v2/models/{model_name}/versions/{model_version}"

ROUTES: tuple[Route, ...] = (
    Route("/v2", "GET", "server_metadata", server_metadata, Auth.CLIENT, openapi.get("Server metadata")),
    Route("/v2/health/live", "GET", "live", live, Auth.PUBLIC, openapi.get("Liveness")),
    Route("/v2/health/ready", "GET", "ready", ready, Auth.PUBLIC, openapi.get("Readiness")),
    Route("/health", "GET", "ready", ready, Auth.PUBLIC, openapi.get("Readiness (the same as /v2/health/ready)")),
    Route(_MODEL, "GET", "model_metadata", model_metadata, Auth.CLIENT, openapi.get("Model metadata", (404,))),
    Route(_VERSION, "GET", "model_metadata", model_metadata, Auth.CLIENT, openapi.get("Model metadata", (404,))),
    Route(f"{_MODEL}/ready", "GET", "model_ready", model_ready, Auth.CLIENT, openapi.get("Model readiness", (404,))),
    Route(f"{_VERSION}/ready", "GET", "model_ready", model_ready, Auth.CLIENT, openapi.get("Model readiness", (404,))),
    Route(f"{_MODEL}/infer", "POST", "infer", infer, Auth.CLIENT, openapi.infer),
    Route(f"{_VERSION}/infer", "POST", "infer", infer, Auth.CLIENT, openapi.infer),
    Route(f"{_MODEL}/feedback", "POST", "feedback", feedback, Auth.CLIENT, openapi.feedback),
    Route(f"{_VERSION}/feedback", "POST", "feedback", feedback, Auth.CLIENT, openapi.feedback),
    Route("/predict", "POST", "predict", predict, Auth.CLIENT, openapi.predict),
    Route("/predict/batch", "POST", "predict_batch", predict_batch, Auth.CLIENT, openapi.predict_batch),
    Route("/feedback", "POST", "feedback", feedback, Auth.CLIENT, openapi.feedback),
    Route("/alerts/webhook", "POST", "alert_receiver", alert_receiver, Auth.ALERTS, openapi.alert_receiver),
    Route("/metrics", "GET", "metrics", metrics, Auth.CLIENT, openapi.metrics),
    Route("/openapi.json", "GET", "openapi", openapi_document, Auth.CLIENT, openapi.get("This document")),
    # internal, for mloop deploy and the automation agent: hot swap and roll-outs
    Route("/admin/model", "POST", "admin", admin_swap, Auth.ADMIN, None),
    Route("/admin/rollout", "POST", "admin", admin_rollout_start, Auth.ADMIN, None),
    Route("/admin/rollout", "GET", "admin", admin_rollout_state, Auth.ADMIN, None),
    Route("/admin/rollout/weight", "POST", "admin", admin_rollout_weight, Auth.ADMIN, None),
    Route("/admin/rollout/promote", "POST", "admin", admin_rollout_promote, Auth.ADMIN, None),
    Route("/admin/rollout/abort", "POST", "admin", admin_rollout_abort, Auth.ADMIN, None),
)


class Router:
    """Finds the route of a method and path: fixed paths by a dict, the model routes by their shape.

    Both come from the route table: a model route is ``<prefix>{model_name}[/versions/{model_version}][/action]``.
    """

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.fixed: dict[str, dict[str, Route]] = {}
        self.models: dict[tuple[bool, str], dict[str, Route]] = {}  # (versioned, action) -> method -> route
        self.prefix = ""
        for route in routes:
            if route.fixed:
                self.fixed.setdefault(route.path, {})[route.method] = route
                continue
            self.prefix = route.path[:route.path.index("{model_name}")]
            versioned = "{model_version}" in route.path
            action = "" if route.segments[-1].startswith("{") else route.segments[-1]
            self.models.setdefault((versioned, action), {})[route.method] = route
        self.actions = {action for _, action in self.models if action}

    def match(self, method: str, path: str) -> tuple[Route, str, str | None]:
        """``(route, model name, model version)``; raises RequestError 404 or 405."""
        by_method = self.fixed.get(path)
        name, version = "", None
        if by_method is None and self.prefix and path.startswith(self.prefix):
            parts = path[len(self.prefix):].split("/")
            action = parts.pop() if len(parts) > 1 and parts[-1] in self.actions else ""
            name = parts[0]
            if len(parts) == 3 and parts[1] == "versions":
                version = parts[2]
            elif len(parts) != 1 or not name:
                raise RequestError(f"no route {path}", status=404)
            by_method = self.models.get((version is not None, action))
        if by_method is None:
            raise RequestError(f"no route {path}; see /v2 (Open Inference protocol) and /predict", status=404)
        route = by_method.get("GET" if method == "HEAD" else method)
        if route is None:
            allowed = sorted(by_method)
            allow = ", ".join(m if m != "GET" else "GET, HEAD" for m in allowed)
            raise RequestError(f"method {method} is not allowed here; use {' or '.join(allowed)}", status=405,
                               headers=[(b"allow", allow.encode())])
        return route, name, version


class ServerApp:
    """The ASGI app serving a ``DataPlane`` (built by ``mloop.serving.server.create_app`` from ``[serving]``).

    ``token`` protects every client route (``Auth.CLIENT``); ``alert_token`` the alert receiver;
    ``admin_token`` turns on the admin routes (hot swap, roll-outs); an empty token is none. The monitoring loop runs every
    ``monitor_interval`` seconds while the app lives (0: never; the caller may update it by hand).
    """

    def __init__(self, dataplane: DataPlane, *, token: str, alert_token: str, admin_token: str, max_body_bytes: int,
                 max_upload_bytes: int, access_log: TextIO | None, monitor_interval: float,
                 routes: tuple[Route, ...] = ROUTES) -> None:
        self.dataplane = dataplane
        self.token = token.encode() or None
        self.alert_token = alert_token.encode() or None
        self.admin_token = admin_token.encode() or None
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.access_log = access_log
        self.monitor_interval = monitor_interval
        active = tuple(r for r in routes if r.auth is not Auth.ADMIN or (self.admin_token and dataplane.can_swap))
        self.routes = active
        self.router = Router(active)
        self._monitor_task: asyncio.Task[None] | None = None

    def openapi(self) -> dict[str, Any]:
        """This server's OpenAPI document, derived from its routes, who may call them, and its model."""
        return openapi.document(self.dataplane.model, [(r.path, r.method, r.operation, self._needs_token(r))
                                                       for r in self.routes if r.operation is not None])

    def _needs_token(self, route: Route) -> bool:
        if route.auth is Auth.CLIENT:
            return self.token is not None
        if route.auth is Auth.ALERTS:
            return self.alert_token is not None
        return route.auth is Auth.ADMIN

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        client_id = _client_id(headers.get(b"x-request-id"))
        request_id = client_id or _new_id()
        route_name = "unknown"
        dataplane = self.dataplane
        metrics = dataplane.metrics
        metrics.in_flight.inc()
        request: Request | None = None
        try:
            try:
                try:
                    route, name, version = self.router.match(scope["method"], scope["path"])
                except RequestError:
                    self._authorize_any(headers)  # with a token, a stranger learns nothing, not even the routes
                    raise
                route_name = route.name
                self._authorize(route, headers)
                if name:
                    dataplane.check_model(name, version)
                request = Request(scope, headers, receive, request_id, name, version, client_id)
                response = await route.handler(self, request)
                request_id = request.request_id  # a prediction's id may differ from the one the client sent
            except RequestError as err:
                response = Response(err.status, err.body(), headers=err.headers)
            except ClientGone:
                return
            except Exception as err:  # a bug or a model failure: the request fails, the server lives on
                traceback.print_exc(file=sys.stderr)
                response = Response(500, orjson.dumps({"error": f"internal error ({type(err).__name__})",
                                                       "id": request_id}))
            body = response.body
            length = body.size if isinstance(body, StreamedFile) else len(body)
            await send({"type": "http.response.start", "status": response.status, "headers": [
                (b"content-type", response.content_type), (b"content-length", str(length).encode()),
                (b"x-request-id", request_id.encode()), *response.headers]})
            if isinstance(body, StreamedFile):
                await _stream(body, send)
            else:
                await send({"type": "http.response.body", "body": body})
        finally:
            metrics.in_flight.dec()
        took = time.perf_counter() - started
        metrics.observe_request(route_name, response.status, took)
        rollout = dataplane.rollout
        if rollout is not None and request is not None and request.answered_by is not None:
            rollout.observe(request.answered_by, response.status, took, response.rows)
        if self.access_log is not None:
            model = request.answered_by if request is not None and request.answered_by is not None else dataplane.model
            self.access_log.write(orjson.dumps({
                "ts": round(time.time(), 3), "id": request_id, "method": scope["method"], "path": scope["path"],
                "status": response.status, "latency_ms": round(took * 1000, 3), "rows": response.rows,
                "model": model.name, "version": model.version}).decode() + "\n")

    def _authorize(self, route: Route, headers: dict[bytes, bytes]) -> None:
        if route.auth is Auth.PUBLIC:
            return
        if route.auth is Auth.CLIENT:
            if self.token is not None:
                _check_token(headers.get(b"authorization", b""), self.token)
            return
        if route.auth is Auth.ALERTS:
            if self.alert_token is None:
                raise RequestError("the alert receiver is off because the server has no token; start it with "
                                   "MLOOP_SERVING_ALERT_TOKEN (or MLOOP_SERVING_TOKEN) set", status=403)
            _check_token(headers.get(b"authorization", b""), self.alert_token)
            return
        assert self.admin_token is not None  # admin routes exist only with an admin token
        _check_token(headers.get(b"authorization", b""), self.admin_token)

    def _authorize_any(self, headers: dict[bytes, bytes]) -> None:
        """401 unless the request carries one of the server's tokens (when it has a client token)."""
        if self.token is None:
            return
        header = headers.get(b"authorization", b"")
        for token in (self.token, self.alert_token, self.admin_token):
            if token is not None:
                try:
                    _check_token(header, token)
                    return
                except RequestError:
                    continue
        _check_token(header, self.token)  # raises: missing or wrong bearer token

    async def read_body(self, request: Request, *, into: IO[bytes] | None = None, limit: int | None = None) -> bytes:
        """The request body (or, with ``into``, written to that file as it arrives), at most ``limit`` bytes."""
        limit = self.max_body_bytes if limit is None else limit
        declared = _int_header(request.headers, b"content-length")
        if declared is not None and declared > limit:
            raise RequestError(f"the body is {declared} bytes; the limit is {limit}", status=413)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(f"the body is over the limit of {limit} bytes", status=413)
            if into is not None:
                into.write(chunk)
            else:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"" if into is not None else (chunks[0] if len(chunks) == 1 else b"".join(chunks))

    # ------------------------------------------------------------------------------ lifespan

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.monitor_interval > 0:
                    self._monitor_task = asyncio.get_running_loop().create_task(self._monitor_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.dataplane.ready = False
                if self._monitor_task is not None:
                    self._monitor_task.cancel()
                await asyncio.get_running_loop().run_in_executor(None, self.dataplane.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _monitor_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.monitor_interval)
            try:
                await loop.run_in_executor(None, self.dataplane.update_monitoring)
            except Exception:  # monitoring must never take serving down
                traceback.print_exc(file=sys.stderr)


def _check_token(header: bytes, expected: bytes) -> None:
    scheme, _, value = header.partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), expected):
        raise RequestError("missing or wrong bearer token", field="Authorization", status=401,
                           headers=[(b"www-authenticate", b"Bearer")])


async def _stream(body: StreamedFile, send: Send, chunk: int = 1 << 20) -> None:
    try:
        while True:
            data = body.handle.read(chunk)
            more = len(data) == chunk
            await send({"type": "http.response.body", "body": data, "more_body": more})
            if not more:
                return
    finally:
        body.handle.close()


def _int_header(headers: dict[bytes, bytes], name: bytes) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError as err:
        raise RequestError(f"header {name.decode()} must be an integer, got {raw[:40]!r}", field=name.decode(),
                           status=400) from err


def _client_id(given: bytes | None) -> str:
    """The client's ``x-request-id`` if it is sane (printable ASCII, at most 128 bytes), else ""."""
    if given and len(given) <= 128 and given.isascii() and given.decode().isprintable():
        return given.decode()
    return ""


def _new_id() -> str:
    """128 random bits: one id never reveals another (feedback names a prediction by its id)."""
    return os.urandom(16).hex()
