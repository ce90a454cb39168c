"""The Runs page: the recent pipeline runs a page at a time, one run's steps as a timeline (which ran in parallel,
which came from the cache), and two runs compared.

Read through what ``mloop runs``, ``mloop runs show`` and ``mloop runs compare`` read: ``tracking.queries``. The
list is one query for a page of runs (never one per run), and every read is cached for a few seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import streamlit as st

from mloop.errors import MloopError
from mloop.ui.context import mlflow_run_url, project, stop_with

if TYPE_CHECKING:
    from mloop.config import ProjectConfig
    from mloop.tracking.queries import RunComparison, RunDetail, RunSummary

PAGE_SIZE = 25
NO_RUN = "No runs yet in this project: start one with `mloop run`."
HOW = {"done": "ran", "cached": "from cache", "failed": "failed", "skipped": "skipped"}
COLOURS = {"ran": "#4c78a8", "from cache": "#54a24b", "failed": "#e45756", "skipped": "#bab0ac"}


# Keyed by the tracking URI (the config object is not hashed); read again after the ttl, so a new run shows up.
@st.cache_data(ttl=5, show_spinner=False)
def _recent(tracking_uri: str, limit: int, _cfg: ProjectConfig) -> list[RunSummary]:
    from mloop.tracking.queries import recent_runs

    return recent_runs(_cfg, limit)


@st.cache_data(ttl=10, show_spinner=False)
def _run(tracking_uri: str, run_id: str, _cfg: ProjectConfig) -> RunDetail:
    from mloop.tracking.queries import find_run

    return find_run(_cfg, run_id)


@st.cache_data(ttl=10, show_spinner=False)
def _compared(tracking_uri: str, run_ids: tuple[str, ...], _cfg: ProjectConfig) -> RunComparison:
    from mloop.tracking.queries import compare_runs

    return compare_runs(_cfg, list(run_ids))


def page() -> None:
    cfg = project()
    st.title("Runs")
    try:
        _page(cfg)
    except MloopError as err:
        stop_with(err)


def _page(cfg: ProjectConfig) -> None:
    number = int(st.session_state.get("runs_page", 1))
    runs = _recent(cfg.tracking_uri, number * PAGE_SIZE + 1, cfg)  # one more: whether there is a next page
    if not runs:
        st.info(NO_RUN)
        return
    st.subheader("Recent runs")
    shown = runs[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]
    more = len(runs) > number * PAGE_SIZE
    if not shown:
        st.info(f"No runs on page {number}: there are {len(runs)}.")
    else:
        st.dataframe(_table(shown), hide_index=True, width="stretch")
    first = (number - 1) * PAGE_SIZE + 1
    st.caption(f"Runs {first}–{first + len(shown) - 1}, newest first" + ("; older ones on the next page." if more else "."))
    if more or number > 1:
        st.number_input("Page", min_value=1, max_value=number + 1 if more else number, step=1, key="runs_page")
    if not shown:
        return
    labels = {run.id: _label(run) for run in shown}  # the options are run ids: a run that finishes keeps the choice
    st.subheader("Steps of a run")
    picked = str(st.selectbox("Run", list(labels), key="runs_timeline", format_func=labels.__getitem__))
    _steps(cfg, _run(cfg.tracking_uri, picked, cfg))
    st.subheader("Two runs compared")
    if len(labels) < 2:
        st.info("Comparing needs two runs: run the pipeline again, e.g. with another parameter: "
                "`mloop run -p STEP.PARAM=VALUE`.")
        return
    names = list(labels)
    left, right = st.columns(2)
    first_run = left.selectbox("Run A", names, index=1, key="runs_compare_a", format_func=labels.__getitem__)
    second_run = right.selectbox("Run B", names, index=0, key="runs_compare_b", format_func=labels.__getitem__)
    if first_run == second_run:
        st.info("Pick two different runs.")
        return
    _comparison(_compared(cfg.tracking_uri, (str(first_run), str(second_run)), cfg))


def _label(run: RunSummary) -> str:
    return f"{run.id[:8]} · {_when(run.start_ms):%Y-%m-%d %H:%M:%S} · {run.status}" + (
        f" · v{run.model_version}" if run.model_version else "")


def _when(ms: int | None) -> dt.datetime:
    return dt.datetime.fromtimestamp((ms or 0) / 1000)


def _table(runs: list[RunSummary]) -> list[dict[str, Any]]:
    """A row per run: when, status, duration, steps, model, its key metrics and its parameters."""
    from mloop.tracking.queries import key_metrics

    rows = []
    for run in runs:
        shown, _ = key_metrics(run.metrics)
        rows.append({
            "run": run.id[:8], "started": _when(run.start_ms), "status": run.status,
            "duration (s)": None if run.duration_s is None else round(run.duration_s, 2),
            "steps ran": run.steps_done, "cached": run.steps_cached, "failed": run.steps_failed,
            "model": f"v{run.model_version}" if run.model_version else "-",
            **shown, **{f"param {k}": v for k, v in sorted(run.params.items())},
        })
    return rows


def _steps(cfg: ProjectConfig, run: RunDetail) -> None:
    """The run's lineage line, then its steps as a Gantt chart (a bar from each step's start to its end) and a table."""
    import altair as alt
    import pandas as pd

    took = f"{run.duration_s:.1f} s" if run.duration_s is not None else "still running"
    link = f"[{run.id[:8]}]({mlflow_run_url(cfg, run.experiment_id, run.id)})" if run.experiment_id else run.id[:8]
    code = f"git {run.git_commit[:12]}" + (" (dirty)" if run.git_dirty else "") if run.git_commit else "not in git"
    st.markdown(f"Run {link} · {run.status} · {took} · pipeline {run.pipeline or '-'} · code {code}"
                + (f" · model v{run.model_version}" if run.model_version else ""))
    if run.error:
        st.error(run.error)
    if not run.steps:
        st.info("This run recorded no steps.")
        return
    start = run.start_ms
    frame = pd.DataFrame([{
        "step": step.name, "how": HOW.get(step.state, step.state),
        "start (s)": (step.start_ms - start) / 1000,
        "end (s)": ((step.end_ms if step.end_ms is not None else step.start_ms) - start) / 1000,
        "duration (s)": round(step.duration_s, 3), "cached": step.cache_hit,
    } for step in run.steps])
    order = list(frame.sort_values("start (s)")["step"])
    scale = alt.Scale(domain=list(COLOURS), range=list(COLOURS.values()))
    base = alt.Chart(frame).encode(
        y=alt.Y("step:N", sort=order, title=None), color=alt.Color("how:N", scale=scale, title=None),
        tooltip=["step", "how", alt.Tooltip("start (s):Q", format=".2f"), alt.Tooltip("end (s):Q", format=".2f"),
                 "duration (s)"])
    bars = base.mark_bar(height=14).encode(x=alt.X("start (s):Q", title="seconds since the run started"),
                                           x2="end (s):Q")
    # a cached step takes no time (its bar has no width): a mark where its outputs were found
    found = base.transform_filter(alt.datum.cached).mark_point(shape="diamond", filled=True, size=90).encode(
        x="start (s):Q")
    st.altair_chart(bars + found, width="stretch")
    st.caption(f"{sum(frame['how'] == 'ran')} ran, {sum(frame['cached'])} came from the cache (◆): overlapping bars "
               "ran in parallel.")
    st.dataframe(frame[["step", "how", "start (s)", "duration (s)"]], hide_index=True, width="stretch")


def _comparison(found: RunComparison) -> None:
    """The parameters and metrics of the runs side by side, those that differ first and marked."""
    import pandas as pd

    every = st.checkbox("Show the rows that are the same too", key="runs_compare_all")
    rows = [row for row in found.rows if every or row.differs]
    if not found.differing:
        st.success("The runs have the same parameters and metrics.")
    if not rows:
        return
    heads = [f"{run.id[:8]}" + (f" (v{run.model_version})" if run.model_version else "") for run in found.runs]
    frame = pd.DataFrame([{"": "≠" if row.differs else "", "kind": row.kind, "name": row.name,
                           **dict(zip(heads, row.values))} for row in rows])
    st.dataframe(frame.style.apply(lambda r: ["background-color: rgba(255, 200, 0, 0.25)" if r[""] else ""] * len(r),
                                   axis=1), hide_index=True, width="stretch")
    st.caption(f"≠ differs ({len(found.differing)} of {len(found.rows)} rows)")
