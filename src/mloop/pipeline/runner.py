"""The scheduler: walks the graph, serves what it can from the cache, runs the rest, reports events.

It knows nothing of MLflow: a tracker (see ``mloop.tracking``) is handed the run and each step as
they happen. Steps whose inputs are ready run at once, up to the executor's width; a failing step
stops its descendants while unrelated branches finish.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from mloop.errors import StepFailed
from mloop.pipeline.artifacts import ArtifactRef, ArtifactStore
from mloop.pipeline.candidate import ModelCandidate
from mloop.pipeline.cache import CacheEntry, StepCache, cache_key, code_digest, file_inputs
from mloop.pipeline.executors import Executor
from mloop.pipeline.executors.task import Task, TaskResult
from mloop.pipeline.graph import Graph, Node, OutputRef

State = Literal["pending", "running", "cached", "done", "failed", "skipped"]


@dataclass
class StepRecord:
    """What happened to one step in one run."""

    name: str
    state: State = "pending"
    key: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    file_digests: dict[str, str] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0
    outputs: dict[str, ArtifactRef] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    files: dict[str, ArtifactRef] = field(default_factory=dict)
    error: str = ""
    traceback: str = ""
    location: str = ""
    skipped_because: str = ""

    @property
    def cached(self) -> bool:
        return self.state == "cached"

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended - self.started) if self.ended else 0.0


@dataclass
class RunResult:
    """A finished run: each step's record, and the values the pipeline returned, loaded on demand.

    ``id`` is the engine's id of the run (its step logs are in ``.mloop/logs/<id>/``);
    ``tracking_id`` is the id a tracker gave it (MLflow's run id), empty when untracked.
    """

    id: str
    pipeline: str
    graph: Graph
    store: ArtifactStore
    steps: dict[str, StepRecord]
    started: float
    ended: float = 0.0
    tracking_id: str = ""

    @property
    def ok(self) -> bool:
        return all(r.state in ("cached", "done") for r in self.steps.values())

    def count(self, state: State) -> int:
        return sum(r.state == state for r in self.steps.values())

    def load(self, step: str, output: str = "output") -> Any:
        """The value of one step output from the artifact store."""
        return self.store.get(self.steps[step].outputs[output])

    def ref(self, value: Any) -> ArtifactRef | None:
        """Where a step output the pipeline returned is stored (None for a plain value)."""
        if isinstance(value, OutputRef):
            return self.steps[value.node].outputs.get(value.output)
        return None

    def value(self, value: Any) -> Any:
        """A value the pipeline returned: a step output is loaded, anything else is itself."""
        return self.load(value.node, value.output) if isinstance(value, OutputRef) else value

    def result(self, name: str) -> Any:
        """A result the pipeline function returned, by its name (step outputs are loaded); for a pipeline
        that returned a ``ModelCandidate``, its fields: ``result("model")``, ``result("test")``, ..."""
        if name not in self.graph.results and self.graph.candidate is not None and hasattr(self.graph.candidate, name):
            return self.value(getattr(self.graph.candidate, name))
        return self.value(self.graph.results[name])

    @property
    def candidate(self) -> ModelCandidate | None:
        """The model candidate the pipeline returned, with its step outputs as refs (see ``value``)."""
        return self.graph.candidate


class Tracker(Protocol):
    """Receives a run as it happens (see ``mloop.tracking.mlflow_tracker.MlflowTracker``).

    ``start`` returns the tracker's id of the run; every call happens on one thread, in order.
    """

    def start(self, result: RunResult) -> str: ...

    def log_step(self, result: RunResult, record: StepRecord) -> None: ...

    def finish(self, result: RunResult) -> None: ...


Listener = Callable[[StepRecord], None]


class Runner:
    """Runs one graph once against a project's store."""

    def __init__(self, graph: Graph, *, store_root: Path, project_root: Path, executor: Executor,
                 tracker: Tracker | None = None, use_cache: bool = True, listener: Listener | None = None,
                 pipeline_name: str = "pipeline") -> None:
        self.graph = graph
        self.project_root = project_root
        self.store = ArtifactStore(store_root / "objects")
        self.cache = StepCache(store_root / "cache", self.store)
        self.log_root = store_root / "logs"
        self.executor = executor
        self.tracker = tracker
        self.use_cache = use_cache
        self.listener = listener or (lambda record: None)
        self.pipeline_name = pipeline_name

    def run(self) -> RunResult:
        run_id = uuid.uuid4().hex
        records = {node.name: StepRecord(node.name, params=dict(node.params)) for node in self.graph}
        result = RunResult(run_id, self.pipeline_name, self.graph, self.store, records, time.time())
        for node in self.graph:
            records[node.name].file_digests = file_inputs(node.params, node.step.hints(), self.project_root, node.name)
        import cloudpickle

        blobs = {node.name: cloudpickle.dumps(node.step) for node in self.graph}
        tracking = _TrackingThread(self.tracker, result)
        sorter = self.graph.sorter()
        running: dict[Future[TaskResult], str] = {}
        interrupted = True
        try:
            while sorter.is_active():
                for name in self.graph.ready_in_order(sorter.get_ready()):
                    node, record = self.graph.nodes[name], records[name]
                    blocked = self._failed_upstream(node, records)
                    if blocked:
                        record.state, record.skipped_because = "skipped", blocked
                        self._emit(record, tracking)
                        sorter.done(name)
                        continue
                    record.key = self._key(node, record, records)
                    entry = self.cache.get(record.key) if self.use_cache else None
                    if entry is not None:
                        now = time.time()
                        record.state, record.started, record.ended = "cached", now, now
                        record.outputs, record.metrics, record.files = entry.outputs, entry.metrics, entry.files
                        self._emit(record, tracking)
                        sorter.done(name)
                        continue
                    record.state, record.started = "running", time.time()
                    running[self.executor.submit(self._task(node, record, records, blobs[name], run_id))] = name
                    self.listener(record)
                tracking.raise_if_start_failed()
                if not running:
                    continue  # steps served from the cache or skipped made others ready
                done, _ = wait([*running, *tracking.watch()], return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future, "")
                    if name:
                        self._finish(records[name], future, tracking)
                        sorter.done(name)
            interrupted = False
        finally:
            self.executor.shutdown(kill=interrupted)
            for record in records.values():
                if record.state in ("pending", "running"):
                    record.state, record.error = "failed", "interrupted"
            result.ended = time.time()
            tracking.finish(raise_errors=not interrupted)
        return result

    def _emit(self, record: StepRecord, tracking: _TrackingThread) -> None:
        self.listener(record)
        tracking.log_step(record)

    def _failed_upstream(self, node: Node, records: dict[str, StepRecord]) -> str:
        for ref in node.inputs.values():
            if records[ref.node].state in ("failed", "skipped"):
                return ref.node if records[ref.node].state == "failed" else records[ref.node].skipped_because
        return ""

    def _key(self, node: Node, record: StepRecord, records: dict[str, StepRecord]) -> str:
        inputs = {param: records[ref.node].outputs[ref.output].digest for param, ref in node.inputs.items()}
        return cache_key(code_digest(node.step), node.params, inputs, record.file_digests, node.outputs)

    def _task(self, node: Node, record: StepRecord, records: dict[str, StepRecord], blob: bytes,
              run_id: str) -> Task:
        return Task(
            step=node.name,
            key=record.key,
            step_blob=blob,
            inputs={param: records[ref.node].outputs[ref.output] for param, ref in node.inputs.items()},
            params=dict(node.params),
            store_root=str(self.store.root),
            log_path=str(self.log_root / run_id / f"{node.name}.log"),
            project_root=str(self.project_root),
            sys_path=[p for p in sys.path if p],
        )

    def _finish(self, record: StepRecord, future: Future[TaskResult], tracking: _TrackingThread) -> None:
        try:
            outcome = future.result()
        except BrokenProcessPool as err:
            outcome = TaskResult(record.name, False, record.started, time.time(), 0,
                                 error=f"the worker process running it died ({err})")
        record.ended = outcome.ended
        record.started = outcome.started or record.started
        if outcome.ok:
            record.state = "done"
            record.outputs, record.metrics, record.files = outcome.outputs, outcome.metrics, outcome.files
            self.cache.put(record.key, CacheEntry(record.name, outcome.outputs, outcome.metrics, outcome.files,
                                                  outcome.ended - outcome.started))
        else:
            record.state = "failed"
            record.error, record.traceback, record.location = outcome.error, outcome.traceback, outcome.location
        self._emit(record, tracking)


class _TrackingThread:
    """Hands the tracker its calls, in order, on one background thread.

    Tracking libraries are slow to import (MLflow: about 2 s) and write to a database; on their own
    thread they never hold up scheduling, and a run's steps proceed while the tracker starts.
    """

    def __init__(self, tracker: Tracker | None, result: RunResult) -> None:
        self.tracker = tracker
        self.result = result
        self.calls: list[Future[Any]] = []
        self.pool: ThreadPoolExecutor | None = None
        if tracker is not None:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="mloop-tracking")
            self.calls.append(self.pool.submit(self._start))

    def _start(self) -> None:
        assert self.tracker is not None
        self.result.tracking_id = self.tracker.start(self.result)

    def watch(self) -> list[Future[Any]]:
        """The tracker's start while it is under way: the scheduler wakes when it ends (it may fail)."""
        return [self.calls[0]] if self.calls and not self.calls[0].done() else []

    def raise_if_start_failed(self) -> None:
        """Stop the run early when the tracker could not start (an unreachable server, a bad URI)."""
        if self.calls and self.calls[0].done():
            error = self.calls[0].exception()
            if error is not None:
                raise error

    def log_step(self, record: StepRecord) -> None:
        if self.pool is not None and self.tracker is not None:
            self.calls.append(self.pool.submit(self.tracker.log_step, self.result, record))

    def finish(self, *, raise_errors: bool) -> None:
        if self.pool is None or self.tracker is None:
            return
        self.calls.append(self.pool.submit(self.tracker.finish, self.result))
        self.pool.shutdown(wait=True)
        errors = [error for call in self.calls if (error := call.exception()) is not None]
        if errors and raise_errors:
            raise errors[0]  # the first failure explains the rest (they need a started run)


def raise_for_failures(result: RunResult) -> None:
    """Raise StepFailed naming each failed step, its error and where, if the run did not succeed."""
    failed = {name: r for name, r in result.steps.items() if r.state == "failed"}
    if not failed:
        return
    lines = [f"step {name!r} failed: {r.error}" + (f" ({r.location})" if r.location else "") for name, r in failed.items()]
    skipped = [name for name, r in result.steps.items() if r.state == "skipped"]
    if skipped:
        lines.append(f"not run because of it: {', '.join(skipped)}")
    finished = sum(r.state in ("cached", "done") for r in result.steps.values())
    raise StepFailed(
        "; ".join(lines),
        hint=f"fix the step and run 'mloop run' again: the {finished} step(s) that finished come from the cache "
        "(--verbose shows the traceback)",
        failures={name: r.traceback for name, r in failed.items()},
    )
