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

# What scikit-learn warns on every predict of a model fitted on a DataFrame when given an array: a process that
# predicts with LoadedModel (the server, the web app) has put the columns in the training order itself, and
# filters it at its entrypoint.
FEATURE_NAMES_WARNING = "X does not have valid feature names"

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Feature:
    """A feature as the server checks it."""

    name: str
    type: FeatureType  # float, integer, boolean or categorical
    allow_missing: bool  # a request may leave it missing (training had missing values and the model copes)
    categories: list[str] = field(default_factory=list)  # categorical: the training categories, most frequent first
    dtype: str = ""  # the training column's pandas dtype (empty: unknown, older bundles)

    @property
    def numeric(self) -> bool:
        """Numbers in requests (a boolean is 0 or 1): what the float fast path can carry."""
        return self.type in ("float", "integer", "boolean")


_SIGNATURE_TYPES: dict[str, FeatureType] = {"double": "float", "float": "float", "long": "integer",
                                            "integer": "integer", "boolean": "boolean", "string": "categorical"}


@dataclass(slots=True)
class Rows:
    """Feature rows of requests, in feature order.

    ``values`` (float64, rows x features) holds numbers, booleans as 0/1, a categorical feature's training
    category index (-1 for a category training never saw) and NaN for a missing value: what monitoring
    counts. ``text`` (object, rows x categorical features, in ``LoadedModel.categorical`` order) holds the
    categorical values as sent (None: missing), for a model that has them.
    """

    values: np.ndarray
    text: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        import numpy as np

        if len(parts) == 1:
            return parts[0]
        text = np.concatenate([p.text for p in parts if p.text is not None]) if parts[0].text is not None else None
        return Rows(np.concatenate([p.values for p in parts]), text)

    def take(self, index: Any) -> Rows:
        return Rows(self.values[index], None if self.text is None else self.text[index])


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
        import numpy as np

        self.categorical = [i for i, f in enumerate(self.features) if f.type == "categorical"]
        self._has_proba = hasattr(self.estimator, "predict_proba")
        self._classes = getattr(self.estimator, "classes_", None)
        self.whole_columns = [i for i, f in enumerate(self.features) if f.type in ("integer", "boolean")]
        # Requests of numbers go straight into the float matrix (no boolean or categorical feature to check).
        self.numbers_only = all(f.type in ("float", "integer") for f in self.features)
        self._names = [f.name for f in self.features]
        self.boolean_mask = np.asarray([self.features[i].type == "boolean" for i in self.whole_columns], dtype=bool)
        self._codes = [{c: j for j, c in enumerate(self.features[i].categories)} for i in self.categorical]
        # A model with categorical features, or one fitted on a DataFrame that picks columns by name, takes
        # a DataFrame with the training columns and dtypes; any other takes the float matrix (the fast path).
        self.needs_frame = bool(self.categorical) or self._fails_on_a_matrix()
        self._probe_missing_values()

    # ------------------------------------------------------------------------------ input

    def encode(self, position: int, text: list[Any]) -> np.ndarray:
        """The training category index of each value of the ``position``-th categorical feature (-1: never seen;
        NaN: missing)."""
        import numpy as np

        codes = self._codes[position]
        return np.asarray([np.nan if v is None else codes.get(v, -1) for v in text], dtype=np.float64)

    def model_input(self, rows: Rows) -> Any:
        """What the estimator takes: the float matrix, or a DataFrame with the training columns and dtypes."""
        if not self.needs_frame:
            return rows.values
        import numpy as np
        import pandas as pd

        columns: dict[str, Any] = {}
        position = {index: j for j, index in enumerate(self.categorical)}
        for index, feature in enumerate(self.features):
            column = rows.values[:, index]
            if feature.type == "categorical":
                assert rows.text is not None
                columns[feature.name] = _text_column(rows.text[:, position[index]], feature)
            elif feature.type == "boolean":
                missing = np.isnan(column)
                # missing as NaN, as pandas reads it and scikit-learn's imputers look for it by default
                columns[feature.name] = (column == 1.0) if not missing.any() else pd.Series(
                    np.where(missing, np.nan, column == 1.0), dtype=object)
            elif feature.type == "integer" and feature.dtype.startswith("int") and not np.isnan(column).any():
                columns[feature.name] = column.astype(np.int64)
            else:
                columns[feature.name] = column
        return pd.DataFrame(columns)

    def detector_input(self, values: np.ndarray, text: np.ndarray | None) -> Any:
        """What the outlier detector takes: the same as the model (it was fitted beside it, on the same frame)."""
        return self.model_input(Rows(values, text))

    def _fails_on_a_matrix(self) -> bool:
        """Whether a model without categorical features still needs a DataFrame (columns picked by name)."""
        if not self.features:
            return False
        try:
            self._predict_input(self.typical_rows().values)
            return False
        except Exception:  # it could not take the matrix; the frame is its chance (warm-up says if it fails too)
            return True

    def typical_rows(self) -> Rows:
        """One row of typical values (training means; the most frequent category): for warming the model up."""
        import numpy as np

        values = [0.0 if f.type == "categorical" else self._typical(f.name) for f in self.features]
        text = np.asarray([[self.features[i].categories[0] if self.features[i].categories else ""
                            for i in self.categorical]], dtype=object) if self.categorical else None
        return Rows(np.asarray([values], dtype=np.float64), text)

    def typical_row(self) -> np.ndarray:
        return self.typical_rows().values

    def _probe_missing_values(self) -> None:
        """Features that had missing values in training accept them only if the model really copes."""
        if not any(f.allow_missing for f in self.features):
            return
        import numpy as np

        rows = self.typical_rows()
        for index, feature in enumerate(self.features):
            if feature.allow_missing:
                rows.values[0, index] = np.nan
                if feature.type == "categorical" and rows.text is not None:
                    rows.text[0, self.categorical.index(index)] = None
        try:
            import sklearn

            # The server turns scikit-learn's own finiteness check off (it validates first): turn it back on.
            with sklearn.config_context(assume_finite=False):
                labels, proba = self.predict(rows)
            copes = not (proba is not None and np.isnan(proba).any()) and not (
                labels.dtype.kind == "f" and np.isnan(labels).any())
        except Exception:  # any failure means: the model cannot take NaN, so requests must not send it
            copes = False
        if not copes:
            for feature in self.features:
                feature.allow_missing = False

    def _typical(self, name: str) -> float:
        return self.profile.typical(name) if self.profile is not None else 0.0

    # ------------------------------------------------------------------------------ what it is

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
        return self._names  # (read-only: shared)

    @property
    def nullable_features(self) -> list[str]:
        """The features a request may leave missing (they had missing values in training and the model copes)."""
        return [f.name for f in self.features if f.allow_missing]

    @property
    def test_scores(self) -> dict[str, float]:
        """The live scores on the test set, recorded at registration (empty in older bundles)."""
        return dict(self.info.test_scores)

    @property
    def categories(self) -> dict[str, list[str]]:
        """The training categories of each categorical feature (monitoring decodes category indexes with them)."""
        return {self.features[i].name: list(self.features[i].categories) for i in self.categorical}

    @property
    def target(self) -> str:
        """The target column the model predicts (the training profile keeps its distribution)."""
        return str(self.info.target)

    @property
    def class_counts(self) -> dict[str, int]:
        """Training labels per class (empty for a regressor)."""
        return dict(self.info.class_counts)

    # ------------------------------------------------------------------------------ prediction

    def predict(self, rows: Rows | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels and, for classifiers, class probabilities of feature rows."""
        if not isinstance(rows, Rows):
            rows = Rows(rows)
        return self._predict_input(self.model_input(rows) if self.needs_frame else rows.values)

    def _predict_input(self, data: Any) -> tuple[np.ndarray, np.ndarray | None]:
        import numpy as np

        if self._has_proba:
            proba = self.estimator.predict_proba(data)
            classes = self._classes
            labels = classes[proba.argmax(axis=1)] if classes is not None else proba.argmax(axis=1)
            return labels if type(labels) is np.ndarray else np.asarray(labels), proba
        return np.asarray(self.estimator.predict(data)), None


def _text_column(text: np.ndarray, feature: Feature) -> Any:
    """A categorical feature's values with its training dtype: a pandas category dtype with the same
    categories, a string dtype, or object — a missing value as NaN, as pandas reads it and scikit-learn's
    imputers look for it by default."""
    import numpy as np
    import pandas as pd

    if feature.dtype == "category":
        return pd.Categorical(text, categories=feature.categories)
    if feature.dtype and feature.dtype != "object":
        try:
            return pd.Series(text, dtype=feature.dtype)
        except (TypeError, ValueError):
            pass
    values = text.copy()
    values[pd.isna(values)] = np.nan
    return pd.Series(values, dtype=object)


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
        features = [Feature(s.name, s.type, s.nullable, list(s.categories), s.dtype) for s in bundle.info.schema]
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
