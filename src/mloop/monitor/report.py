"""A self-contained HTML drift report: per-feature histograms (reference vs current), statistics, verdicts,
and accuracy over time when labelled predictions exist. Rendered from a Jinja2 template (autoescaped)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mloop.monitor.drift import DriftReport, open_edges
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
    counts = frame[name].dropna().astype(str).value_counts()
    return (np.asarray([feature.counts[c] for c in categories], dtype=np.float64),
            np.asarray([counts.get(c, 0) for c in categories], dtype=np.float64))


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def accuracy_over_time(predictions: Any, feedback: Any, buckets: int = 12) -> Any:
    """Accuracy of the labelled predictions in equal time buckets: a DataFrame of start, end, labelled, accuracy."""
    import pandas as pd

    joined = feedback[[REQUEST_ID, ROW, LABEL]].merge(
        predictions[[REQUEST_ID, ROW, TS, PREDICTION]], on=[REQUEST_ID, ROW], how="inner")
    if not len(joined):
        return None
    correct = joined[PREDICTION].astype(str) == joined[LABEL].astype(str)
    start, end = joined[TS].min(), joined[TS].max()
    edges = pd.date_range(start, end if end > start else start + pd.Timedelta(seconds=1), periods=buckets + 1)
    which = pd.cut(joined[TS], edges, include_lowest=True, labels=False)
    grouped = correct.groupby(which).agg(["size", "mean"])
    return pd.DataFrame({"start": edges[grouped.index.astype(int)], "end": edges[grouped.index.astype(int) + 1],
                         "labelled": grouped["size"].to_numpy(), "accuracy": grouped["mean"].to_numpy()})


def _accuracy_chart(accuracy: Any, width: int = 480, height: int = 120) -> dict[str, Any]:
    """The line of accuracy per time bucket (0 at the bottom, 1 at the top) and the table of the buckets."""
    values = accuracy["accuracy"].to_numpy(dtype=float)
    left, step = 34, (width - 34) / max(len(values) - 1, 1)
    span = (accuracy["end"].iloc[-1] - accuracy["start"].iloc[0]).total_seconds()
    clock = "%H:%M:%S.%f" if span < 60 else "%H:%M:%S"
    rows = [{"start": f"{r.start:%Y-%m-%d} {r.start.strftime(clock)[:12]}", "end": r.end.strftime(clock)[:12],
             "labelled": int(r.labelled), "accuracy": float(r.accuracy)} for r in accuracy.itertuples()]
    return {"width": width, "height": height, "left": left, "labelled": int(accuracy["labelled"].sum()), "rows": rows,
            "points": " ".join(f"{left + i * step:.1f},{height - v * (height - 4) - 2:.1f}" for i, v in enumerate(values))}


def render(title: str, profile: Reference, frame: Any, report: DriftReport, *, accuracy: Any = None) -> str:
    """The report as one HTML page (no external files)."""
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
        accuracy=_accuracy_chart(accuracy) if accuracy is not None and len(accuracy) else None)
