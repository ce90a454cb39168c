"""Executors run step tasks; the runner decides what runs, an executor only how.

Executors are picked by name; each lives in its own module, imported only when chosen.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from concurrent.futures import Future
from typing import TYPE_CHECKING

from mloop.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from mloop.pipeline.executors.task import Task, TaskResult

EXECUTORS: dict[str, str] = {
    "local": "mloop.pipeline.executors.local:LocalExecutor",
    "inline": "mloop.pipeline.executors.local:InlineExecutor",
}


class Executor(ABC):
    """Runs tasks somewhere and hands back futures of their results."""

    @abstractmethod
    def submit(self, task: Task) -> Future[TaskResult]: ...

    @abstractmethod
    def shutdown(self, *, kill: bool = False) -> None:
        """Release workers; ``kill`` stops running tasks at once (the run was interrupted)."""


def get_executor(name: str, **options: object) -> Executor:
    """The executor registered under ``name`` (``local``, ``inline``)."""
    target = EXECUTORS.get(name)
    if target is None:
        raise ConfigError(
            f"unknown executor {name!r}; {did_you_mean(name, EXECUTORS)}",
            hint="set [executor] name in mloop.toml to one of: " + ", ".join(EXECUTORS),
        )
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**options)  # type: ignore[no-any-return]
