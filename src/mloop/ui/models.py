"""The Models page: each registered model's versions with their aliases, their metrics side by side (a chart and a
table), and per version the gate's decision with its numbers and the version's lineage, linked into the MLflow UI.

Read through what ``mloop models``, ``mloop models report`` and ``mloop agent`` read: ``registry.queries``,
``registry.report`` (``candidate_report``) and the agent's recorded gate report (``automation.gate``).
"""

from __future__ import annotations

import datetime as dt
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

CHART_VERSIONS = 20  # the newest versions whose metrics are charted (a bundle.json read each, once)
NO_MODEL = "No registered model yet: `mloop run` runs the pipeline and registers its model."


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
    } for v in model.versions], hide_index=True, width="stretch")
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
    rows = [{"version": f"v{version}", "metric": name, "value": value}
            for version, info in infos.items() if info is not None for name, value in version_metrics(info).items()]
    if unread:
        st.caption(f"The bundle of {', '.join(unread)} cannot be read: no metrics shown for it.")
    if not rows:
        st.info("No metrics recorded for these versions.")
        return
    frame = pd.DataFrame(rows)
    names = sorted(frame["metric"].unique(), key=lambda n: (not n.startswith("test_"), n))
    tests = [n for n in names if n.startswith("test_")]
    picked = st.multiselect("Metrics in the chart", names, default=tests or names[:5],
                            help="test_*: scored by mloop on the version's test set; the others: the pipeline's own")
    order = [f"v{v.version}" for v in reversed(shown)]  # oldest to newest, left to right
    charted = frame[frame["metric"].isin(picked)]
    if not charted.empty:
        chart = alt.Chart(charted).mark_bar().encode(
            x=alt.X("metric:N", title=None, sort=picked), xOffset=alt.XOffset("version:N", sort=order),
            y=alt.Y("value:Q", title="value"), color=alt.Color("version:N", sort=order),
            tooltip=["version", "metric", alt.Tooltip("value:Q", format=".4f")])
        st.altair_chart(chart, width="stretch")
    table = frame.pivot(index="metric", columns="version", values="value").reindex(names)
    st.dataframe(table[[c for c in reversed(order) if c in table.columns]], width="stretch")
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
    rows: list[dict[str, Any]] = []
    for row in report.metrics:
        line = {"metric": f"{row.name} {PROMOTION_MARK}" if row.promotion else row.name,
                f"v{report.candidate} (candidate)": number(row.candidate)}
        if compare:
            line |= {f"v{report.champion} (champion)": number(row.champion), "delta": signed(row.delta),
                     "better": better_word(row)}
        rows.append(line)
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
        st.caption(f"{PROMOTION_MARK} the promotion metric" + ("" if report.first else
                   " (both scored by the gate on the candidate's test set)"))


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
