"""The one metric table: the gate and the live monitor compute the same numbers, defined in words."""

import numpy as np
import pytest
from sklearn import metrics as skm

from mloop.config import PROMOTION_METRICS
from mloop.registry.metrics import METRICS, bind, live_metrics, positive_class, task_of

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("classes", [[0, 1], ["no", "yes"], [False, True]])
def test_binary_precision_and_recall_are_those_of_the_last_class_as_scikit_learn_computes_them(classes):
    true = np.asarray(classes, dtype=object)[RNG.integers(0, 2, 500)]
    predicted = np.asarray(classes, dtype=object)[RNG.integers(0, 2, 500)]
    true, predicted = np.asarray(true.tolist()), np.asarray(predicted.tolist())
    positive = positive_class(classes)
    assert positive == classes[-1]
    for name, reference in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        metric = bind(name, classes)
        assert repr(positive) in metric.definition
        assert metric.fn(true, predicted) == pytest.approx(reference(true, predicted, pos_label=positive))
    assert bind("accuracy", classes).fn(true, predicted) == pytest.approx(skm.accuracy_score(true, predicted))


def test_multiclass_precision_and_recall_are_macro_averaged_and_say_so():
    classes = ["a", "b", "c"]
    true, predicted = RNG.choice(classes, 600), RNG.choice(classes, 600)
    for name, reference in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        metric = bind(name, classes)
        assert "macro" in metric.definition
        assert metric.fn(true, predicted) == pytest.approx(reference(true, predicted, average="macro"))


def test_precision_without_a_predicted_positive_is_undefined_not_zero():
    assert np.isnan(bind("precision", [0, 1]).fn(np.array([1, 0]), np.array([0, 0])))


def test_the_live_monitor_gets_the_metrics_of_the_task_from_the_table():
    assert [m.name for m in live_metrics([0, 1])] == ["accuracy", "precision", "recall", "f1"]
    assert [m.name for m in live_metrics(["a", "b", "c"])] == ["accuracy", "precision", "recall", "f1"]
    assert [m.name for m in live_metrics([])] == ["mae", "rmse", "r2"]


def test_regression_metrics_agree_with_scikit_learn():
    true, predicted = RNG.normal(size=400), RNG.normal(size=400)
    assert bind("mae", []).fn(true, predicted) == pytest.approx(skm.mean_absolute_error(true, predicted))
    assert bind("rmse", []).fn(true, predicted) == pytest.approx(np.sqrt(skm.mean_squared_error(true, predicted)))
    assert bind("r2", []).fn(true, predicted) == pytest.approx(skm.r2_score(true, predicted))
    assert bind("mse", []).fn(true, predicted) == pytest.approx(skm.mean_squared_error(true, predicted))
    assert np.isnan(bind("r2", []).fn(np.ones(5), np.zeros(5)))  # a constant target: undefined
    assert not bind("rmse", []).greater_is_better and bind("r2", []).greater_is_better


def test_the_table_and_the_configurations_vocabulary_agree():
    assert set(METRICS) == set(PROMOTION_METRICS)


def test_the_task_of_a_model():
    from sklearn.dummy import DummyClassifier, DummyRegressor

    x = [[0], [1], [2]]
    assert task_of(DummyClassifier().fit(x, [0, 1, 0])) == "binary"
    assert task_of(DummyClassifier().fit(x, ["a", "b", "c"])) == "multiclass"
    assert task_of(DummyRegressor().fit(x, [0.5, 1.0, 2.0])) == "regression"


def test_probability_metrics_use_the_positive_column():
    true = RNG.integers(0, 2, 300)
    proba = np.column_stack([1 - (p := RNG.random(300)), p])
    assert bind("roc_auc", [0, 1]).fn(true, proba) == pytest.approx(skm.roc_auc_score(true, p))
    assert bind("log_loss", [0, 1]).fn(true, proba) == pytest.approx(skm.log_loss(true, proba))
