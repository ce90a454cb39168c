"""Deployment targets: one module each behind ``DeployTarget``, picked by name from ``TARGETS``.

Every operation returns a ``DeployResult`` (what happened, to what, where), never a message: the CLI,
the UI and the automation agent each say it their own way.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mloop.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from mloop.config import ProjectConfig

TARGETS: dict[str, str] = {
    "local": "mloop.deploy.local:LocalTarget",
    "kubernetes": "mloop.deploy.kubernetes:KubernetesTarget",
}

Action = Literal["started", "swapped", "unchanged", "rolled_back", "stopped", "written", "promoted"]


@dataclass
class DeployOptions:
    """What a deployment may be told; a target reads the options that concern it."""

    name: str | None = None  # the deployment's name (default: the model's)
    host: str = "127.0.0.1"  # local
    port: int | None = None  # local (default: a free port)
    out: Path | None = None  # kubernetes: folder of the artifacts
    image: str = ""  # kubernetes: image name (default: NAME:vVERSION)
    replicas: int = 1  # kubernetes
    apply: bool = False  # kubernetes: run kubectl apply afterwards


@dataclass
class DeployResult:
    """What a deployment operation did."""

    target: str
    action: Action
    name: str
    model: str
    version: str
    previous_version: str | None = None  # swapped, rolled_back, promoted
    url: str = ""  # local: where it serves
    pid: int | None = None  # local
    log: Path | None = None  # local: the server's log
    artifacts: Path | None = None  # kubernetes: the folder written
    applied: str = ""  # kubernetes --apply: what kubectl said


class DeployTarget(ABC):
    """Puts a registered model version somewhere it serves."""

    def __init__(self, cfg: ProjectConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def deploy(self, uri: str, options: DeployOptions) -> DeployResult:
        """Deploy ``models:/NAME/VERSION`` (or ``@ALIAS``); raises DeployError, leaving what served before serving."""


def get_target(name: str, cfg: ProjectConfig) -> DeployTarget:
    """The deploy target registered under ``name`` (``local``, ``kubernetes``)."""
    target = TARGETS.get(name)
    if target is None:
        raise ConfigError(f"unknown deploy target {name!r}; {did_you_mean(name, TARGETS)}",
                          hint="use --target " + " or --target ".join(TARGETS))
    module_name, _, cls_name = target.partition(":")
    cls: type[DeployTarget] = getattr(importlib.import_module(module_name), cls_name)
    return cls(cfg)
