"""A churn project's pipeline: string categories, booleans, integers and missing values, string class labels.

Its ``train`` step's ``kind`` picks the model: ``onehot`` (imputers, one-hot encoding and a logistic
regression), ``knn`` (the same preprocessing and k-nearest neighbours), ``hist`` (scikit-learn's
HistGradientBoosting on pandas categories), ``lightgbm`` or ``xgboost``. Write it with
``tests.support.projects.write_project(root, "churn", PIPELINE)``.
"""

from __future__ import annotations

PIPELINE = '''
from __future__ import annotations

from typing import Any

from mloop import ModelCandidate, log_metric, pipeline, step

TARGET = "outcome"


@step
def load_data(n: int = 600, seed: int = 0, category_dtype: bool = False, numeric_target: bool = False) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west"], n)
    age = rng.integers(18, 80, n)
    spend = rng.gamma(2.0, 50.0, n)
    member = rng.random(n) < 0.4
    score = spend / 50 + (plan == "pro") * 2 + member * 1.0 - (age > 60) + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({"plan": plan, "region": region, "age": age, "spend": spend, "member": member})
    frame.loc[rng.random(n) < 0.1, "region"] = None
    frame.loc[rng.random(n) < 0.1, "spend"] = np.nan
    high = score > np.median(score)
    frame[TARGET] = high.astype(int) if numeric_target else np.where(high, "churn", "stay")
    if category_dtype:
        frame = frame.astype({"plan": "category", "region": "category"})
    return frame


@step(outputs=("train", "test"))
def split(data: Any) -> tuple[Any, Any]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(data, test_size=0.25, random_state=0, stratify=data[TARGET])
    return train.reset_index(drop=True), test.reset_index(drop=True)


@step
def train(train: Any, kind: str = "onehot") -> Any:
    features, target = train.drop(columns=[TARGET]), train[TARGET]
    if kind in ("onehot", "knn"):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        encode = ColumnTransformer([
            ("categories", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                                         OneHotEncoder(handle_unknown="ignore")), ["plan", "region"]),
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "spend", "member"]),
        ])
        last = KNeighborsClassifier(n_neighbors=15) if kind == "knn" else LogisticRegression(max_iter=1000)
        return make_pipeline(encode, last).fit(features, target)
    if kind == "hist":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=30, categorical_features="from_dtype").fit(features, target)
    if kind == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(n_estimators=30, verbose=-1).fit(features, target)
    from xgboost import XGBClassifier

    return XGBClassifier(n_estimators=30, enable_categorical=True, tree_method="hist").fit(features, target)


@step
def evaluate(model: Any, test: Any) -> dict[str, float]:
    accuracy = float((model.predict(test.drop(columns=[TARGET])) == test[TARGET]).mean())
    log_metric("accuracy", accuracy)
    return {"accuracy": accuracy}


@pipeline
def training() -> ModelCandidate:
    train_set, test_set = split(load_data())
    model = train(train_set)
    return ModelCandidate(model=model, train=train_set, test=test_set, target=TARGET, metrics=evaluate(model, test_set))
'''
