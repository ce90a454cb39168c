"""Run a project's pipeline end to end: build, execute, track in MLflow, register the candidate.

This is what ``mloop run`` and ``Pipeline.run()`` both call.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.config import ProjectConfig, load_project
from mloop.errors import ConfigError, MloopError, PipelineError, did_you_mean
from mloop.pipeline.dsl import Pipeline

if TYPE_CHECKING:
    from mloop.pipeline.runner import Listener, RunResult
    from mloop.registry.register import Registration


@dataclass
class ProjectRun:
    result: RunResult
    registration: Registration | None = None

    @property
    def run_id(self) -> str:
        return self.result.run_id


def load_pipeline(cfg: ProjectConfig) -> Pipeline:
    """Import the pipeline named by ``[project] pipeline`` (``module:attribute``) from the project folder."""
    module_name, _, attr = cfg.settings.project.pipeline.partition(":")
    root = str(cfg.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name or (err.name and module_name.startswith(err.name + ".")):
            raise ConfigError(
                f"pipeline module {module_name!r} not found in {root}",
                hint=f"check [project] pipeline in {cfg.root / 'mloop.toml'} (module:attribute)",
            ) from err
        raise PipelineError(f"importing {module_name!r} failed: {err}", hint="install the missing package") from err
    except MloopError:
        raise
    except Exception as err:
        raise PipelineError(
            f"importing pipeline module {module_name!r} raised {type(err).__name__}: {err}",
            hint="fix the module; --verbose shows the traceback",
        ) from err
    found = getattr(module, attr, None)
    if not isinstance(found, Pipeline):
        pipelines = [name for name, value in vars(module).items() if isinstance(value, Pipeline)]
        what = "not found" if found is None else f"is a {type(found).__name__}, not a @pipeline"
        raise ConfigError(
            f"{module_name}:{attr} {what}; {did_you_mean(attr, pipelines)}",
            hint="decorate the pipeline function with @mloop.pipeline and name it in [project] pipeline",
        )
    return found


def merged_params(cfg: ProjectConfig, overrides: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    merged = {step: dict(values) for step, values in cfg.settings.params.items()}
    for step, values in (overrides or {}).items():
        merged.setdefault(step, {}).update(values)
    return merged


def run_project(cfg: ProjectConfig | None = None, *, pipe: Pipeline | None = None,
                params: dict[str, dict[str, Any]] | None = None, track: bool = True, use_cache: bool = True,
                register: bool = True, listener: Listener | None = None, **pipeline_kwargs: Any) -> ProjectRun:
    """Build, run, track and register. Step failures are in the result (see ``raise_for_failures``)."""
    from mloop.pipeline.executors import get_executor
    from mloop.pipeline.runner import Runner

    cfg = cfg or load_project()
    pipe = pipe or load_pipeline(cfg)
    graph = pipe.build(merged_params(cfg, params), **pipeline_kwargs)
    if track and register and "model" in graph.results:
        from mloop.registry.promotion import check_metric

        check_metric(cfg.settings.promotion.metric)  # a config mistake is reported before the run, not after
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
    if result.ok and track and register and "model" in graph.results:
        from mloop.registry.register import register_candidate

        registration = register_candidate(cfg, result)
    return ProjectRun(result, registration)


def project_for(path: str | Path | None) -> ProjectConfig:
    return load_project(Path(path) if path is not None else None)
