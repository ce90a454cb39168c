"""The statistical gate of continuous training: may a retrained candidate replace the champion?

Both models predict once on one frozen holdout (``load_holdout``); each rule's metric is computed from
those predictions with the registry's one metric table (``mloop.registry.metrics``), and a paired test
on the per-row results of the two models says whether a difference is real:

- **McNemar** (classifiers: ``test = "auto"`` or ``"mcnemar"``). Of the rows exactly one model gets right,
  b are the candidate's and c the champion's; if both models were equally good, b would follow
  Binomial(b + c, 1/2). p is the exact two-sided binomial p-value (scipy's ``binomtest``: what
  statsmodels' ``mcnemar(exact=True)`` computes), exact at any count, and 1 when no row differs. It tests
  the labels, so for a probability metric (roc_auc, log_loss) it is a proxy; ``test = "bootstrap"``
  tests such a metric itself.
- **Paired bootstrap** (regressors by default; any metric). ``bootstrap_samples`` resamples of the
  holdout's rows (seeded: the same seed gives the same p-value); on each, the metric's difference
  candidate − champion. p = 2 · min(#{d ≤ 0} + 1, #{d ≥ 0} + 1) / (B + 1), at most 1 (two-sided, add-one
  smoothed: never 0); the alpha/2 and 1 − alpha/2 quantiles of d are its confidence interval.
- **Wilcoxon signed-rank** (regressors, ``test = "wilcoxon"``): the per-row absolute errors of the two
  models (scipy's ``wilcoxon``; rows with equal errors are left out; none left: p = 1).

Each rule gives PASS, FAIL or INCONCLUSIVE, and the gate the worst of them (FAIL, then INCONCLUSIVE):
a metric undefined (NaN) or not fitting the task for either model FAILs; the candidate must meet the
rule's floor; with a champion it must be better by the required improvement (``GateRule``), or FAIL,
and the test's p-value must be below ``alpha``, or INCONCLUSIVE. Without a champion only the floors
apply. INCONCLUSIVE never promotes; ``[automation.gate] inconclusive`` says what the agent does instead.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mloop.bundle.rows import TrainingRows, own_columns, read_bundle_columns, trained_by_one
from mloop.config import CLASSIFICATION, PROMOTION_METRICS, GateRule, GateSection, ProjectConfig
from mloop.errors import ConfigError, RegistryError, listed
from mloop.registry.metrics import METRICS, BoundMetric, bind, task_of

if TYPE_CHECKING:
    from pandas import DataFrame, Series

    from mloop.pipeline.runner import RunResult

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]
_TOLERANCE = 1e-12  # an improvement equal to the required one, up to float rounding, meets it
_CELLS = 4_000_000  # resampled row indices held at once by the bootstrap (32 MB)
_ON_INCONCLUSIVE = {
    "hold": "INCONCLUSIVE never promotes: the champion keeps serving, the candidate stays registered "
            "(inconclusive = \"hold\")",
    "shadow": "INCONCLUSIVE never promotes: the candidate is served in shadow only, its answers logged and "
              "compared, never returned (inconclusive = \"shadow\")",
    "fail": "INCONCLUSIVE never promotes: it is treated as a FAIL (inconclusive = \"fail\")",
}


@dataclass
class SignificanceTest:
    """The paired test behind a check: its p-value and what it counted."""

    name: str  # mcnemar, bootstrap or wilcoxon
    statistic: float  # mcnemar: min(b, c); bootstrap: the observed difference; wilcoxon: scipy's W
    p_value: float | None  # None: it could not be computed (no resample defined the metric)
    n: int  # rows it rests on: mcnemar the discordant ones, wilcoxon those with different errors, bootstrap all
    candidate_only: int | None = None  # mcnemar: rows only the candidate gets right (b)
    champion_only: int | None = None  # mcnemar: rows only the champion gets right (c)
    ci_low: float | None = None  # bootstrap: confidence interval (1 - alpha) of candidate − champion
    ci_high: float | None = None
    samples: int | None = None  # bootstrap: resamples on which both models' metric was defined


@dataclass
class MetricCheck:
    """One rule applied: both values, the margin asked and found, and whether it passed (None: inconclusive)."""

    metric: str
    direction: str  # maximize or minimize
    candidate: float | None  # None: undefined, or not computable, for the candidate (see reason)
    champion: float | None = None
    delta: float | None = None  # candidate − champion
    relative_delta: float | None = None  # delta / |champion| (None when the champion scores 0)
    floor: float | None = None
    required_improvement: float | None = None  # in the better direction; None without a champion
    p_value: float | None = None
    passed: bool | None = None
    reason: str = ""
    test: SignificanceTest | None = None

    @property
    def verdict(self) -> Verdict:
        return "PASS" if self.passed else "FAIL" if self.passed is False else "INCONCLUSIVE"


@dataclass
class HoldoutInfo:
    """Which rows the gate scored: how many, the SHA-256 of their source, and where they came from."""

    rows: int  # scored: those left out are not counted
    digest: str
    source: str
    left_out: int = 0  # rows exactly one of the two models trained on


@dataclass
class GateReport:
    """The gate's verdict on a candidate, with everything it rests on (what the audit log records)."""

    verdict: Verdict
    candidate_version: str
    champion_version: str | None
    holdout: HoldoutInfo
    checks: list[MetricCheck]
    test: str  # the paired test: mcnemar, bootstrap or wilcoxon
    alpha: float
    inconclusive: str  # what INCONCLUSIVE makes the agent do: hold, shadow or fail
    notes: list[str] = field(default_factory=list)

    @property
    def promotes(self) -> bool:
        """Whether the candidate may replace the champion (only a PASS does)."""
        return self.verdict == "PASS"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (a non-finite number is null)."""
        return _json_safe(asdict(self))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateReport:
        checks = [MetricCheck(**{**check, "test": SignificanceTest(**check["test"]) if check.get("test") else None})
                  for check in data["checks"]]
        return cls(**{**data, "holdout": HoldoutInfo(**data["holdout"]), "checks": checks,
                      "notes": list(data.get("notes", []))})

    def summary(self) -> str:
        """One line: the verdict, the versions, the rows, and the checks that decided it."""
        against = f"champion v{self.champion_version}" if self.champion_version is not None else "no champion"
        action = f" ({self.inconclusive})" if self.verdict == "INCONCLUSIVE" else ""
        deciding = [c for c in self.checks if c.verdict == self.verdict] or self.checks
        rows = (f"{self.holdout.rows} holdout rows" if not self.holdout.left_out else
                f"{self.holdout.rows} holdout rows ({self.holdout.left_out} others left out: one of the two models "
                f"trained on them)")
        return (f"{self.verdict}{action}: v{self.candidate_version} vs {against} on {rows}: "
                + "; ".join(c.reason for c in deciding))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


@dataclass
class _Predictions:
    """What one model predicted on the holdout (``error``: why it could not)."""

    role: str  # candidate or champion
    task: str
    classes: list[Any]
    labels: np.ndarray | None = None
    proba: np.ndarray | None = None
    error: str = ""  # predict failed
    proba_error: str = ""  # predict_proba failed, or there is none


def _predict(role: str, model: Any, features: DataFrame | str, *, proba: bool) -> _Predictions:
    """``features``: the holdout's columns the model takes, or why it cannot have them."""
    found = _Predictions(role, task_of(model), list(getattr(model, "classes_", [])))
    if isinstance(features, str):
        found.error = features
        return found
    # whatever the model's library raises is said in the report, and the checks that need it fail
    try:
        found.labels = np.asarray(model.predict(features))
    except Exception as err:  # noqa: BLE001
        found.error = f"the {role} cannot predict on the holdout ({type(err).__name__}: {str(err)[:200]})"
        return found
    if proba and not hasattr(model, "predict_proba"):
        found.proba_error = f"the {role} has no predict_proba"
    elif proba:
        try:
            found.proba = np.asarray(model.predict_proba(features))
        except Exception as err:  # noqa: BLE001
            found.proba_error = f"the {role}'s predict_proba fails ({type(err).__name__}: {str(err)[:200]})"
    return found


def _inputs(name: str, predictions: _Predictions) -> tuple[BoundMetric, np.ndarray] | str:
    """The bound metric and what it scores for one model, or why there is none."""
    if predictions.error:
        return f"is missing: {predictions.error}"
    if predictions.task not in PROMOTION_METRICS[name][0]:
        return f"does not apply to a {predictions.task} model"
    metric = bind(name, predictions.classes)
    values = predictions.proba if metric.needs_proba else predictions.labels
    if values is None:
        return f"is missing: it needs probabilities and {predictions.proba_error}"
    return metric, values


def _value(name: str, truth: np.ndarray, predictions: _Predictions) -> float | str:
    """The model's metric on the holdout, or why it has none."""
    inputs = _inputs(name, predictions)
    if isinstance(inputs, str):
        return inputs
    metric, values = inputs
    try:
        value = float(metric.fn(truth, values))
    except (ValueError, TypeError) as err:  # scikit-learn's refusals, e.g. roc_auc of a one-class holdout
        return f"cannot be computed: {type(err).__name__}: {str(err)[:200]}"
    return value if math.isfinite(value) else "is undefined on the holdout"


def evaluate(gate: GateSection, rules: list[GateRule], candidate: Any, champion: Any | None, features: DataFrame | str,
             target: Series, *, candidate_version: str, champion_version: str | None, holdout_digest: str = "",
             holdout_source: str = "", champion_features: DataFrame | str | None = None) -> GateReport:
    """The gate's report on ``candidate`` against ``champion`` (None: there is none), both fitted estimators,
    on the same holdout ``(features, target)``. Pure: it loads, writes and logs nothing. ``champion_features``:
    the champion's own columns of the same rows when it takes other columns than the candidate; default
    ``features``. Either may instead be the reason the holdout cannot give a model its columns: that model
    cannot predict, and the checks that need it FAIL with the reason.

    A rule that cannot be checked (a metric undefined, or a model that cannot predict) is a FAIL in the
    report, never an exception; a test that does not fit the candidate's task is a ConfigError.
    """
    if not rules:
        raise ConfigError("the gate has no rule to check",
                          hint="pass GateSection.effective_rules(promotion): the configured rules or [promotion]'s")
    task = task_of(candidate)
    method = _method(gate, task)
    truth = np.asarray(target)
    needs_proba = any(METRICS[rule.metric].needs_proba for rule in rules)
    ours = _predict("candidate", candidate, features, proba=needs_proba)
    theirs = None if champion is None else _predict("champion", champion, features if champion_features is None
                                                    else champion_features, proba=needs_proba)
    paired = _paired(method, gate, truth, ours, theirs)
    checks = [_check(rule, gate, truth, ours, theirs, paired) for rule in rules]
    verdict: Verdict = ("FAIL" if any(c.passed is False for c in checks)
                        else "INCONCLUSIVE" if any(c.passed is None for c in checks) else "PASS")
    notes = []
    if theirs is None:
        notes.append("no champion: only the floors apply")
    elif method == "mcnemar" and any(METRICS[r.metric].needs_proba for r in rules):
        notes.append("McNemar compares the predicted labels; for a probability metric (roc_auc, log_loss) set "
                     "test = \"bootstrap\" to test the metric itself")
    if verdict == "INCONCLUSIVE":
        notes.append(_ON_INCONCLUSIVE[gate.inconclusive])
    holdout = HoldoutInfo(int(truth.shape[0]), holdout_digest, holdout_source)
    return GateReport(verdict, candidate_version, None if champion is None else champion_version, holdout, checks,
                      method, gate.alpha, gate.inconclusive, notes)


def _method(gate: GateSection, task: str) -> str:
    """The paired test for a candidate of ``task``; ConfigError when the configured one does not fit it."""
    if gate.test == "auto":
        return "mcnemar" if task in CLASSIFICATION else "bootstrap"
    if gate.test == "mcnemar" and task not in CLASSIFICATION:
        raise ConfigError("[automation.gate] test = \"mcnemar\" compares which rows a classifier gets right, and the "
                          "candidate is a regressor", hint="set test = \"bootstrap\", \"wilcoxon\" or \"auto\"")
    if gate.test == "wilcoxon" and task in CLASSIFICATION:
        raise ConfigError(f"[automation.gate] test = \"wilcoxon\" compares a regressor's absolute errors, and the "
                          f"candidate is a {task} classifier", hint="set test = \"mcnemar\", \"bootstrap\" or \"auto\"")
    return gate.test


def _check(rule: GateRule, gate: GateSection, truth: np.ndarray, ours: _Predictions, theirs: _Predictions | None,
           paired: Callable[[str], SignificanceTest]) -> MetricCheck:
    name, better = rule.metric, rule.better
    mine = _value(name, truth, ours)
    check = MetricCheck(name, better, None, floor=rule.floor)
    if isinstance(mine, str):
        check.passed, check.reason = False, f"{name} of the candidate {mine}"
        return check
    check.candidate = mine
    problems = []
    if rule.floor is not None and (mine < rule.floor if better == "maximize" else mine > rule.floor):
        problems.append(f"{name} {mine:.4f} is {'below' if better == 'maximize' else 'above'} the floor {rule.floor:g}")
    if theirs is None:
        floor = f"meets the floor {rule.floor:g}" if rule.floor is not None else "has no floor to meet"
        check.passed, check.reason = not problems, "; ".join(problems) or f"{name} {mine:.4f} {floor}"
        return check
    champion = _value(name, truth, theirs)
    if isinstance(champion, str):
        check.passed, check.reason = False, "; ".join([*problems, f"{name} of the champion {champion}"])
        return check
    check.champion, check.delta = champion, mine - champion
    check.relative_delta = check.delta / abs(champion) if champion else None
    improvement = check.delta if better == "maximize" else -check.delta
    check.required_improvement = required = rule.required_improvement(champion)
    versus = f"{name} {mine:.4f} vs {champion:.4f}"
    if improvement < required - _TOLERANCE:
        need = f"better by at least {required:.4g}" if required > 0 else "not worse"
        problems.append(f"{versus}: needs to be {need} ({'higher' if better == 'maximize' else 'lower'} is better)")
    if problems:
        check.passed, check.reason = False, "; ".join(problems)
        return check
    check.test = test = paired(name)
    check.p_value = test.p_value
    found = f"{versus}, {'better' if improvement > 0 else 'changed'} by {abs(improvement):.4f} (required {required:.4g})"
    if test.p_value is None:
        check.passed, check.reason = None, f"{found}, but the {test.name} test could not be computed"
    elif test.p_value >= gate.alpha:
        check.passed = None
        check.reason = f"{found}, not significant: {test.name} p = {test.p_value:.3g} >= alpha {gate.alpha:g}"
    else:
        check.passed, check.reason = True, f"{found}, {test.name} p = {test.p_value:.3g} < alpha {gate.alpha:g}"
    return check


def _paired(method: str, gate: GateSection, truth: np.ndarray, ours: _Predictions,
            theirs: _Predictions | None) -> Callable[[str], SignificanceTest]:
    """The paired test of a metric, run once (McNemar and Wilcoxon: once for all metrics)."""
    done: dict[str, SignificanceTest] = {}

    def test(metric: str) -> SignificanceTest:
        key = metric if method == "bootstrap" else method
        if key not in done:
            assert theirs is not None and ours.labels is not None and theirs.labels is not None  # checked by _check
            if method == "mcnemar":
                done[key] = mcnemar(truth, ours.labels, theirs.labels)
            elif method == "wilcoxon":
                done[key] = wilcoxon(truth, ours.labels, theirs.labels)
            else:
                mine, champion = _inputs(metric, ours), _inputs(metric, theirs)
                assert not isinstance(mine, str) and not isinstance(champion, str)  # both were scored
                done[key] = bootstrap(truth, mine, champion, samples=gate.bootstrap_samples, seed=gate.seed,
                                      alpha=gate.alpha)
        return done[key]

    return test


def mcnemar(truth: np.ndarray, candidate: np.ndarray, champion: np.ndarray) -> SignificanceTest:
    """Exact McNemar test of two classifiers' predicted labels on the same rows (see the module docstring)."""
    from scipy import stats

    mine, theirs = candidate == truth, champion == truth
    only_mine, only_theirs = int(np.sum(mine & ~theirs)), int(np.sum(~mine & theirs))
    discordant = only_mine + only_theirs
    p = float(stats.binomtest(only_mine, discordant, 0.5).pvalue) if discordant else 1.0
    return SignificanceTest("mcnemar", float(min(only_mine, only_theirs)), p, discordant,
                            candidate_only=only_mine, champion_only=only_theirs)


def wilcoxon(truth: np.ndarray, candidate: np.ndarray, champion: np.ndarray) -> SignificanceTest:
    """Wilcoxon signed-rank test of two regressors' absolute errors on the same rows (rows with equal errors left out)."""
    from scipy import stats

    true = truth.astype(np.float64)
    gain = np.abs(true - champion.astype(np.float64)) - np.abs(true - candidate.astype(np.float64))
    differing = gain[gain != 0]
    if not differing.size:
        return SignificanceTest("wilcoxon", 0.0, 1.0, 0)
    result = stats.wilcoxon(differing)
    return SignificanceTest("wilcoxon", float(result.statistic), float(result.pvalue), int(differing.size))


def _sse(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return np.sum((true.astype(np.float64) - predicted.astype(np.float64)) ** 2, axis=1)  # type: ignore[no-any-return]


def _r2(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    t = true.astype(np.float64)
    total = np.sum((t - t.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 1.0 - _sse(true, predicted) / total, np.nan)


# The metrics that are means over rows (or nearly), on a batch of resamples at once (one row of the
# arrays per resample); they equal the metric table's own (a test checks). Others are computed per resample.
_BATCHED: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": lambda t, p: np.mean(t == p, axis=1),
    "mae": lambda t, p: np.mean(np.abs(t.astype(np.float64) - p.astype(np.float64)), axis=1),
    "mse": lambda t, p: _sse(t, p) / t.shape[1],
    "rmse": lambda t, p: np.sqrt(_sse(t, p) / t.shape[1]),
    "r2": _r2,
}


def _or_nan(metric: BoundMetric, truth: np.ndarray, values: np.ndarray) -> float:
    """The metric on one resample; NaN where scikit-learn refuses it (roc_auc of a resample with one class)."""
    try:
        return float(metric.fn(truth, values))
    except ValueError:
        return float("nan")


def bootstrap(truth: np.ndarray, candidate: tuple[BoundMetric, np.ndarray], champion: tuple[BoundMetric, np.ndarray],
              *, samples: int, seed: int, alpha: float) -> SignificanceTest:
    """Paired bootstrap of a metric's difference candidate − champion (see the module docstring).

    ``candidate`` and ``champion`` are each a bound metric and what it scores (labels, values or
    probabilities, one row per holdout row). The same resampled rows are scored for both models:
    vectorised for the metrics in ``_BATCHED``, with the metric table's own function per resample for the
    others (scikit-learn's, about a millisecond a call: 2000 resamples of roc_auc take a few seconds).
    """
    (ours, mine), (theirs, their) = candidate, champion
    rows = truth.shape[0]
    rng = np.random.default_rng(seed)
    batched = _BATCHED.get(ours.name)
    deltas = np.empty(samples)
    per_batch = max(1, _CELLS // max(rows, 1))
    for start in range(0, samples, per_batch):
        picked = rng.integers(0, rows, size=(min(per_batch, samples - start), rows))
        if batched is not None and mine.ndim == 1 and their.ndim == 1:
            t = truth[picked]
            deltas[start:start + len(picked)] = batched(t, mine[picked]) - batched(t, their[picked])
        else:
            deltas[start:start + len(picked)] = [_or_nan(ours, truth[i], mine[i]) - _or_nan(theirs, truth[i], their[i])
                                                 for i in picked]
    observed = float(ours.fn(truth, mine) - theirs.fn(truth, their))
    finite = deltas[np.isfinite(deltas)]
    if not finite.size:
        return SignificanceTest("bootstrap", observed, None, rows, samples=0)
    worse_or_equal, better_or_equal = int(np.sum(finite <= 0)), int(np.sum(finite >= 0))
    p = min(1.0, 2.0 * (min(worse_or_equal, better_or_equal) + 1) / (finite.size + 1))
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return SignificanceTest("bootstrap", observed, p, rows, ci_low=float(low), ci_high=float(high),
                            samples=int(finite.size))


# --- the holdout and the registered versions -----------------------------------------------------------


@dataclass
class Holdout:
    """The frozen rows both models are scored on: features, the target, and where they came from."""

    features: DataFrame
    target: Series
    digest: str  # SHA-256 of the file, or the artifact store's digest of the run's test frame
    source: str
    target_name: str

    @property
    def rows(self) -> int:
        return len(self.target)


def load_holdout(cfg: ProjectConfig, gate: GateSection, run_result: RunResult | None, *,
                 target: str | None = None) -> Holdout:
    """The gate's holdout: ``[automation.gate] holdout`` (a file under the project root), else the test frame of
    the run's ``ModelCandidate``.

    The target column is ``target``, else the run candidate's, else the one in the champion's bundle; a
    file's feature columns are those of the run's test frame (or the champion's bundle), in that order,
    extra columns dropped. A missing file, target column or feature column is a ConfigError naming it.
    """
    candidate = None if run_result is None else run_result.candidate
    if run_result is not None and candidate is None:
        raise RegistryError("the run returned no ModelCandidate: it has no model to gate",
                            hint="return mloop.ModelCandidate(...) from the pipeline")
    if not gate.holdout:
        if run_result is None or candidate is None:
            raise ConfigError("the gate has no holdout: [automation.gate] holdout is empty and there is no run whose "
                              "test frame to use", hint="set [automation.gate] holdout = \"data/holdout.csv\", a "
                                                        "frozen file with the features and the target column")
        frame = run_result.value(candidate.test)
        ref = run_result.ref(candidate.test)
        source = f"ModelCandidate.test of run {run_result.tracking_id or run_result.id}"
        digest = ref.digest if ref is not None else _frame_digest(frame)
        return _holdout(frame, target or candidate.target, None, digest, source)
    if run_result is not None and candidate is not None:
        name = target or candidate.target
        features = [c for c in run_result.value(candidate.test).columns if c != name]
    elif target is not None:
        name, features = target, None
    else:
        from mloop.registry.fetch import fetch_bundle

        try:
            info = fetch_bundle(cfg, f"models:/{cfg.model_name}@champion").info
        except RegistryError as err:
            raise ConfigError(f"cannot tell the target column of the holdout {gate.holdout!r}: no run was given and "
                              f"{cfg.model_name} has no champion to read it from",
                              hint="pass the run, or the target column's name (load_holdout(..., target=NAME))") from err
        name, features = info.target, info.features
    path = cfg.root / gate.holdout
    return _holdout(_read_table(path, gate.holdout), name, features, file_digest(path), gate.holdout)


def _read_table(path: Path, setting: str) -> DataFrame:
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"[automation.gate] holdout {setting!r} does not exist ({path})",
                          hint="write the frozen holdout there (the features and the target column), or set "
                               "holdout = \"\" to score the models on the run's test frame")
    try:
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pandas' parser errors and pyarrow's are ValueErrors
        raise ConfigError(f"cannot read the holdout {path}: {type(err).__name__}: {str(err)[:200]}",
                          hint="write it again as CSV with a header row, or as Parquet") from err


def _holdout(frame: DataFrame, target: str, features: list[str] | None, digest: str, source: str) -> Holdout:
    columns = list(frame.columns)
    if target not in columns:
        raise ConfigError(f"the holdout ({source}) has no target column {target!r}; its columns: "
                          f"{listed(columns)}",
                          hint=f"add the column {target!r} (the true values) to the holdout")
    missing = [c for c in features or [] if c not in columns]
    if missing:
        raise ConfigError(f"the holdout ({source}) lacks {len(missing)} feature column(s) the model needs: "
                          f"{listed(missing)}",
                          hint="write the holdout with the same feature columns as the training data")
    unlabelled = int(frame[target].isna().sum())
    if unlabelled or frame.empty:
        raise ConfigError(f"the holdout ({source}) has {f'{unlabelled} rows without a target value' if unlabelled else 'no rows'}",
                          hint="every holdout row needs its true value in the target column")
    kept = frame[features] if features is not None else frame.drop(columns=[target])
    return Holdout(kept.reset_index(drop=True), frame[target].reset_index(drop=True), digest, source, target)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _frame_digest(frame: DataFrame) -> str:
    import pandas as pd

    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def gate_versions(cfg: ProjectConfig, model_name: str, candidate_version: str, champion_version: str | None,
                  holdout: Holdout, gate: GateSection, rules: list[GateRule]) -> GateReport:
    """The gate's report on two registered versions of ``model_name`` (no champion: None), loaded from the
    project's registry. A version that does not exist or cannot be loaded is a RegistryError."""
    with tempfile.TemporaryDirectory(prefix="mloop-gate-", dir=cfg.scratch()) as tmp:
        ours = _load_version(cfg, model_name, candidate_version, Path(tmp) / "candidate", "candidate")
        theirs = (None if champion_version is None
                  else _load_version(cfg, model_name, champion_version, Path(tmp) / "champion", "champion"))
    features, target, left_out, note = holdout.features, holdout.target, 0, ""
    if theirs is not None:
        one_sided = trained_by_one(features.assign(**{holdout.target_name: target.to_numpy()}), ours.trained,
                                   theirs.trained)
        if one_sided is None:
            unknown = [f"v{v}" for v, rows in ((candidate_version, ours.trained), (champion_version, theirs.trained))
                       if rows is None]
            note = (f"{' and '.join(unknown)} {'does' if len(unknown) == 1 else 'do'} not record the rows trained on "
                    f"(registered by an older mloop): holdout rows one model trained on could not be left out"
                    if unknown else "the holdout lacks a column a model trained with: holdout rows one model trained on "
                                    "could not be left out")
        elif one_sided.any():
            left_out = int(one_sided.sum())
            if left_out == len(target):
                raise ConfigError(f"v{candidate_version} or v{champion_version} trained on every row of the holdout "
                                  f"({holdout.source}): the two cannot be compared on it",
                                  hint="set [automation.gate] holdout = \"data/holdout.csv\", a frozen file with rows "
                                       "neither model trains on")
            features, target = features[~one_sided].reset_index(drop=True), target[~one_sided].reset_index(drop=True)
            note = (f"{left_out} of the {holdout.rows} holdout rows left out: one of the two models trained on them "
                    f"(a model scored on rows it learned looks better than it is)")
    report = evaluate(gate, rules, ours.model, None if theirs is None else theirs.model,
                      _own_columns(features, ours, "candidate", candidate_version), target,
                      candidate_version=candidate_version, champion_version=champion_version,
                      holdout_digest=holdout.digest, holdout_source=holdout.source,
                      champion_features=None if theirs is None else _own_columns(features, theirs, "champion",
                                                                                 str(champion_version)))
    report.holdout.left_out = left_out
    if note:
        report.notes.insert(0, note)
    return report


@dataclass
class _Version:
    """A registered version, loaded: its estimator, the columns it takes and the rows it trained on."""

    model: Any
    features: list[str]
    trained: TrainingRows | None  # None: its bundle predates them


def _own_columns(features: DataFrame, version: _Version, role: str, number: str) -> DataFrame | str:
    """The holdout's columns ``version`` takes, in its order (a version trained with other columns than the
    holdout's gets its own), or why the holdout cannot give them."""
    own, missing = own_columns(features, version.features)
    return f"the {role}, v{number}, takes columns the holdout lacks: {listed(missing)}" if missing else own


def _load_version(cfg: ProjectConfig, name: str, version: str, folder: Path, role: str) -> _Version:
    from mloop.registry.fetch import download_model, load_sklearn_model
    from mloop.tracking.client import tracking_error

    folder.mkdir(parents=True)
    try:
        model_dir = download_model(cfg, f"models:/{name}/{version}", folder)  # RegistryError if it does not exist
    except RegistryError:
        raise
    except Exception as err:
        raise tracking_error(cfg, err) from err
    try:
        model = load_sklearn_model(model_dir)
    except Exception as err:  # noqa: BLE001 (whatever the model's library raises)
        hint = ("move the champion alias to a version this environment can load (mloop models, mloop models promote), or retrain it"
                if role == "champion" else "check this environment's packages against the version's (mloop models), "
                                           "or run the pipeline again")
        raise RegistryError(f"the {role}, {name} v{version}, cannot be loaded: {type(err).__name__}: {str(err)[:200]}",
                            hint=hint) from err
    return _Version(model, *read_bundle_columns(model_dir))


def recorded_report(cfg: ProjectConfig, model: str, version: str, tags: dict[str, str] | None = None) -> GateReport | None:
    """The agent's gate report on ``version`` of ``model`` as it was recorded: the version's tag
    ``mloop.agent.gate`` (``tags``, when the caller has them already), or, when that tag was cut at MLflow's
    5000 characters, the gate record of the audit log. None when the agent never gated the version."""
    import json

    from mloop.automation.agent import open_audit
    from mloop.automation.cycle import AGENT_GATE, AGENT_VERDICT
    from mloop.registry.aliases import version_tags

    tags = version_tags(cfg, model, version) if tags is None else tags
    if AGENT_GATE not in tags and AGENT_VERDICT not in tags:
        return None
    try:
        return GateReport.from_dict(json.loads(tags[AGENT_GATE]))
    except (KeyError, ValueError, TypeError):
        pass  # cut short (a report with many rules), or not written: the audit log has it whole
    for record in reversed(open_audit(cfg).records(model=model)):
        report = record.data.get("report")
        if record.kind == "gate" and record.version == version and isinstance(report, dict):
            try:
                return GateReport.from_dict(report)
            except (KeyError, TypeError):
                continue
    return None
