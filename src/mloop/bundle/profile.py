"""``ReferenceProfile``: what the training data looked like, per feature, kept in the model bundle.

Drift is later measured against it without the training data. Per numeric feature: quantile bin
edges and counts, summary statistics, the share of missing values and a bounded random sample of
the values (for exact two-sample tests); per categorical feature: the category counts. It follows
scikit-learn's contract: settings in ``__init__``, ``fit`` returns self, learned state in
trailing-underscore attributes.

On disk (``mloop/profile.json`` in a bundle)::

    {"n_bins": 10, "n_rows": 426,
     "features": {"x": {"kind": "numeric", "missing": 0.0, "dtype": "float64", "edges": [...],
                        "counts": [...], "mean": ..., "std": ..., "min": ..., "max": ...},
                  "c": {"kind": "categorical", "missing": 0.1, "dtype": "object",
                        "counts": {"a": 3, ...}, "other": 0}},
     "sample": {"x": [...]}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mloop._fs import atomic_write_text


@dataclass
class NumericProfile:
    """A numeric feature of the training data."""

    missing: float
    edges: list[float]
    counts: list[int]
    dtype: str = ""
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    sample: list[float] = field(default_factory=list)
    kind: Literal["numeric"] = "numeric"


@dataclass
class CategoricalProfile:
    """A categorical (or boolean) feature of the training data: counts of the most frequent categories."""

    missing: float
    counts: dict[str, int]
    other: int = 0  # rows in categories beyond ``max_categories``
    dtype: str = ""
    kind: Literal["categorical"] = "categorical"


FeatureProfile = NumericProfile | CategoricalProfile


class ReferenceProfile:
    """Summary of a DataFrame: quantile bin edges and counts per numeric column, frequencies otherwise."""

    def __init__(self, n_bins: int = 10, max_categories: int = 50, max_sample: int = 5000, seed: int = 0) -> None:
        self.n_bins = n_bins
        self.max_categories = max_categories
        self.max_sample = max_sample
        self.seed = seed

    def fit(self, frame: Any) -> ReferenceProfile:
        import numpy as np
        import pandas as pd

        self.n_rows_ = int(len(frame))
        self.features_: dict[str, FeatureProfile] = {}
        keep = np.random.default_rng(self.seed).permutation(len(frame))[: self.max_sample]
        for column in frame.columns:
            series = frame[column]
            missing = float(series.isna().mean()) if len(series) else 0.0
            if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
                values = series.dropna().to_numpy(dtype=float)
                if values.size == 0:
                    self.features_[str(column)] = NumericProfile(missing, [], [], str(series.dtype))
                    continue
                edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, self.n_bins + 1)))
                if edges.size == 1:
                    edges = np.array([edges[0], edges[0]])
                counts, _ = np.histogram(values, bins=edges)
                picked = series.to_numpy(dtype=float)[keep]
                self.features_[str(column)] = NumericProfile(
                    missing, edges.tolist(), counts.astype(int).tolist(), str(series.dtype),
                    float(values.mean()), float(values.std()), float(values.min()), float(values.max()),
                    [float(v) for v in picked[~np.isnan(picked)]])  # full precision: ties compare exactly
            else:
                freq = series.dropna().astype(str).value_counts()
                top = freq.head(self.max_categories)
                self.features_[str(column)] = CategoricalProfile(
                    missing, {str(k): int(v) for k, v in top.items()}, int(freq.iloc[len(top):].sum()),
                    str(series.dtype))
        return self

    def typical(self, name: str) -> float:
        """A typical value of a numeric feature (its training mean; 0.0 when unknown)."""
        feature = self.features_.get(name)
        return float(feature.mean) if isinstance(feature, NumericProfile) and feature.mean is not None else 0.0

    def median(self, name: str) -> float | None:
        """The training median of a numeric feature: of its kept sample (every value when training had at most
        ``max_sample`` rows), else read off its quantile bins; None for a feature without numbers."""
        import numpy as np

        feature = self.features_.get(name)
        if not isinstance(feature, NumericProfile):
            return None
        if feature.sample:
            return float(np.median(feature.sample))
        if not feature.counts or sum(feature.counts) == 0:
            return None
        cumulative = np.concatenate([[0.0], np.cumsum(feature.counts, dtype=float)]) / sum(feature.counts)
        return float(np.interp(0.5, cumulative, feature.edges))

    def missing_rate(self, name: str) -> float:
        """The share of training rows where the feature was missing (0.0 for an unknown feature)."""
        feature = self.features_.get(name)
        return feature.missing if feature is not None else 0.0

    def to_dict(self) -> dict[str, Any]:
        features: dict[str, Any] = {}
        samples: dict[str, list[float]] = {}
        for name, feature in self.features_.items():
            entry = {k: v for k, v in vars(feature).items() if k != "sample"}
            if isinstance(feature, NumericProfile) and feature.sample:
                samples[name] = feature.sample
            features[name] = entry
        return {"n_bins": self.n_bins, "n_rows": self.n_rows_, "features": features, "sample": samples}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        profile = cls(n_bins=data["n_bins"])
        profile.n_rows_ = data["n_rows"]
        samples = data.get("sample", {})
        profile.features_ = {}
        for name, entry in data["features"].items():
            fields = {k: v for k, v in entry.items() if k != "kind"}
            if entry["kind"] == "numeric":
                profile.features_[name] = NumericProfile(**fields, sample=list(samples.get(name, [])))
            else:
                profile.features_[name] = CategoricalProfile(**fields)
        return profile

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
