"""The champion alias: read it, and move it (the agent after a passed watch, or a person's override).

Moves take the model's registry lock, as registration does, so a run registering at the same moment
decides against the champion of after the move, never of before.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from mloop._fs import file_lock
from mloop.errors import RegistryError
from mloop.registry.register import CHAMPION, _lock_name, _mlflow
from mloop.tracking.client import mlflow_client, tracking_error

if TYPE_CHECKING:
    from mloop.config import ProjectConfig

PROMOTED_AT, PROMOTED_BY = "mloop.promoted.at", "mloop.promoted.by"


def champion_version(cfg: ProjectConfig, name: str) -> str | None:
    """The version the champion alias points at, or None (no model, or no champion yet)."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(cfg)
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise tracking_error(cfg, err) from err
    except Exception as err:
        raise tracking_error(cfg, err) from err


def version_tags(cfg: ProjectConfig, name: str, version: str) -> dict[str, str]:
    """A version's tags; RegistryError naming the versions there are when it does not exist."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(cfg)
    try:
        return dict(client.get_model_version(name, version).tags or {})
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RegistryError(f"{name} has no version {version!r}",
                                hint="list the versions with: mloop models show " + name) from err
        raise tracking_error(cfg, err) from err


def set_version_tags(cfg: ProjectConfig, name: str, version: str, tags: dict[str, str]) -> None:
    client = mlflow_client(cfg)
    for key, value in tags.items():
        _mlflow(cfg, partial(client.set_model_version_tag, name, version, key, value[:5000]))


def move_champion(cfg: ProjectConfig, name: str, version: str, tags: dict[str, str] | None = None) -> str | None:
    """Point the champion alias at ``version`` (its ``tags`` set first); returns the version it left."""
    client = mlflow_client(cfg)
    existing = version_tags(cfg, name, version)  # it exists
    if PROMOTED_AT in existing:  # when it first became champion stays (later ones are in the audit log)
        tags = {k: v for k, v in (tags or {}).items() if k not in (PROMOTED_AT, PROMOTED_BY)}
    with file_lock(cfg.lock_path(f"registry-{_lock_name(name)}")):
        before = champion_version(cfg, name)
        set_version_tags(cfg, name, version, tags or {})
        _mlflow(cfg, lambda: client.set_registered_model_alias(name, CHAMPION, version))
    return before


def promotions(cfg: ProjectConfig, name: str) -> list[tuple[str, float, str]]:
    """(version, when, why) of every version that became champion: at registration, by the agent or by hand
    (the tags ``mloop.promoted.at`` and ``mloop.promotion`` / the agent's gate)."""
    from mloop.registry.register import PROMOTION

    client = mlflow_client(cfg)
    found = []
    for version in _mlflow(cfg, lambda: client.search_model_versions(f"name = '{name}'")):
        tags = version.tags or {}
        if PROMOTED_AT in tags:
            try:
                when = float(tags[PROMOTED_AT])
            except ValueError:
                continue
            found.append((str(version.version), when, tags.get(PROMOTION, "")))
    return sorted(found, key=lambda item: item[1])
