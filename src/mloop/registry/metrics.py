"""The one table of model metrics: what the promotion gate scores and what the live monitor reports.

A metric is bound to a model's task and classes before use (``bind``), which fixes its definition
and says it in words: for two classes, precision, recall and F1 are those of the *positive class*,
the last of the model's sorted classes (``classes_[-1]``: 1 of {0, 1}, "yes" of {"no", "yes"}, as
scikit-learn's ``predict_proba[:, 1]``); for more classes they are macro-averaged over the classes
seen. The metrics the live monitor computes from feedback (accuracy, precision, recall, F1; MAE,
RMSE, R²) are computed here with numpy, so it can afford them on every feedback request; a test
checks them against scikit-learn. A score that is undefined (precision when no row was predicted
positive, R² of a constant target) is NaN, never a made-up 0; within a macro average, a class
without predicted (or true) rows counts 0, as scikit-learn's ``zero_division=0``.

Which metrics fit which task, and which way is better, is the configuration's vocabulary
(``mloop.config.PROMOTION_METRICS``), so a mistake is reported when ``mloop.toml`` is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mloop.config import PROMOTION_METRICS
from mloop.errors import ConfigError, did_you_mean

Fn = Callable[[np.ndarray, np.ndarray], float]  # (true, predicted labels, values or probabilities) -> score


@dataclass(frozen=True)
class Metric:
    """An entry of the table: what it needs and what it is."""

    name: str
    needs_proba: bool
    description: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", False, "share of rows whose predicted label is the true one"),
    Metric("balanced_accuracy", False, "mean recall over the classes"),
    Metric("precision", False, "share of rows predicted positive that are positive"),
    Metric("recall", False, "share of positive rows predicted positive"),
    Metric("f1", False, "harmonic mean of precision and recall"),
    Metric("f1_macro", False, "F1 averaged over the classes"),
    Metric("roc_auc", True, "area under the ROC curve of the predicted probabilities"),
    Metric("log_loss", True, "cross-entropy of the predicted probabilities (lower is better)"),
    Metric("r2", False, "coefficient of determination (1 is perfect)"),
    Metric("mae", False, "mean absolute error (lower is better)"),
    Metric("mse", False, "mean squared error (lower is better)"),
    Metric("rmse", False, "root mean squared error (lower is better)"),
)}
LIVE_METRICS = {"binary": ("accuracy", "precision", "recall", "f1"),
                "multiclass": ("accuracy", "precision", "recall", "f1"),
                "regression": ("mae", "rmse", "r2")}


@dataclass(frozen=True)
class BoundMetric:
    """A metric with its definition fixed for one model's task and classes."""

    name: str
    definition: str
    needs_proba: bool
    greater_is_better: bool
    fn: Fn
    of: str = ""  # precision, recall, f1: "class X" (the positive class of two) or "macro average"


def check_metric(name: str) -> None:
    if name not in METRICS:
        raise ConfigError(
            f"[promotion] metric {name!r} is not one mloop can score; {did_you_mean(name, METRICS)}",
            hint="set [promotion] metric in mloop.toml to one of: " + ", ".join(METRICS),
        )


def task_of(model: Any) -> str:
    """``binary``, ``multiclass`` or ``regression``: what a fitted estimator predicts."""
    classes = getattr(model, "classes_", None)
    if classes is None:
        return "regression"
    return "binary" if len(classes) == 2 else "multiclass"


def positive_class(classes: Sequence[Any]) -> Any:
    """The class precision and recall are about for a two-class model: the last of its sorted classes."""
    return classes[-1]


def bind(name: str, classes: Sequence[Any]) -> BoundMetric:
    """``name`` for a model with these classes (empty for a regressor)."""
    check_metric(name)
    metric = METRICS[name]
    better = PROMOTION_METRICS[name][1] == "maximize"
    if name in ("precision", "recall", "f1"):
        per_class = {"precision": _precision, "recall": _recall, "f1": _f1}[name]
        if len(classes) == 2:
            positive = positive_class(classes)
            return BoundMetric(name, f"{name} of class {positive!r} (the positive class: the last of the sorted "
                                     "classes)", False, better, per_class(positive), f"class {positive}")
        return BoundMetric(name, f"{name} macro-averaged over the classes", False, better, _macro(per_class),
                           "macro average")
    numpy_fns: dict[str, Fn] = {"accuracy": _accuracy, "mae": _mae, "rmse": _rmse, "r2": _r2}
    fn = numpy_fns.get(name) or _sklearn(name, classes)
    return BoundMetric(name, metric.description, metric.needs_proba, better, fn)


def live_metrics(classes: Sequence[Any]) -> list[BoundMetric]:
    """The metrics the live monitor computes from feedback for a model with these classes (none: a regressor)."""
    task = "regression" if not len(classes) else ("binary" if len(classes) == 2 else "multiclass")
    return [bind(name, classes) for name in LIVE_METRICS[task]]


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


def _f1(positive: Any) -> Fn:
    def f1(true: np.ndarray, predicted: np.ndarray) -> float:
        flagged, actual = predicted == positive, true == positive
        hits = int((flagged & actual).sum())
        denominator = int(flagged.sum()) + int(actual.sum())
        return 2.0 * hits / denominator if denominator else float("nan")

    return f1


def _macro(per_class: Callable[[Any], Fn]) -> Fn:
    def macro(true: np.ndarray, predicted: np.ndarray) -> float:
        labels = np.unique(np.concatenate([true, predicted]))
        if not labels.size:
            return float("nan")
        scores = [per_class(label)(true, predicted) for label in labels.tolist()]
        return float(np.mean([0.0 if np.isnan(s) else s for s in scores]))  # scikit-learn's zero_division=0

    return macro


def _numbers(true: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)


def _mae(true: np.ndarray, predicted: np.ndarray) -> float:
    t, p = _numbers(true, predicted)
    return float(np.mean(np.abs(t - p))) if t.size else float("nan")


def _rmse(true: np.ndarray, predicted: np.ndarray) -> float:
    t, p = _numbers(true, predicted)
    return float(np.sqrt(np.mean((t - p) ** 2))) if t.size else float("nan")


def _r2(true: np.ndarray, predicted: np.ndarray) -> float:
    t, p = _numbers(true, predicted)
    total = float(np.sum((t - t.mean()) ** 2)) if t.size else 0.0
    return 1.0 - float(np.sum((t - p) ** 2)) / total if total > 0 else float("nan")


def _sklearn(name: str, classes: Sequence[Any]) -> Fn:
    def score(true: np.ndarray, predicted: np.ndarray) -> float:
        from sklearn import metrics as skm

        if name == "balanced_accuracy":
            return float(skm.balanced_accuracy_score(true, predicted))
        if name == "f1_macro":
            return float(skm.f1_score(true, predicted, average="macro", zero_division=0.0))
        if name == "roc_auc":
            proba = predicted[:, 1] if predicted.ndim == 2 and predicted.shape[1] == 2 else predicted
            multi = {"multi_class": "ovr", "labels": list(classes)} if predicted.ndim == 2 and predicted.shape[1] > 2 else {}
            return float(skm.roc_auc_score(true, proba, **multi))
        if name == "log_loss":
            return float(skm.log_loss(true, predicted, labels=list(classes) or None))
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


def direction(name: str) -> str | None:
    """``maximize`` or ``minimize`` for a metric mloop knows by name, also as a pipeline logs it
    (``test_rmse``, ``logreg.accuracy``, ``val/roc_auc``); None for any other (``selected_knn``, ``n_rows``)."""
    base = name.lower()
    for sep in (".", "/"):
        base = base.rsplit(sep, 1)[-1]
    for prefix in ("test_", "val_", "validation_"):
        base = base.removeprefix(prefix)
    known = PROMOTION_METRICS.get(base)
    return known[1] if known else None
