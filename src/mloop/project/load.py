"""Load a project's pipeline from its file, under a module name unique to the project.

One process (a notebook, the UI, the automation agent) can so hold several projects without one's
``pipeline`` module standing in for another's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
import types
from pathlib import Path

from mloop.config import ProjectConfig
from mloop.errors import ConfigError, MloopError, PipelineError, did_you_mean
from mloop.pipeline.dsl import Pipeline

_LOADING = threading.Lock()


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
