"""mloop: from a data scientist's pipeline to a monitored production endpoint, and back.

Public API (everything else is internal)::

    from mloop import step, pipeline, ModelCandidate, log_metric, log_figure, run
"""

from collections.abc import Mapping as _Mapping
from pathlib import Path as _Path
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from mloop._version import __version__
from mloop.errors import MloopError
from mloop.pipeline.artifacts import register_materializer
from mloop.pipeline.candidate import ModelCandidate
from mloop.pipeline.context import log_figure, log_file, log_metric, log_metrics
from mloop.pipeline.dsl import Pipeline, Step, pipeline, step, use_project_runner

if _TYPE_CHECKING:
    from mloop.project import ProjectRun


def run(pipeline: Pipeline, *, params: _Mapping[str, _Mapping[str, _Any]] | None = None,
        project: str | _Path | None = None, track: bool = True, use_cache: bool = True,
        **kwargs: _Any) -> "ProjectRun":
    """Run ``pipeline`` in a project (the folder of ``mloop.toml``; default: the nearest one).

    The same as ``mloop run`` from a notebook or script: cached, tracked and registered.
    ``params`` overrides step parameters (``{"train": {"C": 0.5}}``); ``kwargs`` go to the pipeline
    function. Raises StepFailed (after the other branches finished) if a step failed.
    """
    from mloop.config import load_project
    from mloop.pipeline.runner import raise_for_failures
    from mloop.project import run_project

    cfg = load_project(_Path(project) if project is not None else None)
    outcome = run_project(cfg, pipe=pipeline, params={k: dict(v) for k, v in (params or {}).items()},
                          track=track, use_cache=use_cache, **kwargs)
    raise_for_failures(outcome.result)
    return outcome


use_project_runner(run)  # Pipeline.run is this function (the engine does not import what is above it)
del use_project_runner

__all__ = [
    "MloopError",
    "ModelCandidate",
    "Pipeline",
    "Step",
    "__version__",
    "log_figure",
    "log_file",
    "log_metric",
    "log_metrics",
    "pipeline",
    "register_materializer",
    "run",
    "step",
]
