"""Why a model answered what it did for one row: the SHAP value of each raw feature.

Models are scikit-learn estimators, often Pipelines whose preprocessing (imputers, encoders, scalers)
turns the features a client sends into others. Explaining the features a client sends takes a
model-agnostic explainer: shap's kernel explainer on the function "feature rows -> the model's output"
(the probability of the class it predicted, or a regressor's value), with background rows drawn from the
training data's ``ReferenceProfile``. The contributions add up exactly to the row's output minus the
background's mean output, whatever the pipeline does inside. (shap's newer permutation and exact
explainers compile their masking with numba on first use: about ten seconds per process on a small
machine, before the first answer; the kernel explainer needs none.)

It is offered for the model families whose output SHAP explains well at a bounded cost: tree ensembles
(scikit-learn's trees, forests and gradient boosting, XGBoost, LightGBM, CatBoost) and linear models
(an estimator with ``coef_``). Any other (k-nearest neighbours, kernel SVMs, neural networks) gets a
note saying so instead of numbers.

Background: numeric features whose profile sample kept every training row picked (no missing values)
share row indexes, so they are drawn as whole training rows; the others, categorical and boolean
features independently, by their training frequencies and missing rates.

Determinism: the background comes from ``seed``. With few features (``2**M - 2`` coalitions within shap's
sample budget, e.g. up to about 11 features with the default) the kernel explainer enumerates every coalition
and one row always gets one explanation. With more, it samples coalitions from numpy's global random state,
which shap offers no way to pass a generator to; mloop leaves that state alone (process-wide state belongs to
entrypoints), so two calls may differ slightly there. The contributions add up exactly either way, and a caller
that must show one row one explanation caches it (the web app does). shap is imported only here, when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mloop.bundle.loaded import LoadedModel, Rows
from mloop.bundle.profile import CategoricalProfile, NumericProfile

if TYPE_CHECKING:
    import numpy as np

BACKGROUND_ROWS = 50
_TREE_LIBRARIES = ("xgboost", "lightgbm", "catboost")


@dataclass(frozen=True)
class Contribution:
    """One feature's part in an answer: its value (as sent: a number, true/false, a category, None for
    missing) and how much it moved the output from the background's mean (SHAP value)."""

    feature: str
    value: Any
    shap_value: float


@dataclass(frozen=True)
class Explanation:
    """The features that pushed one answer, most influential first; or, when the model is not explained, why."""

    contributions: tuple[Contribution, ...] = ()
    output: str = ""  # what is explained: "probability of class churn", or "prediction" for a regressor
    base_value: float | None = None  # the mean output over the background rows
    value: float | None = None  # the output for this row: base_value plus the sum of the contributions
    method: str = ""
    note: str = ""  # why there are no contributions

    @property
    def explained(self) -> bool:
        return bool(self.contributions)


def model_family(estimator: Any) -> Literal["tree", "linear"] | None:
    """The family of the last step of an estimator (a Pipeline's final estimator), if SHAP explains it here."""
    final = estimator
    while hasattr(final, "steps") and final.steps:
        final = final.steps[-1][1]
    kind = type(final)
    module, name = kind.__module__, kind.__name__
    if module.split(".")[0] in _TREE_LIBRARIES or module.startswith("sklearn.tree") or (
            module.startswith("sklearn.ensemble") and any(part in name for part in ("Forest", "Trees", "Boost"))):
        return "tree"
    try:
        if getattr(final, "coef_", None) is not None:  # (a kernel SVC raises AttributeError on coef_)
            return "linear"
    except AttributeError:
        pass
    return None


def explain(model: LoadedModel, rows: Rows, *, background: int = BACKGROUND_ROWS, seed: int = 0,
            samples: int | None = None) -> Explanation:
    """The SHAP values of the first of ``rows`` (feature rows as the server builds them from a request), or an
    Explanation with a note when the model's family is not explained (see ``model_family``)."""
    import numpy as np

    estimator = model.estimator
    family = model_family(estimator)
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") and estimator.steps else estimator
    if family is None:
        return Explanation(note=f"No feature contributions for this model: SHAP explanations are computed for tree "
                                f"ensembles and linear models, and its estimator is a {type(final).__name__}.")
    instance = rows.take(slice(0, 1))
    _, proba = model.predict(instance)
    if model.classes and proba is None:
        return Explanation(note=f"No feature contributions: the {type(final).__name__} gives no class "
                                "probabilities to explain.")
    target = int(np.argmax(proba[0])) if proba is not None else None
    lookups, x = _categorical_lookups(model, instance)

    def output(matrix: np.ndarray) -> np.ndarray:
        predicted, probabilities = model.predict(Rows(matrix, _decoded(model, lookups, matrix)))
        if probabilities is not None and target is not None:
            return np.asarray(probabilities[:, target], dtype=np.float64)
        return np.asarray(predicted, dtype=np.float64)

    rng = np.random.default_rng(seed)
    reference = background_rows(model, background, rng)
    shap_values, base = _kernel_shap(output, reference, x, samples)
    values = _sent_values(model, instance)
    contributions = sorted((Contribution(name, values[i], float(shap_values[i]))
                            for i, name in enumerate(model.feature_names)), key=lambda c: -abs(c.shap_value))
    what = (f"probability of class {model.classes[target]}" if target is not None and target < len(model.classes)
            else "probability of the predicted class" if target is not None else "prediction")
    return Explanation(tuple(contributions), what, base, base + float(np.sum(shap_values)),
                       f"SHAP (kernel explainer on the raw features, {len(reference)} background rows "
                       f"from the training profile; {family} model)")


def background_rows(model: LoadedModel, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` feature rows (as ``Rows.values``: categories as training category indexes) drawn from the training
    data's profile; without a profile, the model's typical row repeated."""
    import numpy as np

    profile = model.profile
    rows = np.repeat(model.typical_rows().values, n, axis=0)
    if profile is None:
        return rows
    samples = {i: profile.features_.get(f.name) for i, f in enumerate(model.features)}
    numeric = {i: p.sample for i, p in samples.items() if isinstance(p, NumericProfile) and p.sample}
    longest = max((len(s) for s in numeric.values()), default=0)
    if longest:  # features whose sample kept every row picked share the row indexes: drawn as whole rows
        picked = rng.choice(longest, size=n, replace=longest < n)
        for i, sample in numeric.items():
            if len(sample) == longest:
                rows[:, i] = np.asarray(sample)[picked]
            else:
                rows[:, i] = rng.choice(np.asarray(sample), size=n)
    for i, feature in enumerate(model.features):
        reference = samples[i]
        if isinstance(reference, CategoricalProfile) and feature.type in ("categorical", "boolean"):
            codes = ({c: float(j) for j, c in enumerate(feature.categories)} if feature.type == "categorical"
                     else {"True": 1.0, "False": 0.0, "1": 1.0, "0": 0.0})
            known = [(codes[c], count) for c, count in reference.counts.items() if c in codes and count > 0]
            if known:
                weights = np.asarray([count for _, count in known], dtype=np.float64)
                rows[:, i] = rng.choice([code for code, _ in known], size=n, p=weights / weights.sum())
        if feature.allow_missing and reference is not None and reference.missing > 0 and (
                i not in numeric or len(numeric[i]) != longest):
            rows[rng.random(n) < reference.missing, i] = np.nan
    return rows


def _categorical_lookups(model: LoadedModel, instance: Rows) -> tuple[list[np.ndarray], np.ndarray]:
    """Per categorical feature, its values by index (the training categories, then the row's own value when
    training never saw it), and the row's values with that index."""
    import numpy as np

    x = instance.values.copy()
    lookups = []
    for position, index in enumerate(model.categorical):
        categories: list[Any] = list(model.features[index].categories) or [""]  # (as LoadedModel.typical_rows)
        sent = instance.text[0, position] if instance.text is not None else None
        if sent is not None and x[0, index] == -1.0:
            categories.append(sent)
            x[0, index] = float(len(categories) - 1)
        lookups.append(np.asarray(categories, dtype=object))
    return lookups, x


def _decoded(model: LoadedModel, lookups: list[np.ndarray], matrix: np.ndarray) -> np.ndarray | None:
    """The categorical values (``Rows.text``) of rows whose categories are indexes into ``lookups``."""
    import numpy as np

    if not model.categorical:
        return None
    text = np.full((matrix.shape[0], len(model.categorical)), None, dtype=object)
    for position, index in enumerate(model.categorical):
        codes = matrix[:, index]
        present = ~np.isnan(codes)
        text[present, position] = lookups[position][codes[present].astype(np.int64)]
    return text


def _sent_values(model: LoadedModel, instance: Rows) -> list[Any]:
    """The row's values as a client sends them: numbers, true/false, categories, None for missing."""
    import math

    found: list[Any] = []
    for index, feature in enumerate(model.features):
        value = float(instance.values[0, index])
        if feature.type == "categorical":
            assert instance.text is not None
            found.append(instance.text[0, model.categorical.index(index)])
        elif math.isnan(value):
            found.append(None)
        elif feature.type == "boolean":
            found.append(value == 1.0)
        elif feature.type == "integer":
            found.append(int(value))
        else:
            found.append(value)
    return found


def _kernel_shap(output: Any, reference: np.ndarray, x: np.ndarray,
                 samples: int | None) -> tuple[np.ndarray, float]:
    """shap's kernel explainer on one row (every feature kept: no L1 selection): its SHAP values and base value."""
    import numpy as np
    import shap

    explainer = shap.KernelExplainer(output, reference)
    values = explainer.shap_values(x, nsamples=samples or "auto", l1_reg=False, silent=True)
    return np.asarray(values, dtype=np.float64).reshape(-1), float(np.asarray(explainer.expected_value).reshape(-1)[0])
