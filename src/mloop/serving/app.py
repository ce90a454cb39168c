"""The model server: a raw ASGI app (no framework on the request path), one model per process.

Routes (Open Inference / KServe V2 plus plain JSON):

    GET  /v2                                        server metadata
    GET  /v2/health/live, /v2/health/ready, /health  health (never need the token)
    GET  /v2/models/{name}[/versions/{v}]           model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready     model readiness
    POST /v2/models/{name}[/versions/{v}]/infer     inference (JSON or binary tensor data)
    POST /predict                                   plain JSON inference
    POST /predict/batch                             a CSV or Parquet file scored in chunks
    POST /feedback, /v2/models/{name}/feedback      true labels for served requests (live accuracy)
    POST /alerts/webhook                            Alertmanager's webhook receiver (needs a token)
    GET  /metrics                                   Prometheus metrics
    GET  /openapi.json                              this API as OpenAPI 3
"""

from __future__ import annotations

import hmac
import itertools
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import orjson

from mloop import __version__
from mloop.models.loaded import LoadedModel
from mloop.serving import protocol
from mloop.serving.batching import Batcher
from mloop.serving.metrics import ServerMetrics
from mloop.serving.protocol import RequestError

if TYPE_CHECKING:
    from mloop.config import MonitorSection

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
PUBLIC_PATHS = {"/v2/health/live", "/v2/health/ready", "/health"}


class ClientGone(Exception):
    """The client disconnected before sending its whole body."""


class StreamedFile:
    """A response body read from an open file in chunks (batch scoring results)."""

    def __init__(self, handle: Any, size: int) -> None:
        self.handle, self.size = handle, size


class Response:
    __slots__ = ("status", "body", "content_type", "headers", "rows")

    def __init__(self, status: int, body: bytes | StreamedFile, content_type: bytes = JSON,
                 headers: list[tuple[bytes, bytes]] | None = None, rows: int = 0) -> None:
        self.status, self.body, self.content_type, self.headers, self.rows = status, body, content_type, headers or [], rows


class ModelServer:
    """ASGI app serving one ``LoadedModel``."""

    def __init__(self, model: LoadedModel, *, token: str | None = None, max_body_bytes: int = 10 * 1024 * 1024,
                 max_batch_rows: int = 1024, max_wait_s: float = 0.0, access_log: TextIO | None = sys.stderr,
                 max_upload_bytes: int = 1024 * 1024 * 1024, admin_token: str | None = None,
                 loader: Callable[[str], LoadedModel] | None = None, monitor: MonitorSection | None = None,
                 monitor_dir: Path | None = None, alert_token: str | None = None) -> None:
        from mloop.monitor.live import LiveMonitor

        self.model = model
        self.admin_token = admin_token.encode() if admin_token else None
        self.loader = loader
        self._swap_lock: Any = None
        self.token = token.encode() if token else None
        self.alert_token = (alert_token or token or "").encode() or None
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.access_log = access_log
        self.metrics = ServerMetrics()
        self.metrics.serving(model.name, model.version)
        self.batcher = Batcher(max_rows=max_batch_rows, max_wait_s=max_wait_s, on_batch=self._on_batch)
        self.ready = True
        self.monitor = LiveMonitor(model, self.metrics, monitor, monitor_dir)
        self._monitor_task: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = _request_id(headers.get(b"x-request-id"))
        route = "unknown"
        self.metrics.in_flight.inc()
        try:
            try:
                route, handler = self._route(scope["method"], scope["path"])
                scope["mloop.request_id"] = request_id
                if route == "admin":
                    self._check_token(headers.get(b"authorization", b""), self.admin_token)
                elif route == "alert_receiver":
                    if self.alert_token is None:
                        raise RequestError("the alert receiver is off because the server has no token; start it "
                                           "with MLOOP_ALERT_TOKEN (or MLOOP_TOKEN) set", status=403)
                    self._check_token(headers.get(b"authorization", b""), self.alert_token)
                elif self.token is not None and scope["path"] not in PUBLIC_PATHS:
                    self._check_token(headers.get(b"authorization", b""))
                response = await handler(scope, headers, receive)
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
            self.metrics.in_flight.dec()
        took = time.perf_counter() - started
        self.metrics.observe_request(route, response.status, took)
        if self.access_log is not None:
            self.access_log.write(orjson.dumps({
                "ts": round(time.time(), 3), "id": request_id, "method": scope["method"], "path": scope["path"],
                "status": response.status, "latency_ms": round(took * 1000, 3), "rows": response.rows,
                "model": self.model.name, "version": self.model.version}).decode() + "\n")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.monitor.settings.interval > 0:
                    import asyncio

                    self._monitor_task = asyncio.get_running_loop().create_task(self._monitor_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                if self._monitor_task is not None:
                    self._monitor_task.cancel()
                import asyncio

                await asyncio.get_running_loop().run_in_executor(None, self.monitor.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _monitor_loop(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.monitor.settings.interval)
            try:
                await loop.run_in_executor(None, self.update_monitoring)
            except Exception:  # monitoring must never take serving down
                traceback.print_exc(file=sys.stderr)

    def update_monitoring(self) -> dict[str, Any]:
        """Drift, outliers, live scores, alert rules and the prediction log (see ``LiveMonitor.update``)."""
        return self.monitor.update()

    def _check_token(self, header: bytes, token: bytes | None = None) -> None:
        expected = token if token is not None else self.token
        assert expected is not None
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), expected):
            raise RequestError("missing or wrong bearer token", field="Authorization", status=401,
                               headers=[(b"www-authenticate", b"Bearer")])

    # ------------------------------------------------------------------------------------ routing

    def _route(self, method: str, path: str) -> tuple[str, Any]:
        if path == "/admin/model" and self.admin_token is not None and self.loader is not None:
            _method(method, "POST")
            return "admin", self._admin_swap
        fixed = _FIXED.get(path)
        if fixed is not None:
            allowed, route, name = fixed
            _method(method, allowed)
            return route, getattr(self, name)
        if path.startswith("/v2/models/"):
            parts = path[len("/v2/models/"):].split("/")
            action = ""
            if parts and parts[-1] in ("infer", "ready", "feedback"):
                action = parts.pop()
            name, version = parts[0], None
            if len(parts) == 3 and parts[1] == "versions":
                version = parts[2]
            elif len(parts) != 1:
                raise RequestError(f"no route {path}", status=404)
            self._check_model(name, version)
            if action == "infer":
                _method(method, "POST")
                return "infer", self._infer
            if action == "feedback":
                _method(method, "POST")
                return "feedback", self._feedback
            _method(method, "GET")
            return ("model_ready", self._model_ready) if action == "ready" else ("model_metadata", self._metadata)
        raise RequestError(f"no route {path}; see /v2 (Open Inference protocol) and /predict", status=404)

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self.model.name:
            raise RequestError(f"model {name!r} is not served here; this server serves {self.model.name!r}",
                               field="model_name", status=404)
        if version is not None and version != self.model.version:
            raise RequestError(f"version {version!r} of {name!r} is not served here; the served version is "
                               f"{self.model.version!r}", field="model_version", status=404)

    # ---------------------------------------------------------------------------------- handlers

    async def _server_metadata(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        return Response(200, orjson.dumps({"name": "mloop", "version": __version__,
                                           "extensions": ["binary_tensor_data"]}))

    async def _live(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        return Response(200, b'{"live":true}')

    async def _ready(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        return Response(200 if self.ready else 503, orjson.dumps({"ready": self.ready}))

    async def _model_ready(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        return Response(200 if self.ready else 503, orjson.dumps({"name": self.model.name, "ready": self.ready}))

    async def _metadata(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        return Response(200, orjson.dumps(protocol.model_metadata(self.model)))

    async def _openapi(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        from mloop.serving.openapi import openapi

        return Response(200, orjson.dumps(openapi(self.model)))

    async def _metrics(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        return Response(200, self.metrics.expose(), self.metrics.content_type.encode())

    async def _infer(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        body = await self._body(headers, receive)
        header_length = _int_header(headers, b"inference-header-content-length")
        model = self.model  # parse, predict and answer with one version, even across a swap
        request = protocol.parse_v2(body, model, header_length)
        labels, proba = await self.batcher.submit(request.rows, model.predict)
        self.monitor.record(scope["mloop.request_id"], model, request.rows, labels)
        payload, json_length = protocol.v2_response(model, request, labels, proba)
        if json_length is None:
            return Response(200, payload, rows=len(labels))
        return Response(200, payload, b"application/octet-stream",
                        [(b"inference-header-content-length", str(json_length).encode())], rows=len(labels))

    async def _predict_json(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        body = await self._body(headers, receive)
        model = self.model
        rows = protocol.parse_plain(body, model)
        labels, proba = await self.batcher.submit(rows, model.predict)
        self.monitor.record(scope["mloop.request_id"], model, rows, labels)
        return Response(200, protocol.plain_response(model, labels, proba), rows=len(labels))

    async def _feedback(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        """True labels for served requests: ``{"id": REQUEST_ID, "labels": [...]}`` or ``{"items": [...]}``."""
        from mloop.monitor.feedback import UnknownRequest

        payload = protocol.parse_json(await self._body(headers, receive))
        items = payload.get("items") if isinstance(payload, dict) and "items" in payload else [payload]
        if not isinstance(items, list) or not items:
            raise RequestError('send {"id": REQUEST_ID, "labels": [...]} or {"items": [...]}', field="items")
        classes = {str(c): c for c in self.model.classes}
        matched = 0
        for index, item in enumerate(items):
            where = f"items[{index}]" if len(items) > 1 else "body"
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("labels"), list):
                raise RequestError(f"{where} needs a string 'id' (the x-request-id of the prediction) and a 'labels' list",
                                   field=f"{where}.id")
            labels = item["labels"]
            if classes and any(str(label) not in classes for label in labels):
                raise RequestError(f"{where}: labels must be among the model's classes {list(classes)}",
                                   field=f"{where}.labels")
            truth = [classes[str(label)] for label in labels] if classes else labels
            try:
                matched += self.monitor.add_feedback(item["id"], truth)
            except UnknownRequest as err:
                raise RequestError(f"{where}: no prediction with id {item['id']!r} is remembered (unknown or too old)",
                                   field=f"{where}.id", status=404) from err
            except ValueError as err:
                raise RequestError(f"{where}: {err}", field=f"{where}.labels") from err
        self.metrics.labelled.labels(self.model.name, self.model.version).inc(matched)
        scores = self.monitor.set_scores()
        return Response(200, orjson.dumps({"labelled": matched, "total_labelled": self.monitor.feedback.labelled_total,
                                           **scores}))

    async def _alert_receiver(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        """Alertmanager's webhook: its alerts are logged and forwarded exactly like mloop's own."""
        payload = protocol.parse_json(await self._body(headers, receive))
        try:
            events = self.monitor.alerting.receive(payload)
        except ValueError as err:
            raise RequestError(str(err), field="alerts") from err
        return Response(200, orjson.dumps({"received": len(events)}))

    async def _predict_batch(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        import asyncio

        from mloop.serving import batch

        fmt = batch.detect_format(headers.get(b"content-type", b"").decode("latin-1"),
                                  scope.get("query_string", b"").decode("latin-1"))
        upload = batch.spool(named=True)
        result = batch.spool()
        try:
            await self._body(headers, receive, into=upload, limit=self.max_upload_bytes)
            upload.flush()
            loop = asyncio.get_running_loop()
            model = self.model
            # Scoring a file takes a while: a worker thread keeps the event loop serving other requests.
            rows = await loop.run_in_executor(None, self._score_upload, batch, model, upload, fmt, result)
        except BaseException:
            result.close()
            raise
        finally:
            upload.close()
        size = result.seek(0, 2)
        result.seek(0)
        return Response(200, StreamedFile(result, size), batch.FORMATS[fmt].encode(),
                        [(b"x-rows-scored", str(rows).encode())], rows=rows)

    @staticmethod
    def _score_upload(batch: Any, model: LoadedModel, upload: Any, fmt: str, result: Any) -> int:
        from pathlib import Path

        return int(batch.score_file(model, Path(upload.name), fmt, result))

    async def _admin_swap(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Response:
        """Load another model version and switch to it without dropping a request.

        The new version is loaded and warmed up on a worker thread while the current one keeps
        serving; then, on the event loop (so no request is half-way), the open batch is predicted by
        the old model and every later request goes to the new one. A version that fails to load or
        warm up is refused and the current one stays.
        """
        import asyncio

        payload = protocol.parse_json(await self._body(headers, receive))
        uri = payload.get("uri") if isinstance(payload, dict) else None
        if not isinstance(uri, str) or not uri:
            raise RequestError('send {"uri": "models:/NAME/VERSION"}', field="uri")
        if self._swap_lock is None:
            self._swap_lock = asyncio.Lock()
        async with self._swap_lock:
            loop = asyncio.get_running_loop()
            try:
                new = await loop.run_in_executor(None, self._load_and_warm, uri)
            except Exception as err:
                message = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
                raise RequestError(f"cannot load {uri}: {message}; still serving {self.model.name} "
                                   f"v{self.model.version}", field="uri", status=422) from err
            old = self.model
            self.batcher.flush_now()
            self.model = new
            self.metrics.serving(new.name, new.version)
            write_out_old_log = self.monitor.swap(new)  # logged and compared as the new version from now on
        await loop.run_in_executor(None, write_out_old_log)
        return Response(200, orjson.dumps({"serving": {"name": new.name, "version": new.version},
                                           "previous": {"name": old.name, "version": old.version}}))

    def _load_and_warm(self, uri: str) -> LoadedModel:
        from mloop.serving.server import warm_up

        assert self.loader is not None
        model = self.loader(uri)
        warm_up(model)
        return model

    def _on_batch(self, rows: np.ndarray, labels: np.ndarray) -> None:
        """Per predict call, not per request: batch size, predictions by class, the monitoring window."""
        self.metrics.batch_rows.observe(rows.shape[0])
        self.monitor.on_batch(rows, labels)
        values, counts = np.unique(labels, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            self.metrics.predictions.labels(self.model.name, self.model.version, str(value)).inc(count)

    async def _body(self, headers: dict[bytes, bytes], receive: Receive, *, into: Any = None,
                    limit: int | None = None) -> bytes:
        """The request body (or, with ``into``, written to that file as it arrives), at most ``limit`` bytes."""
        limit = self.max_body_bytes if limit is None else limit
        declared = _int_header(headers, b"content-length")
        if declared is not None and declared > limit:
            raise RequestError(f"the body is {declared} bytes; the limit is {limit}", status=413)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
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


_FIXED: dict[str, tuple[str, str, str]] = {
    "/v2": ("GET", "server_metadata", "_server_metadata"),
    "/v2/health/live": ("GET", "live", "_live"),
    "/v2/health/ready": ("GET", "ready", "_ready"),
    "/health": ("GET", "ready", "_ready"),
    "/metrics": ("GET", "metrics", "_metrics"),
    "/openapi.json": ("GET", "openapi", "_openapi"),
    "/predict": ("POST", "predict", "_predict_json"),
    "/predict/batch": ("POST", "predict_batch", "_predict_batch"),
    "/feedback": ("POST", "feedback", "_feedback"),
    "/alerts/webhook": ("POST", "alert_receiver", "_alert_receiver"),
}


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


def _method(method: str, allowed: str) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        allow = b"GET, HEAD" if allowed == "GET" else allowed.encode()
        raise RequestError(f"method {method} is not allowed here; use {allowed}", status=405,
                           headers=[(b"allow", allow)])


def _int_header(headers: dict[bytes, bytes], name: bytes) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError as err:
        raise RequestError(f"header {name.decode()} must be an integer, got {raw[:40]!r}", field=name.decode(),
                           status=400) from err


_ID_PREFIX = uuid.uuid4().hex[:12]
_ID_COUNTER = itertools.count(1)


def _request_id(given: bytes | None) -> str:
    """The client's ``x-request-id`` if it is sane, else a process-unique id (random prefix + counter)."""
    if given and len(given) <= 128 and given.isascii() and given.decode().isprintable():
        return given.decode()
    return f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"
