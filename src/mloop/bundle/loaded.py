"""A bundled model loaded for prediction: the estimator, its features and its bundle.

Serving predicts with it and monitoring watches it; both read it only through ``LoadedModel``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.bundle.format import BundleInfo, read_bundle, read_served_as
from mloop.bundle.profile import ReferenceProfile
from mloop.bundle.schema import FeatureType
from mloop.errors import RegistryError

if TYPE_CHECKING:
    import numpy as np

@dataclass
class Feature:
    """A feature as the server checks it."""

    name: str
    type: FeatureType  # float, integer, boolean or categorical
    allow_missing: bool  # a request may leave it missing (training had missing values and the model copes)
    categories: list[str] = field(default_factory=list)  # categorical: the training categories

    @property
    def numeric(self) -> bool:
        return self.type in ("float", "integer", "boolean")


_SIGNATURE_TYPES: dict[str, FeatureType] = {"double": "float", "float": "float", "long": "integer",
                                            "integer": "integer", "boolean": "boolean", "string": "categorical"}


@dataclass
class LoadedModel:
    name: str
    version: str
    estimator: Any
    info: BundleInfo
    features: list[Feature]
    profile: ReferenceProfile | None = None
    outlier_detector: Any = None

    def __post_init__(self) -> None:
        self._probe_missing_values()

    def _probe_missing_values(self) -> None:
        """Features that had missing values in training accept them only if the model really copes."""
        if not any(f.allow_missing for f in self.features):
            return
        import numpy as np

        row = [float("nan") if f.allow_missing else self._typical(f.name) for f in self.features]
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

    def _typical(self, name: str) -> float:
        return self.profile.typical(name) if self.profile is not None else 0.0

    @property
    def classes(self) -> list[Any]:
        return list(self.info.classes)

    @property
    def task(self) -> str:
        """binary, multiclass or regression (bundles written before it was recorded: from the classes)."""
        if self.info.task:
            return self.info.task
        return "regression" if not self.info.classes else ("binary" if len(self.info.classes) == 2 else "multiclass")

    @property
    def target_edges(self) -> list[float]:
        """Quantile edges of the training target (a regressor's predictions are counted in these buckets)."""
        from mloop.bundle.profile import NumericProfile

        target = self.profile.features_.get(self.info.target) if self.profile is not None else None
        return list(target.edges) if isinstance(target, NumericProfile) else []

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def nullable_features(self) -> list[str]:
        """The features a request may leave missing (they had missing values in training and the model copes)."""
        return [f.name for f in self.features if f.allow_missing]

    @property
    def class_counts(self) -> dict[str, int]:
        """Training labels per class (empty for a regressor)."""
        return dict(self.info.class_counts)

    def typical_row(self) -> np.ndarray:
        """One row of typical values (the training means), in feature order: for warming the model up."""
        import numpy as np

        return np.asarray([[self._typical(f.name) for f in self.features]], dtype=np.float64)

    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels and, for classifiers, class probabilities for a 2-D float array in feature order."""
        if hasattr(self.estimator, "predict_proba"):
            proba = self.estimator.predict_proba(rows)
            classes = getattr(self.estimator, "classes_", None)
            labels = classes[proba.argmax(axis=1)] if classes is not None else proba.argmax(axis=1)
            return labels, proba
        return self.estimator.predict(rows), None


def load_model_dir(model_dir: Path, *, name: str = "", version: str = "") -> LoadedModel:
    """Load an MLflow sklearn model with its mloop bundle from a local folder."""
    import mlflow.sklearn
    from mlflow.models import Model

    if not (model_dir / "MLmodel").is_file():
        raise RegistryError(f"{model_dir} is not an MLflow model folder (no MLmodel file)",
                            hint="pass models:/NAME@ALIAS, models:/NAME/VERSION or a folder written by mloop")
    try:
        bundle = read_bundle(model_dir)
    except FileNotFoundError as err:
        raise RegistryError(f"{model_dir} has no mloop bundle ({err.filename})",
                            hint="serve a model registered by 'mloop run'") from err
    estimator = mlflow.sklearn.load_model(str(model_dir))
    if bundle.info.schema:
        features = [Feature(s.name, s.type, s.nullable, list(s.categories)) for s in bundle.info.schema]
    else:  # a bundle written before the schema was: the signature's types, the profile's missing values
        signature = Model.load(str(model_dir)).signature
        kinds = {str(column.name): getattr(column.type, "name", "double")
                 for column in signature.inputs.inputs} if signature else {}
        features = [Feature(f, _SIGNATURE_TYPES.get(kinds.get(f, "double"), "float"), bundle.profile.missing_rate(f) > 0)
                    for f in bundle.info.features]
    served = read_served_as(model_dir)
    if served is not None and not (name and version):
        name, version = name or served.name, version or served.version
    return LoadedModel(name or model_dir.name, version or "local", estimator, bundle.info, features, bundle.profile,
                       bundle.outlier_detector)
