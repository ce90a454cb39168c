"""Generated CI/CD workflows (``mloop ci init``): one module per provider behind ``CIProvider``, picked by
name from ``PROVIDERS``.

A workflow runs the loop on every pull (merge) request and push to the default branch: test → train →
gate → report (a comment on the request) and, on the default branch, publish (the serving image) →
deploy (kubectl apply). What each job runs is the provider-independent plan in ``plan.py``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.automation.ci.plan import CIProject, describe_project
from mloop.config import ProjectConfig
from mloop.errors import ConfigError, did_you_mean

PROVIDERS: dict[str, str] = {
    "github": "mloop.automation.ci.github:GitHub",
    "gitlab": "mloop.automation.ci.gitlab:GitLab",
}


@dataclass(frozen=True)
class Secret:
    """A secret (or CI/CD variable) the user sets in the provider's settings; workflows only name it."""

    name: str
    what: str
    required: bool = True


class CIProvider(ABC):
    """Turns the plan of a project's CI into one provider's workflow file."""

    name: str  # e.g. "GitHub Actions"
    path: str  # the workflow file, relative to the repository's root

    @abstractmethod
    def workflow(self, project: CIProject) -> dict[str, Any]:
        """The workflow as data (what is written as YAML)."""

    @abstractmethod
    def secrets(self, project: CIProject) -> list[Secret]:
        """The secrets the workflow names, for the user to set."""

    def render(self, project: CIProject) -> str:
        """The workflow file's text: a header comment (what it does, the secrets) and the YAML."""
        from mloop.automation.ci._yaml import dump

        where = f" in {project.folder}/" if project.folder else ""
        lines = [f"# mloop's CI/CD for the project {project.model}{where} ({self.name}), written by `mloop ci init`.",
                 "# Jobs: test -> train -> gate -> report (on pull/merge requests: one comment, updated by later runs)",
                 f"#       -> publish (the serving image) -> deploy (kubectl apply): on {project.default_branch} only.",
                 "# Edit it freely; `mloop ci init --force` writes it anew. Secrets and variables it reads:"]
        lines += [f"#   {s.name}{'' if s.required else ' (optional)'}: {s.what}" for s in self.secrets(project)]
        lines += [f"# Note: {note}" for note in notes(project)]
        return "\n".join(lines) + "\n\n" + dump(self.workflow(project))


def data_secrets(project: CIProject) -> list[Secret]:
    """The DVC remote's credentials, for the jobs that pull the data."""
    return [Secret(name, f"for the DVC remote {project.data_remote} (mloop data pull)")
            for name in project.remote_credentials]


def notes(project: CIProject) -> list[str]:
    """What the user should know about the generated workflow for this project."""
    found = []
    if project.dvc and not project.data_remote:
        found.append("[data] remote is empty in mloop.toml: the data is on this machine only and CI cannot pull "
                     "it; set it to a remote CI reaches (e.g. s3://bucket/path) and run mloop data push")
    if not project.data_files:
        found.append("no data file (CSV, Parquet or .dvc) was found in the project: the gate checks no data drift")
    return found


@dataclass(frozen=True)
class WrittenWorkflow:
    """What ``write_workflow`` wrote."""

    provider: str
    path: Path
    secrets: list[Secret]
    project: CIProject
    notes: list[str]


def get_provider(name: str) -> CIProvider:
    """The CI provider registered under ``name`` (``github``, ``gitlab``)."""
    target = PROVIDERS.get(name)
    if target is None:
        raise ConfigError(f"unknown CI provider {name!r}; {did_you_mean(name, PROVIDERS)}",
                          hint="use --provider " + " or --provider ".join(PROVIDERS))
    module_name, _, cls_name = target.partition(":")
    cls: type[CIProvider] = getattr(importlib.import_module(module_name), cls_name)
    return cls()


def write_workflow(cfg: ProjectConfig, provider: str, *, force: bool = False,
                   default_branch: str | None = None, mloop_requirement: str = "") -> WrittenWorkflow:
    """Write ``provider``'s workflow for the project at its git repository's root. Refuses (ConfigError) to
    replace an existing file unless ``force``, and outside a git repository."""
    from mloop._fs import atomic_write_text

    chosen = get_provider(provider)
    project = describe_project(cfg, default_branch=default_branch, mloop_requirement=mloop_requirement)
    path = project.repo_root / chosen.path
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; mloop leaves it as it is",
                          hint=f"replace it with: mloop ci init --provider {provider} --force")
    atomic_write_text(path, chosen.render(project))
    return WrittenWorkflow(provider, path, chosen.secrets(project), project, notes(project))


__all__ = ["PROVIDERS", "CIProject", "CIProvider", "Secret", "WrittenWorkflow", "data_secrets", "describe_project",
           "get_provider", "notes", "write_workflow"]
