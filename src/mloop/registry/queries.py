"""What the model registry holds for a project, as typed objects (for the CLI, the UI and the agent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mloop.tracking.client import mlflow_client, tracking_error

if TYPE_CHECKING:
    from mloop.bundle.format import BundleInfo
    from mloop.config import ProjectConfig


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
class VersionDetail:
    """One registered version with what its bundle says: what it takes, how it scored, where it came from."""

    summary: VersionSummary
    info: BundleInfo


def version_detail(cfg: ProjectConfig, model: str) -> VersionDetail:
    """``NAME`` (its champion), ``NAME/VERSION``, or a ``models:/`` URI: the version and its bundle."""
    from mloop.registry.fetch import fetch_bundle, model_uri, parse_model_uri, resolve_version

    model = model_uri(model)
    name, _, _ = parse_model_uri(model)
    version = resolve_version(cfg, model)
    found = [v for m in registered_models(cfg) if m.name == name for v in m.versions if v.version == version]
    summary = found[0] if found else VersionSummary(name, version, [], 0, "", "")
    return VersionDetail(summary, fetch_bundle(cfg, f"models:/{name}/{version}").info)
