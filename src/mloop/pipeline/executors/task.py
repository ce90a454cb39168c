"""A step task and its result: what crosses the process boundary, and the code a worker runs."""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mloop.pipeline import context
from mloop.pipeline.artifacts import ArtifactRef, ArtifactStore
from mloop.pipeline.cache import is_file_param


@dataclass
class Task:
    """One step to run. ``step_blob`` is the Step, cloudpickled: by reference when its module can be
    imported, by value otherwise (a notebook cell, a nested function)."""

    step: str
    key: str
    step_blob: bytes
    inputs: dict[str, ArtifactRef]
    params: dict[str, Any]
    store_root: str
    log_path: str
    project_root: str
    sys_path: list[str] = field(default_factory=list)


@dataclass
class TaskResult:
    step: str
    ok: bool
    started: float
    ended: float
    pid: int
    outputs: dict[str, ArtifactRef] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    files: dict[str, ArtifactRef] = field(default_factory=dict)
    error: str = ""
    traceback: str = ""
    location: str = ""


def execute(task: Task) -> TaskResult:
    """Load the inputs, call the step, store its outputs. Never raises: failures come back as data."""
    started = time.time()
    store = ArtifactStore(Path(task.store_root))
    ctx = context.new_context(task.step, store.root.parent / "tmp")
    token = context.bind(ctx)
    log_path = Path(task.log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    step_file = ""
    try:
        for entry in reversed(task.sys_path):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        step = pickle.loads(task.step_blob)  # noqa: S301 - pickled by this run's own parent process
        step_file = getattr(getattr(step.fn, "__code__", None), "co_filename", "")
        kwargs = {name: store.get(ref) for name, ref in task.inputs.items()}
        kwargs.update(_resolve_paths(task.params, step.hints(), Path(task.project_root)))
        with log_path.open("w", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            returned = step.fn(**kwargs)
        values = _split_outputs(step, returned)
        outputs = {name: store.put(value) for name, value in values.items()}
        files = {name: store.put_file(path) for name, path in ctx.files.items()}
        if log_path.stat().st_size:
            files["step.log"] = store.put_file(log_path)
        return TaskResult(task.step, True, started, time.time(), os.getpid(), outputs, dict(ctx.metrics), files)
    except BaseException as err:  # noqa: BLE001 - a step's failure is reported, not raised, across processes
        if isinstance(err, KeyboardInterrupt):
            raise
        where = _user_location(err, step_file)
        return TaskResult(task.step, False, started, time.time(), os.getpid(),
                          error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(), location=where)
    finally:
        context.unbind(token)
        shutil.rmtree(ctx.workdir, ignore_errors=True)


def _user_location(err: BaseException, step_file: str) -> str:
    """Where in the user's code the step failed: the last line of the step's own file in the traceback; else
    the last line outside mloop and installed packages; else the last line."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return ""
    own = [f for f in frames if step_file and f.filename == step_file]
    outside = [f for f in frames if not any(part in f.filename.replace(os.sep, "/")
                                            for part in ("/mloop/", "/site-packages/", "/dist-packages/"))]
    frame = (own or outside or frames)[-1]
    return f"{frame.filename}:{frame.lineno}"


def _resolve_paths(params: dict[str, Any], hints: dict[str, Any], root: Path) -> dict[str, Any]:
    resolved = dict(params)
    for name, value in params.items():
        if is_file_param(value, hints.get(name)):
            path = Path(value)
            resolved[name] = path if path.is_absolute() else root / path
    return resolved


def _split_outputs(step: Any, returned: Any) -> dict[str, Any]:
    names = step.outputs
    if len(names) == 1:
        return {names[0]: returned}
    if isinstance(returned, dict) and set(returned) == set(names):
        return dict(returned)
    if isinstance(returned, (tuple, list)) and len(returned) == len(names):
        return dict(zip(names, returned, strict=True))
    raise TypeError(
        f"step {step.name!r} declares outputs {list(names)} but returned "
        f"{type(returned).__name__}{'' if not hasattr(returned, '__len__') else f' of length {len(returned)}'}; "
        f"return a tuple of {len(names)} values"
    )
