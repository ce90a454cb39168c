"""What monitoring needs to know about a model and its training data, as protocols.

Monitoring does not import the bundle package: the model bundle (``mloop.bundle``) satisfies these
structurally, and a caller (the server, a report) hands it in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np


class NumericReference(Protocol):
    """A numeric feature of the training data: quantile bins, counts and a sample of values."""

    @property
    def kind(self) -> Literal["numeric"]: ...
    @property
    def missing(self) -> float: ...
    @property
    def edges(self) -> Sequence[float]: ...
    @property
    def counts(self) -> Sequence[int]: ...
    @property
    def sample(self) -> Sequence[float]: ...


class CategoricalReference(Protocol):
    """A categorical feature of the training data: the counts of its categories."""

    @property
    def kind(self) -> Literal["categorical"]: ...
    @property
    def missing(self) -> float: ...
    @property
    def counts(self) -> Mapping[str, int]: ...
    @property
    def other(self) -> int: ...


FeatureReference = NumericReference | CategoricalReference


class Reference(Protocol):
    """The training data as drift compares with it (``mloop.bundle.profile.ReferenceProfile``)."""

    @property
    def n_rows_(self) -> int: ...
    @property
    def features_(self) -> Mapping[str, FeatureReference]: ...


class MonitoredModel(Protocol):
    """A served model as monitoring sees it (``mloop.bundle.loaded.LoadedModel``)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def feature_names(self) -> list[str]: ...
    @property
    def nullable_features(self) -> list[str]: ...  # the features a request may leave missing
    @property
    def classes(self) -> list[Any]: ...
    @property
    def class_counts(self) -> dict[str, int]: ...
    @property
    def target(self) -> str: ...  # a regressor's predictions are compared with the profile's target column
    @property
    def profile(self) -> Reference | None: ...
    @property
    def outlier_detector(self) -> Any: ...
    @property
    def test_scores(self) -> dict[str, float]: ...  # live scores on its test set (relative alert thresholds)
    @property
    def categories(self) -> dict[str, list[str]]: ...  # per categorical feature: its training categories
    @property
    def needs_frame(self) -> bool: ...  # the model (and so its detector) takes a DataFrame, not the float rows
    def detector_input(self, rows: np.ndarray, text: np.ndarray | None) -> Any: ...
    def encode(self, position: int, text: list[Any]) -> np.ndarray: ...  # the position-th categorical feature's
    # values as its training category indexes (-1: never seen; NaN: missing), as the server encodes a request


class LiveMetric(Protocol):
    """A score of labelled predictions, ``fn(true, predicted)``, and how it is defined (positive class,
    averaging). The table of them is ``mloop.registry.metrics``, shared with the promotion gate."""

    @property
    def name(self) -> str: ...
    @property
    def definition(self) -> str: ...
    @property
    def of(self) -> str: ...  # what it is of: "class X", "macro average" ("" for accuracy and errors)
    @property
    def fn(self) -> Callable[[np.ndarray, np.ndarray], float]: ...
