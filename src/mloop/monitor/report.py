"""A self-contained HTML drift report: per-feature histograms (reference vs current), statistics, verdicts,
and accuracy over time when labelled predictions exist. Rendered from a Jinja2 template (autoescaped)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mloop.monitor.drift import DriftReport, category_values, open_edges
from mloop.monitor.model import FeatureReference, Reference
from mloop.monitor.predlog import LABEL, PREDICTION, REQUEST_ID, ROW, TS

CHART_WIDTH, CHART_HEIGHT = 240, 60


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str


def histogram_bars(reference: np.ndarray, current: np.ndarray, width: int = CHART_WIDTH,
                   height: int = CHART_HEIGHT) -> list[Bar]:
    """Two bar series (reference grey, current blue) as proportions over the same bins."""
    ref = reference / max(reference.sum(), 1)
    cur = current / max(current.sum(), 1)
    top = max(float(ref.max(initial=0)), float(cur.max(initial=0)), 1e-9)
    step = width / max(len(ref), 1)
    bars = []
    for i, (r, c) in enumerate(zip(ref, cur, strict=True)):
        for offset, value, colour in ((0.1, r, "#9e9e9e"), (0.5, c, "#1e88e5")):
            h = float(value) / top * (height - 2)
            bars.append(Bar(i * step + offset * step, height - h, step * 0.4, h, colour))
    return bars


def histogram_counts(name: str, feature: FeatureReference, frame: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Feature ``name``'s counts in training (``feature``: its reference) and in ``frame``, over the same bins: the
    reference's quantile bins (open at both ends) for a numeric feature, its categories for a categorical one.
    None when ``frame`` lacks the column or the reference has no bins."""
    if name not in frame.columns:
        return None
    if feature.kind == "numeric":
        if not len(feature.edges):
            return None
        values = frame[name].to_numpy(dtype=np.float64)
        current, _ = np.histogram(values[~np.isnan(values)], bins=open_edges(feature.edges))
        return np.asarray(feature.counts, dtype=np.float64), current.astype(np.float64)
    categories = list(feature.counts)
    counts = category_values(feature, frame[name]).value_counts()
    return (np.asarray([feature.counts[c] for c in categories], dtype=np.float64),
            np.asarray([counts.get(c, 0) for c in categories], dtype=np.float64))


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def bin_labels(feature: FeatureReference) -> list[str]:
    """The names of the bins ``histogram_counts`` counts a feature in: ranges of the reference's quantile bins (the
    outer two open), or its categories."""
    if feature.kind != "numeric":
        return [str(c) for c in feature.counts]
    edges = list(feature.edges)
    inner = [f"{a:.3g} to {b:.3g}" for a, b in zip(edges[1:-2], edges[2:-1], strict=True)]
    return ([f"< {edges[1]:.3g}"] if len(edges) > 2 else []) + inner + [f">= {edges[-2]:.3g}" if len(edges) > 2
                                                                        else "all"]


def _labelled(predictions: Any, feedback: Any) -> Any:
    """The labelled predictions: the feedback log joined to the prediction log by request id and row."""
    return feedback[[REQUEST_ID, ROW, LABEL]].merge(
        predictions[[REQUEST_ID, ROW, TS, PREDICTION]], on=[REQUEST_ID, ROW], how="inner")


def _per_bucket(joined: Any, values: Any, column: str, buckets: int) -> Any:
    """The mean of ``values`` (one per row of ``joined``) in equal time buckets of ``joined``'s ``ts``: a DataFrame
    of start, end, labelled, ``column``."""
    import pandas as pd

    start, end = joined[TS].min(), joined[TS].max()
    edges = pd.date_range(start, end if end > start else start + pd.Timedelta(seconds=1), periods=buckets + 1)
    which = pd.cut(joined[TS], edges, include_lowest=True, labels=False)
    grouped = values.groupby(which).agg(["size", "mean"])
    return pd.DataFrame({"start": edges[grouped.index.astype(int)], "end": edges[grouped.index.astype(int) + 1],
                         "labelled": grouped["size"].to_numpy(), column: grouped["mean"].to_numpy()})


def accuracy_over_time(predictions: Any, feedback: Any, buckets: int = 12) -> Any:
    """A classifier's accuracy on its labelled predictions in equal time buckets: a DataFrame of start, end,
    labelled, accuracy (None when no prediction was labelled)."""
    joined = _labelled(predictions, feedback)
    if not len(joined):
        return None
    correct = joined[PREDICTION].astype(str) == joined[LABEL].astype(str)
    return _per_bucket(joined, correct, "accuracy", buckets)


def error_over_time(predictions: Any, feedback: Any, buckets: int = 12) -> Any:
    """A regressor's mean absolute error on its labelled predictions in equal time buckets: a DataFrame of start,
    end, labelled, mae (None when no prediction was labelled with a number)."""
    import pandas as pd

    joined = _labelled(predictions, feedback)
    error = (pd.to_numeric(joined[PREDICTION], errors="coerce") - pd.to_numeric(joined[LABEL], errors="coerce")).abs()
    joined, error = joined[error.notna()], error[error.notna()]
    if not len(joined):
        return None
    return _per_bucket(joined, error, "mae", buckets)


def labelled_over_time(predictions: Any, feedback: Any, *, regression: bool, buckets: int = 12) -> Any:
    """How the labelled predictions scored over time: ``error_over_time`` for a regressor, ``accuracy_over_time``
    for a classifier (None when no prediction was labelled)."""
    score = error_over_time if regression else accuracy_over_time
    return score(predictions, feedback, buckets)


SCORES = {"accuracy": "Accuracy", "mae": "Mean absolute error"}  # a column of labelled_over_time -> its title


def _scores_chart(scores: Any, width: int = 480, height: int = 120) -> dict[str, Any]:
    """The line of a score per time bucket (accuracy from 0 to 1; an error from 0 to its largest value) and the
    table of the buckets."""
    column = "accuracy" if "accuracy" in scores else "mae"
    values = scores[column].to_numpy(dtype=float)
    top = 1.0 if column == "accuracy" else max(float(values.max(initial=0.0)), 1e-12)
    left, step = 34, (width - 34) / max(len(values) - 1, 1)
    span = (scores["end"].iloc[-1] - scores["start"].iloc[0]).total_seconds()
    clock = "%H:%M:%S.%f" if span < 60 else "%H:%M:%S"
    rows = [{"start": f"{r.start:%Y-%m-%d} {r.start.strftime(clock)[:12]}", "end": r.end.strftime(clock)[:12],
             "labelled": int(r.labelled), "value": float(getattr(r, column))} for r in scores.itertuples()]
    return {"width": width, "height": height, "left": left, "labelled": int(scores["labelled"].sum()), "rows": rows,
            "title": SCORES[column], "metric": "accuracy" if column == "accuracy" else "mean absolute error",
            "top": f"{top:.3g}", "middle": f"{top / 2:.3g}",
            "points": " ".join(f"{left + i * step:.1f},{height - v / top * (height - 4) - 2:.1f}"
                               for i, v in enumerate(values))}


def render(title: str, profile: Reference, frame: Any, report: DriftReport, *, scores: Any = None) -> str:
    """The report as one HTML page (no external files); ``scores``: ``labelled_over_time`` of the served rows."""
    from jinja2 import Environment, PackageLoader

    env = Environment(loader=PackageLoader("mloop", "templates/report"), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True)
    features = []
    for name, feature in sorted(report.features.items(), key=lambda kv: (not kv[1].drifted, kv[0])):
        counts = histogram_counts(name, profile.features_[name], frame)
        features.append({"name": name, "drifted": feature.drifted, "bars": histogram_bars(*counts) if counts else [],
                         "psi": number(feature.psi), "statistic": number(feature.statistic),
                         "p_value": number(feature.p_value), "n": feature.n, "missing": feature.missing,
                         "reason": feature.reason})
    share = report.drifted_share
    summary = ("not enough data for a verdict" if share is None
               else f"{sum(bool(f.drifted) for f in report.evaluated)} of {len(report.evaluated)} features drifted "
                    f"({share:.0%})")
    return env.get_template("drift.html.j2").render(
        title=title, n_rows=report.n_rows, reference_rows=profile.n_rows_, summary=summary,
        generated=time.strftime("%Y-%m-%d %H:%M:%S"), features=features, chart_width=CHART_WIDTH,
        chart_height=CHART_HEIGHT,
        scores=_scores_chart(scores) if scores is not None and len(scores) else None)
