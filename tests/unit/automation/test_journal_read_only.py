"""The journal read by those who only look (``mloop agent status``, the web app): nothing written, moved or
created, a lock not waited out; and the agent's status summarized once for both faces."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from mloop.automation import history
from mloop.automation.agent import AgentState, read_journal
from mloop.automation.journal import Journal, JournalError
from mloop.automation.service import AgentStatus, summarize
from tests.support.journal import exclusively_locked


def _store(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(store=tmp_path / ".mloop", model_name="m")


def test_a_missing_journal_reads_as_no_cycles_and_is_not_created(tmp_path: Path):
    cfg = _store(tmp_path)
    assert read_journal(cfg) is None
    assert history.cycles(cfg) == [] and history.queued_triggers(cfg) == []  # type: ignore[arg-type]
    assert not (tmp_path / ".mloop").exists()


def test_a_damaged_journal_is_refused_by_a_reader_and_left_where_it_is(tmp_path: Path):
    cfg = _store(tmp_path)
    path = tmp_path / ".mloop" / "automation" / "journal.db"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database " * 300)
    with pytest.raises(JournalError, match="cannot be read: file is not a database") as raised:
        history.cycles(cfg)  # type: ignore[arg-type]
    assert "mloop doctor" in raised.value.hint
    assert path.read_bytes() == b"not a database " * 300
    assert not (path.parent / "quarantine").exists()
    Journal(path).close()  # the agent's opener (the control): it moves a damaged journal aside, starts a new one
    assert (path.parent / "quarantine").exists() and path.read_bytes() != b"not a database " * 300


def test_a_locked_journal_is_said_to_be_locked_after_a_short_wait(tmp_path: Path):
    path = tmp_path / "journal.db"
    writer = Journal(path)
    writer.push("m", {"kind": "manual", "reason": "r"})
    writer.close()
    before = path.read_bytes()
    with exclusively_locked(path):
        with pytest.raises(JournalError, match="is locked by another process"):
            Journal.open_read_only(path, timeout=0.2)
    reader = Journal.open_read_only(path, timeout=0.2)
    try:
        assert reader.queued("m") == [{"kind": "manual", "reason": "r"}]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.push("m", {"kind": "manual"})
    finally:
        reader.close()
    assert path.read_bytes() == before


def test_the_summary_carries_the_stopped_reason_the_zoned_schedule_and_an_unwatched_rollout():
    stopped = {"reason": "3 automatic rollbacks in a row", "at": 1_700_000_000.0}
    idle = AgentStatus(True, AgentState(42, 1_700_000_000.0, "127.0.0.1", 8123),
                       {"running": [], "pending": [], "next_schedule": 1_767_225_600.0,  # 2026-01-01 00:00 UTC
                        "timezone": "Asia/Tokyo", "problems": {"data": "cannot list"}, "stopped": stopped},
                       "agent.log", config_error="bad toml")
    summary = summarize(idle)
    assert (summary.running, summary.pid, summary.url) == (True, 42, "http://127.0.0.1:8123")
    assert summary.next_schedule == "2026-01-01 09:00 Asia/Tokyo"
    assert summary.stopped_reason == "3 automatic rollbacks in a row" and summary.stopped_at == 1_700_000_000.0
    assert summary.problems == {"data": "cannot list"} and summary.config_error == "bad toml"

    left = AgentStatus(False, None, None, "agent.log", unfinished=[{"id": "c1", "state": "watching"}],
                       rollout={"active": True, "strategy": "canary", "weight": 0.2, "candidate_version": "3"})
    summary = summarize(left)
    assert not summary.running and summary.url is None and summary.next_schedule == ""
    assert summary.rollout is not None and (summary.rollout.candidate, summary.rollout.share,
                                            summary.rollout.watched) == ("3", "20%", False)
    assert [(c.id, c.state) for c in summary.unfinished] == [("c1", "watching")]
