"""Roll-outs in the server, in memory: canary shares, shadow comparison, promote, abort, per-version feedback,
and the admin API's refusals."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mloop.config import MonitorSection
from tests.support.asgi import app_for, call

ADMIN = {"authorization": "Bearer adm"}


@pytest.fixture(scope="module")
def candidate(small_model):
    """Version 4 of the toy model: trained on another rule (a - b > 0), so it often disagrees with version 3."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    estimator = LogisticRegression().fit(frame.to_numpy(), (frame["a"] - frame["b"] > 0).astype(int))
    return replace(small_model, version="4", estimator=estimator)


def rows(n: int, seed: int = 0) -> list[dict[str, float]]:
    data = np.random.default_rng(seed).normal(size=(n, 3))
    return [{"a": a, "b": b, "c": c} for a, b, c in data.tolist()]


def labels_of(model, instances: list[dict[str, float]]) -> list[int]:
    matrix = np.asarray([[r["a"], r["b"], r["c"]] for r in instances])
    return [int(v) for v in model.predict(matrix)[0]]


def server(small_model, candidate, **kwargs: Any):
    versions = {"models:/toy/4": candidate}

    def loader(uri: str):
        if uri not in versions:
            raise ValueError(f"no such version {uri}")
        return versions[uri]

    return app_for(small_model, admin_token="adm", loader=loader, monitor=kwargs.pop("monitor", MonitorSection(interval=0)),
                   **kwargs)


def admin(app, method: str, path: str, body: Any = None) -> httpx.Response:
    return call(app, method, path, json=body, headers=ADMIN) if body is not None else call(app, method, path,
                                                                                          headers=ADMIN)


def many(app, bodies: list[Any], path: str = "/predict", headers: dict[str, str] | None = None,
         concurrency: int = 50) -> list[httpx.Response]:
    """POST every body, ``concurrency`` at a time on one event loop (so requests share micro-batches)."""
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            answers: list[httpx.Response] = []
            for start in range(0, len(bodies), concurrency):
                answers += await asyncio.gather(*(client.post(path, json=body, headers=headers)
                                                  for body in bodies[start:start + concurrency]))
            return answers
    return asyncio.run(go())


def wait_for_shadow(app, rows_expected: int, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        state = app.dataplane.rollout_state()
        shadow = state["shadow"]
        if shadow["compared_rows"] + shadow["failed_rows"] + shadow["dropped_rows"] >= rows_expected:
            return state
        assert time.time() < deadline, f"the shadow worker did not catch up: {state}"
        time.sleep(0.02)


def test_a_canary_shares_requests_by_weight_and_every_answer_is_one_versions_own(small_model, candidate):
    app = server(small_model, candidate)
    started = admin(app, "POST", "/admin/rollout", {"uri": "models:/toy/4", "strategy": "canary", "weight": 0.5})
    assert started.status_code == 200, started.text
    state = started.json()
    assert (state["active"], state["strategy"], state["weight"]) == (True, "canary", 0.5)
    assert (state["serving_version"], state["candidate_version"]) == ("3", "4")
    bodies = [{"instances": rows(3, seed=i)} for i in range(1000)]
    answers = many(app, bodies)
    assert {a.status_code for a in answers} == {200}
    by_version = {"3": 0, "4": 0}
    for body, answer in zip(bodies, answers, strict=True):
        version = answer.headers["x-model-version"]
        assert answer.json()["version"] == version
        by_version[version] += 1
        model = candidate if version == "4" else small_model  # no batch mixed two versions' rows
        assert [p["label"] for p in answer.json()["predictions"]] == labels_of(model, body["instances"])
    assert 400 <= by_version["4"] <= 600, by_version  # 0.5 of 1000: 6 standard deviations either way
    state = admin(app, "GET", "/admin/rollout").json()
    assert state["champion"]["requests"] == by_version["3"] and state["candidate"]["requests"] == by_version["4"]
    assert state["candidate"]["rows"] == 3 * by_version["4"] and state["candidate"]["server_errors"] == 0
    assert state["candidate"]["p50_latency_ms"] > 0 and state["candidate"]["p99_latency_ms"] >= state["candidate"]["p50_latency_ms"]
    metrics = call(app, "GET", "/metrics").text
    assert f'mloop_rollout_requests_total{{code="200",model="toy",role="candidate",version="4"}} {by_version["4"]}.0' in metrics
    assert 'mloop_rollout_weight{candidate="4",champion="3",model="toy",strategy="canary"} 0.5' in metrics

    assert admin(app, "POST", "/admin/rollout/weight", {"weight": 0}).json()["weight"] == 0.0
    assert {a.headers["x-model-version"] for a in many(app, bodies[:100])} == {"3"}
    admin(app, "POST", "/admin/rollout/weight", {"weight": 1})
    assert {a.headers["x-model-version"] for a in many(app, bodies[:100])} == {"4"}
    # a request that names a version is answered by it, and the metadata lists both
    pinned = call(app, "POST", "/v2/models/toy/versions/3/infer", json={"inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]})
    assert pinned.status_code == 200 and pinned.json()["model_version"] == "3" == pinned.headers["x-model-version"]
    assert call(app, "GET", "/v2/models/toy").json()["versions"] == ["3", "4"]


def test_promote_serves_the_candidate_alone_and_abort_the_champion(small_model, candidate):
    app = server(small_model, candidate)
    admin(app, "POST", "/admin/rollout", {"uri": "models:/toy/4", "strategy": "canary", "weight": 0.5})
    bodies = [{"instances": rows(1, seed=i)} for i in range(200)]
    promoted = admin(app, "POST", "/admin/rollout/promote")
    assert promoted.status_code == 200
    assert promoted.json() == {"serving": {"name": "toy", "version": "4"}, "previous": {"name": "toy", "version": "3"}}
    assert {a.headers["x-model-version"] for a in many(app, bodies)} == {"4"}
    state = admin(app, "GET", "/admin/rollout").json()
    assert (state["active"], state["serving_version"], state["candidate_version"]) == (False, "4", None)
    metrics = call(app, "GET", "/metrics").text
    assert 'mloop_model_info{model="toy",version="4"} 1.0' in metrics and "mloop_rollout_requests_total{" not in metrics
    assert admin(app, "POST", "/admin/rollout/promote").status_code == 409  # nothing left to promote

    app = server(small_model, candidate)
    admin(app, "POST", "/admin/rollout", {"uri": "models:/toy/4", "strategy": "canary", "weight": 1.0})
    assert {a.headers["x-model-version"] for a in many(app, bodies[:20])} == {"4"}
    aborted = admin(app, "POST", "/admin/rollout/abort")
    assert aborted.status_code == 200 and aborted.json()["aborted"] is True
    assert {a.headers["x-model-version"] for a in many(app, bodies)} == {"3"}
    again = admin(app, "POST", "/admin/rollout/abort")
    assert again.status_code == 200 and again.json()["aborted"] is False and "no roll-out" in again.json()["message"]
    assert call(app, "GET", "/v2/models/toy/versions/4").status_code == 404


def test_a_shadow_answers_with_the_champion_and_counts_how_often_the_candidate_disagrees(small_model, candidate,
                                                                                          tmp_path):
    app = server(small_model, candidate, monitor=MonitorSection(interval=0), monitor_dir=tmp_path)
    state = admin(app, "POST", "/admin/rollout", {"uri": "models:/toy/4", "strategy": "shadow"}).json()
    assert (state["strategy"], state["weight"], state["shadow"]["compared_rows"]) == ("shadow", 0.0, 0)
    bodies = [{"instances": rows(2, seed=i)} for i in range(300)]
    answers = many(app, bodies, headers=None)
    assert {a.headers["x-model-version"] for a in answers} == {"3"}
    state = wait_for_shadow(app, 600)
    sent = [r for body in bodies for r in body["instances"]]
    expected = sum(a != b for a, b in zip(labels_of(small_model, sent), labels_of(candidate, sent), strict=True))
    shadow = state["shadow"]
    assert expected > 50 and (shadow["compared_rows"], shadow["disagreed_rows"]) == (600, expected)
    assert shadow["disagreement_rate"] == pytest.approx(expected / 600) and shadow["dropped_rows"] == 0
    assert state["champion"]["requests"] == 300 and state["candidate"]["rows"] == 600
    assert call(app, "POST", "/v2/models/toy/versions/4/infer", json={}).status_code == 404  # a shadow answers none
    assert admin(app, "POST", "/admin/rollout/weight", {"weight": 0.5}).status_code == 409
    metrics = call(app, "GET", "/metrics").text
    assert f'mloop_rollout_shadow_disagreed_rows_total{{model="toy",version="4"}} {expected}.0' in metrics
    app.dataplane.update_monitoring()
    logged = pd.read_parquet(tmp_path / "shadow")
    assert len(logged) == 600 and set(logged["version"]) == {"4"} and set(logged["served_version"]) == {"3"}
    assert int((logged["prediction"] != logged["served_prediction"]).sum()) == expected
    assert app.dataplane.update_monitoring().rollout.shadow.disagreed_rows == expected  # status.json has it too
    admin(app, "POST", "/admin/rollout/abort")
    assert not app.dataplane.rollout_state()["active"]


def test_a_request_the_candidate_cannot_score_in_shadow_is_counted_not_fatal(small_model, candidate):
    broken = replace(candidate, estimator=None)  # predict fails
    app = app_for(small_model, admin_token="adm", loader=lambda uri: candidate, monitor=MonitorSection(interval=0))
    admin(app, "POST", "/admin/rollout", {"uri": "models:/toy/4", "strategy": "shadow"})
    app.dataplane.rollout.shadow.candidate = broken
    answers = many(app, [{"instances": rows(1, seed=i)} for i in range(20)])
    assert {a.status_code for a in answers} == {200}
    shadow = wait_for_shadow(app, 20)["shadow"]
    assert shadow["failed_rows"] == 20 and shadow["compared_rows"] == 0
    admin(app, "POST", "/admin/rollout/abort")


def test_feedback_scores_the_version_that_answered(small_model, candidate):
    app = server(small_model, candidate)
    admin(app, "POST", "/admin/rollout", {"uri": "models:/toy/4", "strategy": "canary", "weight": 1.0})
    instances = rows(10, seed=1)
    by_candidate = call(app, "POST", "/predict", json={"instances": instances}, headers={"x-request-id": "c"})
    assert by_candidate.headers["x-model-version"] == "4"
    truth = [p["label"] for p in by_candidate.json()["predictions"]]
    assert call(app, "POST", "/feedback", json={"id": "c", "labels": truth}).status_code == 200
    admin(app, "POST", "/admin/rollout/weight", {"weight": 0.0})
    by_champion = call(app, "POST", "/predict", json={"instances": instances}, headers={"x-request-id": "h"})
    assert by_champion.headers["x-model-version"] == "3"
    wrong = [1 - p["label"] for p in by_champion.json()["predictions"]]
    assert call(app, "POST", "/feedback", json={"id": "h", "labels": wrong}).status_code == 200
    state = admin(app, "GET", "/admin/rollout").json()
    assert (state["candidate"]["labelled"], state["candidate"]["scores"]["accuracy"]) == (10, 1.0)
    assert (state["champion"]["labelled"], state["champion"]["scores"]["accuracy"]) == (10, 0.0)
    metrics = call(app, "GET", "/metrics").text
    assert 'mloop_live_score{metric="accuracy",model="toy",of="",version="4"} 1.0' in metrics
    assert 'mloop_live_score{metric="accuracy",model="toy",of="",version="3"} 0.0' in metrics
    assert 'mloop_labelled_predictions_total{model="toy",version="4"} 10.0' in metrics
    # promoted, the candidate keeps the labelled rows it answered as its live scores
    admin(app, "POST", "/admin/rollout/promote")
    status = app.dataplane.update_monitoring()
    assert (status.version, status.feedback.labelled_total, status.feedback.scores["accuracy"]) == ("4", 10, 1.0)


def test_in_shadow_feedback_scores_both_versions_on_the_same_rows(small_model, candidate):
    app = server(small_model, candidate)
    admin(app, "POST", "/admin/rollout", {"uri": "models:/toy/4", "strategy": "shadow"})
    instances = rows(40, seed=2)
    answer = call(app, "POST", "/predict", json={"instances": instances}, headers={"x-request-id": "s"})
    wait_for_shadow(app, 40)
    truth = labels_of(candidate, instances)  # the candidate is right on every row
    assert call(app, "POST", "/feedback", json={"id": "s", "labels": truth}).status_code == 200
    state = admin(app, "GET", "/admin/rollout").json()
    champion_right = sum(p["label"] == t for p, t in zip(answer.json()["predictions"], truth, strict=True))
    assert state["candidate"]["scores"]["accuracy"] == 1.0 and state["candidate"]["labelled"] == 40
    assert state["champion"]["scores"]["accuracy"] == pytest.approx(champion_right / 40) and champion_right < 40
    admin(app, "POST", "/admin/rollout/abort")


def test_a_regressor_in_shadow_reports_the_mean_difference_and_a_share_beyond_the_tolerance(small_regressor):
    other = replace(small_regressor, version="2",
                    estimator=replace_coefficients(small_regressor.estimator, shift=0.5))
    scored = replace(small_regressor, info=replace(small_regressor.info, test_scores={"mae": 0.25}))
    app = app_for(scored, admin_token="adm", loader=lambda uri: other, monitor=MonitorSection(interval=0))
    state = admin(app, "POST", "/admin/rollout", {"uri": "models:/reg/2", "strategy": "shadow"}).json()
    assert state["shadow"]["tolerance"] == 0.25  # by default the champion's own test MAE
    many(app, [{"instances": rows(5, seed=i)} for i in range(20)])
    shadow = wait_for_shadow(app, 100)["shadow"]
    assert shadow["mean_abs_difference"] == pytest.approx(0.5) and shadow["disagreement_rate"] == 1.0
    state = admin(app, "POST", "/admin/rollout", {"uri": "models:/reg/2", "strategy": "shadow", "tolerance": 1.0}).json()
    assert state["shadow"]["compared_rows"] == 0 and state["shadow"]["tolerance"] == 1.0  # a new roll-out starts afresh
    many(app, [{"instances": rows(5, seed=i)} for i in range(4)])
    assert wait_for_shadow(app, 20)["shadow"]["disagreed_rows"] == 0
    admin(app, "POST", "/admin/rollout/abort")


def replace_coefficients(estimator, shift: float):
    """A copy of a linear regression whose every prediction is ``shift`` higher."""
    import copy

    shifted = copy.deepcopy(estimator)
    shifted.intercept_ = estimator.intercept_ + shift
    return shifted


def test_the_admin_api_refuses_what_it_cannot_do_and_changes_nothing(small_model, candidate, small_regressor):
    app = server(small_model, candidate)
    for method, path in (("POST", "/admin/rollout"), ("GET", "/admin/rollout"), ("POST", "/admin/rollout/weight"),
                         ("POST", "/admin/rollout/promote"), ("POST", "/admin/rollout/abort")):
        assert call(app, method, path, json={}).status_code == 401, path
        assert call(app, method, path, json={}, headers={"authorization": "Bearer nope"}).status_code == 401, path
        assert call(app_for(small_model), method, path, json={}).status_code == 404, path  # no admin token: no route
    assert admin(app, "POST", "/admin/rollout/weight", {"weight": 0.5}).status_code == 409  # no roll-out
    for body, field in (({"uri": "models:/toy/4", "strategy": "blue-green", "weight": 0.1}, "strategy"),
                        ({"uri": "models:/toy/4", "strategy": "canary"}, "weight"),
                        ({"uri": "models:/toy/4", "strategy": "canary", "weight": 1.5}, "weight"),
                        ({"uri": "models:/toy/4", "strategy": "canary", "weight": "0.5"}, "weight"),
                        ({"uri": "models:/toy/4", "strategy": "canary", "weight": True}, "weight"),
                        ({"uri": "models:/toy/4", "strategy": "shadow", "weight": 0.3}, "weight"),
                        ({"uri": "models:/toy/4", "strategy": "canary", "wieght": 0.1}, "wieght"),
                        ({"strategy": "canary", "weight": 0.1}, "uri")):
        refused = admin(app, "POST", "/admin/rollout", body)
        assert refused.status_code == 422 and refused.json()["field"] == field, (body, refused.text)
    failing = admin(app, "POST", "/admin/rollout", {"uri": "models:/toy/9", "strategy": "canary", "weight": 0.1})
    assert failing.status_code == 422 and "no such version models:/toy/9" in failing.json()["error"]
    assert "still serving toy v3" in failing.json()["error"]
    assert admin(app, "GET", "/admin/rollout").json()["active"] is False

    admin(app, "POST", "/admin/rollout", {"uri": "models:/toy/4", "strategy": "canary", "weight": 0.2})
    for weight in (-0.1, 2, "half", None):
        refused = admin(app, "POST", "/admin/rollout/weight", {"weight": weight})
        assert refused.status_code == 422 and refused.json()["field"] == "weight", weight
    again = admin(app, "POST", "/admin/rollout", {"uri": "models:/toy/9", "strategy": "shadow"})
    assert again.status_code == 422
    state = admin(app, "GET", "/admin/rollout").json()  # the canary in progress is untouched
    assert (state["strategy"], state["weight"], state["candidate_version"]) == ("canary", 0.2, "4")

    same = app_for(small_model, admin_token="adm", loader=lambda uri: small_model)
    assert "served already" in admin(same, "POST", "/admin/rollout", {"uri": "models:/toy/3", "strategy": "shadow"}).json()["error"]
    other_model = app_for(small_model, admin_token="adm", loader=lambda uri: small_regressor)
    refused = admin(other_model, "POST", "/admin/rollout", {"uri": "models:/reg/1", "strategy": "shadow"})
    assert refused.status_code == 422 and "another version of 'toy'" in refused.json()["error"]
    regressor = app_for(small_model, admin_token="adm", loader=lambda uri: replace(small_regressor, name="toy"))
    refused = admin(regressor, "POST", "/admin/rollout", {"uri": "models:/toy/1", "strategy": "shadow"})
    assert refused.status_code == 422 and "a regressor" in refused.json()["error"]


def test_a_swap_ends_the_rollout_and_a_new_rollout_restarts_its_figures(small_model, candidate):
    app = server(small_model, candidate)
    admin(app, "POST", "/admin/rollout", {"uri": "models:/toy/4", "strategy": "canary", "weight": 0.5})
    many(app, [{"instances": rows(1, seed=i)} for i in range(50)])
    restarted = admin(app, "POST", "/admin/rollout", {"uri": "models:/toy/4", "strategy": "canary", "weight": 0.3}).json()
    assert restarted["champion"]["requests"] == 0 and restarted["candidate"]["requests"] == 0
    swapped = admin(app, "POST", "/admin/model", {"uri": "models:/toy/4"})
    assert swapped.status_code == 200 and admin(app, "GET", "/admin/rollout").json()["active"] is False
    assert {a.headers["x-model-version"] for a in many(app, [{"instances": rows(1)}] * 20)} == {"4"}
