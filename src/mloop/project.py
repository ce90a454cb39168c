"""Run a project's pipeline end to end: build, execute, track in MLflow, register the candidate.

This is what ``mloop run`` and ``mloop.run(pipeline)`` (``Pipeline.run``) call. A project's pipeline
module is loaded from its file under a module name unique to the project, so one process (a
notebook, the UI, the automation agent) can hold several projects without one's ``pipeline``
module standing in for another's.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop._fs import atomic_write_text
from mloop.config import ProjectConfig, load_project
from mloop.errors import ConfigError, MloopError, PipelineError, did_you_mean
from mloop.pipeline.dsl import Pipeline

if TYPE_CHECKING:
    from mloop.pipeline.runner import Listener, RunResult
    from mloop.registry.register import Registration

_LOADING = threading.Lock()


@dataclass
class ProjectRun:
    """A finished run of a project: the engine's result and, if a model was registered, its registration."""

    result: RunResult
    registration: Registration | None = None

    @property
    def tracking_id(self) -> str:
        """MLflow's id of the run ('' when untracked): what ``mloop runs show`` takes."""
        return self.result.tracking_id


def module_name_for(root: Path, module: str) -> str:
    """The name a project's module is loaded under: unique to the project folder."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    return f"mloop_project_{digest}.{module}"


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def load_pipeline(cfg: ProjectConfig) -> Pipeline:
    """The pipeline named by ``[project] pipeline`` (``module:attribute``), loaded from the project's file.

    The file is executed anew on every call (an edited pipeline is picked up) under a module name
    unique to the project (``module_name_for``). The module is in ``sys.modules`` only while it runs
    (dataclasses and pydantic look their module up there while a class is created), so the import
    state of the process is the same afterwards; and the project folder is never put on ``sys.path``.
    """
    module_name, _, attr = cfg.settings.project.pipeline.partition(":")
    path = _module_file(cfg.root, module_name)
    if path is None:
        raise ConfigError(
            f"pipeline module {module_name!r} not found in {cfg.root} (no {module_name.replace('.', '/')}.py)",
            hint=f"check [project] pipeline in {cfg.root / 'mloop.toml'} (module:attribute)",
        )
    unique = module_name_for(cfg.root, module_name)
    spec = importlib.util.spec_from_file_location(unique, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        with _LOADING:
            sys.modules[unique] = module
            try:
                spec.loader.exec_module(module)
            finally:
                sys.modules.pop(unique, None)
    except ModuleNotFoundError as err:
        if err.name and _module_file(cfg.root, err.name) is not None:
            raise PipelineError(
                f"{path.name} imports {err.name!r}, a module in the project folder; mloop loads the pipeline from its "
                "file and does not put the project folder on the import path",
                hint=f"keep the steps in {path.name}, or make the helpers an installed package (pip install -e .)",
            ) from err
        raise PipelineError(f"importing {path.name} failed: {err}", hint="install the missing package") from err
    except MloopError:
        raise
    except Exception as err:
        raise PipelineError(
            f"importing pipeline module {path.name} raised {type(err).__name__}: {err}",
            hint="fix the module; --verbose shows the traceback",
        ) from err
    return _pipeline_in(module, module_name, attr)


def _pipeline_in(module: types.ModuleType, module_name: str, attr: str) -> Pipeline:
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
    """Build, run, track and register. Step failures are in the result (see ``raise_for_failures``).

    A registration that fails raises its error (``ModelError``, ``RegistryError``, ``TrackingError``)
    after the tracked run is marked failed with the reason.
    """
    from mloop.pipeline.executors import get_executor
    from mloop.pipeline.runner import Runner

    cfg = cfg or load_project()
    pipe = pipe or load_pipeline(cfg)
    graph = pipe.build(merged_params(cfg, params), **pipeline_kwargs)
    registering = track and register and graph.candidate is not None
    if registering:
        from mloop.registry.metrics import check_metric

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
    if result.ok and registering:
        from mloop.registry.register import register_candidate

        assert tracker is not None
        try:
            registration = register_candidate(cfg, result)
        except BaseException as err:
            with contextlib.suppress(MloopError):  # the registration's own error is the one to report
                tracker.mark_failed(f"registration failed: {getattr(err, 'message', None) or err}")
            raise
    return ProjectRun(result, registration)


_TEMPLATE_FILES = {
    "mloop.toml.tmpl": "mloop.toml",
    "pipeline.py.tmpl": "pipeline.py",
    "test_pipeline.py.tmpl": "tests/test_pipeline.py",
    "gitignore.tmpl": ".gitignore",
    "README.md.tmpl": "README.md",
}


def sample_data(rows: int = 300, seed: int = 0) -> str:
    """A small, separable two-class CSV so a new project has something real to train on."""
    import random

    rng = random.Random(seed)
    lines = ["x1,x2,x3,x4,target"]
    for _ in range(rows):
        x = [rng.gauss(0, 1) for _ in range(4)]
        target = int(1.5 * x[0] - x[1] + 0.5 * x[2] + rng.gauss(0, 0.5) > 0)
        lines.append(",".join(f"{v:.5f}" for v in x) + f",{target}")
    return "\n".join(lines) + "\n"


def create_project(name: str, parent: Path) -> Path:
    """A new project folder ``parent/name`` that ``mloop run`` runs straight away; returns its root."""
    import re
    from importlib import resources
    from string import Template

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name):
        raise ConfigError(f"project name {name!r} must start with a letter and use only letters, digits, _ and -",
                          hint="for example: mloop init churn_model")
    root = parent / name
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} exists and is not empty", hint="pick another name or remove the folder")
    templates = resources.files("mloop") / "templates" / "project"
    for source, target in _TEMPLATE_FILES.items():
        text = Template(templates.joinpath(source).read_text(encoding="utf-8")).safe_substitute(name=name)
        atomic_write_text(root / target, text)
    atomic_write_text(root / "data" / "data.csv", sample_data())
    return root
