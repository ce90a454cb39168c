"""The one table of model metrics: what the promotion gate scores and what the live monitor reports.

A metric is bound to a model's classes before use (``bind``), which fixes its definition and says
it in words: for two classes, precision and recall are those of the *positive class*, the last of the
model's sorted classes (``classes_[-1]``: 1 of {0, 1}, "yes" of {"no", "yes"}, as scikit-learn's
``predict_proba[:, 1]``); for more classes they are macro-averaged over the classes seen. The
label metrics (accuracy, precision, recall) are computed here with numpy, so the live monitor can
afford them on every feedback request; a test checks them against scikit-learn. A score that is
undefined (precision when no row was predicted positive) is NaN, never a made-up 0; within a macro
average, a class without predicted (or true) rows counts 0, as scikit-learn's ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mloop.errors import ConfigError, did_you_mean

Fn = Callable[[np.ndarray, np.ndarray], float]  # (true, predicted labels or scores) -> score


@dataclass(frozen=True)
class Metric:
    """An entry of the table: how to compute it and what it needs."""

    name: str
    needs_proba: bool
    live: bool  # computable from labels alone, so also from feedback on served predictions
    description: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", False, True, "share of rows whose predicted label is the true one"),
    Metric("precision", False, True, "share of rows predicted positive that are positive"),
    Metric("recall", False, True, "share of positive rows predicted positive"),
    Metric("balanced_accuracy", False, False, "mean recall over the classes"),
    Metric("f1", False, False, "harmonic mean of precision and recall"),
    Metric("f1_macro", False, False, "F1 averaged over the classes"),
    Metric("roc_auc", True, False, "area under the ROC curve of the predicted probabilities"),
    Metric("log_loss", True, False, "cross-entropy of the predicted probabilities (lower is better)"),
    Metric("r2", False, False, "coefficient of determination"),
    Metric("mae", False, False, "mean absolute error (lower is better)"),
    Metric("mse", False, False, "mean squared error (lower is better)"),
)}
LIVE_METRICS = tuple(name for name, metric in METRICS.items() if metric.live)


@dataclass(frozen=True)
class BoundMetric:
    """A metric with its definition fixed for one model's classes."""

    name: str
    definition: str
    needs_proba: bool
    fn: Fn


def check_metric(name: str) -> None:
    if name not in METRICS:
        raise ConfigError(
            f"[promotion] metric {name!r} is not one mloop can score; {did_you_mean(name, METRICS)}",
            hint="set [promotion] metric in mloop.toml to one of: " + ", ".join(METRICS),
        )


def positive_class(classes: Sequence[Any]) -> Any:
    """The class precision and recall are about for a two-class model: the last of its sorted classes."""
    return classes[-1]


def bind(name: str, classes: Sequence[Any]) -> BoundMetric:
    """``name`` for a model with these classes (empty for a regressor)."""
    check_metric(name)
    metric = METRICS[name]
    binary = len(classes) == 2
    if name in ("precision", "recall"):
        if binary:
            positive = positive_class(classes)
            return BoundMetric(name, f"{name} of class {positive!r} (the positive class: the last of the sorted "
                                     "classes)", False, _precision(positive) if name == "precision" else _recall(positive))
        return BoundMetric(name, f"{name} macro-averaged over the classes", False,
                           _macro(_precision if name == "precision" else _recall))
    if name == "accuracy":
        return BoundMetric(name, metric.description, False, _accuracy)
    return BoundMetric(name, metric.description, metric.needs_proba, _sklearn(name, classes))


def live_metrics(classes: Sequence[Any]) -> list[BoundMetric]:
    """The metrics the live monitor computes from feedback for a model with these classes."""
    if not classes:
        return [bind("accuracy", classes)]
    return [bind(name, classes) for name in LIVE_METRICS]


def _accuracy(true: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(true == predicted)) if true.size else float("nan")


def _precision(positive: Any) -> Fn:
    def precision(true: np.ndarray, predicted: np.ndarray) -> float:
        flagged = predicted == positive
        count = int(flagged.sum())
        return float((flagged & (true == positive)).sum() / count) if count else float("nan")

    return precision


def _recall(positive: Any) -> Fn:
    def recall(true: np.ndarray, predicted: np.ndarray) -> float:
        actual = true == positive
        count = int(actual.sum())
        return float((actual & (predicted == positive)).sum() / count) if count else float("nan")

    return recall


def _macro(per_class: Callable[[Any], Fn]) -> Fn:
    def macro(true: np.ndarray, predicted: np.ndarray) -> float:
        labels = np.unique(np.concatenate([true, predicted]))
        if not labels.size:
            return float("nan")
        scores = [per_class(label)(true, predicted) for label in labels.tolist()]
        return float(np.mean([0.0 if np.isnan(s) else s for s in scores]))  # scikit-learn's zero_division=0

    return macro


def _sklearn(name: str, classes: Sequence[Any]) -> Fn:
    def score(true: np.ndarray, predicted: np.ndarray) -> float:
        from sklearn import metrics as skm

        if name == "balanced_accuracy":
            return float(skm.balanced_accuracy_score(true, predicted))
        if name == "f1":
            if len(classes) == 2:
                return float(skm.f1_score(true, predicted, pos_label=positive_class(classes), zero_division=np.nan))
            return float(skm.f1_score(true, predicted, average="macro", zero_division=0.0))
        if name == "f1_macro":
            return float(skm.f1_score(true, predicted, average="macro", zero_division=0.0))
        if name == "roc_auc":
            proba = predicted[:, 1] if predicted.ndim == 2 and predicted.shape[1] == 2 else predicted
            multi = {"multi_class": "ovr", "labels": list(classes)} if predicted.ndim == 2 and predicted.shape[1] > 2 else {}
            return float(skm.roc_auc_score(true, proba, **multi))
        if name == "log_loss":
            return float(skm.log_loss(true, predicted, labels=list(classes) or None))
        if name == "r2":
            return float(skm.r2_score(true, predicted))
        if name == "mae":
            return float(skm.mean_absolute_error(true, predicted))
        if name == "mse":
            return float(skm.mean_squared_error(true, predicted))
        raise AssertionError(f"no scikit-learn function for {name!r}")

    return score


def score(name: str, model: Any, features: Any, target: Any) -> float:
    """The model's ``name`` metric on ``(features, target)``; NaN where it is undefined."""
    metric = bind(name, list(getattr(model, "classes_", [])))
    truth = np.asarray(target)
    predicted = model.predict_proba(features) if metric.needs_proba else np.asarray(model.predict(features))
    return metric.fn(truth, np.asarray(predicted))
