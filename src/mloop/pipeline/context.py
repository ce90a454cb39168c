"""What a running step can record: metrics and files (figures, reports) for its tracked run.

The functions work in any worker process: they collect into the current step's context, and the
runner sends what was collected to the tracker. Called outside a pipeline run they do nothing, so
a step function stays testable on its own.
"""

from __future__ import annotations

import contextvars
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mloop.errors import MloopError


@dataclass
class StepContext:
    step: str
    workdir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


_current: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar("mloop_step", default=None)


def log_metric(name: str, value: float) -> None:
    """Record a metric of the running step (shown in ``mloop runs`` and MLflow)."""
    ctx = _current.get()
    if ctx is None:
        return
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise MloopError(f"metric {name!r} must be a number, got {value!r}") from err
    if math.isnan(number):
        raise MloopError(f"metric {name!r} is NaN", hint="log only metrics that were computed")
    ctx.metrics[name] = number


def log_metrics(metrics: dict[str, float]) -> None:
    for name, value in metrics.items():
        log_metric(name, value)


def log_figure(figure: Any, filename: str) -> None:
    """Save a matplotlib figure as ``filename`` (PNG) among the running step's artifacts."""
    ctx = _current.get()
    if ctx is None:
        return
    path = ctx.workdir / Path(filename).name
    figure.savefig(path, dpi=100, bbox_inches="tight")
    ctx.files[path.name] = path


def log_file(path: str | Path, name: str | None = None) -> None:
    """Attach a file the step wrote to its tracked run."""
    ctx = _current.get()
    if ctx is None:
        return
    source = Path(path)
    ctx.files[name or source.name] = source


def new_context(step: str, scratch: Path | None = None) -> StepContext:
    """A context with a fresh work folder in ``scratch`` (the project's ``.mloop/tmp``, where ``mloop doctor``
    finds what a killed run left; the system's temporary folder if None)."""
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    return StepContext(step, Path(tempfile.mkdtemp(prefix=f"mloop-{step}-", dir=scratch)))


def bind(ctx: StepContext) -> contextvars.Token[StepContext | None]:
    return _current.set(ctx)


def unbind(token: contextvars.Token[StepContext | None]) -> None:
    _current.reset(token)
