"""A registered model loaded for prediction: the estimator plus its bundle, shared by serving and monitoring."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.errors import RegistryError
from mloop.models.bundle import BundleInfo, read_bundle

if TYPE_CHECKING:
    import numpy as np

    from mloop.config import ProjectConfig

NUMERIC_TYPES = {"double", "float", "long", "integer", "boolean"}


@dataclass
class Feature:
    name: str
    kind: str  # an MLflow signature type: double, float, long, integer, boolean, string
    allow_missing: bool


@dataclass
class LoadedModel:
    name: str
    version: str
    estimator: Any
    info: BundleInfo
    features: list[Feature]
    profile: Any = None
    outlier_detector: Any = None

    def __post_init__(self) -> None:
        self._probe_missing_values()

    def _probe_missing_values(self) -> None:
        """Features that had missing values in training accept them only if the model really copes."""
        if not any(f.allow_missing for f in self.features):
            return
        import numpy as np

        row = [float("nan") if f.allow_missing else _typical(self.profile, f.name) for f in self.features]
        try:
            import sklearn

            # The server turns scikit-learn's own finiteness check off (it validates first): turn it back on.
            with sklearn.config_context(assume_finite=False):
                labels, proba = self.predict(np.asarray([row], dtype=np.float64))
            copes = not (proba is not None and np.isnan(proba).any()) and not (
                labels.dtype.kind == "f" and np.isnan(labels).any())
        except Exception:  # any failure means: the model cannot take NaN, so requests must not send it
            copes = False
        if not copes:
            for feature in self.features:
                feature.allow_missing = False

    @property
    def classes(self) -> list[Any]:
        return list(self.info.classes)

    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels and, for classifiers, class probabilities for a 2-D float array in feature order."""
        if hasattr(self.estimator, "predict_proba"):
            proba = self.estimator.predict_proba(rows)
            classes = getattr(self.estimator, "classes_", None)
            labels = classes[proba.argmax(axis=1)] if classes is not None else proba.argmax(axis=1)
            return labels, proba
        return self.estimator.predict(rows), None


def _typical(profile: Any, name: str) -> float:
    spec = getattr(profile, "features_", {}).get(name, {})
    return float(spec.get("mean", 0.0))


def load_model_dir(model_dir: Path, *, name: str = "", version: str = "") -> LoadedModel:
    """Load an MLflow sklearn model with its mloop bundle from a local folder."""
    import mlflow.sklearn

    if not (model_dir / "MLmodel").is_file():
        raise RegistryError(f"{model_dir} is not an MLflow model folder (no MLmodel file)",
                            hint="pass models:/NAME@ALIAS, models:/NAME/VERSION or a folder written by mloop")
    try:
        info, profile, detector = read_bundle(model_dir)
    except FileNotFoundError as err:
        raise RegistryError(f"{model_dir} has no mloop bundle ({err.filename})",
                            hint="serve a model registered by 'mloop run'") from err
    estimator = mlflow.sklearn.load_model(str(model_dir))
    features = _features(model_dir, info, profile)
    served = model_dir / "mloop" / "served.json"  # written when the model was exported with its registry name
    if served.is_file() and not (name and version):
        recorded = json.loads(served.read_text(encoding="utf-8"))
        name, version = name or recorded.get("name", ""), version or str(recorded.get("version", ""))
    return LoadedModel(name or model_dir.name, version or "local", estimator, info, features, profile, detector)


def load_registered(cfg: ProjectConfig, uri: str) -> LoadedModel:
    """Fetch ``models:/NAME@ALIAS`` (or ``/VERSION``) from the project's registry and load it."""
    from mloop.models.fetch import download_model, parse_model_uri, resolve_version

    name, _, _ = parse_model_uri(uri)
    version = resolve_version(cfg, uri)
    return load_model_dir(download_model(cfg, f"models:/{name}/{version}"), name=name, version=version)


def _features(model_dir: Path, info: BundleInfo, profile: Any) -> list[Feature]:
    kinds: dict[str, str] = {}
    mlmodel = (model_dir / "MLmodel").read_text(encoding="utf-8")
    marker = "inputs: '"
    if marker in mlmodel:  # the signature is a JSON string inside the YAML
        raw = mlmodel.split(marker, 1)[1].split("'\n", 1)[0].replace("''", "'")
        for column in json.loads(raw):
            kinds[column.get("name", "")] = column.get("type", "double")
    missing = {name: spec.get("missing", 0.0) for name, spec in getattr(profile, "features_", {}).items()}
    return [Feature(f, kinds.get(f, "double"), missing.get(f, 0.0) > 0) for f in info.features]
