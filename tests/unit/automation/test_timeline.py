"""A cycle of the journal as a timeline, and hand-made traffic changes refused on the agent's own deployment."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mloop.automation.history import cycles, queued_triggers, timeline
from mloop.automation.journal import Journal
from mloop.config import ProjectConfig, parse_settings
from mloop.errors import DeployError


def test_a_cycle_is_trigger_then_its_steps_in_order_then_its_outcome(tmp_path: Path):
    journal = Journal(tmp_path / "journal.db")
    now = time.time()
    cycle = journal.new_cycle("m", [{"kind": "manual", "reason": "by hand", "at": now - 3.0},
                                    {"kind": "alert", "reason": "DataDrift", "at": now - 1.0}], now=now)
    for step, result in (("train", {"version": "3", "champion": "2"}),
                         ("gate", {"verdict": "PASS", "summary": "PASS: ok"}),
                         ("rollout", {"strategy": "canary", "weight": 0.1})):
        journal.begin(cycle.id, step)
        journal.finish(cycle.id, step, result)
    journal.begin(cycle.id, "watch")  # under way
    found = journal.cycle(cycle.id)
    assert found is not None
    later = time.time() + 100.0
    phases = timeline(found, now=later)
    assert [p.name for p in phases] == ["trigger", "train", "gate", "rollout", "watch", "outcome"]
    assert (phases[0].start, phases[0].end) == (now - 3.0, now)
    assert phases[0].detail == "manual: by hand; alert: DataDrift"
    assert [p.detail for p in phases[1:4]] == ["v3", "PASS: ok", "canary at 10%"]
    assert phases[4].state == "started" and phases[4].end == later
    assert phases[-1].state == "pending" and phases[-1].detail == "under way: pending"
    assert all(p.end >= p.start for p in phases)
    assert [p.start for p in phases] == sorted(p.start for p in phases)

    journal.finish(cycle.id, "watch", {"verdict": "failed", "reason": "error_ratio above 0.01"}, failed=True)
    journal.set_state(cycle.id, "rolled_back", outcome="rolled_back", reason="watch failed")
    done = journal.cycle(cycle.id)
    assert done is not None
    phases = timeline(done)
    assert phases[4].state == "failed" and phases[4].detail == "failed: error_ratio above 0.01"
    assert (phases[-1].state, phases[-1].detail) == ("rolled_back", "watch failed")


def _cfg(root: Path, toml: dict) -> ProjectConfig:
    return ProjectConfig(root, parse_settings({"project": {"name": "p"}, "registry": {"model_name": "m"}, **toml}))


def test_no_journal_means_no_cycles_and_none_is_created(tmp_path: Path):
    cfg = _cfg(tmp_path, {})
    assert cycles(cfg) == [] and queued_triggers(cfg) == []
    assert not (cfg.store / "automation").exists()


def test_queued_triggers_are_read_and_left_for_the_agent(tmp_path: Path):
    cfg = _cfg(tmp_path, {})
    journal = Journal(cfg.store / "automation" / "journal.db")
    journal.push("m", {"kind": "manual", "reason": "first"})
    journal.push("other", {"kind": "manual", "reason": "not ours"})
    journal.push("m", {"kind": "manual", "reason": "second"})
    assert [t["reason"] for t in queued_triggers(cfg)] == ["first", "second"]
    assert len(journal.drain()) == 3  # still there for the agent
    journal.close()


def test_promote_and_abort_by_hand_are_refused_on_the_agents_deployment_only(tmp_path: Path):
    from mloop.automation import manual

    owned = _cfg(tmp_path, {"automation": {}})
    assert manual.agent_owns_rollouts(owned, "m") and not manual.agent_owns_rollouts(owned, "other")
    with pytest.raises(DeployError, match="the agent owns the roll-outs of deployment 'm'") as refused:
        manual.promote_rollout(owned, "m", by="test")
    assert "mloop models promote VERSION" in str(refused.value.hint)
    with pytest.raises(DeployError, match="aborting its roll-out") as refused:
        manual.abort_rollout(owned, "m", by="test")
    assert "mloop agent stop" in str(refused.value.hint)
    assert not manual.agent_owns_rollouts(_cfg(tmp_path, {}), "m")  # no [automation]: a person decides
    with pytest.raises(DeployError, match="is not running"):  # so it goes on to the deployment, which is not there
        manual.promote_rollout(_cfg(tmp_path, {}), "m", by="test")
