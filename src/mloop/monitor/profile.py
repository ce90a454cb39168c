"""``ReferenceProfile``: per-feature quantile bins and counts of the training data.

The profile travels in the model bundle so drift can later be measured against it without the
training data. It follows scikit-learn's contract: settings in ``__init__``, ``fit`` returns self,
learned state in trailing-underscore attributes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
        self.features_: dict[str, dict[str, Any]] = {}
        # A bounded random sample of each numeric feature, for exact two-sample tests (KS) later.
        self.sample_: dict[str, list[float]] = {}
        keep = np.random.default_rng(self.seed).permutation(len(frame))[: self.max_sample]
        for column in frame.columns:
            series = frame[column]
            missing = float(series.isna().mean()) if len(series) else 0.0
            if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
                values = series.dropna().to_numpy(dtype=float)
                if values.size == 0:
                    self.features_[str(column)] = {"kind": "numeric", "missing": missing, "edges": [], "counts": []}
                    continue
                edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, self.n_bins + 1)))
                if edges.size == 1:
                    edges = np.array([edges[0], edges[0]])
                counts, _ = np.histogram(values, bins=edges)
                picked = series.to_numpy(dtype=float)[keep]
                self.sample_[str(column)] = [float(v) for v in picked[~np.isnan(picked)].astype(np.float32)]
                self.features_[str(column)] = {
                    "kind": "numeric", "missing": missing, "dtype": str(series.dtype),
                    "edges": edges.tolist(), "counts": counts.astype(int).tolist(),
                    "mean": float(values.mean()), "std": float(values.std()),
                    "min": float(values.min()), "max": float(values.max()),
                }
            else:
                freq = series.dropna().astype(str).value_counts()
                top = freq.head(self.max_categories)
                self.features_[str(column)] = {
                    "kind": "categorical", "missing": missing, "dtype": str(series.dtype),
                    "counts": {str(k): int(v) for k, v in top.items()}, "other": int(freq.iloc[len(top):].sum()),
                }
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"n_bins": self.n_bins, "n_rows": self.n_rows_, "features": self.features_, "sample": self.sample_}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        profile = cls(n_bins=data["n_bins"])
        profile.n_rows_ = data["n_rows"]
        profile.features_ = data["features"]
        profile.sample_ = data.get("sample", {})
        return profile

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
