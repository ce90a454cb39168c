"""Any scikit-learn-compatible estimator is saved in MLflow's skops format with exactly its own types
trusted, and comes back predicting the same: tree ensembles, boosting, imputers, XGBoost, LightGBM."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

RNG = np.random.default_rng(0)
X = pd.DataFrame({"a": RNG.normal(size=300), "b": RNG.normal(size=300), "c": RNG.integers(0, 5, 300).astype(float)})
Y_BINARY = (X["a"] + X["b"] > 0).astype(int)
Y_MULTI = pd.cut(X["a"], [-np.inf, -0.5, 0.5, np.inf], labels=False).astype(int)
Y_REGRESSION = 2.0 * X["a"] - X["b"] + RNG.normal(scale=0.1, size=300)
X_MISSING = X.mask(RNG.random(X.shape) < 0.1)


def kinds():
    from lightgbm import LGBMClassifier, LGBMRegressor
    from sklearn.ensemble import (ExtraTreesClassifier, GradientBoostingClassifier, HistGradientBoostingClassifier,
                                  HistGradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeRegressor
    from xgboost import XGBClassifier, XGBRegressor

    return {
        "random forest (binary)": (RandomForestClassifier(20, random_state=0), X, Y_BINARY),
        "extra trees (multiclass)": (ExtraTreesClassifier(20, random_state=0), X, Y_MULTI),
        "gradient boosting (multiclass)": (GradientBoostingClassifier(n_estimators=20), X, Y_MULTI),
        "hist gradient boosting with missing values": (HistGradientBoostingClassifier(max_iter=20), X_MISSING, Y_BINARY),
        "hist gradient boosting (regression)": (HistGradientBoostingRegressor(max_iter=20), X, Y_REGRESSION),
        "random forest (regression)": (RandomForestRegressor(20, random_state=0), X, Y_REGRESSION),
        "decision tree (regression)": (DecisionTreeRegressor(max_depth=4), X, Y_REGRESSION),
        "imputer + logistic regression": (make_pipeline(SimpleImputer(), LogisticRegression()), X_MISSING, Y_BINARY),
        "SVC with probabilities": (SVC(probability=True, random_state=0), X, Y_BINARY),
        "XGBoost classifier": (XGBClassifier(n_estimators=20), X, Y_MULTI),
        "XGBoost regressor": (XGBRegressor(n_estimators=20), X, Y_REGRESSION),
        "LightGBM classifier": (LGBMClassifier(n_estimators=20, verbose=-1), X, Y_BINARY),
        "LightGBM regressor": (LGBMRegressor(n_estimators=20, verbose=-1), X, Y_REGRESSION),
    }


@pytest.mark.parametrize("kind", list(kinds()))
def test_the_model_is_saved_with_its_own_types_trusted_and_loads_back_predicting_the_same(kind, tmp_path: Path):
    import mlflow.sklearn
    from mlflow.models import Model

    from mloop.registry.register import _save_model

    estimator, features, target = kinds()[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = estimator.fit(features, target)
        _save_model(model, features, tmp_path / "model")
        again = mlflow.sklearn.load_model(str(tmp_path / "model"))
        assert np.allclose(np.asarray(again.predict(features), dtype=float), np.asarray(model.predict(features), dtype=float))
    flavor = Model.load(str(tmp_path / "model")).flavors["sklearn"]
    assert flavor["serialization_format"] == "skops"
    assert isinstance(flavor["skops_trusted_types"], list)  # exactly the model's own, recorded at save time
