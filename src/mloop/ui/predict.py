"""The Predict page: a form generated from the served model, its answer explained, and batch scoring.

The form comes from the bundle of the version the chosen deployment serves: a number input per numeric
feature bounded to the training range with the training median as default (whole numbers for an integer
feature), a select box of the training categories for a categorical one, a checkbox for a boolean one,
and a "missing" choice where the model takes a missing value. The row is sent to the deployment's server
(``POST /predict``), so it is logged and monitored like any other request; the answer shows the label and
class probabilities (or a regressor's value), the outlier score of the bundled detector, and the features
that pushed the answer most (``mloop.bundle.explain``). The Batch tab is ``mloop.ui.predict_batch``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from mloop.ui.context import project, stop_with

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mloop.bundle.explain import Contribution, Explanation
    from mloop.bundle.loaded import LoadedModel
    from mloop.bundle.schema import FeatureType
    from mloop.config import ProjectConfig
    from mloop.deploy.local import Deployment, Status
    from mloop.monitor.status import RolloutStatus

MISSING = "(missing)"  # the select box's choice for a missing category
ANSWER_KEY = "predict_answer"
EXAMPLE_KEY = "predict_example"


# ------------------------------------------------------------------------------------------ the form


@dataclass(frozen=True)
class FormField:
    """One input of the form: a feature of the served model, its bounds, default and choices."""

    name: str
    type: FeatureType
    allow_missing: bool  # the model takes a missing value here (the form offers "missing")
    min: float | None = None  # numeric: the training range
    max: float | None = None
    default: Any = None  # the training median (numeric), the most frequent value (boolean, categorical)
    categories: tuple[str, ...] = ()  # categorical: the training categories
    missing_rate: float = 0.0  # the share of training rows where it was missing

    @property
    def options(self) -> list[str]:
        """A categorical field's choices: its categories, then "missing" where the model takes it."""
        return [*self.categories, MISSING] if self.allow_missing else list(self.categories)


def form_fields(model: LoadedModel) -> list[FormField]:
    """The form of a model: one field per feature, from its schema and the training profile."""
    from mloop.bundle.profile import CategoricalProfile, NumericProfile

    schema = {spec.name: spec for spec in model.info.schema}
    found = []
    for feature in model.features:
        spec = schema.get(feature.name)
        reference = model.profile.features_.get(feature.name) if model.profile is not None else None
        missing = reference.missing if reference is not None else 0.0
        if feature.type in ("float", "integer"):
            low = spec.min if spec is not None and spec.min is not None else (
                reference.min if isinstance(reference, NumericProfile) else None)
            high = spec.max if spec is not None and spec.max is not None else (
                reference.max if isinstance(reference, NumericProfile) else None)
            median = model.profile.median(feature.name) if model.profile is not None else None
            default = _clamp(median if median is not None else (low if low is not None else 0.0), low, high)
            if feature.type == "integer":
                low, high = (math.ceil(low) if low is not None else None), (math.floor(high) if high is not None else None)
                default = int(_clamp(round(default), low, high))
            else:  # the median as the box shows it (a median of -0.0001 shown "%.3f" would read "-0.000")
                default = _shown_number(default, low, high)
            found.append(FormField(feature.name, feature.type, feature.allow_missing, low, high, default,
                                   missing_rate=missing))
        elif feature.type == "boolean":
            counts = reference.counts if isinstance(reference, CategoricalProfile) else {}
            default = counts.get("True", 0) > counts.get("False", 0)
            found.append(FormField(feature.name, "boolean", feature.allow_missing, default=default,
                                   missing_rate=missing))
        else:
            categories = tuple(feature.categories)
            counts = spec.categories if spec is not None else {}
            frequent = max(categories, key=lambda c: counts.get(c, 0)) if categories else ""
            found.append(FormField(feature.name, "categorical", feature.allow_missing, default=frequent,
                                   categories=categories, missing_rate=missing))
    return found


def _decimals(low: float | None, high: float | None) -> int:
    """The decimals a number box shows for a feature of this training range (3 for 0.05 to 0.16, 1 for 143 to 2501)."""
    span = (high - low) if low is not None and high is not None else 0.0
    magnitude = math.floor(math.log10(span)) if span > 0 else 0
    return min(8, max(1, 3 - magnitude))


def _shown_number(value: float, low: float | None, high: float | None) -> float:
    """``value`` rounded to the decimals its box shows, within the range, never -0.0 (which shows as "-0.000")."""
    return _clamp(round(value, _decimals(low, high)), low, high) + 0.0


def _clamp(value: float, low: float | None, high: float | None) -> float:
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return value


def widget_key(model: LoadedModel, name: str) -> str:
    """The session key of a feature's input (per model version: another version may have other bounds)."""
    return f"predict:{model.name}:{model.version}:{name}"


def missing_key(model: LoadedModel, name: str) -> str:
    return f"{widget_key(model, name)}:missing"


def _number_format(field: FormField) -> tuple[float, str]:
    """A step and display format that fit the training range (0.001 steps for 0.05 to 0.16, 1 for 143 to 2501)."""
    span = (field.max - field.min) if field.min is not None and field.max is not None else 0.0
    magnitude = math.floor(math.log10(span)) if span > 0 else 0
    return 10.0 ** (magnitude - 2) if span > 0 else 0.01, f"%.{_decimals(field.min, field.max)}f"


def _widget(model: LoadedModel, field: FormField) -> None:
    key = widget_key(model, field.name)
    if key not in st.session_state:
        st.session_state[key] = field.default
    if field.type == "categorical":
        st.selectbox(field.name, field.options, key=key,
                     help=f"{len(field.categories)} training categories" + _missing_help(field))
        return
    if field.type == "boolean":
        st.checkbox(field.name, key=key, help="true or false" + _missing_help(field))
    elif field.type == "integer":
        st.number_input(field.name, min_value=field.min, max_value=field.max, step=1, key=key,
                        help=f"a whole number; training range {_range(field)}, median {field.default}"
                             + _missing_wins(field))
    else:
        step, fmt = _number_format(field)
        st.number_input(field.name, min_value=field.min, max_value=field.max, step=step, format=fmt, key=key,
                        help=f"training range {_range(field)}, median {field.default:g}" + _missing_wins(field))
    if field.allow_missing:
        st.checkbox(f"{field.name} missing", key=missing_key(model, field.name),
                    help=f"send {field.name} as missing: while this is ticked, the number above is not sent"
                         + _missing_help(field))


def _range(field: FormField) -> str:
    return f"{field.min:g} to {field.max:g}" if field.min is not None and field.max is not None else "unknown"


def _missing_wins(field: FormField) -> str:
    return f"; not sent while '{field.name} missing' is ticked" if field.allow_missing else ""


def _missing_help(field: FormField) -> str:
    return f"; missing in {field.missing_rate:.0%} of the training rows" if field.missing_rate else ""


def form_row(model: LoadedModel, fields: list[FormField]) -> dict[str, Any]:
    """The row the form holds, as a client sends it: numbers, true/false, categories, None for missing."""
    row: dict[str, Any] = {}
    for field in fields:
        value = st.session_state.get(widget_key(model, field.name), field.default)
        if field.allow_missing and field.type != "categorical" and st.session_state.get(missing_key(model, field.name)):
            value = None
        elif field.type == "categorical":
            value = None if value == MISSING else str(value)
        elif field.type == "boolean":
            value = bool(value)
        elif field.type == "integer":
            value = int(value)
        else:
            value = float(value)
        row[field.name] = value
    return row


# ------------------------------------------------------------------------------------------ example rows


def example_rows(model: LoadedModel, example: Any, n: int = 5) -> tuple[list[dict[str, Any]], str]:
    """Rows to fill the form with, and where they come from: the version's MLflow input example (training
    rows), else rows drawn from the training profile."""
    import numpy as np

    names = model.feature_names
    if example is not None and hasattr(example, "columns") and set(names) <= set(example.columns) and len(example):
        rows = [{name: _plain(record[name]) for name in names} for record in example.to_dict(orient="records")]
        return rows, "the model's input example (training rows)"
    from mloop.bundle.explain import background_rows

    drawn = background_rows(model, n, np.random.default_rng(0))
    rows = []
    for values in drawn:
        row: dict[str, Any] = {}
        for index, feature in enumerate(model.features):
            value = float(values[index])
            if math.isnan(value):
                row[feature.name] = None
            elif feature.type == "categorical":
                row[feature.name] = feature.categories[int(value)] if feature.categories else None
            elif feature.type == "boolean":
                row[feature.name] = value == 1.0
            else:
                row[feature.name] = value
        rows.append(row)
    return rows, "rows drawn from the training profile"


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def _fill(model: LoadedModel, fields: list[FormField], rows: list[dict[str, Any]], source: str) -> None:
    """Put the next example row into the form (a button's callback: it runs before the widgets are drawn)."""
    position = st.session_state.get(f"{EXAMPLE_KEY}:{model.name}:{model.version}", -1) + 1
    row = rows[position % len(rows)]
    st.session_state[f"{EXAMPLE_KEY}:{model.name}:{model.version}"] = position
    st.session_state[f"{EXAMPLE_KEY}:source"] = f"Example row {position % len(rows) + 1} of {len(rows)}, from {source}."
    for field in fields:
        value = row.get(field.name)
        key = widget_key(model, field.name)
        if value is None:
            if field.type == "categorical" and field.allow_missing:
                st.session_state[key] = MISSING
            elif field.allow_missing:  # the box shows the median, not the last row's number, and is not sent
                st.session_state[missing_key(model, field.name)] = True
                st.session_state[key] = field.default
            continue
        if field.allow_missing and field.type != "categorical":
            st.session_state[missing_key(model, field.name)] = False
        if field.type == "categorical":
            if str(value) in field.categories:
                st.session_state[key] = str(value)
        elif field.type == "boolean":
            st.session_state[key] = bool(value)
        elif field.type == "integer":
            st.session_state[key] = int(_clamp(round(float(value)), field.min, field.max))
        else:
            st.session_state[key] = _shown_number(float(value), field.min, field.max)


def _reset(model: LoadedModel, fields: list[FormField]) -> None:
    for field in fields:
        st.session_state[widget_key(model, field.name)] = field.default
        st.session_state.pop(missing_key(model, field.name), None)
    st.session_state.pop(f"{EXAMPLE_KEY}:source", None)


# ------------------------------------------------------------------------------------------ the answer


@dataclass(frozen=True)
class Answer:
    """What the page shows for one row sent to a deployment."""

    deployment: str
    version: str  # the version that answered
    request_id: str
    row: tuple[tuple[str, Any], ...]
    label: Any = None  # a classifier's
    probabilities: tuple[tuple[str, float], ...] = ()
    prediction: float | None = None  # a regressor's
    outlier_score: float | None = None  # the bundled detector's score_samples: lower is more anomalous
    outlier: bool | None = None
    outlier_note: str = ""
    explanation: Explanation | None = None


def _contributions_chart(top: Sequence[Contribution]) -> Any:
    """A bar per feature, the largest push first (the order given explicitly, so a chart drawn again for
    another row does not keep the first one's order), every feature named, raising and lowering in two hues."""
    import altair as alt
    import pandas as pd

    frame = pd.DataFrame({"feature": [c.feature for c in top], "SHAP value": [c.shap_value for c in top],
                          "direction": ["raises it" if c.shap_value >= 0 else "lowers it" for c in top]})
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("SHAP value:Q"),
        y=alt.Y("feature:N", sort=[c.feature for c in top], axis=alt.Axis(labelOverlap=False, labelLimit=260)),
        color=alt.Color("direction:N", scale=alt.Scale(domain=["raises it", "lowers it"],
                                                         range=["#d62728", "#1f77b4"])),
        tooltip=["feature", "SHAP value", "direction"],
    ).properties(height=alt.Step(28))  # a band per feature, whatever height the page gives the chart


def ranked_probabilities(answer: Answer) -> list[tuple[str, float]]:
    """The class probabilities, the predicted class first, then the others from the most probable."""
    label = str(answer.label)
    return sorted(answer.probabilities, key=lambda item: (item[0] != label, -item[1]))


def _probabilities_chart(ranked: Sequence[tuple[str, float]]) -> Any:
    """A horizontal bar per class (its name written level, in full), in the order of the table beside it."""
    import altair as alt
    import pandas as pd

    frame = pd.DataFrame({"class": [c for c, _ in ranked], "probability": [p for _, p in ranked]})
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("class:N", sort=[c for c, _ in ranked], title=None,
                axis=alt.Axis(labelOverlap=False, labelLimit=260, labelFontSize=13)),
        tooltip=["class", alt.Tooltip("probability:Q", format=".4f")],
    ).properties(height=alt.Step(30))  # a band per class, whatever height the page gives the chart


def show_answer(answer: Answer) -> None:
    """The answer: label and probabilities (or the value), outlier score, and the features that pushed it."""
    import pandas as pd

    st.subheader("Answer")
    left, middle, right = st.columns(3)
    if answer.prediction is not None:
        left.metric("Prediction", f"{answer.prediction:.6g}")
    else:
        left.metric("Label", str(answer.label))
    if answer.outlier_score is not None:
        middle.metric("Outlier score", f"{answer.outlier_score:.4f}",
                      help="the bundled outlier detector's score (score_samples): lower is more anomalous")
        middle.caption("The detector calls this row an **outlier**." if answer.outlier
                       else "The detector does not call this row an outlier.")
    else:
        middle.caption(answer.outlier_note)
    right.metric("Version", f"v{answer.version}")
    st.caption(f"Request id `{answer.request_id}`: the row is in {answer.deployment}'s prediction log and monitoring; "
               "send its true label later to POST /feedback with this id.")
    if answer.probabilities:
        st.markdown("**Class probabilities**")
        ranked = ranked_probabilities(answer)
        numbers, chart = st.columns([2, 3])
        numbers.dataframe(pd.DataFrame({"class": [c for c, _ in ranked], "probability": [p for _, p in ranked]}),
                          hide_index=True,
                          column_config={"probability": st.column_config.NumberColumn(format="%.4f")})
        chart.altair_chart(_probabilities_chart(ranked), width="stretch")
    explanation = answer.explanation
    st.markdown("**What pushed this prediction**")
    if explanation is None or not explanation.explained:
        st.info(explanation.note if explanation is not None else "No explanation was computed.")
        return
    top = explanation.contributions[:10]
    st.altair_chart(_contributions_chart(top), width="stretch")
    st.dataframe(pd.DataFrame({"feature": [c.feature for c in explanation.contributions],
                               "value": [_shown(c.value) for c in explanation.contributions],
                               "SHAP value": [c.shap_value for c in explanation.contributions]}),
                 hide_index=True)
    st.caption(f"Contributions to the {explanation.output}: from {explanation.base_value:.4g} on average over the "
               f"background rows to {explanation.value:.4g} for this row. {explanation.method}.")


def _shown(value: Any) -> str:
    return "missing" if value is None else str(value)


def predict_row(cfg: ProjectConfig, deployment: Deployment, model: LoadedModel, row: dict[str, Any]) -> Answer | None:
    """Send the row to the deployment and build the answer (None: the error is shown)."""
    from mloop.errors import MloopError
    from mloop.ui.deployment_client import post, refusal

    try:
        reply = post(cfg, deployment, "/predict", json={"instances": [row]})
    except MloopError as err:
        st.error(f"{err.message}" + (f"\n\n**Fix:** {err.hint}" if err.hint else ""))
        return None
    if not reply.ok:
        st.error(refusal(deployment, reply))
        return None
    payload = reply.json()
    answered = str(payload.get("version") or reply.version or model.version)
    root = str(cfg.root)
    created = registered_at(root, model.name, answered)
    if answered != model.version:  # a roll-out's candidate answered: explain that version
        model = loaded(root, model.name, answered, created)[0]
    prediction = payload["predictions"][0]
    outlier_score, outlier, note = _outlier(model, row)
    explanation = _explanation(root, model.name, answered, created, tuple(row.items()))
    return Answer(deployment.name, answered, reply.request_id, tuple(row.items()),
                  label=prediction.get("label"),
                  probabilities=tuple((str(k), float(v)) for k, v in (prediction.get("probabilities") or {}).items()),
                  prediction=float(prediction["prediction"]) if "prediction" in prediction else None,
                  outlier_score=outlier_score, outlier=outlier, outlier_note=note, explanation=explanation)


def _rows(model: LoadedModel, row: dict[str, Any]) -> Any:
    from mloop.serving.protocol import rows_from_columns

    return rows_from_columns(model, [[row[name]] for name in model.feature_names])


def _outlier(model: LoadedModel, row: dict[str, Any]) -> tuple[float | None, bool | None, str]:
    """The row's outlier score and flag from the bundled detector, as the monitor scores served rows."""
    from mloop.monitor.outliers import model_scorer

    score = model_scorer(model)
    if score is None:
        return None, None, ("No outlier score: the model's bundle has no outlier detector (a pipeline ships one as "
                            "ModelCandidate.outlier_detector).")
    rows = _rows(model, row)
    scores, flags = score(rows.values, rows.text)
    return float(scores[0]), bool(flags[0]), ""


@st.cache_data(show_spinner="Explaining the answer ...", max_entries=512)
def _explanation(root: str, name: str, version: str, created: int, row: tuple[tuple[str, Any], ...]) -> Explanation:
    """The explanation of one row by one version (registered at ``created``): the same row is explained once."""
    from mloop.bundle.explain import Explanation, explain

    model = loaded(root, name, version, created)[0]
    try:
        return explain(model, _rows(model, dict(row)))
    except Exception as err:  # noqa: BLE001 (whatever the model or shap raises: the answer stands, the reason is shown)
        return Explanation(note=f"The explanation failed: {type(err).__name__}: {str(err)[:300]}")


# ------------------------------------------------------------------------------------------ the page


@st.cache_data(ttl=10, show_spinner=False, max_entries=256)
def registered_at(root: str, name: str, version: str) -> int:
    """When the version was registered (ms): part of the key of every cache of a version, so that a version number
    used again (the model deleted and registered anew, the project initialised again) is not taken for the old one."""
    from mloop.config import load_project
    from mloop.registry.queries import registered_at as created_ms

    return created_ms(load_project(Path(root)), name, version)


@st.cache_resource(show_spinner="Loading the served model ...", max_entries=16)
def loaded(root: str, name: str, version: str, created: int) -> tuple[LoadedModel, Any]:
    """A registered version (registered at ``created``, ms) of the project at ``root`` loaded once per app process,
    and its input example."""
    from mloop.config import load_project
    from mloop.registry.fetch import load_registered_with_example

    return load_registered_with_example(load_project(Path(root)), f"models:/{name}/{version}")


def pick_deployment(cfg: ProjectConfig) -> Status | None:
    """The running deployment the user picks; when none runs, says so and how to start one."""
    from mloop.deploy.local import list_deployments
    from mloop.errors import DeployError

    problems: list[DeployError] = []
    found = list_deployments(cfg, problems)
    for problem in problems:
        st.warning(f"{problem.message}" + (f"\n\n**Fix:** {problem.hint}" if problem.hint else ""))
    running = {status.deployment.name: status for status in found if status.running}
    if not running:
        stopped = [status.deployment.name for status in found]
        st.info(f"No deployment of {cfg.name} is running, so there is no model to send predictions to.\n\n"
                "Start one with `mloop deploy` (after `mloop run` has registered a model; it serves the champion; "
                "`mloop deploy MODEL/VERSION --name NAME` serves another), then reload this page."
                + (f"\n\nStopped: {', '.join(stopped)}." if stopped else ""))
        return None
    name = st.selectbox("Deployment", list(running), key="predict_deployment",
                        format_func=lambda n: f"{n}: {running[n].deployment.model} "
                                              f"v{running[n].served_version or running[n].deployment.version} "
                                              f"at {running[n].deployment.url}")
    status = running[str(name)]
    if not status.healthy:
        st.warning(f"{status.deployment.name} runs but does not say it is ready at {status.deployment.url}/v2/health/ready: "
                   f"it may still be loading. Its log: {status.deployment.log or '.mloop/deployments/'}")
    return status


@st.cache_data(ttl=5.0, show_spinner=False)
def _cached_rollout(_cfg: ProjectConfig, name: str, url: str) -> tuple[RolloutStatus | None, str]:
    """The Deployments page's read of a roll-out, at most every 5 s per deployment: the form reruns this page on
    every change, and each would otherwise ask the server."""
    from mloop.ui.deployments import read_rollout

    return read_rollout(_cfg, name)


def rollout_note(cfg: ProjectConfig, deployment: Deployment) -> str:
    """What a roll-out under way on the deployment means for the answers; "" without one."""
    rollout, trouble = _cached_rollout(cfg, deployment.name, deployment.url)
    if trouble:
        return f"Whether a roll-out is under way cannot be read: {trouble}"
    if rollout is None:
        return ""
    champion, candidate = f"v{rollout.champion.version}", f"v{rollout.candidate.version}"
    if rollout.strategy == "canary":
        return (f"Canary under way: {candidate} answers {rollout.weight:.0%} of requests, {champion} the rest. "
                "The answer says which version answered, and its explanation is that version's.")
    return (f"Shadow roll-out under way: {candidate} scores every request in shadow; answers come from {champion}. "
            f"See the Deployments page for how often {candidate} disagrees.")


def page() -> None:
    from mloop.errors import MloopError
    from mloop.ui import predict_batch

    cfg = project()
    st.title("Predict")
    status = pick_deployment(cfg)
    if status is None:
        return
    deployment = status.deployment
    version = status.served_version or deployment.version
    try:
        created = registered_at(str(cfg.root), deployment.model, version)
        model, example = loaded(str(cfg.root), deployment.model, version, created)
    except MloopError as err:
        stop_with(err)
        return
    st.caption(f"{deployment.model} v{version} ({model.task}) served at {deployment.url}; the form is generated from "
               "its bundle: training ranges, medians and categories.")
    if status.healthy:
        note = rollout_note(cfg, deployment)
        if note:
            st.info(note)
    single, batch = st.tabs(["One row", "Batch"])
    with single:
        _one_row(cfg, deployment, model, example)
    with batch:
        predict_batch.tab(cfg, deployment, model)


def _one_row(cfg: ProjectConfig, deployment: Deployment, model: LoadedModel, example: Any) -> None:
    fields = form_fields(model)
    rows, source = example_rows(model, example)
    left, right, _ = st.columns([1, 1, 3])
    left.button("Load an example row", key="predict_load_example", on_click=_fill, args=(model, fields, rows, source),
                help=f"fills the form with the next of {len(rows)} rows from {source}")
    right.button("Reset to the medians", key="predict_reset", on_click=_reset, args=(model, fields))
    if st.session_state.get(f"{EXAMPLE_KEY}:source"):
        st.caption(st.session_state[f"{EXAMPLE_KEY}:source"])
    with st.form("predict_form"):
        columns = st.columns(3)
        for index, field in enumerate(fields):
            with columns[index % 3]:
                _widget(model, field)
        sent = st.form_submit_button("Predict", type="primary")
    st.caption("Each number is bounded to the range the model was trained on (a value outside it turns the box red "
               "and is not sent); the Batch tab and POST /predict take any value.")
    if sent:
        answer = predict_row(cfg, deployment, model, form_row(model, fields))
        if answer is not None:
            st.session_state[ANSWER_KEY] = answer
    answer = st.session_state.get(ANSWER_KEY)
    if isinstance(answer, Answer) and answer.deployment == deployment.name:
        show_answer(answer)
