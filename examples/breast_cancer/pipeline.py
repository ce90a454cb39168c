"""Breast-cancer classifier: two candidate models trained side by side, the best one registered.

Heavy libraries are imported inside the steps, so a fully cached run never imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mloop import ModelCandidate, log_figure, log_metric, pipeline, step

TARGET = "target"
N_FEATURES = 30


@step
def load_data(path: Path = Path("data/breast_cancer.csv")) -> Any:
    import pandas as pd

    return pd.read_csv(path)


@step
def validate(data: Any) -> Any:
    """Fail early, with the column named, if the file is not what the models expect."""
    import pandas as pd

    if TARGET not in data.columns:
        raise ValueError(f"column {TARGET!r} is missing; columns are {list(data.columns)[:5]}...")
    features = [c for c in data.columns if c != TARGET]
    if len(features) != N_FEATURES:
        raise ValueError(f"expected {N_FEATURES} feature columns, found {len(features)}")
    for column in features:
        if not pd.api.types.is_numeric_dtype(data[column]):
            raise ValueError(f"feature {column!r} is {data[column].dtype}, expected numbers")
    missing = data.columns[data.isna().any()].tolist()
    if missing:
        raise ValueError(f"missing values in {missing}")
    labels = set(data[TARGET].unique())
    if not labels <= {0, 1}:
        raise ValueError(f"target must be 0 (malignant) or 1 (benign), found {sorted(labels)}")
    if len(data) < 100:
        raise ValueError(f"only {len(data)} rows; need at least 100 to train and test")
    return data


@step(outputs=("train", "test"))
def split(data: Any, test_size: float = 0.2, seed: int = 42) -> tuple[Any, Any]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(data, test_size=test_size, random_state=seed, stratify=data[TARGET])
    return train.reset_index(drop=True), test.reset_index(drop=True)


@step(name="logreg")
def train_logreg(train: Any, C: float = 1.0, max_iter: int = 5000) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    return model.fit(train.drop(columns=[TARGET]), train[TARGET])


@step(name="knn")
def train_knn(train: Any, n_neighbors: int = 5, weights: str = "uniform") -> Any:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=n_neighbors, weights=weights))
    return model.fit(train.drop(columns=[TARGET]), train[TARGET])


@step(name="outliers")
def train_outlier_detector(train: Any, n_estimators: int = 100, seed: int = 42) -> Any:
    from sklearn.ensemble import IsolationForest

    return IsolationForest(n_estimators=n_estimators, random_state=seed).fit(train.drop(columns=[TARGET]))


@step
def evaluate(logreg: Any, knn: Any, test: Any) -> dict[str, dict[str, float]]:
    """Score both candidates on the test set; log their metrics, confusion matrices and ROC curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn import metrics

    features, truth = test.drop(columns=[TARGET]), test[TARGET]
    scores: dict[str, dict[str, float]] = {}
    for name, model in (("logreg", logreg), ("knn", knn)):
        predicted = model.predict(features)
        proba = model.predict_proba(features)[:, 1]
        scores[name] = {
            "accuracy": metrics.accuracy_score(truth, predicted),
            "f1": metrics.f1_score(truth, predicted),
            "precision": metrics.precision_score(truth, predicted),
            "recall": metrics.recall_score(truth, predicted),
            "roc_auc": metrics.roc_auc_score(truth, proba),
        }
        for metric, value in scores[name].items():
            log_metric(f"{name}.{metric}", value)
        figure, axes = plt.subplots(figsize=(5, 4))
        metrics.ConfusionMatrixDisplay.from_predictions(
            truth, predicted, display_labels=["malignant", "benign"], ax=axes, colorbar=False)
        axes.set_title(f"{name}: confusion matrix")
        log_figure(figure, f"{name}_confusion_matrix.png")
        plt.close(figure)
        figure, axes = plt.subplots(figsize=(5, 4))
        metrics.RocCurveDisplay.from_predictions(truth, proba, ax=axes, name=name)
        axes.set_title(f"{name}: ROC curve")
        log_figure(figure, f"{name}_roc_curve.png")
        plt.close(figure)
    return scores


@step(outputs=("model", "metrics"))
def select(logreg: Any, knn: Any, scores: dict[str, dict[str, float]], metric: str = "accuracy") -> tuple[Any, dict[str, float]]:
    """The candidate with the best ``metric`` (ties go to the simpler logistic regression)."""
    candidates = {"logreg": logreg, "knn": knn}
    if metric not in scores["logreg"]:
        raise ValueError(f"metric {metric!r} is not computed; choose one of {sorted(scores['logreg'])}")
    best = max(candidates, key=lambda name: (scores[name][metric], name == "logreg"))
    log_metric(metric, scores[best][metric])
    print(f"selected {best}: {metric} = {scores[best][metric]:.4f}")
    return candidates[best], {"selected_" + best: 1.0, **scores[best]}


@pipeline
def training() -> ModelCandidate:
    data = validate(load_data())
    train, test = split(data)
    logreg = train_logreg(train)
    knn = train_knn(train)
    detector = train_outlier_detector(train)
    scores = evaluate(logreg, knn, test)
    model, metrics = select(logreg, knn, scores)
    return ModelCandidate(model=model, train=train, test=test, target=TARGET, metrics=metrics,
                          outlier_detector=detector)
