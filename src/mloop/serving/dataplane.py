"""The dataplane: what a model server does, without HTTP — predict, take feedback, score files, swap versions.

The ASGI layer (``mloop.serving.asgi``) parses the transport and calls in here; a client mistake is a
``RequestError`` carrying the status it deserves. Requests that arrive together share one predict call
(``microbatch``); every answer comes from one model version, even across a swap.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from mloop.bundle.loaded import LoadedModel, Rows
from mloop.monitor.feedback import AlreadyLabelled, UnknownRequest
from mloop.monitor.live import LiveMonitor
from mloop.monitor.metrics import ServerMetrics
from mloop.monitor.status import MonitorStatus
from mloop.serving import protocol
from mloop.serving.microbatch import Batcher
from mloop.serving.protocol import RequestError

Loader = Callable[[str], LoadedModel]  # a models:/ URI -> the loaded model

T = TypeVar("T")


def warm_up(model: LoadedModel) -> None:
    """Predict once on a typical row, so a model that cannot predict fails now, not on the first request."""
    model.predict(model.typical_rows())


@dataclass
class Prediction:
    """An answer body and what the transport needs to send it."""

    body: bytes
    rows: int
    json_length: int | None = None  # V2 binary outputs: the length of the JSON header before them
    request_id: str = ""  # the id feedback names this prediction by (sent back in x-request-id)


@dataclass
class Swapped:
    serving: LoadedModel
    previous: LoadedModel


class DataPlane:
    """Serves one model at a time; ``swap`` changes it without dropping a request."""

    def __init__(self, model: LoadedModel, metrics: ServerMetrics, monitor: LiveMonitor, *, max_batch_rows: int,
                 max_wait_s: float, loader: Loader | None = None) -> None:
        self.model = model
        self.metrics = metrics
        self.monitor = monitor
        self.loader = loader
        self.ready = True
        self.batcher = Batcher(max_rows=max_batch_rows, max_wait_s=max_wait_s, on_batch=self._on_batch,
                               concat=Rows.concat)
        self._swap_lock: asyncio.Lock | None = None
        metrics.serving(model.name, model.version)

    # ------------------------------------------------------------------------------ predictions

    def check_model(self, name: str, version: str | None) -> None:
        """Refuse a request for a model or version this server does not serve (404)."""
        if name != self.model.name:
            raise RequestError(f"model {name!r} is not served here; this server serves {self.model.name!r}",
                               field="model_name", status=404)
        if version is not None and version != self.model.version:
            raise RequestError(f"version {version!r} of {name!r} is not served here; the served version is "
                               f"{self.model.version!r}", field="model_version", status=404)

    async def infer(self, body: bytes, request_id: str, header_length: int | None = None) -> Prediction:
        """An Open Inference (V2) request, JSON or with binary tensors; ``request_id`` is the client's
        ``x-request-id`` ("" if none)."""
        model = self.model  # parse, predict and answer with one version, even across a swap
        request = protocol.parse_v2(body, model, header_length)
        key = self._feedback_id(request_id, request.request_id)  # the client's x-request-id, else the body's id
        request.request_id = request.request_id or key  # (the body's id is echoed as it came)
        labels, proba = await self.batcher.submit(request.rows, model.predict)
        self.monitor.record(key, model, request.rows.values, labels, request.rows.text)
        payload, json_length = protocol.v2_response(model, request, labels, proba)
        return Prediction(payload, len(labels), json_length, key)

    async def predict(self, body: bytes, request_id: str) -> Prediction:
        """A plain JSON request (instances, column inputs, or columns + data); ``request_id`` is the
        client's ``x-request-id`` ("" if none)."""
        model = self.model
        rows = protocol.parse_plain(body, model)
        key = self._feedback_id(request_id)
        labels, proba = await self.batcher.submit(rows, model.predict)
        self.monitor.record(key, model, rows.values, labels, rows.text)
        return Prediction(protocol.plain_response(model, labels, proba), len(labels), request_id=key)

    def _feedback_id(self, *ids: str) -> str:
        """The first of ``ids`` that names no earlier prediction, else 128 new random bits: ids a client
        chooses (``x-request-id``, a V2 request's ``id``) may repeat, but a prediction's record is never
        replaced, so feedback is never joined to the wrong request. The response's ``x-request-id`` says
        which id it got."""
        for request_id in ids:
            if request_id and not self.monitor.feedback.knows(request_id):
                return request_id
        return os.urandom(16).hex()  # (as the transport's own ids: serving/asgi.py:_new_id)

    def _on_batch(self, rows: Rows, labels: np.ndarray) -> None:
        """Per predict call, not per request: batch size, predictions by class (a regressor's in a histogram),
        the monitoring window."""
        model = self.model
        self.metrics.batch_rows.observe(len(rows))
        self.monitor.on_batch(rows.values, labels)
        if not model.classes:
            histogram = self.metrics.predicted_values(model.target_edges).labels(model.name, model.version)
            for value in np.asarray(labels, dtype=np.float64).tolist():
                histogram.observe(value)
            return
        values, counts = np.unique(labels, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            self.metrics.predictions.labels(model.name, model.version, str(value)).inc(count)

    async def score_file(self, upload: Path, fmt: str, out: IO[bytes]) -> int:
        """Score a CSV or Parquet file into ``out`` on a worker thread (the event loop keeps serving)."""
        from mloop.serving import batch_scoring

        model = self.model
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, batch_scoring.score_file, model, upload, fmt, out)

    # ------------------------------------------------------------------------------ feedback and alerts

    def feedback(self, payload: Any) -> dict[str, Any]:
        """True labels for served requests: ``{"id": REQUEST_ID, "labels": [...]}`` or ``{"items": [...]}``."""
        items = payload.get("items") if isinstance(payload, dict) and "items" in payload else [payload]
        if not isinstance(items, list) or not items:
            raise RequestError('send {"id": REQUEST_ID, "labels": [...]} or {"items": [...]}', field="items")
        classes = {str(c): c for c in self.model.classes}
        regression = not classes
        checked: list[tuple[str, str, list[Any]]] = []
        for index, item in enumerate(items):  # every item is checked before any is applied: all or nothing
            where = f"items[{index}]" if len(items) > 1 else "body"
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("labels"), list):
                raise RequestError(f"{where} needs a string 'id' (the x-request-id of the prediction) and a 'labels' list",
                                   field=f"{where}.id")
            labels = item["labels"]
            if regression and not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                      for v in labels):
                raise RequestError(f"{where}: labels must be finite numbers (the true values of a regression)",
                                   field=f"{where}.labels")
            if classes and any(str(label) not in classes for label in labels):
                raise RequestError(f"{where}: labels must be among the model's classes {list(classes)}",
                                   field=f"{where}.labels")
            if any(item["id"] == seen for _, seen, _ in checked):
                raise RequestError(f"{where}: request {item['id']!r} appears twice in this feedback", field=f"{where}.id")
            truth = [float(v) for v in labels] if regression else [classes[str(label)] for label in labels]
            request_id: str = item["id"]
            self._feedback_call(where, request_id, partial(self.monitor.feedback.check, request_id, len(truth)))
            checked.append((where, item["id"], truth))
        matched = 0
        for where, request_id, truth in checked:  # (a concurrent request may have labelled one since: 409)
            matched += self._feedback_call(where, request_id, partial(self.monitor.add_feedback, request_id, truth))
        scores = self.monitor.set_scores()
        return {"labelled": matched, "version": self.model.version,
                "total_labelled": self.monitor.feedback.labelled_total, **scores}

    @staticmethod
    def _feedback_call(where: str, request_id: str, call: Callable[[], T]) -> T:
        """``call`` with the joiner's refusals as 4xx errors naming the item."""
        try:
            return call()
        except AlreadyLabelled as err:
            raise RequestError(f"{where}: the prediction {request_id!r} was labelled already; labels are final",
                               field=f"{where}.id", status=409) from err
        except UnknownRequest as err:
            raise RequestError(f"{where}: no prediction with id {request_id!r} is remembered (unknown or too old)",
                               field=f"{where}.id", status=404) from err
        except ValueError as err:
            raise RequestError(f"{where}: {err}", field=f"{where}.labels") from err

    def receive_alerts(self, payload: Any) -> int:
        """Alertmanager's webhook: its alerts are logged and forwarded exactly like mloop's own."""
        try:
            return len(self.monitor.alerting.receive(payload))
        except ValueError as err:
            raise RequestError(str(err), field="alerts") from err

    # ------------------------------------------------------------------------------ hot swap

    @property
    def can_swap(self) -> bool:
        return self.loader is not None

    async def swap(self, uri: str) -> Swapped:
        """Load another model version and switch to it without dropping a request.

        The new version is loaded and warmed up on a worker thread while the current one keeps
        serving; then, on the event loop (so no request is half-way), the open batch is predicted by
        the old model and every later request goes to the new one. A version that fails to load or
        warm up is refused (422) and the current one stays.
        """
        if self._swap_lock is None:
            self._swap_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        async with self._swap_lock:
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
        return Swapped(new, old)

    def _load_and_warm(self, uri: str) -> LoadedModel:
        if self.loader is None:
            raise RequestError("this server cannot swap models", status=404)
        model = self.loader(uri)
        warm_up(model)
        return model

    # ------------------------------------------------------------------------------ monitoring

    def update_monitoring(self) -> MonitorStatus:
        """Drift, outliers, live scores, alert rules and the prediction log (see ``LiveMonitor.update``)."""
        return self.monitor.update()

    def close(self) -> None:
        self.ready = False
        self.monitor.close()
