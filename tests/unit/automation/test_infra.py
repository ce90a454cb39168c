"""The infra check's own logic: rows as a client sends them, and the verdict from what was measured."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from mloop.automation.infra import (
    InfraLimits,
    InfraReport,
    _Answered,
    _judge,
    client_instances,
)

TYPES = {"plan": "categorical", "age": "integer", "spend": "float", "member": "boolean"}


def test_log_rows_become_what_a_client_sends_categories_as_strings_missing_as_null():
    # as the prediction log holds them: categories as the strings sent (None: missing), numbers as float64
    logged = pd.DataFrame({"member": [1.0, 0.0, np.nan], "spend": [12.5, np.nan, 3.0], "age": [30.0, 41.0, np.nan],
                           "plan": ["pro", None, "basic"], "extra": [1, 2, 3]})
    rows = client_instances(logged, TYPES, as_recorded=True)
    assert rows == [
        {"plan": "pro", "age": 30, "spend": 12.5, "member": True},
        {"plan": None, "age": 41, "spend": None, "member": False},
        {"plan": "basic", "age": None, "spend": 3.0, "member": None},
    ]
    assert [list(row) for row in rows] == [list(TYPES)] * 3  # the server's feature order, nothing else
    assert all(type(row["age"]) is int for row in rows[:2]) and type(rows[0]["member"]) is bool
    json.dumps({"instances": rows}, allow_nan=False)  # no NaN reaches the body


def test_recorded_values_that_do_not_fit_the_candidate_are_sent_as_they_were():
    # the features changed type since these rows were served: the candidate must answer what clients send
    logged = pd.DataFrame({"plan": [3.0], "age": [2.5], "spend": ["12"], "member": [0.7]})
    assert client_instances(logged, TYPES, as_recorded=True) == [
        {"plan": 3.0, "age": 2.5, "spend": "12", "member": 0.7}]


def test_the_input_example_becomes_requests_with_its_training_types():
    example = pd.DataFrame({"plan": pd.Categorical(["pro", None]), "age": np.array([30, 41], dtype=np.int64),
                            "spend": [1.0, float("nan")], "member": [True, False]})
    example["code"] = pd.Series([7, None], dtype=object)
    rows = client_instances(example, {**TYPES, "code": "categorical"})
    assert rows == [{"plan": "pro", "age": 30, "spend": 1.0, "member": True, "code": "7"},
                    {"plan": None, "age": 41, "spend": None, "member": False, "code": None}]


def test_a_feature_the_rows_lack_is_missing_in_each():
    rows = client_instances(pd.DataFrame({"age": [1.0]}), {"age": "integer", "new": "float"}, as_recorded=True)
    assert rows == [{"age": 1, "new": None}]


LIMITS = InfraLimits(p99_ms=50.0, max_memory_mb=500.0)


def test_the_verdict_names_every_problem_and_the_first_failure():
    answered = _Answered(latencies_ms=[1.0, 2.0, 80.0], failures=["recorded rows 1-5: HTTP 422: feature 'a'"],
                         sent=3, rows=11)
    report = _judge("models:/m/2", "2", LIMITS, answered, 600.0, 5, [])
    assert not report.ok and report.p99_ms == 80.0 and report.p50_ms == 2.0
    assert report.reason == ("1 of 3 requests failed; first: recorded rows 1-5: HTTP 422: feature 'a'; "
                             "p99 latency 80 ms is over the limit p99_ms = 50 ms; memory (the server's RSS) "
                             "reached 600 MB, over the limit max_memory_mb = 500 MB")


def test_a_pass_says_what_was_answered_and_a_server_that_died_fails():
    ok = _judge("models:/m/2", "2", LIMITS, _Answered([1.0, 3.0], [], 2, 6), 120.4, 0,
                ["no deployment named: only the signature's input example was sent"])
    assert ok.ok and ok.reason == ("answered 2 requests, p99 3 ms, 120 MB (no deployment named: only the "
                                   "signature's input example was sent)")
    gone = _Answered([1.0], ["recorded rows 1-5: no answer (ReadError: )"], 2, 6,
                     server_gone="the candidate server exited with code -9 before it was stopped")
    report = _judge("models:/m/2", "2", LIMITS, gone, 100.0, 10, [])
    assert not report.ok and report.reason.startswith("the candidate server exited with code -9")
    assert InfraReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_no_answer_at_all_has_no_latency():
    report = _judge("models:/m/2", "2", LIMITS, _Answered([], ["x: no answer"], 1, 5, "gone"), None, 0, [])
    assert not report.ok and report.p99_ms is None and report.max_rss_mb is None
    assert report.reason == "gone; 1 of 1 requests failed; first: x: no answer"


def test_infra_settings_have_defaults_and_refuse_values_that_cannot_work():
    import pytest
    from pydantic import ValidationError

    from mloop.config import InfraSection

    settings = InfraSection()
    assert (settings.p99_ms, settings.max_memory_mb, settings.sample, settings.timeout_s, settings.enabled) == (
        500.0, 2048.0, 200, 120.0, True)
    for bad in ({"p99_ms": 0}, {"max_memory_mb": -1}, {"sample": -1}, {"timeout": "0s"}, {"timeout": "soon"},
                {"p99": 5}):
        with pytest.raises(ValidationError):
            InfraSection.model_validate(bad)
