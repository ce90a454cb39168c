"""What a model takes, per feature: its type, whether it may be missing, its training range or categories.

Recorded in the bundle at registration from the training frame, so the server can check requests and
hand the model what it was trained on, and ``mloop models show`` can say what a version expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FeatureType = Literal["float", "integer", "boolean", "categorical"]
MAX_CATEGORIES = 1000  # a categorical feature keeps at most this many training categories (the most frequent)


@dataclass
class FeatureSchema:
    name: str
    type: FeatureType
    nullable: bool = False  # training had missing values in it
    min: float | None = None  # numeric: the training range
    max: float | None = None
    # categorical: training categories and their counts, the most frequent first (a pandas category dtype:
    # all of its categories, in the dtype's order)
    categories: dict[str, int] = field(default_factory=dict)
    dtype: str = ""  # the training column's pandas dtype

    @property
    def numeric(self) -> bool:
        return self.type in ("float", "integer")


def feature_type(series: Any) -> FeatureType:
    """The type of a training column, from its pandas dtype."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_numeric_dtype(series):
        return "float"
    non_null = series.dropna()
    if len(non_null) and non_null.map(type).isin([bool]).all():  # a boolean column with missing values (object)
        return "boolean"
    return "categorical"


def describe(frame: Any) -> list[FeatureSchema]:
    """The schema of each column of a training frame (the features, without the target)."""
    import pandas as pd

    found = []
    for column in frame.columns:
        series = frame[column]
        kind = feature_type(series)
        spec = FeatureSchema(str(column), kind, bool(series.isna().any()), dtype=str(series.dtype))
        non_null = series.dropna()
        if spec.numeric and len(non_null):
            spec.min, spec.max = float(non_null.min()), float(non_null.max())
        elif kind == "categorical" and isinstance(series.dtype, pd.CategoricalDtype):
            # the dtype's own categories, all of them in their order: the server rebuilds the same dtype
            counts = non_null.astype(str).value_counts()
            spec.categories = {str(c): int(counts.get(str(c), 0)) for c in series.cat.categories}
        elif kind == "categorical":
            counts = non_null.astype(str).value_counts().head(MAX_CATEGORIES)
            spec.categories = {str(k): int(v) for k, v in counts.items()}
        found.append(spec)
    return found
