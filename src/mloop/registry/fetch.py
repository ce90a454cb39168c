"""``models:/`` URIs: resolve them, fetch a registered model's folder (MLflow model plus bundle), load it."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.errors import MloopError, ModelError, RegistryError
from mloop.tracking.client import mlflow_client, tracking_error

if TYPE_CHECKING:
    from mloop.bundle.format import Bundle, BundleInfo
    from mloop.bundle.loaded import LoadedModel
    from mloop.config import ProjectConfig

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME/3`` → ``(NAME, "3", None)``; ``models:/NAME@champion`` → ``(NAME, None, "champion")``."""
    match = _URI.match(uri)
    if not match:
        raise RegistryError(f"{uri!r} is not a model URI", hint="write models:/NAME/VERSION or models:/NAME@ALIAS")
    return match["name"], match["version"], match["alias"]


_SHORT = re.compile(r"^(?P<name>[\w.-]+)(?P<rest>/\d+|@[\w-]+)?$")


def model_uri(ref: str) -> str:
    """A model as a user names it — ``NAME`` (its champion), ``NAME/3``, ``NAME@alias`` or a ``models:/`` URI —
    as a ``models:/`` URI."""
    if ref.startswith("models:/"):
        return ref
    match = _SHORT.match(ref)
    if not match:
        raise RegistryError(f"{ref!r} is not a model name", hint="write NAME, NAME/VERSION, NAME@ALIAS or models:/NAME@ALIAS")
    return f"models:/{match['name']}{match['rest'] or '@champion'}"


def is_model_name(ref: str) -> bool:
    """Whether ``ref`` names a registered model (``NAME``, ``NAME/3``, ``NAME@alias``, ``models:/...``)."""
    return ref.startswith("models:/") or _SHORT.match(ref) is not None


def download_model(cfg: ProjectConfig, uri: str, dst: Path) -> Path:
    """Download ``models:/NAME@ALIAS`` (or ``/VERSION``) from the project's registry into the folder ``dst``
    (the caller's to remove: a ``TemporaryDirectory``, unless the copy is meant to stay)."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    name, _, _ = parse_model_uri(uri)
    version = resolve_version(cfg, uri)
    client = mlflow_client(cfg)
    try:
        source = client.get_model_version_download_uri(name, version)
        path = download_artifacts(artifact_uri=source, dst_path=str(dst), tracking_uri=cfg.tracking_uri)
    except MlflowException as err:
        raise RegistryError(f"cannot fetch {uri}: {err.message}", hint="list models with 'mloop models'") from err
    return Path(path)


def resolve_version(cfg: ProjectConfig, uri: str) -> str:
    """The version number a model URI points at now (an alias resolves to its current version)."""
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_model_uri(uri)
    client = mlflow_client(cfg)
    try:
        if version:
            return str(client.get_model_version(name, version).version)  # it exists: checked before anything starts
        return str(client.get_model_version_by_alias(name, str(alias)).version)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise tracking_error(cfg, err) from err
        raise RegistryError(f"no {uri}: {err.message}", hint="list models, versions and aliases with 'mloop models'") from err


def load_sklearn_model(model_dir: Path) -> Any:
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(model_dir))


def load_registered(cfg: ProjectConfig, uri: str) -> LoadedModel:
    """Fetch ``models:/NAME@ALIAS`` (or ``/VERSION``) from the project's registry and load it for prediction."""
    return _load_registered(cfg, uri, with_example=False)[0]


def load_registered_with_example(cfg: ProjectConfig, uri: str) -> tuple[LoadedModel, Any]:
    """``load_registered``, and the version's MLflow input example (a DataFrame of training rows; None when
    it has none or it does not read): what a form fills itself with."""
    return _load_registered(cfg, uri, with_example=True)


def _load_registered(cfg: ProjectConfig, uri: str, *, with_example: bool) -> tuple[LoadedModel, Any]:
    from mloop.bundle.loaded import load_model_dir

    name, _, _ = parse_model_uri(uri)
    version = resolve_version(cfg, uri)
    with tempfile.TemporaryDirectory(prefix="mloop-model-", dir=cfg.scratch()) as tmp:  # loaded into memory: the copy goes
        folder = download_model(cfg, f"models:/{name}/{version}", Path(tmp))
        with _damaged_files_said(name, version):
            model = load_model_dir(folder, name=name, version=version)
        return model, _input_example(folder) if with_example else None


def _input_example(folder: Path) -> Any:
    from mlflow.models import Model

    try:
        return Model.load(str(folder)).load_input_example(str(folder))
    except Exception:  # noqa: BLE001 (a missing or unreadable example only means the form has none to offer)
        return None


def fetch_bundle(cfg: ProjectConfig, uri: str) -> Bundle:
    """The bundle (info, reference profile, outlier detector) of a registered model version."""
    from mloop.bundle.format import read_bundle

    name, _, _ = parse_model_uri(uri)
    with tempfile.TemporaryDirectory(prefix="mloop-bundle-", dir=cfg.scratch()) as tmp:
        folder = download_model(cfg, uri, Path(tmp))
        with _damaged_files_said(name, uri.rsplit("/", 1)[-1]):
            return read_bundle(folder)


def fetch_bundle_info(cfg: ProjectConfig, uri: str) -> BundleInfo:
    """The bundle's ``bundle.json`` of a registered model version alone (its metrics, input schema and lineage):
    a file read, where ``fetch_bundle`` copies the model and loads the profile and the outlier detector too."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from mloop.bundle.format import BUNDLE_DIR, read_info

    name, _, _ = parse_model_uri(uri)
    version = resolve_version(cfg, uri)
    client = mlflow_client(cfg)
    with tempfile.TemporaryDirectory(prefix="mloop-bundle-", dir=cfg.scratch()) as tmp:
        try:
            source = client.get_model_version_download_uri(name, version)
            path = download_artifacts(artifact_uri=f"{source.rstrip('/')}/{BUNDLE_DIR}/bundle.json", dst_path=tmp,
                                      tracking_uri=cfg.tracking_uri)
        except MlflowException as err:
            raise RegistryError(f"cannot fetch {uri}: {err.message}", hint="list models with 'mloop models'") from err
        with _damaged_files_said(name, version):
            return read_info(Path(path))


@contextlib.contextmanager
def _damaged_files_said(name: str, version: str) -> Iterator[None]:
    """A registered model whose stored files no longer load (damaged on disk) is a ModelError naming it."""
    try:
        yield
    except MloopError:
        raise
    except Exception as err:  # noqa: BLE001 (whatever the model's library raises on damaged bytes)
        raise ModelError(f"the stored files of {name} v{version} are damaged and do not load: "
                         f"{type(err).__name__}: {str(err)[:200]}",
                         hint=f"serve another version (mloop deploy {name}/VERSION); to store this one again, "
                              "move the champion alias to another version (mloop models promote VERSION) or delete "
                              "this one in the MLflow UI (mloop mlflow-ui), and run the pipeline") from err
