"""The project configuration: ``mloop.toml`` plus ``MLOOP_*`` environment overrides, one typed object.

Environment variables win over the file, one name per setting: ``MLOOP_TRACKING_URI`` sets
``[tracking] uri``, ``MLOOP_PROMOTION_METRIC`` sets ``[promotion] metric``, ``MLOOP_SERVING_TOKEN``
sets ``[serving] token`` and so on (section, underscore, key). Secrets are ``SecretStr``: they are
never printed, and are better kept in the environment than in the file.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mloop._fs import private_folder
from mloop.errors import ConfigError, ConfigWarning, ProjectNotFound, did_you_mean

CONFIG_FILE = "mloop.toml"
STORE_DIR = ".mloop"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


TASKS = ("binary", "multiclass", "regression")
CLASSIFICATION = ("binary", "multiclass")
# The metrics the promotion gate can score: the tasks each fits and which way is better. The table that
# computes them is mloop.registry.metrics (a test keeps the two in step).
PROMOTION_METRICS: dict[str, tuple[tuple[str, ...], Literal["maximize", "minimize"]]] = {
    "accuracy": (CLASSIFICATION, "maximize"),
    "balanced_accuracy": (CLASSIFICATION, "maximize"),
    "precision": (CLASSIFICATION, "maximize"),
    "recall": (CLASSIFICATION, "maximize"),
    "f1": (CLASSIFICATION, "maximize"),
    "f1_macro": (CLASSIFICATION, "maximize"),
    "roc_auc": (CLASSIFICATION, "maximize"),
    "log_loss": (CLASSIFICATION, "minimize"),
    "r2": (("regression",), "maximize"),
    "mae": (("regression",), "minimize"),
    "mse": (("regression",), "minimize"),
    "rmse": (("regression",), "minimize"),
}


def metrics_for(task: str) -> list[str]:
    """The promotion metrics that fit a task."""
    return [name for name, (tasks, _) in PROMOTION_METRICS.items() if task in tasks]


class ProjectSection(_Section):
    name: str = Field(min_length=1)
    pipeline: str = Field(default="pipeline:training", description="module:attribute of the pipeline")
    task: Literal["binary", "multiclass", "regression"] | None = Field(
        default=None, description="what the model predicts; checked against the metric and the model (default: "
                                  "what the registered model turns out to be)")

    @field_validator("pipeline")
    @classmethod
    def _module_colon_attribute(cls, value: str) -> str:
        module, sep, attr = value.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"expected 'module:attribute' such as 'pipeline:training', got {value!r}")
        return value


class TrackingSection(_Section):
    uri: str = Field(default="", description="MLflow tracking URI; empty means SQLite under .mloop/")
    experiment: str = ""


class RegistrySection(_Section):
    model_name: str = ""


class PromotionSection(_Section):
    metric: str = "accuracy"
    direction: Literal["maximize", "minimize"] | None = Field(
        default=None, description="which way is better; default (and the only one accepted): the metric's own")
    min_improvement: float = Field(default=0.0, ge=0.0)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in PROMOTION_METRICS:
            raise ValueError(f"{value!r} is not a metric mloop can score; {did_you_mean(value, PROMOTION_METRICS)}; "
                             "one of " + ", ".join(PROMOTION_METRICS))
        return value

    @model_validator(mode="after")
    def _direction_of_the_metric(self) -> PromotionSection:
        better = PROMOTION_METRICS[self.metric][1]
        if self.direction is not None and self.direction != better:
            raise ValueError(f"{self.metric} is {'higher' if better == 'maximize' else 'lower'}-is-better: "
                             f"direction must be {better!r} (or left out), not {self.direction!r}")
        return self

    @property
    def better(self) -> Literal["maximize", "minimize"]:
        """Which way is better for the metric."""
        return PROMOTION_METRICS[self.metric][1]

    def check_task(self, task: str, *, source: str = "the model") -> None:
        """ConfigError unless the metric fits ``task`` (naming the fitting ones)."""
        tasks = PROMOTION_METRICS[self.metric][0]
        if task not in tasks:
            raise ConfigError(f"[promotion] metric {self.metric!r} does not fit a {task} task ({source})",
                              hint=f"set [promotion] metric to one of: {', '.join(metrics_for(task))}")


class ExecutorSection(_Section):
    name: str = "local"
    max_workers: int = Field(default=0, ge=0, description="0 means one per CPU core")


LIVE_SCORES = ("accuracy", "precision", "recall", "f1", "mae", "rmse", "r2")  # from feedback, per task
ALERT_METRICS = ("drifted_features_share", "outlier_ratio", *LIVE_SCORES, "p99_latency_ms", "error_ratio")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(text: str) -> float:
    """Seconds in a Prometheus-style duration such as ``30s``, ``5m`` or ``1h``."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {text!r}")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _valid_duration(text: str) -> str:
    duration_s(text)
    return text


Duration = Annotated[str, AfterValidator(_valid_duration)]


class AlertRule(_Section):
    """``[[monitor.alerts]]``: fire when ``metric`` is above (or below) a threshold for a while.

    The threshold is a number (``above``, ``below``) or, for a live score, relative to what the served
    model scored on its own test set (``worse_than_test = 0.1``: live accuracy below 90 % of the test
    accuracy, live RMSE above 110 % of the test RMSE); ``for_model`` turns it into a number per version.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="alert name (a Prometheus alertname)")
    metric: Literal[ALERT_METRICS] = Field(description="one of " + ", ".join(ALERT_METRICS))  # type: ignore[valid-type]
    above: float | None = None
    below: float | None = None
    worse_than_test: float | None = Field(default=None, gt=0, description=(
        "live scores: fire when the score is worse than the model's test score by more than this fraction of it"))
    for_: Duration = Field(default="0s", alias="for", description="how long the condition must hold, e.g. 5m")
    severity: str = "warning"
    summary: str = ""

    @model_validator(mode="after")
    def _one_threshold(self) -> AlertRule:
        if sum(v is not None for v in (self.above, self.below, self.worse_than_test)) != 1:
            raise ValueError(f"alert {self.name!r}: give exactly one of 'above', 'below' or 'worse_than_test'")
        if self.worse_than_test is not None and self.metric not in LIVE_SCORES:
            raise ValueError(f"alert {self.name!r}: worse_than_test needs a live score ({', '.join(LIVE_SCORES)}); "
                             f"{self.metric!r} has no test score: use above or below")
        return self

    @property
    def higher_is_better(self) -> bool:
        """For a live score: whether a higher value is better (accuracy, r2), not worse (mae, rmse)."""
        return PROMOTION_METRICS[self.metric][1] == "maximize"

    def for_model(self, test_scores: dict[str, float]) -> AlertRule | None:
        """This rule with a number for a threshold, for a model with these test scores; None if the rule is
        relative and the model has no test score for its metric (a bundle from before they were recorded,
        or a metric of another task)."""
        if self.worse_than_test is None:
            return self
        test = test_scores.get(self.metric)
        if test is None:
            return None
        margin = self.worse_than_test * abs(test)
        side = {"below": test - margin} if self.higher_is_better else {"above": test + margin}
        summary = self.summary or (f"live {self.metric} is more than {self.worse_than_test:.0%} worse than on the "
                                   f"test set ({test:.4g})")
        return self.model_copy(update={**side, "worse_than_test": None, "summary": summary})

    @property
    def for_s(self) -> float:
        return duration_s(self.for_)

    @property
    def threshold(self) -> float:
        value = self.above if self.above is not None else self.below
        if value is None:
            raise ValueError(f"alert {self.name!r} is relative to the model's test score: use for_model first")
        return value

    @property
    def op(self) -> str:
        return ">" if self.above is not None else "<"

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.above is not None else value < self.threshold


DEFAULT_ALERTS = [AlertRule.model_validate(rule) for rule in (
    {"name": "DataDrift", "metric": "drifted_features_share", "above": 0.3, "for": "5m",
     "summary": "more than 30% of the features drifted from the training data"},
    {"name": "LowAccuracy", "metric": "accuracy", "worse_than_test": 0.1, "severity": "critical"},
    {"name": "HighError", "metric": "rmse", "worse_than_test": 0.25, "severity": "critical"},
    {"name": "HighLatency", "metric": "p99_latency_ms", "above": 200, "for": "5m",
     "summary": "p99 request latency is above 200 ms"},
    {"name": "HighErrorRatio", "metric": "error_ratio", "above": 0.01, "for": "5m", "severity": "critical",
     "summary": "more than 1% of requests fail with a server error"},
)]


class MonitorSection(_Section):
    interval: float = Field(default=10.0, ge=0, description="seconds between monitoring updates; 0 turns it off")
    window: int = Field(default=5000, ge=10, description="recent rows compared with the training data")
    min_samples: int = Field(default=100, ge=1, description="fewer values than this get no drift verdict")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="p-value below which a feature drifted")
    thresholds: dict[str, float] = Field(default_factory=dict, description="per-feature alpha")
    rate_window: Duration = Field(default="5m", description="time window of latency and error ratios")
    log: bool = Field(default=True, description="keep the durable prediction log under .mloop/monitor/")
    log_max_mb: float = Field(default=512.0, gt=0, description="size budget of the prediction log")
    log_waiting_rows: int = Field(default=200_000, ge=0, description=(
        "rows of the prediction log, and as many of feedback, kept in memory while they cannot be written "
        "(a full disk) and retried every update; beyond it the oldest are dropped (counted on /metrics)"))
    outlier_rows_per_s: int = Field(default=10_000, ge=0, description=(
        "rows a second scored by the outlier detector at most; above it a uniform random sample (0: every row)"))
    webhooks: list[str] = Field(default_factory=list, description="URLs that receive firing and resolved alerts")
    webhook_token: SecretStr = Field(default=SecretStr(""), description="bearer token sent to the webhooks")
    alerts: list[AlertRule] = Field(default_factory=lambda: [r.model_copy() for r in DEFAULT_ALERTS])

    @field_validator("webhooks")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook {url!r} must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> MonitorSection:
        names = [rule.name for rule in self.alerts]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"alert names must be unique; repeated: {', '.join(duplicates)}")
        return self


CRON_EXAMPLE = "'0 3 * * *' (03:00 every day) or '30 6 * * mon-fri'"


def check_cron(expr: str) -> str:
    """``expr`` if it is a cron schedule mloop accepts: five fields (minute hour day-of-month month
    day-of-week) or a name such as ``@daily``, that comes at least once; ValueError naming the problem."""
    from croniter import CroniterBadDateError, CroniterError, croniter

    text = " ".join(expr.split())
    fields = text.split(" ") if text else []
    if text.startswith("@"):
        if text == "@reboot" or not croniter.is_valid(text):
            raise ValueError(f"{expr!r} is not a cron schedule: use five fields or one of @hourly, @daily, @weekly, "
                             f"@monthly, @yearly, e.g. {CRON_EXAMPLE}")
    elif len(fields) != 5:
        raise ValueError(f"{expr!r} has {len(fields)} field(s): a cron schedule has five, minute hour day-of-month "
                         f"month day-of-week, e.g. {CRON_EXAMPLE}")
    try:
        croniter(text).get_next(float)  # some valid expressions never come: '0 0 30 2 *' (30 February)
    except CroniterBadDateError:
        raise ValueError(f"{expr!r} never comes (no date matches it): check the day of month and the month, "
                         f"e.g. {CRON_EXAMPLE}") from None
    except (CroniterError, ValueError, KeyError) as err:
        raise ValueError(f"{expr!r} is not a cron schedule ({err}): write minute hour day-of-month month "
                         f"day-of-week, e.g. {CRON_EXAMPLE}") from None
    return text


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone this machine knows (``Europe/Paris``, ``UTC``); ValueError naming
    the closest one otherwise."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        known = available_timezones()
        if not known:
            raise ValueError(f"time zone {name!r} is unknown: this machine has no time zone database; "
                             "install one (pip install tzdata, or apt-get install tzdata)") from None
        raise ValueError(f"{name!r} is not a time zone; {did_you_mean(name, known)} (an IANA name such as "
                         "'UTC' or 'Europe/Paris')") from None
    return name


class TriggerSection(_Section):
    """What starts a continuous-training cycle of the agent, and how bursts of triggers are coalesced.

    A ``schedule`` needs an explicit ``timezone`` (a cron time means nothing without one): a schedule
    with the key left out is a config error. ``timezone`` also says in which zone ``mloop agent status``
    prints its times.
    """

    alerts: list[str] | None = Field(default=None, description=(
        "alert names that start a cycle; unset: every firing alert of the model's deployment; []: none"))
    schedule: str = Field(default="", description=(
        "cron schedule (minute hour day-of-month month day-of-week) in `timezone`; empty: none"))
    timezone: str = Field(default="UTC", description="IANA time zone of the schedule, e.g. Europe/Paris")
    data: bool = Field(default=True, description="a new version of a pipeline input file starts a cycle")
    registry: bool = Field(default=True, description=(
        "a model version registered by someone else (a plain mloop run, CI) starts a cycle"))
    debounce: Duration = Field(default="10s", description=(
        "a cycle starts once no new trigger came for this long (a burst of alerts is one cycle)"))
    cooldown: Duration = Field(default="0s", description="least time between the end of a cycle and the next start")
    max_cycles_per_day: int = Field(default=24, ge=1, description=(
        "most cycles started automatically in any 24 hours (manual ones are not counted nor held)"))

    @field_validator("alerts")
    @classmethod
    def _alert_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not name.strip() for name in value):
            raise ValueError("alert names must not be empty")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value) if value.strip() else ""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _schedule_has_a_zone(self) -> TriggerSection:
        if self.schedule and "timezone" not in self.model_fields_set:
            raise ValueError(f"schedule {self.schedule!r} needs an explicit time zone: add timezone = \"UTC\" "
                             "(or yours, e.g. timezone = \"Europe/Paris\") next to it")
        return self

    @property
    def debounce_s(self) -> float:
        return duration_s(self.debounce)

    @property
    def cooldown_s(self) -> float:
        return duration_s(self.cooldown)


def _promotion_metric(value: str) -> str:
    if value not in PROMOTION_METRICS:
        raise ValueError(f"{value!r} is not a metric mloop can score; {did_you_mean(value, PROMOTION_METRICS)}; "
                         "one of " + ", ".join(PROMOTION_METRICS))
    return value


class GateRule(_Section):
    """``[[automation.gate.rules]]``: what the candidate must score on one metric to pass the gate.

    On the gate's holdout, with ``improvement`` the candidate's value minus the champion's for a
    higher-is-better metric (the champion's minus the candidate's for a lower-is-better one):

    - ``floor``: the candidate's value must be at least this (at most, lower-is-better), champion or not;
    - with a champion, ``improvement >= max(min_improvement, min_relative_improvement * |champion's value|)``.
      Both default to 0: a rule that sets neither means "not worse than the champion" (a tie meets it).
    - Meeting the margin is not enough: the paired test must also find the difference significant
      (``[automation.gate] alpha``), or the verdict is INCONCLUSIVE, which never promotes.
    """

    metric: Annotated[str, AfterValidator(_promotion_metric)]
    floor: float | None = Field(default=None, description=(
        "the candidate's value must be at least this (at most, for a lower-is-better metric)"))
    min_improvement: float = Field(default=0.0, ge=0.0, description="over the champion, in the metric's units")
    min_relative_improvement: float = Field(default=0.0, ge=0.0, description=(
        "over the champion, as a fraction of the champion's value (0.01: 1 %)"))

    @property
    def better(self) -> Literal["maximize", "minimize"]:
        """Which way is better for the metric."""
        return PROMOTION_METRICS[self.metric][1]

    def required_improvement(self, champion: float) -> float:
        """The improvement over a champion scoring ``champion`` that this rule requires (0: not worse)."""
        return max(self.min_improvement, self.min_relative_improvement * abs(champion))


class GateSection(_Section):
    """``[automation.gate]``: the statistical gate a retrained candidate passes before it may replace the champion.

    Both models are scored on one frozen holdout; each rule's metric is checked (``GateRule``) and a
    paired test on the per-row results says whether the difference is real. ``rules`` left out: one rule
    from ``[promotion]`` (its metric and min_improvement, see ``effective_rules``); ``rules = []`` is an
    error, a gate must check something.
    """

    rules: list[GateRule] = Field(default_factory=list, description="one per metric; left out: [promotion]'s metric")
    alpha: float = Field(default=0.05, gt=0, lt=1, description=(
        "the paired test's p-value must be below this for a better candidate to pass (else INCONCLUSIVE)"))
    test: Literal["auto", "mcnemar", "bootstrap", "wilcoxon"] = Field(default="auto", description=(
        "the paired test: auto is McNemar for a classifier, a paired bootstrap of the metric for a regressor; "
        "wilcoxon (regressors) compares per-row absolute errors"))
    bootstrap_samples: int = Field(default=2000, ge=100, le=1_000_000, description="resamples of the paired bootstrap")
    seed: int = Field(default=0, ge=0, description="seed of the bootstrap's resampling (the same seed, the same p-value)")
    inconclusive: Literal["hold", "shadow", "fail"] = Field(default="hold", description=(
        "what an INCONCLUSIVE verdict does: hold (keep the champion, candidate stays registered), shadow (serve "
        "the candidate in shadow only), fail (as a FAIL); it never promotes"))
    holdout: str = Field(default="", description=(
        "a CSV or Parquet file, relative to the project root, with the features and the target column: the frozen "
        "holdout both models are scored on. Empty: the candidate run's test frame"))

    @field_validator("holdout")
    @classmethod
    def _csv_or_parquet(cls, value: str) -> str:
        if value and not value.lower().endswith((".csv", ".parquet", ".pq")):
            raise ValueError(f"the holdout {value!r} must be a .csv or .parquet file (or empty: the run's test frame)")
        return value

    @model_validator(mode="after")
    def _rules_check_something(self) -> GateSection:
        if "rules" in self.model_fields_set and not self.rules:
            raise ValueError("[automation.gate] rules is empty: a gate must check at least one metric; add a rule "
                             "such as [[automation.gate.rules]] metric = \"accuracy\", or leave 'rules' out to gate "
                             "on [promotion] metric")
        metrics = [rule.metric for rule in self.rules]
        repeated = sorted({m for m in metrics if metrics.count(m) > 1})
        if repeated:
            raise ValueError(f"[automation.gate] has more than one rule for {', '.join(repeated)}: "
                             "merge them into one rule per metric (floor and improvements together)")
        if self.test in ("auto", "bootstrap") and 2 / (self.bootstrap_samples + 1) >= self.alpha:
            # the bootstrap's smallest p-value is 2 / (B + 1)
            raise ValueError(f"[automation.gate] bootstrap_samples = {self.bootstrap_samples} cannot give a p-value "
                             f"below alpha = {self.alpha:g}: use at least {math.ceil(20 / self.alpha)} resamples")
        return self

    def effective_rules(self, promotion: PromotionSection) -> list[GateRule]:
        """The rules the gate applies: the configured ones, or (none written) one rule on ``[promotion] metric``
        with its ``min_improvement``."""
        if self.rules:
            return list(self.rules)
        return [GateRule(metric=promotion.metric, min_improvement=promotion.min_improvement)]


class InfraSection(_Section):
    """The infra check of a candidate, before any traffic reaches it: loaded in a separate server, it is sent
    the signature's input example and a sample of recorded production requests, and must answer them all
    within ``p99_ms`` and ``max_memory_mb`` (``mloop.automation.infra.check_can_serve``)."""

    p99_ms: float = Field(default=500.0, gt=0, description=(
        "the 99th percentile of the check's request latencies (measured by the client) must not exceed it"))
    max_memory_mb: float = Field(default=2048.0, gt=0, description=(
        "the candidate server's largest resident memory (RSS) while it answers must not exceed it"))
    sample: int = Field(default=200, ge=0, description=(
        "recorded production rows (the deployment's prediction log) sent at most; 0: only the input example"))
    timeout: Duration = Field(default="120s", description="how long the candidate server may take to start")
    enabled: bool = Field(default=True, description="off: candidates are not checked (the check passes, skipped)")

    @field_validator("timeout")
    @classmethod
    def _some_time(cls, value: str) -> str:
        if duration_s(value) <= 0:
            raise ValueError(f"the server needs some time to start: give a timeout such as 120s, not {value!r}")
        return value

    @property
    def timeout_s(self) -> float:
        return duration_s(self.timeout)


class DataSection(_Section):
    """``[data]``: where DVC keeps the versions of the project's data."""

    remote: str = Field(default="", description=(
        "a DVC remote URL (s3://bucket/path, gs://..., a folder); credentials come from the environment. "
        "Empty: a folder on this machine shared by every clone, $XDG_DATA_HOME/mloop/dvc-remote"))


# What the agent's watch can measure on a roll-out: per version from the server (error ratio, p99 latency,
# live scores from feedback, shadow disagreement) and, for the whole deployment, the drifted share.
WATCH_METRICS = ("error_ratio", "p99_latency_ms", "drifted_features_share", "shadow_disagreement", *LIVE_SCORES)


class WatchMetric(_Section):
    """``[[automation.watch.metrics]]``: a measurement fails when ``metric`` is above (or below) a threshold."""

    metric: Literal[WATCH_METRICS] = Field(description="one of " + ", ".join(WATCH_METRICS))  # type: ignore[valid-type]
    above: float | None = None
    below: float | None = None
    min_samples: int = Field(default=20, ge=1, description=(
        "requests (or, for a live score, labelled rows) the candidate must have answered for a verdict; "
        "fewer make the measurement inconclusive"))

    @model_validator(mode="after")
    def _one_threshold(self) -> WatchMetric:
        if (self.above is None) == (self.below is None):
            raise ValueError(f"watch metric {self.metric!r}: give exactly one of 'above' or 'below'")
        return self

    def failed(self, value: float) -> bool:
        return value > self.above if self.above is not None else value < float(self.below)  # type: ignore[arg-type]

    @property
    def condition(self) -> str:
        return f"{self.metric} > {self.above:g}" if self.above is not None else f"{self.metric} < {self.below:g}"


DEFAULT_WATCH = [WatchMetric(metric="error_ratio", above=0.01), WatchMetric(metric="p99_latency_ms", above=500.0)]


class WatchSection(_Section):
    """``[automation.watch]``: the analysis of a roll-out, with Argo Rollouts' semantics.

    A measurement every ``interval``, ``count`` of them; the analysis fails once more than
    ``failure_limit`` measurements failed, holds once more than ``inconclusive_limit`` were inconclusive
    (too few samples), and fails after more than ``error_limit`` consecutive provider errors (the server
    unreachable): a broken measurement is not a failing metric.
    """

    interval: Duration = "5s"
    count: int = Field(default=6, ge=1)
    failure_limit: int = Field(default=0, ge=0)
    inconclusive_limit: int = Field(default=3, ge=0)
    error_limit: int = Field(default=4, ge=0)
    metrics: list[WatchMetric] = Field(default_factory=lambda: [m.model_copy() for m in DEFAULT_WATCH])

    @field_validator("interval")
    @classmethod
    def _some_interval(cls, value: str) -> str:
        if duration_s(value) <= 0:
            raise ValueError(f"measurements need time between them: give an interval such as 10s, not {value!r}")
        return value

    @property
    def interval_s(self) -> float:
        return duration_s(self.interval)


class AutomationSection(_Section):
    """``[automation]``: the continuous-training agent (``mloop agent``)."""

    deployment: str = Field(default="", description="the local deployment it rolls out to (default: the model's name)")
    strategy: Literal["swap", "canary", "shadow"] = "canary"
    canary_steps: list[float] = Field(default_factory=lambda: [0.1, 0.5], description=(
        "the candidate's share of requests at each canary step, rising; the watch's measurements are split "
        "evenly among the steps"))
    snapshot: bool = Field(default=False, description=(
        "before training, add the served model's labelled production rows as a new data version (snapshot_to)"))
    snapshot_to: str = "data/production.parquet"
    port: int = Field(default=0, ge=0, le=65535, description=(
        "where the agent takes alerts and triggers on 127.0.0.1 (0: a free port, named in agent.json and by "
        "`mloop agent status`; give one for Alertmanager's webhook)"))
    poll: Duration = Field(default="5s", description="how often the agent looks for new data, versions and alerts")
    max_rollbacks: int = Field(default=3, ge=1, description=(
        "consecutive automatic rollbacks after which the agent stops and raises an alert"))
    triggers: TriggerSection = Field(default_factory=TriggerSection)
    gate: GateSection = Field(default_factory=GateSection)
    infra: InfraSection = Field(default_factory=InfraSection)
    watch: WatchSection = Field(default_factory=WatchSection)

    @field_validator("canary_steps")
    @classmethod
    def _rising_shares(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 < v < 1 for v in value) or any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError(f"canary_steps {value} must be rising shares between 0 and 1 (exclusive), e.g. [0.1, 0.5]")
        return value

    @field_validator("poll")
    @classmethod
    def _some_poll(cls, value: str) -> str:
        if duration_s(value) <= 0:
            raise ValueError(f"the agent needs time between its looks: give a poll such as 5s, not {value!r}")
        return value

    @field_validator("snapshot_to")
    @classmethod
    def _inside(cls, value: str) -> str:
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError(f"snapshot_to {value!r} must be a path inside the project, e.g. data/production.parquet")
        return value

    @property
    def poll_s(self) -> float:
        return duration_s(self.poll)


class _EnvironmentFirst(BaseSettings):
    """Settings where an environment variable wins over the file (the only two sources)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


class ServingSection(_EnvironmentFirst):
    """``[serving]``: the model server of ``mloop serve`` and ``mloop deploy``.

    Also read on its own, from ``MLOOP_SERVING_*`` variables only, by a server that runs without a
    project (a container serving a model folder).
    """

    model_config = SettingsConfigDict(env_prefix="MLOOP_SERVING_", extra="forbid")

    host: str = Field(default="127.0.0.1", description="address to bind; anything but loopback needs a token")
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_mb: float = Field(default=10.0, gt=0, description="largest request body; bigger gets 413")
    max_upload_mb: float = Field(default=1024.0, gt=0, description="largest batch-scoring upload")
    max_batch_rows: int = Field(default=1024, ge=1, description="most rows in one predict call")
    max_wait_ms: float = Field(default=0.0, ge=0, description="extra wait to gather a batch (0: none)")
    compute_threads: int = Field(default=1, ge=1, description=(
        "threads the native code of one prediction may use (OpenMP, BLAS; it sets OMP_NUM_THREADS, "
        "OPENBLAS_NUM_THREADS and MKL_NUM_THREADS in the server); more lets one large batch or batch file use "
        "several cores, and lets other work on a busy machine stall every request queued behind it"))
    access_log: bool = Field(default=True, description="one JSON line per request on stderr")
    header_timeout: float = Field(default=10.0, gt=0, description=(
        "seconds a client has to send a request's headers; then 408 and the connection is closed"))
    body_timeout: float = Field(default=60.0, gt=0, description=(
        "longest wait for the next part of a request body (idle time, not the whole upload); then 408 and close"))
    keep_alive_timeout: float = Field(default=5.0, gt=0, description="an idle keep-alive connection is closed after it")
    max_connections: int = Field(default=1000, ge=1, description=(
        "open connections served at once; requests on one more are answered 503 and it is closed"))
    token: SecretStr = Field(default=SecretStr(""), description="bearer token clients must send")
    admin_token: SecretStr = Field(default=SecretStr(""), description=(
        "bearer token of POST /admin/model (hot swap); set by mloop deploy for each deployment"))
    alert_token: SecretStr = Field(default=SecretStr(""), description=(
        "bearer token Alertmanager sends to POST /alerts/webhook (default: the token)"))

    def updated(self, **values: Any) -> ServingSection:
        """These settings with ``values`` (e.g. command-line options) in place, validated."""
        try:
            return type(self).model_validate(self.model_dump() | values)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"serving setting {where} = {first.get('input')!r}: {first['msg']}",
                              hint="check the command's options") from err

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def receiver_token(self) -> str:
        """The token the Alertmanager receiver accepts ('' when it is off)."""
        return self.alert_token.get_secret_value() or self.token.get_secret_value()


class UISection(_EnvironmentFirst):
    """``[ui]``: the web app of ``mloop ui`` (Streamlit). Bound beyond loopback it needs ``token``, like the server."""

    model_config = SettingsConfigDict(env_prefix="MLOOP_UI_", extra="forbid")

    host: str = Field(default="127.0.0.1", description="address to bind; anything but loopback needs a token")
    port: int = Field(default=8501, ge=1, le=65535)
    token: SecretStr = Field(default=SecretStr(""), description="the token a visitor types in once per browser session")
    mlflow_url: str = Field(default="http://127.0.0.1:5000", description=(
        "where `mloop mlflow-ui` answers; the app links runs and model versions into it"))
    refresh: float = Field(default=5.0, gt=0, description="seconds between updates of the monitoring page while open")


# Names read before one name per setting; a server refuses to start while one is set, naming the new one.
RENAMED_VARIABLES = {"MLOOP_TOKEN": "MLOOP_SERVING_TOKEN", "MLOOP_ADMIN_TOKEN": "MLOOP_SERVING_ADMIN_TOKEN",
                     "MLOOP_ALERT_TOKEN": "MLOOP_SERVING_ALERT_TOKEN",
                     "MLOOP_WEBHOOK_TOKEN": "MLOOP_MONITOR_WEBHOOK_TOKEN"}


def check_renamed_variables(environ: dict[str, str] | None = None) -> None:
    """Refuse an environment that sets a variable mloop no longer reads (a token would be silently ignored)."""
    environ = dict(os.environ) if environ is None else environ
    for old, new in RENAMED_VARIABLES.items():
        if old in environ:
            raise ConfigError(f"{old} is set, but mloop reads {new} instead",
                              hint=f"rename the variable: export {new}=\"${old}\"; unset {old}")


def serving_settings(**overrides: Any) -> ServingSection:
    """``[serving]`` for a server without a project: ``MLOOP_SERVING_*`` variables, then ``overrides``."""
    check_renamed_variables()
    try:
        return ServingSection(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"serving setting {where} = {first.get('input')!r}: {first['msg']}",
                          hint="check the MLOOP_SERVING_* variables and the command's options") from err


class Settings(_EnvironmentFirst):
    """Everything in ``mloop.toml``; see the module docstring for environment overrides."""

    model_config = SettingsConfigDict(
        env_prefix="MLOOP_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
    )

    project: ProjectSection
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    registry: RegistrySection = Field(default_factory=RegistrySection)
    promotion: PromotionSection = Field(default_factory=PromotionSection)
    executor: ExecutorSection = Field(default_factory=ExecutorSection)
    monitor: MonitorSection = Field(default_factory=MonitorSection)
    serving: ServingSection = Field(default_factory=ServingSection)
    data: DataSection = Field(default_factory=DataSection)
    automation: AutomationSection = Field(default_factory=AutomationSection)
    ui: UISection = Field(default_factory=UISection)

    @property
    def agent_owns_champion(self) -> bool:
        """With an ``[automation]`` table, the agent gates, rolls out and promotes: a plain ``mloop run`` (or CI)
        registers a challenger and leaves the champion alias to it."""
        return "automation" in self.model_fields_set

    @model_validator(mode="after")
    def _metric_fits_the_task(self) -> Settings:
        task = self.project.task
        if task is not None and task not in PROMOTION_METRICS[self.promotion.metric][0]:
            raise ValueError(f"[promotion] metric {self.promotion.metric!r} does not fit [project] task {task!r}; "
                             f"use one of: {', '.join(metrics_for(task))}")
        if task is not None:
            for gate_rule in self.automation.gate.rules:
                if task not in PROMOTION_METRICS[gate_rule.metric][0]:
                    raise ValueError(f"[automation.gate] rule on {gate_rule.metric!r} does not fit a {task} task; use one "
                                     f"of: {', '.join(metrics_for(task))}")
            for watched in self.automation.watch.metrics:
                if watched.metric in LIVE_SCORES and task not in PROMOTION_METRICS[watched.metric][0]:
                    fitting = [m for m in LIVE_SCORES if task in PROMOTION_METRICS[m][0]]
                    raise ValueError(f"[automation.watch] metric {watched.metric!r} is not a live score of a {task} "
                                     f"model; use one of: {', '.join(fitting)}")
            test = self.automation.gate.test
            if (test == "mcnemar" and task == "regression") or (test == "wilcoxon" and task != "regression"):
                raise ValueError(f"[automation.gate] test {test!r} does not fit a {task} task; leave it 'auto' "
                                 "(McNemar for classification, a paired bootstrap for regression)")
        if task is not None and "alerts" in self.monitor.model_fields_set:  # rules written in mloop.toml
            for rule in self.monitor.alerts:
                if rule.metric in LIVE_SCORES and task not in PROMOTION_METRICS[rule.metric][0]:
                    fitting = [m for m in LIVE_SCORES if task in PROMOTION_METRICS[m][0]]
                    raise ValueError(f"[[monitor.alerts]] {rule.name!r}: metric {rule.metric!r} is not a live score "
                                     f"of a {task} model; use one of: {', '.join(fitting)}")
        return self

    @model_validator(mode="after")
    def _alert_names_are_defined(self) -> Settings:
        """A warning, not an error: an Alertmanager rule of the user's own may fire an alert of any name."""
        defined = [rule.name for rule in self.monitor.alerts]
        for name in self.automation.triggers.alerts or []:
            if name not in defined:
                warnings.warn(f"[automation.triggers] alerts: no [[monitor.alerts]] rule is named {name!r} "
                              f"({did_you_mean(name, defined)}); only an alert of that name from your own "
                              "Alertmanager rules can start a cycle", ConfigWarning, stacklevel=1)
        return self


class ProjectConfig:
    """A project: its root folder, its settings, and the paths of its stores."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings

    @property
    def store(self) -> Path:
        return self.root / STORE_DIR

    @property
    def name(self) -> str:
        return self.settings.project.name

    @property
    def tracking_uri(self) -> str:
        uri = self.settings.tracking.uri
        return uri or f"sqlite:///{self.store / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str:
        return (self.store / "mlartifacts").as_uri()

    @property
    def experiment(self) -> str:
        return self.settings.tracking.experiment or self.name

    @property
    def model_name(self) -> str:
        return self.settings.registry.model_name or self.name

    def monitor_dir(self, model: str) -> Path:
        """Where a served model's prediction log, alerts and status live."""
        return self.store / "monitor" / model

    def scratch(self) -> Path:
        """The project's folder for temporary files (``.mloop/tmp``), created if needed: on the store's disk,
        private to its owner, and what a killed process leaves there ``mloop doctor`` removes."""
        path = self.store / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def lock_path(self, what: str) -> Path:
        """The lock file that serializes ``what`` between processes (``_fs.file_lock``)."""
        return self.store / "locks" / f"{what}.lock"


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` holding ``mloop.toml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ProjectNotFound(
        f"no {CONFIG_FILE} in {here} or any folder above it",
        hint="run mloop inside a project folder, pass --project PATH, or create one with 'mloop init NAME'",
    )


def load_project(root: Path | None = None) -> ProjectConfig:
    """Read and validate ``mloop.toml`` in ``root`` (or the nearest one above the working folder)."""
    root = find_project_root(root)
    path = root / CONFIG_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}", hint="fix the line it names") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})",
                          hint="restore it from version control, or save it as UTF-8") from err
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    cfg = ProjectConfig(root, parse_settings(data, source=str(path)))
    if cfg.store.exists() and not cfg.store.is_dir():
        raise ConfigError(f"{cfg.store} is not a folder: mloop keeps the project's runs, models and logs there",
                          hint=f"move it aside (mloop makes a new store): mv {cfg.store} {cfg.store}.damaged")
    private_folder(cfg.store)
    return cfg


def parse_settings(data: dict[str, Any], *, source: str = CONFIG_FILE) -> Settings:
    """Validate a parsed config, turning pydantic's report into one actionable line."""
    try:
        return Settings(**data)
    except ValidationError as err:
        # An unknown key explains the rest (a misspelt section also reports it "missing").
        first = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            section_fields = _known_fields(first["loc"][:-1])
            key = str(first["loc"][-1])
            message = f"{source}: unknown setting {where!r}; {did_you_mean(key, section_fields)}"
        elif first["type"] == "missing":
            message = f"{source}: required setting {where!r} is missing"
        elif first["type"] == "value_error" and (not where or isinstance(first.get("input"), dict)):
            # a rule across settings (a section's or the file's): its message names the settings itself
            message = f"{source}: {first['msg'].removeprefix('Value error, ')}"
        else:
            message = f"{source}: {where} = {first.get('input')!r}: {first['msg'].removeprefix('Value error, ')}"
        env_names = [n for n in os.environ if n.startswith("MLOOP_")]
        hint = "edit the file" + (f" or check the environment ({', '.join(sorted(env_names))})" if env_names else "")
        raise ConfigError(message, hint=hint) from err


def _known_fields(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Settings
    for part in loc:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None or not isinstance(field.annotation, type):
            return []
        model = field.annotation
    return list(model.model_fields) if hasattr(model, "model_fields") else []
