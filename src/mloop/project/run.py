"""Run a project's pipeline end to end: build, execute, track in MLflow, register the candidate.

This is what ``mloop run`` and ``mloop.run(pipeline)`` (``Pipeline.run``) call.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mloop.config import ProjectConfig, load_project
from mloop.errors import MloopError
from mloop.pipeline.dsl import Pipeline
from mloop.project.load import load_pipeline

if TYPE_CHECKING:
    from mloop.pipeline.runner import Listener, RunResult
    from mloop.registry.register import Registration


@dataclass
class ProjectRun:
    """A finished run of a project: the engine's result and, if a model was registered, its registration."""

    result: RunResult
    registration: Registration | None = None

    @property
    def tracking_id(self) -> str:
        """MLflow's id of the run ('' when untracked): what ``mloop runs show`` takes."""
        return self.result.tracking_id


def merged_params(cfg: ProjectConfig, overrides: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    merged = {step: dict(values) for step, values in cfg.settings.params.items()}
    for step, values in (overrides or {}).items():
        merged.setdefault(step, {}).update(values)
    return merged


def run_project(cfg: ProjectConfig | None = None, *, pipe: Pipeline | None = None,
                params: dict[str, dict[str, Any]] | None = None, track: bool = True, use_cache: bool = True,
                register: bool = True, listener: Listener | None = None, promote: bool | None = None,
                version_tags: dict[str, str] | None = None, **pipeline_kwargs: Any) -> ProjectRun:
    """Build, run, track and register. Step failures are in the result (see ``raise_for_failures``).

    A registration that fails raises its error (``ModelError``, ``RegistryError``, ``TrackingError``)
    after the tracked run is marked failed with the reason. ``promote`` and ``version_tags``: see
    ``register_candidate``; ``promote`` defaults to whether the project leaves the champion to its agent
    (an ``[automation]`` table: then a run registers a challenger, which the agent gates and rolls out).
    """
    from mloop.pipeline.executors import get_executor
    from mloop.pipeline.runner import Runner

    cfg = cfg or load_project()
    pipe = pipe or load_pipeline(cfg)
    graph = pipe.build(merged_params(cfg, params), **pipeline_kwargs)
    registering = track and register and graph.candidate is not None
    workers = cfg.settings.executor.max_workers or max(os.cpu_count() or 1, graph.width())
    executor = get_executor(cfg.settings.executor.name, max_workers=workers)
    tracker = None
    if track:
        from mloop.tracking.mlflow_tracker import MlflowTracker

        tracker = MlflowTracker(cfg, source=cfg.settings.project.pipeline)
    runner = Runner(graph, store_root=cfg.store, project_root=cfg.root, executor=executor, tracker=tracker,
                    use_cache=use_cache, listener=listener, pipeline_name=pipe.name)
    result = runner.run()
    registration = None
    if result.ok and registering:
        from mloop.registry.register import register_candidate

        assert tracker is not None
        try:
            registration = register_candidate(cfg, result, [v.as_dict() for v in tracker.data_versions],
                                              promote=promote is not False, tags=version_tags,
                                              defer_to_agent=promote is None and cfg.settings.agent_owns_champion)
        except BaseException as err:
            with contextlib.suppress(MloopError):  # the registration's own error is the one to report
                tracker.mark_failed(f"registration failed: {getattr(err, 'message', None) or err}")
            raise
    return ProjectRun(result, registration)
