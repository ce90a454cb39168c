"""The Models page: each registered model's versions with their aliases, their metrics side by side (a chart and a
table), and per version the gate's decision with its numbers and the version's lineage, linked into the MLflow UI.

Read through what ``mloop models``, ``mloop models report`` and ``mloop agent`` read: ``registry.queries``,
``registry.report`` (``candidate_report``) and the agent's recorded gate report (``automation.gate``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import streamlit as st

from mloop.errors import MloopError
from mloop.ui.context import mlflow_run_url, mlflow_version_url, project, stop_with

if TYPE_CHECKING:
    from mloop.automation.gate import GateReport
    from mloop.bundle.format import BundleInfo
    from mloop.config import ProjectConfig
    from mloop.registry.queries import RegisteredModel, TaggedVersion, VersionSummary
    from mloop.registry.report import CandidateReport

TEST_SET = "mloop, on the test set"
TEST_SET_AND_PIPELINE = "mloop, on the test set (the pipeline logged the same)"
PIPELINE = "the pipeline"
CHART_VERSIONS = 20  # the newest versions whose metrics are charted (a bundle.json read each, once)
NO_MODEL = "No registered model yet: `mloop run` runs the pipeline and registers its model."


@dataclass(frozen=True)
class ShownMetric:
    """A metric as the page shows it: once, under a plain name, with who scored it and its value per column."""

    label: str  # "accuracy"; "accuracy (pipeline)" beside a test-set accuracy of other values
    key: str  # its name among a version's metrics (``registry.report.version_metrics``): "test_accuracy"
    source: str  # TEST_SET, TEST_SET_AND_PIPELINE or PIPELINE
    values: dict[str, float]  # column (a version) -> value


def shown_metrics(columns: dict[str, dict[str, float]]) -> list[ShownMetric]:
    """The metrics of ``columns`` (each a version's ``version_metrics``: mloop's test-set scores ``test_*`` and the
    pipeline's own), each shown once: a pipeline metric with the value of mloop's test-set score of its name in
    every column is that score (one row); one that differs is kept, named as the pipeline's. Test-set scores first."""
    names = sorted({name for metrics in columns.values() for name in metrics})
    shown: list[ShownMetric] = []
    same: set[str] = set()  # pipeline metrics that are mloop's test-set score under another name
    for name in names:
        if name.startswith("test_") and name[5:] in names:
            pairs = [(m[name], m[name[5:]]) for m in columns.values() if name[5:] in m]
            if all(name in m for m in columns.values() if name[5:] in m) and all(
                    math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in pairs):
                same.add(name[5:])
    for name in names:
        if name.startswith("test_"):
            values = {column: metrics[name] for column, metrics in columns.items() if name in metrics}
            shown.append(ShownMetric(name[5:], name, TEST_SET_AND_PIPELINE if name[5:] in same else TEST_SET, values))
    for name in names:
        if not name.startswith("test_") and name not in same:
            values = {column: metrics[name] for column, metrics in columns.items() if name in metrics}
            label = f"{name} (pipeline)" if f"test_{name}" in names else name
            shown.append(ShownMetric(label, name, PIPELINE, values))
    return shown


def chart_domain(values: list[float]) -> tuple[float, float]:
    """The y axis of the metrics chart: the values' range with a little room, not from 0 (0.979 and 0.986 apart)."""
    low, high = min(values), max(values)
    pad = (high - low) * 0.15 if high > low else max(abs(high) * 0.01, 0.01)
    return low - pad, high + pad


# Each reads once per store (the tracking URI is the key; the config object is not hashed) and again after the ttl.
@st.cache_data(ttl=10, show_spinner=False)
def _models(tracking_uri: str, _cfg: ProjectConfig) -> list[RegisteredModel]:
    from mloop.registry.queries import registered_models

    return registered_models(_cfg)


@st.cache_data(ttl=10, show_spinner=False)
def _tagged(tracking_uri: str, name: str, _cfg: ProjectConfig) -> list[TaggedVersion]:
    from mloop.registry.queries import model_versions

    return model_versions(_cfg, name)


@st.cache_data(ttl=3600, show_spinner=False, max_entries=500)
def _info(tracking_uri: str, name: str, version: str, created_ms: int, _cfg: ProjectConfig) -> BundleInfo:
    """A version's bundle.json: it never changes for the version registered at ``created_ms`` (a number used again
    by another registration is another key). Its errors are not cached: a failed read is tried again."""
    from mloop.registry.fetch import fetch_bundle_info

    return fetch_bundle_info(_cfg, f"models:/{name}/{version}")


def _readable_info(cfg: ProjectConfig, name: str, version: VersionSummary) -> BundleInfo | None:
    """``_info``, or None when the bundle cannot be read (damaged, or not an mloop bundle)."""
    try:
        return _info(cfg.tracking_uri, name, version.version, version.created_ms, cfg)
    except (MloopError, OSError, ValueError, TypeError):
        return None


@st.cache_data(ttl=10, show_spinner=False)
def _report(tracking_uri: str, name: str, version: str, _cfg: ProjectConfig) -> CandidateReport:
    from mloop.registry.report import candidate_report

    return candidate_report(_cfg, f"{name}/{version}")


@st.cache_data(ttl=10, show_spinner=False)
def _agent_report(tracking_uri: str, name: str, version: str, tags: dict[str, str],
                  _cfg: ProjectConfig) -> GateReport | None:
    from mloop.automation.gate import recorded_report

    return recorded_report(_cfg, name, version, tags)


@st.cache_data(ttl=60, show_spinner=False)
def _experiment(tracking_uri: str, _cfg: ProjectConfig) -> str | None:
    from mloop.tracking.queries import project_experiment

    return project_experiment(_cfg)


def page() -> None:
    cfg = project()
    st.title("Models")
    try:
        models = _models(cfg.tracking_uri, cfg)
    except MloopError as err:
        stop_with(err)
        return
    if not models:
        st.info(NO_MODEL)
        return
    names = [m.name for m in models]
    chosen = names[0] if len(names) == 1 else st.selectbox(
        "Model", names, index=names.index(cfg.model_name) if cfg.model_name in names else 0)
    model = models[names.index(chosen)]
    try:
        _model(cfg, model)
    except MloopError as err:
        stop_with(err)


def _model(cfg: ProjectConfig, model: RegisteredModel) -> None:
    from mloop.automation.cycle import AGENT_OUTCOME, AGENT_VERDICT

    st.header(model.name)
    if not model.versions:
        st.info(f"{model.name} has no version left in the registry. {NO_MODEL}")
        return
    tags = {v.version: v.tags for v in _tagged(cfg.tracking_uri, model.name, cfg)}
    st.subheader("Versions")
    st.dataframe([{
        "version": f"v{v.version}", "aliases": ", ".join(v.aliases),
        "created": dt.datetime.fromtimestamp(v.created_ms / 1000) if v.created_ms else None,
        "run": (v.run_id or "-")[:8], "promotion (at registration)": v.promotion or "-",
        "agent's gate": tags.get(v.version, {}).get(AGENT_VERDICT, "-"),
        "agent's outcome": tags.get(v.version, {}).get(AGENT_OUTCOME, "-"),
    } for v in model.versions], hide_index=True, width="stretch",
        column_config={"promotion (at registration)": st.column_config.TextColumn(width="large")})
    with st.expander("The promotion decisions in full"):  # a table cell cuts a long reason off
        st.markdown("\n".join(f"- **v{v.version}**" + (f" ({', '.join(v.aliases)})" if v.aliases else "")
                               + f": {v.promotion or 'no decision recorded'}" for v in model.versions))
    _metrics(cfg, model)
    st.subheader("One version")
    aliases = {v.version: v.aliases for v in model.versions}  # the options are the version numbers: a moved alias
    default = next((i for i, v in enumerate(model.versions) if "champion" in v.aliases), 0)  # keeps the choice
    version = str(st.selectbox("Version", list(aliases), index=default, key=f"models_version_{model.name}",
                               format_func=lambda v: f"v{v}" + (f" ({', '.join(aliases[v])})" if aliases[v] else "")))
    report = _report(cfg.tracking_uri, model.name, version, cfg)
    _decision(report)
    _agent_gate(cfg, model.name, version, tags.get(version, {}))
    _lineage(cfg, report)


def _metrics(cfg: ProjectConfig, model: RegisteredModel) -> None:
    """The newest versions' metrics side by side: a grouped bar chart of the chosen metrics, and a table of all."""
    import altair as alt
    import pandas as pd

    from mloop.registry.report import version_metrics

    st.subheader("Metrics")
    shown = model.versions[:CHART_VERSIONS]
    infos = {v.version: _readable_info(cfg, model.name, v) for v in shown}
    unread = [f"v{v}" for v, info in infos.items() if info is None]
    metrics = shown_metrics({f"v{version}": version_metrics(info) for version, info in infos.items()
                             if info is not None})
    if unread:
        st.caption(f"The bundle of {', '.join(unread)} cannot be read: no metrics shown for it.")
    if not metrics:
        st.info("No metrics recorded for these versions.")
        return
    names = [m.label for m in metrics]
    tests = [m.label for m in metrics if m.source != PIPELINE]
    picked = st.multiselect("Metrics in the chart", names, default=tests or names[:5],
                            help=f"scored by {TEST_SET}, or by {PIPELINE} (its own metrics, named so where they "
                                 "differ from mloop's of the same name)")
    order = [f"v{v.version}" for v in reversed(shown)]  # oldest to newest, left to right
    charted = pd.DataFrame([{"version": version, "metric": m.label, "value": value}
                            for m in metrics if m.label in picked for version, value in m.values.items()])
    if not charted.empty:
        low, high = chart_domain(charted["value"].tolist())
        chart = alt.Chart(charted).mark_point(filled=True, size=140, opacity=1).encode(
            x=alt.X("metric:N", title=None, sort=picked, axis=alt.Axis(labelAngle=0, labelLimit=200)),
            xOffset=alt.XOffset("version:N", sort=order),
            y=alt.Y("value:Q", title="value", scale=alt.Scale(zero=False, domain=[low, high])),
            color=alt.Color("version:N", sort=order),
            tooltip=["version", "metric", alt.Tooltip("value:Q", format=".4f")])
        st.altair_chart(chart, width="stretch")
        st.caption("The axis spans the values shown, not 0 to 1, so that close versions can be told apart.")
    columns = [c for c in reversed(order) if any(c in m.values for m in metrics)]
    st.dataframe(pd.DataFrame([{"metric": m.label, "scored by": m.source, **{c: m.values.get(c) for c in columns}}
                               for m in metrics]),
                 hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in columns})
    if len(model.versions) > CHART_VERSIONS:
        st.caption(f"The newest {CHART_VERSIONS} of {len(model.versions)} versions.")


def _decision(report: CandidateReport) -> None:
    """The promotion rule's decision at registration, as ``mloop models report`` gives it."""
    from mloop.registry.report_render import PROMOTION_MARK, better_word, number, rule, signed, title, verdict

    st.markdown(f"**Promotion gate at registration:** {title(report)}")
    (st.success if report.passed else st.warning)(f"Gate: {verdict(report)}")
    st.markdown(f"Reason: {report.reason}  \nRule: {rule(report)}")
    if report.champion_missing:
        st.caption(f"Champion v{report.champion} is no longer in the registry: its metrics are not shown.")
    compare = not report.first and not report.champion_missing
    candidate, champion = gate_columns(report)
    by_key = {row.name: row for row in report.metrics}
    columns = {"candidate": {row.name: row.candidate for row in report.metrics}}
    if compare:
        columns["champion"] = {row.name: row.champion for row in report.metrics if row.champion is not None}
    rows: list[dict[str, Any]] = []
    for shown in shown_metrics(columns):
        row = by_key[shown.key]
        line = {"metric": f"{shown.label} {PROMOTION_MARK}" if row.promotion else shown.label,
                "scored by": shown.source, candidate: number(row.candidate)}
        if compare:
            line |= {champion: number(row.champion), "delta": signed(row.delta), "better": better_word(row)}
        rows.append(line)
    rows.sort(key=lambda line: not str(line["metric"]).endswith(PROMOTION_MARK))  # the rule's metric first
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
        st.caption(f"{PROMOTION_MARK} the promotion metric" + ("" if report.first else
                   " (both scored by the gate on the candidate's test set, less rows only one of the two trained on)"))


def gate_columns(report: CandidateReport) -> tuple[str, str]:
    """The headings of the gate's two columns, each version named by its role now: the candidate's "v2 (candidate)",
    or "v1 (champion)" once it is the champion; the champion compared with "v1 (champion)", or "v1 (champion then)"."""
    if report.current_champion == report.candidate:
        role = "champion"
    else:
        role = "former champion" if report.promoted else "candidate"
    then = "champion" if report.current_champion == report.champion else "champion then"
    return f"v{report.candidate} ({role})", f"v{report.champion} ({then})"


def _agent_gate(cfg: ProjectConfig, name: str, version: str, tags: dict[str, str]) -> None:
    """The continuous-training agent's gate on this version, when it went through the agent."""
    report = _agent_report(cfg.tracking_uri, name, version, tags, cfg)
    if report is None:
        st.caption("The continuous-training agent did not gate this version (`mloop agent` gates the versions "
                   "its cycles register).")
        return
    st.markdown(f"**The agent's gate: {report.verdict}**")
    st.markdown(report.summary())
    st.dataframe([{
        "rule": check.metric, "verdict": check.verdict, "candidate": check.candidate, "champion": check.champion,
        "delta": check.delta, "required improvement": check.required_improvement, "floor": check.floor,
        "p-value": check.p_value, "test": check.test.name if check.test else "-", "reason": check.reason,
    } for check in report.checks], hide_index=True, width="stretch")
    holdout = report.holdout
    st.caption(f"{holdout.rows} holdout rows from {holdout.source} (sha256 {holdout.digest[:12]}); paired test "
               f"{report.test}, alpha {report.alpha:g}; on INCONCLUSIVE: {report.inconclusive}"
               + "".join(f"  \n{note}" for note in report.notes))


def _lineage(cfg: ProjectConfig, report: CandidateReport) -> None:
    """Where the version came from: its pipeline run, code and data, with links into the MLflow UI."""
    from mloop.registry.report_render import code_version, dvc_note

    lineage = report.lineage
    lines = [f"[{report.model} v{report.candidate} in the MLflow UI]"
             f"({mlflow_version_url(cfg, report.model, report.candidate)})"]
    experiment = _experiment(cfg.tracking_uri, cfg)
    if lineage.run_id and experiment:
        run = f"[{lineage.run_id[:8]}]({mlflow_run_url(cfg, experiment, lineage.run_id)})"
    else:
        run = lineage.run_id[:8] or "not recorded"
    lines.append(f"Pipeline run: {run}" + (f" (pipeline {lineage.pipeline})" if lineage.pipeline else ""))
    lines.append(f"Code: {'git ' if lineage.git_commit else ''}{code_version(report)}")
    if lineage.inputs:
        lines += [f"Data: `{f.uri}` sha256 {f.sha256[:16]}{dvc_note(f.dvc) or ' (not versioned with DVC)'}"
                  for f in lineage.inputs]
    else:
        lines.append("Data: " + (", ".join(f"sha256 {d[:16]}" for d in lineage.data_sha256) or "no input files recorded"))
    st.subheader("Lineage")
    st.markdown("  \n".join(lines))
    st.caption("The links open the MLflow UI; start it with `mloop mlflow-ui`.")
