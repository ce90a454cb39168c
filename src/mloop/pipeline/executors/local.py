"""Run steps in a pool of forked worker processes on this machine (or inline, for debugging)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import sys
from typing import Any
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from mloop._proc import die_with_parent
from mloop.pipeline.executors import Executor
from mloop.pipeline.executors.task import Task, TaskResult, execute


# Libraries worth importing once in the fork server when the parent has them already.
PRELOAD_IF_LOADED = ("numpy", "pandas", "pyarrow", "scipy", "sklearn")


def _worker_start() -> None:
    """Tie a worker's life to the run's: a run killed with SIGKILL leaves no worker behind.

    The fork server exits when every holder of its "alive" pipe is gone, and it hands that pipe to each
    worker it forks, so by default it outlives a killed parent as long as its workers run, and they run
    as long as their step does. A worker never uses the inherited pipe (a worker that needs a fork server
    starts its own), so it closes it: the server then exits with the run, and the kernel kills the
    workers when their parent, the server, is gone.
    """
    from multiprocessing import forkserver

    server: Any = getattr(forkserver, "_forkserver")  # noqa: B009 (private: CPython's one fork server)
    if server._forkserver_alive_fd is not None and server._forkserver_pid is None:
        os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    die_with_parent()


class LocalExecutor(Executor):
    """Independent steps run at the same time, each in a worker process.

    Workers come from a fork server: a clean process that never ran user code, so a parent that
    has used OpenMP (scikit-learn, in a notebook or while registering) cannot hand a worker a
    deadlocked runtime, as a plain fork would. The server preloads mloop and whichever heavy
    libraries the parent had imported, so workers start in milliseconds. A step that crashes its
    process fails alone, without taking the run down.
    """

    def __init__(self, max_workers: int = 0) -> None:
        self.max_workers = max_workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def _context(self) -> multiprocessing.context.BaseContext:
        ctx = multiprocessing.get_context("forkserver")
        # Python keeps one fork server per process; what it preloads (module imports only) takes effect
        # when it is first started. Naming it is the one process-wide setting the engine makes.
        preload = ["mloop.pipeline.executors.task", *(m for m in PRELOAD_IF_LOADED if m in sys.modules)]
        ctx.set_forkserver_preload(preload)
        return ctx

    def submit(self, task: Task) -> Future[TaskResult]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.max_workers, mp_context=self._context(), initializer=_worker_start)
        try:
            return self._pool.submit(execute, task)
        except BrokenProcessPool:
            # A worker died (a crashing step): the runner failed its tasks; later steps get a fresh pool.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            return self.submit(task)

    def shutdown(self, *, kill: bool = False) -> None:
        if self._pool is None:
            return
        if kill:
            # ProcessPoolExecutor cannot stop a running task: terminate its workers instead.
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
        self._pool.shutdown(wait=not kill, cancel_futures=True)
        self._pool = None


class InlineExecutor(Executor):
    """Runs each step in this process, one at a time: for debuggers and profilers."""

    def __init__(self, max_workers: int = 0) -> None:
        del max_workers

    def submit(self, task: Task) -> Future[TaskResult]:
        future: Future[TaskResult] = Future()
        future.set_result(execute(task))
        return future

    def shutdown(self, *, kill: bool = False) -> None:
        pass
