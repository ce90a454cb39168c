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


@pytest.fixture(scope="session")
def churn_model() -> LoadedModel:
    """Imputers, one-hot encoding and a logistic regression on string categories, an integer, a number with
    missing values and a boolean, with string labels: as the server loads such a bundle."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"plan": rng.choice(["basic", "plus", "pro"], n), "region": rng.choice(["north", "south"], n),
                          "age": rng.integers(18, 80, n), "spend": rng.gamma(2.0, 50.0, n), "member": rng.random(n) < 0.4})
    frame.loc[rng.random(n) < 0.1, "region"] = None
    frame.loc[rng.random(n) < 0.1, "spend"] = np.nan
    score = frame["spend"].fillna(100) / 50 + (frame["plan"] == "pro") * 2 - (frame["age"] > 60)
    target = np.where(score > np.median(score), "churn", "stay")
    encode = ColumnTransformer([
        ("categories", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                                     OneHotEncoder(handle_unknown="ignore")), ["plan", "region"]),
        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "spend", "member"])])
    estimator = make_pipeline(encode, LogisticRegression(max_iter=1000)).fit(frame, target)
    from mloop.bundle.schema import describe

    schema = describe(frame)
    info = BundleInfo(target="outcome", features=list(frame.columns), task="binary", classes=["churn", "stay"],
                      schema=schema)
    features = [Feature(s.name, s.type, s.nullable, list(s.categories), s.dtype) for s in schema]
    return LoadedModel("churn", "1", estimator, info, features, ReferenceProfile().fit(frame))
