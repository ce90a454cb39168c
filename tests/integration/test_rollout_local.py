"""Roll-outs in a real managed deployment (``mloop serve`` started by ``mloop.deploy.local``), under concurrent
keep-alive load: canary steps and promotion, abort, shadow, per-version feedback, and the refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest

from mloop.config import load_project
from mloop.deploy import local
from mloop.errors import DeployError, RegistryError
from mloop.project import run_project
from tests.support.load import Load
from tests.support.projects import with_monitor
from tests.support.servers import MLOOP

pytestmark = pytest.mark.integration

NAME = "breast_cancer"


@pytest.fixture(scope="module")
def project(first_run, tmp_path_factory):
    """The reference project with a second version that predicts differently (heavily regularized), monitored
    every second; and the rows the two versions disagree and agree on."""
    import pandas as pd

    from mloop.registry.fetch import load_registered

    root, _ = first_run
    copy = Path(shutil.copytree(root, tmp_path_factory.mktemp("rollout") / NAME,
                                ignore=shutil.ignore_patterns("__pycache__", "deployments", "monitor")))
    with_monitor(copy, "[monitor]\ninterval = 1\n")
    cfg = load_project(copy)
    outcome = run_project(cfg, params={"logreg": {"C": "0.0005"}, "knn": {"n_neighbors": "150"}})
    assert outcome.registration.version == "2"
    frame = pd.read_csv(copy / "data" / "breast_cancer.csv").drop(columns=["target"])
    first, second = (load_registered(cfg, f"models:/{NAME}/{v}") for v in ("1", "2"))
    matrix = frame[first.feature_names].to_numpy(dtype=np.float64)
    with warnings.catch_warnings():  # (fitted on a frame, given the matrix: as the server does)
        warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
        differ = first.predict(matrix)[0] != second.predict(matrix)[0]
    assert differ.sum() >= 5, "the two versions should disagree on some rows"
    return copy, frame[differ].head(20), frame[~differ].head(20)


@pytest.fixture(scope="module")
def deployment(project):
    root, _, _ = project
    cfg = load_project(root)
    started = local.deploy(cfg, f"models:/{NAME}/1")
    try:
        yield cfg, started.url
    finally:
        local.undeploy(cfg, NAME)


def bodies(*frames) -> list[bytes]:
    return [json.dumps({"instances": [row]}).encode() for frame in frames for row in frame.to_dict("records")]


def token(cfg) -> dict[str, str]:
    deployment = local.load_state(cfg, NAME)
    assert deployment is not None
    return {"authorization": f"Bearer {deployment.admin_token}"}


def test_canary_steps_then_promotion_under_load_lose_no_request(project, deployment):
    from mloop.errors import DataError
    from mloop.monitor.queries import served_log

    _, differ, agree = project
    cfg, url = deployment
    with Load(url, bodies(differ, agree)) as load:
        load.wait_for("start", 200)
        load.phase = "canary 0.1"
        state = local.start_rollout(cfg, NAME, f"models:/{NAME}/2", "canary", 0.1)
        assert (state["strategy"], state["weight"], state["serving_version"], state["candidate_version"]) == (
            "canary", 0.1, "1", "2")
        load.phase = "0.1"
        load.wait_for("0.1", 500)
        load.phase = "stepping"
        assert local.set_rollout_weight(cfg, NAME, 0.5)["weight"] == 0.5
        load.phase = "0.5"
        load.wait_for("0.5", 1000)
        load.phase = "promoting"
        promoted = local.promote_rollout(cfg, NAME)
        load.phase = "after"
        load.wait_for("after", 300)
    assert load.outcomes == {"200": sum(load.outcomes.values())}, f"failed requests: {load.outcomes}"
    assert load.answers("start").keys() == {"1"} and load.answers("after").keys() == {"2"}
    low, half = load.answers("0.1"), load.answers("0.5")
    assert 0.03 < low["2"] / sum(low.values()) < 0.2, low
    assert 0.4 < half["2"] / sum(half.values()) < 0.6, half
    assert (promoted.action, promoted.version, promoted.previous_version) == ("promoted", "2", "1")
    recorded = local.load_state(cfg, NAME)
    assert recorded is not None and (recorded.version, recorded.history) == ("2", ["1"])
    state = local.rollout_state(cfg, NAME)
    assert (state["active"], state["serving_version"]) == (False, "2")
    # the prediction log says which version answered each row (written every second)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            versions = set(served_log(cfg.monitor_dir(NAME), NAME).predictions["version"].astype(str))
        except DataError:  # nothing written yet
            versions = set()
        if versions == {"1", "2"}:
            break
        time.sleep(0.2)
    assert versions == {"1", "2"}
    rolled = local.rollback(cfg, NAME)  # goes back to the version served before the promotion
    assert (rolled.action, rolled.version, rolled.previous_version) == ("rolled_back", "1", "2")


def test_abort_mid_canary_leaves_the_champion_answering_alone(project, deployment):
    _, differ, agree = project
    cfg, url = deployment
    with Load(url, bodies(differ, agree)) as load:
        local.start_rollout(cfg, NAME, f"models:/{NAME}/2", "canary", 0.5)
        load.phase = "canary"
        load.wait_for("canary", 300)
        load.phase = "aborting"
        aborted = local.abort_rollout(cfg, NAME)
        load.phase = "after"
        load.wait_for("after", 300)
    assert load.outcomes == {"200": sum(load.outcomes.values())}, f"failed requests: {load.outcomes}"
    assert load.answers("canary").keys() == {"1", "2"} and load.answers("after").keys() == {"1"}
    assert aborted["aborted"] is True and aborted["serving"]["version"] == "1"
    again = local.abort_rollout(cfg, NAME)
    assert again["aborted"] is False and "no roll-out" in again["message"]
    recorded = local.load_state(cfg, NAME)
    assert recorded is not None and recorded.version == "1" and recorded.history == []


def test_shadow_answers_with_the_champion_and_logs_and_compares_the_candidates_answers(project, deployment):
    from mloop.monitor.queries import shadow_answers

    _, differ, agree = project
    cfg, url = deployment
    sent = bodies(differ, agree)
    state = local.start_rollout(cfg, NAME, f"models:/{NAME}/2", "shadow")
    assert (state["strategy"], state["weight"]) == ("shadow", 0.0)
    with Load(url, sent, clients=4) as load:
        load.wait_for("start", 10 * len(sent))
    assert load.outcomes == {"200": sum(load.outcomes.values())} and load.answers("start").keys() == {"1"}
    answered = sum(load.outcomes.values())
    deadline = time.time() + 10
    while (shadow := local.rollout_state(cfg, NAME)["shadow"])["compared_rows"] < answered:
        assert time.time() < deadline, shadow
        time.sleep(0.1)
    assert shadow["compared_rows"] == answered and shadow["dropped_rows"] == shadow["failed_rows"] == 0
    expected = sum(load.answered[i] for i in range(len(differ)))  # the first bodies are the rows they disagree on
    assert shadow["disagreed_rows"] == expected > 0, shadow
    assert shadow["disagreement_rate"] == pytest.approx(expected / answered)
    state = local.rollout_state(cfg, NAME)
    assert state["champion"]["requests"] >= answered and state["candidate"]["rows"] == answered
    deadline = time.time() + 10
    while len(logged := shadow_answers(cfg.monitor_dir(NAME))) < answered:
        assert time.time() < deadline, len(logged)
        time.sleep(0.2)
    assert set(logged["version"]) == {"2"} and set(logged["served_version"]) == {"1"}
    assert int((logged["prediction"] != logged["served_prediction"]).sum()) == shadow["disagreed_rows"]
    # the monitoring status (written every second) has the roll-out, and the CLI shows it
    status_file = cfg.monitor_dir(NAME) / "status.json"
    deadline = time.time() + 10
    while (json.loads(status_file.read_text()).get("rollout") or {}).get("shadow", {}).get("compared_rows", 0) < answered:
        assert time.time() < deadline
        time.sleep(0.2)
    shown = subprocess.run([MLOOP, "monitor", "status"], cwd=cfg.root, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert "roll-out: shadow of v2" in shown.stdout and f"disagreed on {shadow['disagreed_rows']} of" in shown.stdout
    local.abort_rollout(cfg, NAME)


def test_feedback_on_a_canary_answer_scores_the_candidate_not_the_champion(project, deployment):
    _, differ, _ = project
    cfg, url = deployment
    row = json.dumps({"instances": differ.head(5).to_dict("records")})
    local.start_rollout(cfg, NAME, f"models:/{NAME}/2", "canary", 1.0)
    try:
        with httpx.Client(base_url=url) as http:
            answer = http.post("/predict", content=row, headers={"x-request-id": "by-candidate"})
            assert answer.headers["x-model-version"] == "2"
            right = [p["label"] for p in answer.json()["predictions"]]
            assert http.post("/feedback", json={"id": "by-candidate", "labels": right}).status_code == 200
            state = local.rollout_state(cfg, NAME)
            assert (state["candidate"]["labelled"], state["candidate"]["scores"]["accuracy"]) == (5, 1.0)
            assert (state["champion"]["labelled"], state["champion"]["scores"]) == (0, {})
            local.set_rollout_weight(cfg, NAME, 0.0)
            answer = http.post("/predict", content=row, headers={"x-request-id": "by-champion"})
            assert answer.headers["x-model-version"] == "1"
            wrong = [1 - p["label"] for p in answer.json()["predictions"]]
            assert http.post("/feedback", json={"id": "by-champion", "labels": wrong}).status_code == 200
        state = local.rollout_state(cfg, NAME)
        assert state["champion"]["scores"]["accuracy"] == 0.0 and state["candidate"]["scores"]["accuracy"] == 1.0
    finally:
        local.abort_rollout(cfg, NAME)


def test_refusals_change_nothing(project, deployment):
    cfg, url = deployment
    with pytest.raises(RegistryError, match=f"no models:/{NAME}/77"):
        local.start_rollout(cfg, NAME, f"models:/{NAME}/77", "canary", 0.1)  # refused before the server is asked
    with httpx.Client(base_url=url, timeout=60) as http:
        for method, path in (("POST", "/admin/rollout"), ("GET", "/admin/rollout"), ("POST", "/admin/rollout/weight"),
                             ("POST", "/admin/rollout/promote"), ("POST", "/admin/rollout/abort")):
            assert http.request(method, path, json={}).status_code == 401, path
        failed = http.post("/admin/rollout", json={"uri": f"models:/{NAME}/77", "strategy": "canary", "weight": 0.1},
                           headers=token(cfg))
        assert failed.status_code == 422 and f"cannot load models:/{NAME}/77" in failed.json()["error"]
        bad = http.post("/admin/rollout", json={"uri": f"models:/{NAME}/2", "strategy": "canary", "weight": 1.5},
                        headers=token(cfg))
        assert bad.status_code == 422 and bad.json()["field"] == "weight"
    with pytest.raises(DeployError, match="no roll-out in progress"):
        local.set_rollout_weight(cfg, NAME, 0.5)
    with pytest.raises(DeployError, match="weight must be a number from 0 to 1"):
        local.start_rollout(cfg, NAME, f"models:/{NAME}/2", "canary", 2.0)
    with pytest.raises(DeployError, match="no roll-out in progress"):
        local.promote_rollout(cfg, NAME)
    state = local.rollout_state(cfg, NAME)
    assert (state["active"], state["serving_version"]) == (False, "1")
    recorded = local.load_state(cfg, NAME)
    assert recorded is not None and recorded.version == "1"
    with pytest.raises(DeployError, match="'elsewhere' is not running"):
        local.rollout_state(cfg, "elsewhere")


def test_mloop_rollout_abort_and_promote_and_their_refusals_under_the_agent(project, deployment):
    from mloop.automation.agent import open_audit
    from tests.support.versioned import mloop

    cfg, _ = deployment
    served = local.rollout_state(cfg, NAME)["serving_version"]
    other = "2" if served == "1" else "1"
    local.start_rollout(cfg, NAME, f"models:/{NAME}/{other}", "canary", 0.3)
    aborted = mloop(cfg.root, "rollout", "abort", NAME)
    assert aborted.returncode == 0, aborted.stderr
    assert f"{NAME}: the canary of v{other} is aborted; v{served} answers every request" in aborted.stdout
    assert not local.rollout_state(cfg, NAME)["active"]
    assert open_audit(cfg).records(model=NAME)[-1].summary == (f"mloop rollout abort: {NAME} roll-out of v{other} "
                                                               f"aborted, v{served} serves everything")

    toml = cfg.root / "mloop.toml"  # with [automation], the agent owns this deployment's roll-outs
    text = toml.read_text(encoding="utf-8")
    local.start_rollout(cfg, NAME, f"models:/{NAME}/{other}", "canary", 0.3)
    toml.write_text(text + "\n[automation]\n", encoding="utf-8")
    try:
        for args, said in ((("rollout", "promote"), "the agent owns the roll-outs"),
                           (("rollout", "abort"), "the agent owns the roll-outs"),
                           (("rollback",), "the agent is rolling out a candidate")):
            refused = mloop(cfg.root, *args, NAME)
            assert refused.returncode != 0 and said in refused.stderr, refused.stderr
            assert "mloop agent stop" in refused.stderr and "Traceback" not in refused.stderr
        assert local.rollout_state(cfg, NAME)["active"] and local.load_state(cfg, NAME).version == served
    finally:
        toml.write_text(text, encoding="utf-8")

    promoted = mloop(cfg.root, "rollout", "promote", NAME)
    assert promoted.returncode == 0, promoted.stderr
    assert f"{NAME}: promoted the roll-out's {NAME} v{other} (v{served} before)" in promoted.stdout
    assert local.rollout_state(cfg, NAME)["serving_version"] == other
    rolled = mloop(cfg.root, "rollback", NAME)  # back as it was (no roll-out now: allowed)
    assert rolled.returncode == 0 and local.rollout_state(cfg, NAME)["serving_version"] == served, rolled.stderr
