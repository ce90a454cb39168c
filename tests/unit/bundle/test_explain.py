"""SHAP values of one row on the raw features: exact for a linear model, adding up to the answer for a pipeline
of categories and missing values, the same for the same row, and a note for a model family not explained."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mloop.bundle.explain import background_rows, explain, model_family
from mloop.bundle.loaded import LoadedModel, Rows
from mloop.serving.protocol import rows_from_columns


def test_a_linear_models_values_are_its_coefficients_times_the_distance_from_the_background_mean(small_regressor):
    x = np.array([[1.5, -2.0, 0.25]])
    explanation = explain(small_regressor, Rows(x))
    background = background_rows(small_regressor, 50, np.random.default_rng(0))
    expected = small_regressor.estimator.coef_ * (x[0] - background.mean(axis=0))
    found = {c.feature: c.shap_value for c in explanation.contributions}
    assert [found[name] for name in ("a", "b", "c")] == pytest.approx(expected, abs=1e-9)
    assert [c.feature for c in explanation.contributions] == sorted(found, key=lambda name: -abs(found[name]))
    assert explanation.output == "prediction" and explanation.value == pytest.approx(small_regressor.estimator.predict(x)[0])
    assert explanation.base_value == pytest.approx(small_regressor.estimator.predict(background).mean())


def test_a_classifiers_values_add_up_to_the_probability_of_the_class_it_predicted(small_model):
    x = np.array([[0.3, 1.2, -0.4]])
    explanation = explain(small_model, Rows(x))
    proba = small_model.estimator.predict_proba(x)[0]
    assert explanation.output == f"probability of class {int(np.argmax(proba))}"
    assert explanation.value == pytest.approx(proba.max())
    assert sum(c.shap_value for c in explanation.contributions) == pytest.approx(
        explanation.value - explanation.base_value, abs=1e-9)
    assert "linear model" in explanation.method


def test_categories_missing_values_and_an_unseen_category_are_explained_on_the_values_sent(churn_model):
    row = {"plan": "pro", "region": "atlantis", "age": 70, "spend": None, "member": True}
    rows = rows_from_columns(churn_model, [[row[f.name]] for f in churn_model.features])
    explanation = explain(churn_model, rows)
    assert {c.feature: c.value for c in explanation.contributions} == row
    proba = churn_model.estimator.predict_proba(pd.DataFrame([row]).astype({"spend": float}))[0]
    assert explanation.value == pytest.approx(proba.max())
    assert sum(c.shap_value for c in explanation.contributions) == pytest.approx(
        explanation.value - explanation.base_value, abs=1e-9)
    assert explanation.output in ("probability of class churn", "probability of class stay")


def test_with_every_coalition_enumerated_the_same_row_gets_the_same_explanation(churn_model):
    # 5 features: 30 coalitions, all within shap's budget, so nothing is sampled; the background is seeded
    row = [["basic"], [None], [25], [40.0], [False]]
    first = explain(churn_model, rows_from_columns(churn_model, row))
    np.random.seed(99)  # whatever numpy's global state is, the answer is the same
    assert explain(churn_model, rows_from_columns(churn_model, row)) == first


def test_explaining_never_reseeds_numpys_global_random_state(churn_model, monkeypatch):
    """A process-wide change belongs to entrypoints: the model sees the global state its caller left."""
    seen = []
    predict = churn_model.predict

    def recording(rows):
        seen.append(np.random.get_state()[1][:4].copy())
        return predict(rows)

    monkeypatch.setattr(churn_model, "predict", recording)
    np.random.seed(12345)
    before = np.random.get_state()[1][:4].copy()
    explain(churn_model, rows_from_columns(churn_model, [["basic"], [None], [25], [40.0], [False]]))
    assert seen and all(np.array_equal(state, before) for state in seen)


def test_the_background_follows_the_training_frequencies_and_missing_rates(churn_model):
    rows = background_rows(churn_model, 2000, np.random.default_rng(1))
    region = churn_model.features[1]
    shares = pd.Series(rows[:, 1]).value_counts(normalize=True, dropna=False)
    profile = churn_model.profile.features_["region"]
    assert shares[np.nan] == pytest.approx(profile.missing, abs=0.03)
    counts = profile.counts
    expected = counts[region.categories[0]] / sum(counts.values()) * (1 - profile.missing)
    assert shares[0.0] == pytest.approx(expected, abs=0.04)
    assert set(np.unique(rows[:, 4])) == {0.0, 1.0}  # the boolean as 0/1
    assert np.all(rows[:, 2] == np.round(rows[:, 2]))  # ages from the training sample: whole numbers


def test_tree_ensembles_and_linear_models_are_explained_other_families_get_a_note(small_model):
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from xgboost import XGBClassifier

    x, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
    assert [model_family(m) for m in (HistGradientBoostingClassifier(), RandomForestRegressor(), XGBClassifier(),
                                      LGBMClassifier())] == ["tree"] * 4
    assert model_family(make_pipeline(StandardScaler(), small_model.estimator)) == "linear"
    assert model_family(SVC(kernel="linear").fit(x, y)) == "linear"
    assert model_family(SVC().fit(x, y)) is None  # an RBF kernel has no coefficients
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(3)).fit(x, y)
    model = LoadedModel("knn", "1", knn, small_model.info, small_model.features, small_model.profile)
    explanation = explain(model, Rows(x[:1]))
    assert not explanation.explained and "KNeighborsClassifier" in explanation.note
    assert "tree ensembles and linear models" in explanation.note
