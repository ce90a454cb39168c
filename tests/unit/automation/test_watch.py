"""The watch's analysis: Argo Rollouts' semantics over measurements (a fake clock, no sleeping)."""

from __future__ import annotations

from mloop.automation.watch import ProviderError, Reading, analyse, judge
from mloop.config import WatchMetric, WatchSection


def settings(**values: object) -> WatchSection:
    base = {"interval": "1s", "count": 4, "metrics": [{"metric": "error_ratio", "above": 0.01},
                                                      {"metric": "accuracy", "below": 0.9, "min_samples": 10}]}
    return WatchSection.model_validate(base | values)


def good() -> Reading:
    return Reading({"error_ratio": 0.0, "accuracy": 0.95}, {"error_ratio": 100, "accuracy": 50})


def readings(*items: Reading | Exception):
    queue = list(items)

    def read() -> Reading:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item
    return read


def test_every_measurement_good_passes_after_count():
    slept = []
    analysis = analyse(settings(), readings(*[good()] * 4), sleep=slept.append)
    assert analysis.verdict == "passed" and analysis.counts()["Successful"] == 4
    assert abs(sum(slept) - 4.0) < 1e-9  # one interval before each measurement


def test_a_failing_metric_fails_at_once_with_failure_limit_zero():
    bad = Reading({"error_ratio": 0.0, "accuracy": 0.5}, {"error_ratio": 100, "accuracy": 50})
    analysis = analyse(settings(), readings(good(), bad, good(), good()), sleep=lambda s: None)
    assert analysis.verdict == "failed" and "accuracy < 0.9" in analysis.reason and len(analysis.measurements) == 2


def test_failure_limit_tolerates_that_many_failures():
    bad = Reading({"error_ratio": 0.5, "accuracy": 0.95}, {"error_ratio": 100, "accuracy": 50})
    analysis = analyse(settings(failure_limit=1), readings(bad, good(), good(), good()), sleep=lambda s: None)
    assert analysis.verdict == "passed" and analysis.counts()["Failed"] == 1


def test_too_few_samples_is_inconclusive_and_holds_past_the_limit():
    few = Reading({"error_ratio": 0.0, "accuracy": 0.2}, {"error_ratio": 100, "accuracy": 3})  # 3 labels: no verdict
    phase, _, message = judge(settings().metrics, few)
    assert phase == "Inconclusive" and "accuracy (3 of 10 samples)" in message
    analysis = analyse(settings(inconclusive_limit=1), readings(few, few, good(), good()), sleep=lambda s: None)
    assert analysis.verdict == "held"


def test_provider_errors_are_counted_apart_and_fail_only_in_a_row():
    down = ProviderError("the server is unreachable")
    analysis = analyse(settings(count=5, error_limit=1), readings(down, good(), down, good(), good()),
                       sleep=lambda s: None)
    assert analysis.verdict == "passed" and analysis.counts()["Error"] == 2
    analysis = analyse(settings(count=5, error_limit=1), readings(good(), down, down, good(), good()),
                       sleep=lambda s: None)
    assert analysis.verdict == "failed" and "2 measurements in a row could not be taken" in analysis.reason


def test_canary_weights_step_evenly_through_the_measurements():
    weights: list[float] = []
    analysis = analyse(settings(count=4), readings(*[good()] * 4), weights=[0.1, 0.5], set_weight=weights.append,
                       sleep=lambda s: None)
    assert weights == [0.1, 0.5] and [m.weight for m in analysis.measurements] == [0.1, 0.1, 0.5, 0.5]


def test_a_watch_with_no_successful_measurement_never_passes():
    few = Reading({"error_ratio": 0.0, "accuracy": None}, {"error_ratio": 100, "accuracy": 2})
    analysis = analyse(settings(inconclusive_limit=10), readings(*[few] * 4), sleep=lambda s: None)
    assert analysis.verdict == "held" and "none of 4 measurements had enough samples" in analysis.reason


def test_no_data_at_all_is_a_provider_error_not_a_failing_metric():
    empty = Reading({"error_ratio": None, "accuracy": None}, {})
    phase, _, message = judge(settings().metrics, empty)
    assert phase == "Error" and message.startswith("no data")
    analysis = analyse(settings(count=6, error_limit=4), readings(*[empty] * 6), sleep=lambda s: None)
    assert analysis.verdict == "failed" and "5 measurements in a row could not be taken" in analysis.reason
    assert analysis.counts()["Failed"] == 0 and analysis.counts()["Error"] == 5


def test_stopping_ends_the_analysis_between_measurements():
    calls = []
    analysis = analyse(settings(), readings(good(), good()), stopped=lambda: len(calls) >= 1,
                       sleep=lambda s: None, on_measurement=calls.append)
    assert analysis.verdict == "stopped" and len(analysis.measurements) == 1


def test_watch_metric_config_needs_one_threshold():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exactly one of 'above' or 'below'"):
        WatchMetric.model_validate({"metric": "error_ratio"})
    with pytest.raises(ValidationError):
        WatchMetric.model_validate({"metric": "nonsense", "above": 1})
