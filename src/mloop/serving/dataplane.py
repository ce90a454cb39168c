"""The dataplane: what a model server does, without HTTP — predict, take feedback, score files, swap versions,
roll a candidate version out.

The ASGI layer (``mloop.serving.asgi``) parses the transport and calls in here; a client mistake is a
``RequestError`` carrying the status it deserves. Requests that arrive together share one predict call
(``microbatch``); every answer comes from one model version, even across a swap. During a roll-out
(``serving.rollout``: canary or shadow) a candidate version is held beside the served one; without
one, a request costs what it always did: the ASGI layer checks ``rollout`` (None) and passes no ``model``.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from mloop.bundle.loaded import LoadedModel, Rows
from mloop.monitor.feedback import AlreadyLabelled, UnknownRequest
from mloop.monitor.live import LiveMonitor
from mloop.monitor.metrics import ServerMetrics
from mloop.monitor.rollout import STRATEGIES
from mloop.monitor.status import MonitorStatus
from mloop.serving import protocol
from mloop.serving.microbatch import Batcher
from mloop.serving.protocol import RequestError
from mloop.serving.rollout import Rollout, ShadowScorer

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
    version: str = ""  # the model version that answered (sent back in x-model-version)


@dataclass
class Swapped:
    serving: LoadedModel
    previous: LoadedModel


class DataPlane:
    """Serves one model at a time; ``swap`` changes it without dropping a request, and a roll-out
    (``start_rollout``, then ``promote`` or ``abort_rollout``) holds a candidate version beside it."""

    def __init__(self, model: LoadedModel, metrics: ServerMetrics, monitor: LiveMonitor, *, max_batch_rows: int,
                 max_wait_s: float, loader: Loader | None = None) -> None:
        self.model = model
        self.metrics = metrics
        self.monitor = monitor
        self.loader = loader
        self.ready = True
        self.batcher = Batcher(max_rows=max_batch_rows, max_wait_s=max_wait_s, on_batch=self._on_batch,
                               concat=Rows.concat)
        self.rollout: Rollout | None = None
        self._max_batch_rows, self._max_wait_s = max_batch_rows, max_wait_s
        self._admin_lock: asyncio.Lock | None = None  # one model load at a time (swap, roll-out)
        metrics.serving(model.name, model.version)

    # ------------------------------------------------------------------------------ predictions

    def check_model(self, name: str, version: str | None) -> None:
        """Refuse a request for a model or version this server does not serve (404)."""
        if name != self.model.name:
            raise RequestError(f"model {name!r} is not served here; this server serves {self.model.name!r}",
                               field="model_name", status=404)
        if version is not None and version != self.model.version:
            rollout = self.rollout
            if rollout is None or not rollout.serves(version):
                raise RequestError(f"version {version!r} of {name!r} is not served here; the served version is "
                                   f"{self.model.version!r}", field="model_version", status=404)

    def answering(self, version: str | None) -> LoadedModel:
        """The version that answers a request during a roll-out (``version``: the one the request names)."""
        rollout = self.rollout
        return self.model if rollout is None else rollout.pick(version)

    async def infer(self, body: bytes, request_id: str, header_length: int | None = None,
                    model: LoadedModel | None = None) -> Prediction:
        """An Open Inference (V2) request, JSON or with binary tensors; ``request_id`` is the client's
        ``x-request-id`` ("" if none); ``model`` the version that answers, given during a roll-out
        (``answering``; none: the served one, and no roll-out work is done for the request)."""
        in_rollout = model is not None
        if model is None:  # parse, predict and answer with one version, even across a swap
            model, batcher = self.model, self.batcher
        else:
            batcher = self._batcher_of(model)
        request = protocol.parse_v2(body, model, header_length)
        key = self._feedback_id(request_id, request.request_id)  # the client's x-request-id, else the body's id
        request.request_id = request.request_id or key  # (the body's id is echoed as it came)
        labels, proba = await batcher.submit(request.rows, model.predict)
        self.monitor.record(key, model, request.rows.values, labels, request.rows.text)
        if in_rollout:
            self._offer_shadow(model, key, request.rows, labels, body, v2=True, header_length=header_length)
        payload, json_length = protocol.v2_response(model, request, labels, proba)
        return Prediction(payload, len(labels), json_length, key, model.version)

    async def predict(self, body: bytes, request_id: str, model: LoadedModel | None = None) -> Prediction:
        """A plain JSON request (instances, column inputs, or columns + data); ``request_id`` is the
        client's ``x-request-id`` ("" if none); ``model`` as for ``infer``."""
        in_rollout = model is not None
        if model is None:
            model, batcher = self.model, self.batcher
        else:
            batcher = self._batcher_of(model)
        rows = protocol.parse_plain(body, model)
        key = self._feedback_id(request_id)
        labels, proba = await batcher.submit(rows, model.predict)
        self.monitor.record(key, model, rows.values, labels, rows.text)
        if in_rollout:
            self._offer_shadow(model, key, rows, labels, body, v2=False)
        return Prediction(protocol.plain_response(model, labels, proba), len(labels), request_id=key,
                          version=model.version)

    def _batcher_of(self, model: LoadedModel) -> Batcher:
        """The micro-batcher of ``model``: a canary's candidate has its own, so a batch holds one version."""
        rollout = self.rollout
        if rollout is not None and rollout.batcher is not None and model is rollout.candidate:
            return rollout.batcher
        return self.batcher

    def _offer_shadow(self, model: LoadedModel, key: str, rows: Rows, labels: np.ndarray, body: bytes, *,
                      v2: bool, header_length: int | None = None) -> None:
        rollout = self.rollout
        if rollout is not None and rollout.shadow is not None and model is rollout.champion:
            rollout.shadow.offer(key, rows, labels, body, v2=v2, header_length=header_length)

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
        self.monitor.on_batch(rows.values, labels)
        self._count_predictions(self.model, rows, labels)

    def _on_candidate_batch(self, model: LoadedModel, rows: Rows, labels: np.ndarray) -> None:
        """A canary candidate's predict call: counted under its version; the window is the served version's."""
        self._count_predictions(model, rows, labels)

    def _count_predictions(self, model: LoadedModel, rows: Rows, labels: np.ndarray) -> None:
        self.metrics.batch_rows.observe(len(rows))
        if not model.classes:
            histogram = self.metrics.predicted_values(model.target_edges).labels(model.name, model.version)
            for value in np.asarray(labels, dtype=np.float64).tolist():
                histogram.observe(value)
            return
        values, counts = np.unique(labels, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            self.metrics.predictions.labels(model.name, model.version, str(value)).inc(count)

    async def score_file(self, upload: Path, fmt: str, out: IO[bytes]) -> tuple[int, str]:
        """Score a CSV or Parquet file into ``out`` on a worker thread (the event loop keeps serving), with the
        served version (a roll-out's candidate scores no file); returns the rows scored and that version."""
        from mloop.serving import batch_scoring

        model = self.model
        loop = asyncio.get_running_loop()
        rows: int = await loop.run_in_executor(None, batch_scoring.score_file, model, upload, fmt, out)
        return rows, model.version

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
        warm up is refused (422) and the current one stays. A roll-out in progress ends (as an abort).
        """
        async with self._lock():
            new = await self._load(uri)
            old, rollout = self.model, self.rollout
            self.rollout = None
            self.batcher.flush_now()
            if rollout is not None:
                rollout.stop()
            self.model = new
            self.metrics.serving(new.name, new.version)
            write_out_old_log = self.monitor.swap(new)  # logged and compared as the new version from now on
        await self._finish(write_out_old_log, rollout)
        return Swapped(new, old)

    def _lock(self) -> asyncio.Lock:
        if self._admin_lock is None:
            self._admin_lock = asyncio.Lock()
        return self._admin_lock

    async def _load(self, uri: str) -> LoadedModel:
        """``uri`` loaded and warmed up on a worker thread; 422 naming the problem if it cannot be."""
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self._load_and_warm, uri)
        except Exception as err:
            message = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
            raise RequestError(f"cannot load {uri}: {message}; still serving {self.model.name} "
                               f"v{self.model.version}", field="uri", status=422) from err

    async def _finish(self, write_out: Callable[[], None], ended: Rollout | None) -> None:
        """After a switch: let the requests answered a moment before it record themselves (they resume on
        this turn of the loop), then write out the old version's log and wait for an ended shadow worker."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)
        await loop.run_in_executor(None, write_out)
        if ended is not None:
            await loop.run_in_executor(None, ended.join)

    # ------------------------------------------------------------------------------ roll-out

    async def start_rollout(self, payload: Any) -> dict[str, Any]:
        """``{"uri": "models:/NAME/VERSION", "strategy": "canary" | "shadow", "weight": 0.1}``: load and warm
        the candidate on a worker thread while the served version keeps serving, then hold it beside the
        served one. A roll-out in progress is replaced (its figures restart). A candidate that fails to load,
        is another model or the served version, or predicts another kind of target is refused (422) and
        nothing changes. ``tolerance`` (a regressor in shadow) is how far apart two predictions may be and
        still agree; by default the served version's MAE on its test set (else 0)."""
        uri, strategy, weight, tolerance = _rollout_request(payload)
        async with self._lock():
            new = await self._load(uri)
            served = self.model
            if new.name != served.name:
                raise RequestError(f"{uri} is model {new.name!r}; a roll-out's candidate is another version of "
                                   f"{served.name!r}", field="uri", status=422)
            if new.version == served.version:
                raise RequestError(f"v{new.version} of {served.name} is the version served already; roll out "
                                   "another one", field="uri", status=422)
            if bool(new.classes) != bool(served.classes):
                kinds = {True: "a classifier", False: "a regressor"}
                raise RequestError(f"v{new.version} is {kinds[bool(new.classes)]} and the served v{served.version} "
                                   f"{kinds[bool(served.classes)]}: their answers cannot stand in for each other",
                                   field="uri", status=422)
            if tolerance is None:
                tolerance = float(served.test_scores.get("mae", 0.0))
            ended = self.rollout
            self.rollout = None
            if ended is not None:
                ended.stop()
            watch, write_out = self.monitor.start_rollout(new, strategy, weight, tolerance=tolerance)
            batcher = shadow = None
            if strategy == "canary":
                batcher = Batcher(max_rows=self._max_batch_rows, max_wait_s=self._max_wait_s, concat=Rows.concat,
                                  on_batch=partial(self._on_candidate_batch, new))
            else:
                shadow = ShadowScorer(served, new, watch, self.monitor.record_shadow)
            self.rollout = Rollout(served, new, watch, batcher=batcher, shadow=shadow)
            if shadow is not None:
                shadow.start()
        await self._finish(write_out, ended)
        return self.rollout_state()

    def set_rollout_weight(self, payload: Any) -> dict[str, Any]:
        """``{"weight": 0.5}``: the share of requests a canary's candidate answers from now on."""
        if not isinstance(payload, dict) or set(payload) != {"weight"}:
            raise RequestError('send {"weight": W} with W from 0 to 1', field="weight")
        weight = _weight(payload["weight"])
        rollout = self.rollout
        if rollout is None:
            raise RequestError(f"no roll-out in progress: v{self.model.version} answers every request; start one "
                               "with POST /admin/rollout", status=409)
        if rollout.batcher is None:
            raise RequestError(f"the roll-out of v{rollout.candidate.version} is a shadow: it answers no request, so "
                               "it has no weight; promote or abort it, or start a canary", status=409)
        rollout.set_weight(weight)
        return self.rollout_state()

    async def promote(self) -> Swapped:
        """The candidate becomes the only served version, without reloading it and without dropping a request
        (as a swap): the open batches are answered by the versions they hold, every later request by it."""
        rollout = self.rollout
        if rollout is None:
            raise RequestError(f"no roll-out in progress: nothing to promote (v{self.model.version} is served); "
                               "start one with POST /admin/rollout", status=409)
        old = self.model
        self.rollout = None
        self.batcher.flush_now()
        rollout.stop()
        self.model = new = rollout.candidate
        self.metrics.serving(new.name, new.version)
        write_out_old_log = self.monitor.promote()  # logged and compared as the new version from now on
        await self._finish(write_out_old_log, rollout)
        return Swapped(new, old)

    async def abort_rollout(self) -> dict[str, Any]:
        """Drop the candidate: the served version answers every request from now on (its open batch is
        answered by it). Without a roll-out, nothing changes and the answer says so."""
        rollout = self.rollout
        served = {"name": self.model.name, "version": self.model.version}
        if rollout is None:
            return {"aborted": False, "serving": served, "candidate": None,
                    "message": f"no roll-out in progress; v{self.model.version} answers every request"}
        self.rollout = None
        rollout.stop()
        write_out = self.monitor.end_rollout()
        await self._finish(write_out, rollout)
        candidate = rollout.candidate
        return {"aborted": True, "serving": served, "candidate": {"name": candidate.name, "version": candidate.version},
                "message": f"the {rollout.strategy} of v{candidate.version} is aborted; v{self.model.version} answers "
                           "every request"}

    def rollout_state(self) -> dict[str, Any]:
        """The roll-out in progress (see ``GET /admin/rollout`` in docs/architecture.md), or that there is none."""
        served, rollout = self.model, self.rollout
        status = self.monitor.rollout_status() if rollout is not None else None
        if rollout is None or status is None:
            return {"active": False, "model": served.name, "serving_version": served.version, "candidate_version": None,
                    "strategy": None, "weight": 0.0, "started_at": None, "champion": None, "candidate": None,
                    "shadow": None}
        return {"active": True, "model": served.name, "serving_version": served.version,
                "candidate_version": rollout.candidate.version, "strategy": status.strategy, "weight": status.weight,
                "started_at": status.started_at, "champion": asdict(status.champion),
                "candidate": asdict(status.candidate), "shadow": None if status.shadow is None else asdict(status.shadow)}

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
        rollout, self.rollout = self.rollout, None
        if rollout is not None and rollout.shadow is not None:  # (the server answered every request already)
            rollout.shadow.stop()
            rollout.shadow.join()
        self.monitor.close()


def _weight(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise RequestError(f"weight must be a number from 0 to 1 (the share of requests the candidate answers), "
                           f"got {value!r}", field="weight")
    return float(value)


def _rollout_request(payload: Any) -> tuple[str, str, float, float | None]:
    """uri, strategy, weight and tolerance of a roll-out request, checked (422 naming the field)."""
    usage = '{"uri": "models:/NAME/VERSION", "strategy": "canary", "weight": 0.1} (or "strategy": "shadow")'
    if not isinstance(payload, dict):
        raise RequestError(f"send {usage}", field="body")
    unknown = sorted(set(payload) - {"uri", "strategy", "weight", "tolerance"})
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r}; send {usage}", field=unknown[0])
    uri = payload.get("uri")
    if not isinstance(uri, str) or not uri:
        raise RequestError(f"send {usage}", field="uri")
    strategy = payload.get("strategy")
    if strategy not in STRATEGIES:
        raise RequestError(f"strategy must be one of {', '.join(repr(s) for s in STRATEGIES)}, got {strategy!r}",
                           field="strategy")
    weight = payload.get("weight")
    if strategy == "canary":
        if weight is None:
            raise RequestError("a canary needs a weight: the share of requests the candidate answers, from 0 to 1",
                               field="weight")
        weight = _weight(weight)
    elif weight is not None and _weight(weight) != 0.0:
        raise RequestError("a shadow answers no request: leave out weight (or start a canary)", field="weight")
    tolerance = payload.get("tolerance")
    if tolerance is not None:
        if strategy != "shadow":
            raise RequestError("tolerance is for a shadow (how far apart a regressor's answers may be)", field="tolerance")
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0.0 <= tolerance < math.inf:
            raise RequestError(f"tolerance must be a number of at least 0, got {tolerance!r}", field="tolerance")
        tolerance = float(tolerance)
    return uri, strategy, float(weight or 0.0), tolerance
