"""A self-contained HTML drift report: per-feature histograms (reference vs current), statistics, verdicts."""

from __future__ import annotations

import html
import time
from typing import Any

import numpy as np

from mloop.monitor.drift import DriftReport, FeatureDrift, open_edges
from mloop.monitor.profile import ReferenceProfile

_CSS = """body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse}
td,th{padding:.3rem .6rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:middle}
.drift{color:#b00020;font-weight:600}.ok{color:#1b5e20}.na{color:#777}.legend span{display:inline-block;
width:.8rem;height:.8rem;margin:0 .3rem 0 1rem}"""


def _histogram_svg(reference: np.ndarray, current: np.ndarray, width: int = 240, height: int = 60) -> str:
    """Two bar series (reference grey, current blue) as proportions over the same bins."""
    ref = reference / max(reference.sum(), 1)
    cur = current / max(current.sum(), 1)
    top = max(float(ref.max(initial=0)), float(cur.max(initial=0)), 1e-9)
    step = width / max(len(ref), 1)
    bars = []
    for i, (r, c) in enumerate(zip(ref, cur, strict=True)):
        x = i * step
        for offset, value, colour in ((0.1, r, "#9e9e9e"), (0.5, c, "#1e88e5")):
            h = value / top * (height - 2)
            bars.append(f'<rect x="{x + offset * step:.1f}" y="{height - h:.1f}" width="{step * 0.4:.1f}" '
                        f'height="{h:.1f}" fill="{colour}"/>')
    return f'<svg width="{width}" height="{height}" role="img">{"".join(bars)}</svg>'


def _current_counts(name: str, spec: dict[str, Any], frame: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if name not in frame.columns:
        return None
    if spec["kind"] == "numeric" and spec.get("edges"):
        values = frame[name].to_numpy(dtype=np.float64)
        current, _ = np.histogram(values[~np.isnan(values)], bins=open_edges(spec["edges"]))
        return np.asarray(spec["counts"], dtype=np.float64), current.astype(np.float64)
    if spec["kind"] == "categorical":
        categories = list(spec["counts"])
        counts = frame[name].dropna().astype(str).value_counts()
        return (np.asarray([spec["counts"][c] for c in categories], dtype=np.float64),
                np.asarray([counts.get(c, 0) for c in categories], dtype=np.float64))
    return None


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _verdict(feature: FeatureDrift) -> str:
    if feature.drifted is None:
        return '<span class="na">no verdict</span>'
    return '<span class="drift">drift</span>' if feature.drifted else '<span class="ok">stable</span>'


def accuracy_over_time(predictions: Any, feedback: Any, buckets: int = 12) -> Any:
    """Accuracy of the labelled predictions in equal time buckets: a DataFrame of start, end, labelled, accuracy."""
    import pandas as pd

    joined = feedback[["request_id", "row", "label"]].merge(
        predictions[["request_id", "row", "ts", "prediction"]], on=["request_id", "row"], how="inner")
    if not len(joined):
        return None
    correct = joined["prediction"].astype(str) == joined["label"].astype(str)
    start, end = joined["ts"].min(), joined["ts"].max()
    edges = pd.date_range(start, end if end > start else start + pd.Timedelta(seconds=1), periods=buckets + 1)
    which = pd.cut(joined["ts"], edges, include_lowest=True, labels=False)
    grouped = correct.groupby(which).agg(["size", "mean"])
    return pd.DataFrame({"start": edges[grouped.index.astype(int)], "end": edges[grouped.index.astype(int) + 1],
                         "labelled": grouped["size"].to_numpy(), "accuracy": grouped["mean"].to_numpy()})


def _accuracy_svg(accuracy: Any, width: int = 480, height: int = 120) -> str:
    """A line of accuracy per time bucket (0 at the bottom, 1 at the top) and the table of the buckets."""
    values = accuracy["accuracy"].to_numpy(dtype=float)
    left, step = 34, (width - 34) / max(len(values) - 1, 1)
    points = " ".join(f"{left + i * step:.1f},{height - v * (height - 4) - 2:.1f}" for i, v in enumerate(values))
    span = (accuracy["end"].iloc[-1] - accuracy["start"].iloc[0]).total_seconds()
    clock = "%H:%M:%S.%f" if span < 60 else "%H:%M:%S"
    rows = "".join(f"<tr><td>{r.start:%Y-%m-%d} {r.start.strftime(clock)[:12]}</td><td>{r.end.strftime(clock)[:12]}</td>"
                   f"<td>{r.labelled}</td><td>{r.accuracy:.3f}</td></tr>" for r in accuracy.itertuples())
    axis = (f'<text x="0" y="12" font-size="11">1.0</text><text x="0" y="{height / 2 + 4:.0f}" font-size="11">0.5</text>'
            f'<text x="0" y="{height - 2}" font-size="11">0.0</text>'
            f'<line x1="{left}" y1="{height / 2:.0f}" x2="{width}" y2="{height / 2:.0f}" stroke="#eee"/>')
    return (f'<h2>Accuracy over time</h2><p>{int(accuracy["labelled"].sum())} labelled predictions in '
            f'{len(values)} equal time buckets (UTC).</p>'
            f'<svg width="{width}" height="{height}" role="img" style="border:1px solid #ddd">{axis}'
            f'<polyline fill="none" stroke="#1e88e5" stroke-width="2" points="{points}"/></svg>'
            f"<table><tr><th>from (UTC)</th><th>to</th><th>labelled</th><th>accuracy</th></tr>{rows}</table>")


def render(title: str, profile: ReferenceProfile, frame: Any, report: DriftReport, *, accuracy: Any = None) -> str:
    rows = []
    for name, feature in sorted(report.features.items(), key=lambda kv: (not kv[1].drifted, kv[0])):
        counts = _current_counts(name, profile.features_[name], frame)
        chart = _histogram_svg(*counts) if counts is not None else ""
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{_verdict(feature)}</td><td>{chart}</td>"
                    f"<td>{number(feature.psi)}</td><td>{number(feature.statistic)}</td><td>{number(feature.p_value)}</td>"
                    f"<td>{feature.n}</td><td>{feature.missing}</td><td>{html.escape(feature.reason)}</td></tr>")
    share = report.drifted_share
    summary = ("not enough data for a verdict" if share is None
               else f"{sum(bool(f.drifted) for f in report.evaluated)} of {len(report.evaluated)} features drifted "
                    f"({share:.0%})")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>
<p>{report.n_rows} rows compared with {profile.n_rows_} training rows: <strong>{summary}</strong>.
Generated {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>
<p class="legend"><span style="background:#9e9e9e"></span>reference (training)<span style="background:#1e88e5"></span>current</p>
<table><tr><th>feature</th><th>verdict</th><th>distribution</th><th>PSI</th><th>KS D / chi2</th><th>p-value</th>
<th>values</th><th>missing</th><th>why</th></tr>{''.join(rows)}</table>
{_accuracy_svg(accuracy) if accuracy is not None and len(accuracy) else ""}</body></html>"""
