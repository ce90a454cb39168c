"""The promotion gate: score candidate and champion on the same test set, apply the configured rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mloop.errors import ConfigError, did_you_mean

# metric -> (needs probabilities, sklearn.metrics function name, extra kwargs)
METRICS: dict[str, tuple[bool, str, dict[str, Any]]] = {
    "accuracy": (False, "accuracy_score", {}),
    "balanced_accuracy": (False, "balanced_accuracy_score", {}),
    "f1": (False, "f1_score", {"average": "binary"}),
    "f1_macro": (False, "f1_score", {"average": "macro"}),
    "precision": (False, "precision_score", {"average": "binary"}),
    "recall": (False, "recall_score", {"average": "binary"}),
    "roc_auc": (True, "roc_auc_score", {}),
    "log_loss": (True, "log_loss", {}),
    "r2": (False, "r2_score", {}),
    "mae": (False, "mean_absolute_error", {}),
    "mse": (False, "mean_squared_error", {}),
}


def check_metric(name: str) -> None:
    if name not in METRICS:
        raise ConfigError(
            f"[promotion] metric {name!r} is not one mloop can score; {did_you_mean(name, METRICS)}",
            hint="set [promotion] metric in mloop.toml to one of: " + ", ".join(METRICS),
        )


def score(metric: str, model: Any, features: Any, target: Any) -> float:
    """The model's ``metric`` on ``(features, target)``, computed with scikit-learn."""
    from sklearn import metrics as skm

    check_metric(metric)
    needs_proba, fn_name, kwargs = METRICS[metric]
    fn = getattr(skm, fn_name)
    if needs_proba:
        proba = model.predict_proba(features)
        prediction = proba[:, 1] if proba.shape[1] == 2 and metric == "roc_auc" else proba
        return float(fn(target, prediction, **kwargs))
    return float(fn(target, model.predict(features), **kwargs))


@dataclass
class Decision:
    promote: bool
    reason: str
    candidate_score: float
    champion_score: float | None = None
    champion_version: str | None = None


def decide(metric: str, direction: str, min_improvement: float, candidate: float, champion: float | None,
           champion_version: str | None = None) -> Decision:
    """Promote when there is no champion, or the candidate beats it by at least ``min_improvement``."""
    if champion is None:
        return Decision(True, f"no champion yet; {metric} = {candidate:.4f}", candidate)
    gain = candidate - champion if direction == "maximize" else champion - candidate
    verdict = f"{metric} {candidate:.4f} vs champion v{champion_version} {champion:.4f} on the same test set"
    if gain > 0 and gain >= min_improvement:
        return Decision(True, f"{verdict}: better by {gain:.4f}", candidate, champion, champion_version)
    need = f"needs to be {'higher' if direction == 'maximize' else 'lower'}"
    if min_improvement > 0:
        need += f" by at least {min_improvement}"
    return Decision(False, f"{verdict}: not promoted ({need})", candidate, champion, champion_version)
