"""What the model registry holds for a project, as typed objects (for the CLI, the UI and the agent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mloop.errors import RegistryError
from mloop.tracking.client import mlflow_client, tracking_error

if TYPE_CHECKING:
    from mloop.bundle.format import BundleInfo
    from mloop.config import ProjectConfig
    from mloop.tracking.queries import RunSummary


@dataclass
class VersionSummary:
    model: str
    version: str
    aliases: list[str]
    created_ms: int
    run_id: str
    promotion: str  # the gate's decision, in words


@dataclass
class RegisteredModel:
    name: str
    versions: list[VersionSummary] = field(default_factory=list)  # newest first


def registered_models(cfg: ProjectConfig) -> list[RegisteredModel]:
    """Every registered model of the project's registry with its versions, newest first."""
    from mloop.tracking.queries import store_exists

    if not store_exists(cfg):  # nothing tracked yet, and no store made to say so
        return []
    client = mlflow_client(cfg)
    try:
        found = []
        for model in client.search_registered_models(max_results=1000):
            by_version: dict[str, list[str]] = {}
            for alias, version in (model.aliases or {}).items():
                by_version.setdefault(str(version), []).append(alias)
            versions = sorted(client.search_model_versions(f"name = '{model.name}'"), key=lambda v: -int(v.version))
            found.append(RegisteredModel(model.name, [
                VersionSummary(model.name, str(v.version), sorted(by_version.get(str(v.version), [])),
                               int(v.creation_timestamp or 0), v.run_id or "", (v.tags or {}).get("mloop.promotion", ""))
                for v in versions]))
    except Exception as err:
        raise tracking_error(cfg, err) from err
    return found


@dataclass
class TaggedVersion:
    """A registered version with its tags: who made it (the agent tags its own) and what the gate decided."""

    model: str
    version: str
    created_ms: int
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)


def model_versions(cfg: ProjectConfig, model: str) -> list[TaggedVersion]:
    """Every version of ``model`` with its tags, oldest first ([] when no such model is registered);
    TrackingError when the store cannot be read."""
    client = mlflow_client(cfg)
    try:
        found = client.search_model_versions(f"name = '{model}'")
    except Exception as err:
        raise tracking_error(cfg, err) from err
    return sorted((TaggedVersion(model, str(v.version), int(v.creation_timestamp or 0), v.run_id or "",
                                 {str(k): str(val) for k, val in (v.tags or {}).items()}) for v in found),
                  key=lambda v: int(v.version))


def registered_at(cfg: ProjectConfig, model: str, version: str) -> int:
    """When version ``version`` of ``model`` was registered (ms since the epoch). With the number it names one
    version for good: a model deleted and registered again reuses the numbers, not the times. TrackingError when
    the store cannot be read or has no such version."""
    client = mlflow_client(cfg)
    try:
        return int(client.get_model_version(model, version).creation_timestamp or 0)
    except Exception as err:
        raise tracking_error(cfg, err) from err


@dataclass
class VersionDetail:
    """One registered version with what its bundle says: what it takes, how it scored, where it came from."""

    summary: VersionSummary
    info: BundleInfo


def version_detail(cfg: ProjectConfig, model: str) -> VersionDetail:
    """``NAME`` (its champion), ``NAME/VERSION``, or a ``models:/`` URI: the version and its bundle."""
    from mloop.registry.fetch import fetch_bundle_info, model_uri, parse_model_uri, resolve_version

    model = model_uri(model)
    name, _, _ = parse_model_uri(model)
    version = resolve_version(cfg, model)
    found = [v for m in registered_models(cfg) if m.name == name for v in m.versions if v.version == version]
    summary = found[0] if found else VersionSummary(name, version, [], 0, "", "")
    return VersionDetail(summary, fetch_bundle_info(cfg, f"models:/{name}/{version}"))


@dataclass
class Candidate:
    """The latest tracked run and the version it registered (or found registered already)."""

    run: RunSummary
    version: VersionSummary


def latest_candidate(cfg: ProjectConfig) -> Candidate:
    """The model version the project's latest tracked run put to the promotion gate.

    Raises RegistryError (with the command to run) when nothing was tracked, the latest run registered
    nothing (it failed, or its model was rejected), or its version is gone from the registry.
    """
    from mloop.tracking.queries import recent_runs

    runs = recent_runs(cfg, limit=1)
    if not runs:
        raise RegistryError("no tracked run yet: no candidate was put to the gate", hint="run the pipeline: mloop run")
    run = runs[0]
    if run.status != "FINISHED" or not run.model_version:
        said = f": {run.error}" if run.error else ""
        raise RegistryError(f"the latest run {run.id[:8]} ({run.status}) registered no candidate{said}",
                            hint=f"see it with: mloop runs show {run.id[:8]}")
    name = cfg.model_name
    found = [v for m in registered_models(cfg) if m.name == name for v in m.versions if v.version == run.model_version]
    if not found:
        raise RegistryError(f"the latest run {run.id[:8]} registered {name} v{run.model_version}, which is gone",
                            hint="list the versions: mloop models")
    return Candidate(run, found[0])
