import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mloop.bundle.format import BundleInfo
from mloop.bundle.loaded import Feature, LoadedModel
from mloop.bundle.profile import ReferenceProfile

FEATURES = ["a", "b", "c"]


@pytest.fixture(scope="session")
def small_model() -> LoadedModel:
    """A logistic regression on three features, as the server sees a bundle (no MLflow needed)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=FEATURES)
    target = (frame["a"] + frame["b"] > 0).astype(int)
    estimator = LogisticRegression().fit(frame.to_numpy(), target)
    frame["c"] = frame["c"].mask(frame.index % 10 == 0)  # "c" had missing values in training
    info = BundleInfo(target="target", features=FEATURES, classes=[0, 1])
    features = [Feature("a", "float", False), Feature("b", "float", False), Feature("c", "float", True)]
    return LoadedModel("toy", "3", estimator, info, features, ReferenceProfile().fit(frame))


@pytest.fixture(scope="session")
def small_regressor() -> LoadedModel:
    """A linear regression on the same three features, as the server sees its bundle."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=FEATURES)
    frame["target"] = 3.0 * frame["a"] - frame["b"] + rng.normal(scale=0.1, size=200)
    estimator = LinearRegression().fit(frame[FEATURES].to_numpy(), frame["target"])
    info = BundleInfo(target="target", features=FEATURES, task="regression")
    features = [Feature(name, "float", False) for name in FEATURES]
    return LoadedModel("reg", "1", estimator, info, features, ReferenceProfile().fit(frame))
