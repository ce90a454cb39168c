"""The infra check of a candidate: can it serve, before any traffic reaches it?

``check_can_serve`` starts the candidate in a separate ``mloop serve`` process on a free port of
127.0.0.1 and sends it what clients send: the signature's input example (the MLflow model's, the
training rows it was registered with) and a sample of the requests a deployment recorded in its
prediction log. Every request must be answered 200 with one prediction per row, the 99th percentile of
their latencies (measured by the client, over one keep-alive connection) must be within ``p99_ms``,
and the server's resident memory (RSS of its process, sampled from ready until after the last answer)
within ``max_memory_mb``. The answer is an ``InfraReport``, passed or not.

The candidate server is nobody's deployment: monitoring is off (``--monitor-interval 0``, so it has no
monitoring folder, lock, prediction log or alert log), it has a name of its own, a token of its own,
and no admin token. It is stopped (SIGTERM, then SIGKILL after a grace period) however the check ends,
Ctrl-C included, and asks the kernel to kill it should this process die first; its temporary folder
(the server's output, the model copy the input example is read from) is under ``.mloop/tmp``.

What a failing candidate is, is a report with ``ok`` false and the reason: a version that does not exist,
a server that exits or is not ready within ``timeout``, a request answered wrongly, a limit exceeded.
What is not the candidate's doing raises: the tracking store failing (``TrackingError``), no free port.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from mloop.bundle.schema import FeatureType
from mloop.config import InfraSection, ProjectConfig
from mloop.errors import RegistryError, listed

if TYPE_CHECKING:
    import httpx
    import psutil

ROWS_PER_REQUEST = 5  # recorded rows per request (then all of them in one batch request too)
REQUEST_TIMEOUT_S = 30.0  # one request unanswered this long is a failure, and the check stops sending
STOP_GRACE_S = 10.0  # after SIGTERM, the candidate server has this long to exit before SIGKILL
MEMORY_EVERY_S = 0.02  # how often the server's RSS is sampled while requests run
READ_FACTOR = 10  # the sample is drawn from the newest READ_FACTOR x sample rows of the log
_TYPES: dict[str, FeatureType] = {"FP64": "float", "FP32": "float", "INT64": "integer", "INT32": "integer",
                                  "BOOL": "boolean", "BYTES": "categorical"}


@dataclass
class InfraLimits:
    """What the candidate must stay within (``InfraSection``'s)."""

    p99_ms: float
    max_memory_mb: float


@dataclass
class InfraReport:
    """The infra check of one candidate version.

    ``requests`` and ``rows`` count what was sent (``production_rows`` of the rows came from the prediction
    log); ``failures`` name each request answered wrongly or not at all, with the status or the answer;
    latencies are the client's, in ms, over the answered requests; ``max_rss_mb`` is the server's largest
    RSS seen. ``reason`` is one line: why it failed, or "answered N requests, p99 X ms, Y MB". ``notes`` say
    what was not sent and why (no deployment named, no prediction log). ``skipped``: the check is off.
    """

    ok: bool
    uri: str
    limits: InfraLimits
    reason: str
    version: str = ""
    requests: int = 0
    rows: int = 0
    production_rows: int = 0
    failures: list[str] = field(default_factory=list)
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)
    skipped: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InfraReport:
        values = dict(data)
        values["limits"] = InfraLimits(**values["limits"])
        return cls(**values)


@dataclass
class _Request:
    label: str  # names it in a failure: "input example", "recorded rows 6-10", ...
    instances: list[dict[str, Any]]


@dataclass
class _Answered:
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    sent: int = 0
    rows: int = 0
    server_gone: str = ""  # why the server stopped answering ("" while it answers)


def check_can_serve(cfg: ProjectConfig, uri: str, settings: InfraSection, *, production_log: Path | None = None,
                    deployment: str | None = None) -> InfraReport:
    """Start ``uri`` (``models:/NAME/VERSION`` or ``@ALIAS`` of the project's registry) in a separate server,
    send it the input example and up to ``settings.sample`` rows its deployment recorded, and judge it.

    The recorded rows are read from ``production_log`` (a monitoring folder, ``.mloop/monitor/<name>/``), by
    default from ``deployment``'s; with neither, or no log there, only the input example is sent and the
    report's notes say so. A candidate that fails is a report with ``ok`` false (a version that does not
    exist included); raises only for what is not the candidate's doing (``TrackingError``: the store).
    """
    started = time.monotonic()
    limits = InfraLimits(settings.p99_ms, settings.max_memory_mb)
    if not settings.enabled:
        return InfraReport(True, uri, limits, "the infra check is off (enabled = false): not checked", skipped=True)
    from mloop.deploy.local import check_name
    from mloop.registry.fetch import parse_model_uri, resolve_version

    if production_log is None and deployment is not None:
        production_log = cfg.monitor_dir(check_name(deployment))
    try:
        name, _, _ = parse_model_uri(uri)
        version = resolve_version(cfg, uri)  # pinned: an alias could move while the check runs
    except RegistryError as err:
        return InfraReport(False, uri, limits, str(err.args[0]) if err.args else str(err),
                           seconds=time.monotonic() - started)
    with tempfile.TemporaryDirectory(prefix="mloop-infra-", dir=cfg.scratch()) as tmp:
        report = _check(cfg, name, version, settings, limits, Path(tmp), production_log, deployment)
    report.uri, report.seconds = uri, time.monotonic() - started
    return report


def _check(cfg: ProjectConfig, name: str, version: str, settings: InfraSection, limits: InfraLimits, tmp: Path,
           log_folder: Path | None, deployment: str | None) -> InfraReport:
    import httpx

    server = _CandidateServer(cfg, name, version, tmp, token=secrets.token_urlsafe(24))
    uri = server.uri
    notes: list[str] = []

    def failed(reason: str) -> InfraReport:
        return InfraReport(False, uri, limits, reason, version=version, notes=notes)

    try:
        server.start()
        # while the server loads the model: what to send (the input example, the recorded rows)
        example = _input_example(cfg, uri, tmp / "model")
        recorded = _recorded_rows(log_folder, list(example.columns) if example is not None else None,
                                  settings.sample, deployment, notes)
        trouble = server.wait_ready(settings.timeout_s)
        if trouble:
            return failed(trouble)
        try:
            types = server.feature_types()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:
            return failed(server.exited() or f"the candidate server did not describe its inputs "
                                              f"(GET /v2/models/{name}: {type(err).__name__}: {err})")
        if example is None and recorded is None:
            return failed("nothing to send: the model has no input example and no recorded rows were found")
        if example is None:
            notes.append("the model has no input example: only recorded rows were sent")
        with _MemoryWatch(server.pid) as memory:
            answered = _send(server, _plan(example, recorded, types))
        peak_mb = memory.peak_bytes / (1024 * 1024) if memory.peak_bytes else None
    finally:
        server.stop()
    production = len(recorded) if recorded is not None else 0
    return _judge(uri, version, limits, answered, peak_mb, production, notes)


def _judge(uri: str, version: str, limits: InfraLimits, answered: _Answered, peak_mb: float | None,
           production_rows: int, notes: list[str]) -> InfraReport:
    import numpy as np

    latencies = np.asarray(answered.latencies_ms, dtype=float)
    # nearest rank from above: a latency that occurred, never an interpolation below it
    p50 = float(np.percentile(latencies, 50, method="higher")) if latencies.size else None
    p99 = float(np.percentile(latencies, 99, method="higher")) if latencies.size else None
    problems = []
    if answered.server_gone:
        problems.append(answered.server_gone)
    if answered.failures:
        problems.append(f"{len(answered.failures)} of {answered.sent} requests failed; first: {answered.failures[0]}")
    if p99 is not None and p99 > limits.p99_ms:
        problems.append(f"p99 latency {p99:.3g} ms is over the limit p99_ms = {limits.p99_ms:g} ms")
    if peak_mb is not None and peak_mb > limits.max_memory_mb:
        problems.append(f"memory (the server's RSS) reached {peak_mb:.0f} MB, over the limit max_memory_mb = "
                        f"{limits.max_memory_mb:g} MB")
    if problems:
        reason = "; ".join(problems)
    else:
        reason = f"answered {answered.sent} requests, p99 {p99:.3g} ms, {peak_mb or 0:.0f} MB"
        if not production_rows and notes:
            reason += f" ({notes[0]})"
    return InfraReport(not problems, uri, limits, reason, version=version, requests=answered.sent,
                       rows=answered.rows, production_rows=production_rows, failures=answered.failures,
                       p50_ms=p50, p99_ms=p99, max_rss_mb=peak_mb, notes=notes)


# ---------------------------------------------------------------------------------------------- the server


class _CandidateServer:
    """``mloop serve`` of the candidate: nobody's deployment, stopped whatever happens (see the module docstring)."""

    def __init__(self, cfg: ProjectConfig, model: str, version: str, folder: Path, *, token: str) -> None:
        self.cfg, self.model, self.token = cfg, model, token
        self.uri = f"models:/{model}/{version}"
        self.output = folder / "server.log"
        self.name = f"infra-check-{secrets.token_hex(4)}"
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> None:
        import ctypes.util  # noqa: F401 - loaded before the fork: die_with_parent runs in the child

        from mloop._proc import die_with_parent

        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "mloop.cli.main", "serve", self.uri, "--name", self.name,
                   "--host", "127.0.0.1", "--port", str(port), "--monitor-interval", "0", "--no-access-log",
                   "--project", str(self.cfg.root)]
        env = {**os.environ, "MLOOP_SERVING_TOKEN": self.token, "MLOOP_SERVING_ADMIN_TOKEN": ""}
        with self.output.open("wb") as out:
            self._proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          cwd=self.cfg.root, env=env, start_new_session=True,
                                          preexec_fn=die_with_parent)  # noqa: PLW1509 - only prctl, before exec

    def wait_ready(self, timeout_s: float) -> str:
        """Empty once the server is ready; else why it is not (it exited, or was not ready in time)."""
        import httpx

        from mloop._http import client

        assert self._proc is not None
        self._http = client(timeout=REQUEST_TIMEOUT_S, token=self.token)
        deadline = time.monotonic() + timeout_s
        while True:
            exited = self.exited()
            if exited:
                return exited
            try:
                response = self._http.get(f"{self.url}/v2/health/ready", timeout=1.0)
                if response.status_code == 200 and response.json().get("ready"):
                    return ""
            except (httpx.HTTPError, ValueError, AttributeError):
                pass
            if time.monotonic() >= deadline:
                return (f"the candidate server was not ready within timeout = {timeout_s:g} s"
                        + (f" (it said: {self.said()})" if self.said() else ""))
            time.sleep(0.1)

    def exited(self) -> str:
        """Why the server is gone ("" while it runs)."""
        assert self._proc is not None
        code = self._proc.poll()
        if code is None:
            return ""
        return f"the candidate server exited with code {code} before it was stopped" + (
            f": {self.said()}" if self.said() else "")

    def said(self, lines: int = 4) -> str:
        """The last lines of the server's output, on one line."""
        try:
            text = self.output.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())

    def feature_types(self) -> dict[str, FeatureType]:
        """Each input's type as the server describes it to clients (V2 model metadata), in feature order."""
        assert self._http is not None
        metadata = self._http.get(f"{self.url}/v2/models/{self.model}").json()
        return {str(entry["name"]): _TYPES.get(str(entry["datatype"]), "float") for entry in metadata["inputs"]}

    def predict(self, body: bytes) -> httpx.Response:
        assert self._http is not None
        return self._http.post(f"{self.url}/predict", content=body, headers={"content-type": "application/json"})

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``STOP_GRACE_S``; SIGKILL at once if interrupted while waiting."""
        if self._http is not None:
            self._http.close()
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.terminate()
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
            except BaseException:  # Ctrl-C while it was stopping: it goes now
                proc.kill()
                proc.wait()
                raise
        proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _MemoryWatch:
    """The largest RSS of a process and its children, sampled on a thread every ``MEMORY_EVERY_S`` and once
    more at the end."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._process: psutil.Process | None
        try:
            self._process = psutil.Process(pid)
        except psutil.Error:
            self._process = None
        self.peak_bytes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="mloop-infra-memory", daemon=True)

    def sample(self) -> None:
        import psutil

        if self._process is None:
            return
        try:
            rss = self._process.memory_info().rss
            for child in self._process.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:  # it exited: the samples so far are all there is
            return
        self.peak_bytes = max(self.peak_bytes, int(rss))

    def _watch(self) -> None:
        while not self._done.wait(MEMORY_EVERY_S):
            self.sample()

    def __enter__(self) -> Self:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.sample()


# ------------------------------------------------------------------------------------------- what is sent


def _input_example(cfg: ProjectConfig, uri: str, folder: Path) -> Any:
    """The MLflow model's input example (a DataFrame of training rows), or None if it has none."""
    import shutil

    from mlflow.models import Model

    from mloop.registry.fetch import download_model

    try:
        model_dir = download_model(cfg, uri, folder)
        example = Model.load(str(model_dir)).load_input_example(str(model_dir))
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # read: the copy goes now
    if example is None:
        return None
    import pandas as pd

    return example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)


def _recorded_rows(folder: Path | None, features: list[str] | None, sample: int, deployment: str | None,
                   notes: list[str]) -> Any:
    """Up to ``sample`` rows of the prediction log in the monitoring ``folder`` (a seeded uniform sample of
    its newest ``READ_FACTOR`` x ``sample`` rows, in the order served), or None with a note saying why none."""
    from mloop.monitor.predlog import RotatingParquetLog, read_newest

    only = "only the signature's input example was sent"
    if folder is None:
        notes.append(f"no deployment named: {only}")
        return None
    if sample == 0:
        notes.append(f"sample = 0: {only}")
        return None
    if folder.name == "predictions":
        folder = folder.parent
    where = f"deployment {deployment!r}" if deployment else str(folder)
    log = RotatingParquetLog(folder / "predictions")
    if not log.files():
        notes.append(f"no prediction log of {where} ({folder / 'predictions'}): {only}")
        return None
    if features is None:  # no input example to name the features: those of the newest file
        features = _logged_features(log)
    frame = read_newest(log, features, sample * READ_FACTOR)
    if not len(frame):
        notes.append(f"the prediction log of {where} has no rows with the candidate's features "
                     f"({listed(features, 5)}): {only}")
        return None
    if len(frame) > sample:
        import numpy as np

        chosen = np.sort(np.random.default_rng(0).choice(len(frame), size=sample, replace=False))
        frame = frame.iloc[chosen]
    return frame[features].reset_index(drop=True)


def _logged_features(log: Any) -> list[str]:
    """The feature columns of the newest readable file of a prediction log."""
    import pyarrow.parquet as pq

    from mloop.monitor.predlog import META_COLUMNS

    for path in reversed(log.files()):
        try:
            return [c for c in pq.read_schema(path).names if c not in META_COLUMNS]
        except (OSError, ValueError):
            continue
    return []


def _plan(example: Any, recorded: Any, types: dict[str, FeatureType]) -> list[_Request]:
    """The requests: the input example whole and row by row, the recorded rows ``ROWS_PER_REQUEST`` at a time,
    then all of them in one batch."""
    requests: list[_Request] = []
    if example is not None and len(example):
        rows = client_instances(example, types)
        requests.append(_Request(f"input example ({len(rows)} rows)", rows))
        if len(rows) > 1:
            requests += [_Request(f"input example row {i + 1}", [row]) for i, row in enumerate(rows)]
    if recorded is not None and len(recorded):
        rows = client_instances(recorded, types, as_recorded=True)
        for start in range(0, len(rows), ROWS_PER_REQUEST):
            part = rows[start:start + ROWS_PER_REQUEST]
            requests.append(_Request(f"recorded rows {start + 1}-{start + len(part)}", part))
        if len(rows) > ROWS_PER_REQUEST:
            requests.append(_Request(f"recorded rows in one batch ({len(rows)} rows)", rows))
    return requests


def client_instances(frame: Any, types: dict[str, FeatureType], *, as_recorded: bool = False) -> list[dict[str, Any]]:
    """Rows of ``frame`` as a client sends them to ``POST /predict``: ``{feature: value}`` per row, the features
    of ``types`` (name → the type the server describes) in its order.

    Missing values (None, NaN) are ``null``; a boolean feature's 0/1 is ``false``/``true``; a whole number of
    an integer feature is an integer; a categorical feature's value is a string. Rows of the prediction log
    (``as_recorded``) keep a value that does not fit the type as it is (a string logged for a feature that is
    a number now, a fraction for a boolean one): clients send that, and the candidate must say what it does
    with it. A feature ``frame`` lacks is missing in every row.
    """
    import pandas as pd

    columns = {name: frame[name].tolist() if name in frame.columns else [None] * len(frame) for name in types}
    rows: list[dict[str, Any]] = [{} for _ in range(len(frame))]
    for name, kind in types.items():
        for row, value in zip(rows, columns[name], strict=True):
            missing = value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))
            row[name] = None if missing else _client_value(value, kind, as_recorded)
    return rows


def _client_value(value: Any, kind: FeatureType, as_recorded: bool) -> Any:
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        value = value.item()
    if kind == "categorical":
        return value if isinstance(value, str) or as_recorded else str(value)
    if isinstance(value, str):
        return value  # a number feature logged as text: what the client sent
    if kind == "boolean":
        return bool(value) if value in (0, 1) else value
    if kind == "integer":
        return int(value) if isinstance(value, (int, float)) and float(value).is_integer() else value
    return float(value) if isinstance(value, (int, float)) else value


def _send(server: _CandidateServer, requests: list[_Request]) -> _Answered:
    """Each request in turn over one keep-alive connection, timed by the client; the first that gets no answer
    ends the sending (the server is gone, or hangs)."""
    import httpx

    answered = _Answered()
    for request in requests:
        rows = len(request.instances)
        answered.sent += 1
        answered.rows += rows
        try:
            body = json.dumps({"instances": request.instances}, allow_nan=False).encode()
        except ValueError:  # infinity: no client can send it in JSON
            answered.failures.append(f"{request.label}: holds an infinite value, which JSON cannot carry")
            continue
        began = time.perf_counter()
        try:
            response = server.predict(body)
        except httpx.HTTPError as err:
            answered.failures.append(f"{request.label}: no answer ({type(err).__name__}: {err})")
            time.sleep(0.2)  # a server that died: let it finish exiting, to say so
            answered.server_gone = server.exited() or (
                f"the candidate server stopped answering ({type(err).__name__})")
            break
        answered.latencies_ms.append((time.perf_counter() - began) * 1000.0)
        problem = _wrong_answer(response, rows)
        if problem:
            answered.failures.append(f"{request.label}: {problem}")
    return answered


def _wrong_answer(response: httpx.Response, rows: int) -> str:
    """Why an answer to a request of ``rows`` rows is wrong ("" if it is a 200 with one prediction per row)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        said = body.get("error") if isinstance(body, dict) else response.text[:200]
        return f"HTTP {response.status_code}: {said}"
    predictions = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list):
        return f"HTTP 200 without a list of predictions: {response.text[:200]}"
    if len(predictions) != rows:
        return f"{len(predictions)} predictions for {rows} rows"
    return ""
