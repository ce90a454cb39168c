"""The statistical gate (mloop.automation.gate) and its settings: verdicts, paired tests, the report."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mloop.automation.gate import _BATCHED, GateReport, bootstrap, evaluate, mcnemar
from mloop.config import GateRule, GateSection, PromotionSection
from mloop.errors import ConfigError
from mloop.registry.metrics import bind


class Fixed:
    """A fitted model stand-in that predicts given labels (values) for the rows its 'row' column names."""

    def __init__(self, labels: Any, classes: Any = None) -> None:
        self.labels = np.asarray(labels)
        if classes is not None:
            self.classes_ = np.asarray(classes)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return self.labels[features["row"].to_numpy()]


class FixedProba(Fixed):
    def __init__(self, labels: Any, classes: Any, proba: Any) -> None:
        super().__init__(labels, classes)
        self.proba = np.asarray(proba)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return self.proba[features["row"].to_numpy()]


def rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"row": np.arange(n)})


YES_NO = ["no", "yes"]


def labels(n: int, wrong: range) -> tuple[np.ndarray, np.ndarray]:
    """Alternating "no"/"yes" truth, and predictions that are right except on the ``wrong`` rows."""
    truth = np.array(YES_NO * (n // 2), dtype=object)
    predicted = truth.copy()
    for i in wrong:
        predicted[i] = "yes" if truth[i] == "no" else "no"
    return truth, predicted


def gate(**settings: Any) -> GateSection:
    return GateSection.model_validate(settings)


def run(rules: list[GateRule], candidate: Any, champion: Any, truth: Any, settings: GateSection | None = None,
        ) -> GateReport:
    return evaluate(settings or gate(), rules, candidate, champion, rows(len(truth)), pd.Series(truth),
                    candidate_version="2", champion_version=None if champion is None else "1",
                    holdout_digest="ab" * 32, holdout_source="holdout.csv")


def exact_mcnemar(b: int, c: int) -> float:
    """The two-sided exact McNemar p-value by hand: 2 P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), at most 1."""
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n)


# --- classification --------------------------------------------------------------------------------------


def test_a_much_better_classifier_on_enough_rows_passes_with_the_exact_mcnemar_p_value():
    truth, champion = labels(400, range(0, 60))  # champion wrong on 60 rows
    _, candidate = labels(400, range(50, 65))  # candidate wrong on 15: only it is right on 0..49, only the champion on 60..64
    report = run([GateRule(metric="accuracy")], Fixed(candidate, YES_NO), Fixed(champion, YES_NO), truth)

    assert report.verdict == "PASS" and report.promotes and report.test == "mcnemar"
    check = report.checks[0]
    assert (check.candidate, check.champion) == (385 / 400, 340 / 400)
    assert check.delta == pytest.approx(45 / 400) and check.relative_delta == pytest.approx(45 / 340)
    assert check.test is not None and (check.test.candidate_only, check.test.champion_only, check.test.n) == (50, 5, 55)
    assert check.p_value == pytest.approx(exact_mcnemar(50, 5), rel=1e-9) and check.p_value < 1e-9
    assert report.holdout.rows == 400 and report.notes == []
    assert report.summary().startswith("PASS: v2 vs champion v1 on 400 holdout rows: accuracy 0.9625 vs 0.8500")


def test_a_slightly_better_classifier_on_few_rows_is_inconclusive_and_says_it_holds():
    truth, champion = labels(30, range(0, 5))
    _, candidate = labels(30, range(3, 6))  # b = 3 (rows 0-2), c = 1 (row 5)
    report = run([GateRule(metric="accuracy")], Fixed(candidate, YES_NO), Fixed(champion, YES_NO), truth)

    assert report.verdict == "INCONCLUSIVE" and not report.promotes
    assert report.checks[0].passed is None
    assert report.checks[0].p_value == pytest.approx(exact_mcnemar(3, 1)) == pytest.approx(0.625)
    assert "not significant: mcnemar p = 0.625 >= alpha 0.05" in report.checks[0].reason
    assert report.summary().startswith("INCONCLUSIVE (hold): ")
    assert any("never promotes" in note and "champion keeps serving" in note for note in report.notes)

    shadow = run([GateRule(metric="accuracy")], Fixed(candidate, YES_NO), Fixed(champion, YES_NO), truth,
                 gate(inconclusive="shadow"))
    assert shadow.inconclusive == "shadow" and any("shadow only" in note for note in shadow.notes)


def test_a_champion_that_is_better_fails_the_candidate_without_testing():
    truth, champion = labels(100, range(0, 5))
    _, candidate = labels(100, range(0, 10))
    report = run([GateRule(metric="accuracy")], Fixed(candidate, YES_NO), Fixed(champion, YES_NO), truth)

    assert report.verdict == "FAIL"
    assert report.checks[0].reason == "accuracy 0.9000 vs 0.9500: needs to be not worse (higher is better)"
    assert report.checks[0].test is None and report.checks[0].p_value is None


def test_identical_models_give_p_one_and_never_pass():
    truth, predicted = labels(50, range(0, 5))
    report = run([GateRule(metric="accuracy")], Fixed(predicted, YES_NO), Fixed(predicted.copy(), YES_NO), truth)

    assert report.verdict == "INCONCLUSIVE"
    test = report.checks[0].test
    assert test is not None and (test.n, test.p_value, test.statistic) == (0, 1.0, 0.0)


def test_without_a_champion_only_the_floors_apply_and_the_report_says_so():
    truth, predicted = labels(100, range(0, 20))  # accuracy 0.8
    candidate = Fixed(predicted, YES_NO)
    passed = run([GateRule(metric="accuracy", floor=0.75), GateRule(metric="f1")], candidate, None, truth)
    assert passed.verdict == "PASS" and passed.champion_version is None
    assert passed.notes == ["no champion: only the floors apply"]
    assert [c.reason for c in passed.checks] == ["accuracy 0.8000 meets the floor 0.75", "f1 0.8000 has no floor to meet"]
    assert passed.summary().startswith("PASS: v2 vs no champion on 100 holdout rows")

    failed = run([GateRule(metric="accuracy", floor=0.85)], candidate, None, truth)
    assert failed.verdict == "FAIL" and failed.checks[0].reason == "accuracy 0.8000 is below the floor 0.85"


def test_a_floor_miss_fails_even_a_candidate_much_better_than_its_champion():
    truth, champion = labels(400, range(0, 200))
    _, candidate = labels(400, range(0, 100))
    report = run([GateRule(metric="accuracy", floor=0.9)], Fixed(candidate, YES_NO), Fixed(champion, YES_NO), truth)
    assert report.verdict == "FAIL" and "below the floor 0.9" in report.checks[0].reason


def test_absolute_and_relative_improvements_are_required_over_the_champion():
    truth, champion = labels(1000, range(0, 200))  # 0.80
    _, candidate = labels(1000, range(0, 150))  # 0.85: better by 0.05, significant
    ours, theirs = Fixed(candidate, YES_NO), Fixed(champion, YES_NO)

    assert run([GateRule(metric="accuracy", min_improvement=0.05)], ours, theirs, truth).verdict == "PASS"
    absolute = run([GateRule(metric="accuracy", min_improvement=0.06)], ours, theirs, truth)
    assert absolute.verdict == "FAIL" and absolute.checks[0].required_improvement == 0.06
    assert "needs to be better by at least 0.06" in absolute.checks[0].reason

    relative = run([GateRule(metric="accuracy", min_relative_improvement=0.1)], ours, theirs, truth)  # 10 % of 0.8
    assert relative.verdict == "FAIL" and relative.checks[0].required_improvement == pytest.approx(0.08)
    assert run([GateRule(metric="accuracy", min_relative_improvement=0.0625)], ours, theirs, truth).verdict == "PASS"


def test_a_metric_undefined_or_not_fitting_the_task_fails_naming_it():
    truth, champion = labels(100, range(0, 10))
    never_yes = np.array(["no"] * 100, dtype=object)  # precision of "yes" is undefined: no row predicted "yes"
    ours, theirs = Fixed(champion, YES_NO), Fixed(never_yes, YES_NO)

    misfit = run([GateRule(metric="rmse")], ours, theirs, truth)
    assert misfit.verdict == "FAIL" and misfit.checks[0].reason == "rmse of the candidate does not apply to a binary model"
    undefined = run([GateRule(metric="precision")], theirs, ours, truth)
    assert undefined.checks[0].reason == "precision of the candidate is undefined on the holdout"
    champion_undefined = run([GateRule(metric="accuracy"), GateRule(metric="precision")], ours, theirs, truth)
    assert champion_undefined.verdict == "FAIL" and champion_undefined.checks[0].passed is True
    assert champion_undefined.checks[1].reason == "precision of the champion is undefined on the holdout"
    no_proba = run([GateRule(metric="roc_auc")], ours, theirs, truth)
    assert no_proba.checks[0].reason == "roc_auc of the candidate is missing: it needs probabilities and the candidate has no predict_proba"


def test_a_model_that_cannot_predict_on_the_holdout_fails_the_gate_with_the_error():
    class Broken(Fixed):
        def predict(self, features: pd.DataFrame) -> np.ndarray:
            raise KeyError("feature 'age' is missing")

    truth, predicted = labels(20, range(0, 2))
    report = run([GateRule(metric="accuracy")], Fixed(predicted, YES_NO), Broken(predicted, YES_NO), truth)
    assert report.verdict == "FAIL"
    assert report.checks[0].reason == ("accuracy of the champion is missing: the champion cannot predict on the holdout "
                                       "(KeyError: \"feature 'age' is missing\")")


def test_real_estimators_on_string_labels_and_multiclass():
    from sklearn.datasets import load_iris, make_classification
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    x, y = make_classification(n_samples=400, random_state=0)
    frame, target = pd.DataFrame(x).add_prefix("f"), pd.Series(np.where(y == 1, "yes", "no"))
    fitted = LogisticRegression().fit(frame[:200], target[:200])
    dummy = DummyClassifier().fit(frame[:200], target[:200])
    report = evaluate(gate(), [GateRule(metric="accuracy"), GateRule(metric="f1", floor=0.8)], fitted, dummy,
                      frame[200:], target[200:], candidate_version="2", champion_version="1")
    assert report.verdict == "PASS" and report.checks[0].candidate > 0.8
    # f1 is the positive class's, "yes" (the last of the sorted classes), as scikit-learn's with pos_label="yes"
    assert report.checks[1].champion == pytest.approx(f1_score(target[200:], dummy.predict(frame[200:]), pos_label="yes"))

    iris = load_iris(as_frame=True)
    features, classes = iris.data, iris.target.map(dict(enumerate(iris.target_names)))
    three = LogisticRegression(max_iter=1000).fit(features, classes)
    report = evaluate(gate(test="bootstrap", bootstrap_samples=200), [GateRule(metric="f1_macro")], three,
                      DummyClassifier().fit(features, classes), features, classes,
                      candidate_version="2", champion_version="1")
    assert report.verdict == "PASS" and report.test == "bootstrap"
    assert report.checks[0].test is not None and report.checks[0].test.ci_low > 0.5


def test_log_loss_is_lower_is_better_and_mcnemar_says_it_only_tests_labels():
    truth = np.array(YES_NO * 100, dtype=object)
    sure = np.where(truth == "yes", 0.9, 0.1)
    unsure = np.where(truth == "yes", 0.6, 0.4)
    candidate = FixedProba(truth, YES_NO, np.column_stack([1 - sure, sure]))
    champion = FixedProba(truth, YES_NO, np.column_stack([1 - unsure, unsure]))
    rules = [GateRule(metric="log_loss")]

    by_labels = run(rules, candidate, champion, truth)  # the same labels: McNemar finds no difference
    assert by_labels.verdict == "INCONCLUSIVE" and by_labels.checks[0].direction == "minimize"
    assert by_labels.checks[0].delta == pytest.approx(math.log(0.6) - math.log(0.9))
    assert any("test = \"bootstrap\"" in note for note in by_labels.notes)
    assert run(rules, candidate, champion, truth, gate(test="bootstrap", bootstrap_samples=200)).verdict == "PASS"
    assert run(rules, champion, candidate, truth, gate(test="bootstrap", bootstrap_samples=200)).verdict == "FAIL"


def test_mcnemar_matches_the_hand_computation_for_many_counts():
    rng = np.random.default_rng(3)
    for _ in range(20):
        truth = rng.integers(0, 2, size=200)
        a = np.where(rng.random(200) < 0.2, 1 - truth, truth)
        b = np.where(rng.random(200) < 0.25, 1 - truth, truth)
        test = mcnemar(truth, a, b)
        assert test.candidate_only == int(np.sum((a == truth) & (b != truth)))
        assert test.p_value == pytest.approx(exact_mcnemar(test.candidate_only or 0, test.champion_only or 0), rel=1e-9)


# --- regression ------------------------------------------------------------------------------------------


def regression(n: int = 300, noise: tuple[float, float] = (0.5, 1.0), seed: int = 0) -> tuple[np.ndarray, Fixed, Fixed]:
    rng = np.random.default_rng(seed)
    truth = np.linspace(0, 10, n)
    return (truth, Fixed(truth + rng.normal(scale=noise[0], size=n)), Fixed(truth + rng.normal(scale=noise[1], size=n)))


def test_a_better_regressor_passes_the_paired_bootstrap_with_an_interval_below_zero_for_rmse():
    truth, candidate, champion = regression()
    report = run([GateRule(metric="rmse"), GateRule(metric="r2", floor=0.9)], candidate, champion, truth)

    assert report.verdict == "PASS" and report.test == "bootstrap"
    rmse = report.checks[0]
    assert rmse.direction == "minimize" and rmse.delta is not None and rmse.delta < 0
    assert rmse.test is not None and rmse.test.ci_high is not None and rmse.test.ci_high < 0
    assert rmse.test.samples == 2000 and rmse.p_value == pytest.approx(2 / 2001)

    worse = run([GateRule(metric="mae")], champion, candidate, truth)
    assert worse.verdict == "FAIL" and "(lower is better)" in worse.checks[0].reason


def test_the_bootstrap_is_deterministic_with_its_seed():
    truth, candidate, champion = regression(n=60, noise=(0.95, 1.0), seed=1)
    rules = [GateRule(metric="mae")]
    first = run(rules, candidate, champion, truth, gate(seed=7)).to_dict()
    assert run(rules, candidate, champion, truth, gate(seed=7)).to_dict() == first
    other = run(rules, candidate, champion, truth, gate(seed=8)).checks[0].test
    assert other is not None and other.p_value != first["checks"][0]["p_value"]


def test_identical_regressors_give_p_one_with_the_bootstrap_and_wilcoxon():
    truth, candidate, _ = regression()
    for test in ("bootstrap", "wilcoxon"):
        report = run([GateRule(metric="rmse")], candidate, Fixed(candidate.labels.copy()), truth, gate(test=test))
        assert report.verdict == "INCONCLUSIVE" and report.checks[0].p_value == 1.0


def test_wilcoxon_compares_absolute_errors():
    from scipy import stats

    truth, candidate, champion = regression()
    report = run([GateRule(metric="mae")], candidate, champion, truth, gate(test="wilcoxon"))
    assert report.verdict == "PASS" and report.test == "wilcoxon"
    gain = np.abs(truth - champion.labels) - np.abs(truth - candidate.labels)
    assert report.checks[0].p_value == pytest.approx(stats.wilcoxon(gain).pvalue)


def test_a_test_that_does_not_fit_the_task_is_a_config_error():
    truth, candidate, champion = regression(n=20)
    with pytest.raises(ConfigError, match="mcnemar.*regressor"):
        run([GateRule(metric="mae")], candidate, champion, truth, gate(test="mcnemar"))
    labelled, predicted = labels(20, range(2))
    with pytest.raises(ConfigError, match="wilcoxon.*binary classifier"):
        run([GateRule(metric="accuracy")], Fixed(predicted, YES_NO), None, labelled, gate(test="wilcoxon"))
    with pytest.raises(ConfigError, match="no rule"):
        run([], Fixed(predicted, YES_NO), None, labelled)


@pytest.mark.parametrize("name", sorted(_BATCHED))
def test_the_batched_bootstrap_metrics_equal_the_metric_table(name: str):
    rng = np.random.default_rng(0)
    if name == "accuracy":
        truth, predicted = rng.choice(["a", "b", "c"], size=50), rng.choice(["a", "b", "c"], size=50)
    else:
        truth, predicted = rng.normal(size=50), rng.normal(size=50)
    picked = rng.integers(0, 50, size=(5, 50))
    metric = bind(name, ["a", "b", "c"] if name == "accuracy" else [])
    expected = [metric.fn(truth[i], predicted[i]) for i in picked]
    assert _BATCHED[name](truth[picked], predicted[picked]) == pytest.approx(expected)


def test_the_bootstrap_interval_covers_the_observed_difference():
    truth, candidate, champion = regression(n=200, noise=(0.8, 1.0))
    test = bootstrap(truth, (bind("rmse", []), candidate.labels), (bind("rmse", []), champion.labels),
                     samples=500, seed=0, alpha=0.05)
    assert test.ci_low is not None and test.ci_high is not None and test.ci_low < test.statistic < test.ci_high


# --- the report ------------------------------------------------------------------------------------------


def test_the_report_round_trips_through_json():
    truth, candidate, champion = regression(n=100)
    report = run([GateRule(metric="rmse", floor=5.0), GateRule(metric="accuracy")], candidate, champion, truth)
    text = json.dumps(report.to_dict(), allow_nan=False)
    again = GateReport.from_dict(json.loads(text))
    assert again == report and again.holdout.digest == "ab" * 32 and again.holdout.source == "holdout.csv"
    assert "\n" not in report.summary()


# --- the settings ----------------------------------------------------------------------------------------


def test_a_gate_with_an_empty_list_of_rules_is_a_config_error_naming_the_fix():
    with pytest.raises(ValidationError, match=r"rules is empty.*\[\[automation.gate.rules\]\] metric = \"accuracy\""):
        gate(rules=[])


def test_without_rules_the_gate_falls_back_to_the_promotion_metric():
    section = gate(alpha=0.01)
    assert section.rules == []
    (rule,) = section.effective_rules(PromotionSection(metric="rmse", min_improvement=0.2))
    assert (rule.metric, rule.min_improvement, rule.floor, rule.better) == ("rmse", 0.2, None, "minimize")
    written = gate(rules=[{"metric": "f1", "floor": 0.7}])
    assert [r.metric for r in written.effective_rules(PromotionSection())] == ["f1"]


@pytest.mark.parametrize(("settings", "message"), [
    ({"rules": [{"metric": "acuracy"}]}, "did you mean 'accuracy'"),
    ({"rules": [{"metric": "mae"}, {"metric": "mae", "floor": 2}]}, "more than one rule for mae"),
    ({"rules": [{"metric": "f1", "min_improvement": -0.1}]}, "greater than or equal to 0"),
    ({"holdout": "data/holdout.json"}, "must be a .csv or .parquet file"),
    ({"alpha": 0.001, "bootstrap_samples": 1000}, "bootstrap_samples = 1000 cannot give a p-value below alpha"),
    ({"test": "ttest"}, "'auto', 'mcnemar', 'bootstrap' or 'wilcoxon'"),
])
def test_bad_gate_settings_say_what_is_wrong(settings: dict[str, Any], message: str):
    with pytest.raises(ValidationError, match=message):
        gate(**settings)
