"""The agent's journal (SQLite, WAL) and the audit log's hash chain."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from mloop.automation.audit import AuditLog
from mloop.automation.journal import Journal


def test_a_step_done_keeps_its_result_and_a_step_under_way_is_redone(tmp_path: Path):
    journal = Journal(tmp_path / "journal.db")
    cycle = journal.new_cycle("m", [{"kind": "manual"}])
    assert journal.begin(cycle.id, "train") is None
    journal.finish(cycle.id, "train", {"version": "3"})
    assert journal.begin(cycle.id, "gate") is None  # under way when the agent died
    journal.close()

    again = Journal(tmp_path / "journal.db")
    done = again.begin(cycle.id, "train")
    assert done is not None and done.result == {"version": "3"}
    assert again.begin(cycle.id, "gate") is None  # redone, counted
    found = again.cycle(cycle.id)
    assert found is not None and found.steps["gate"].attempts == 2 and found.steps["gate"].state == "started"
    again.reset(cycle.id, ("gate",))
    assert "gate" not in again.cycle(cycle.id).steps  # type: ignore[union-attr]
    assert again.step_result(cycle.id, "train") == {"version": "3"}


def test_states_open_cycles_and_final_ones(tmp_path: Path):
    journal = Journal(tmp_path / "j.db")
    first = journal.new_cycle("m", [], now=1.0)
    second = journal.new_cycle("m", [], now=2.0)
    journal.set_state(first.id, "promoted", outcome="promoted", reason="fine", candidate="4")
    assert [c.id for c in journal.cycles("m", open_only=True)] == [second.id]
    assert journal.cycle(first.id).final  # type: ignore[union-attr]
    assert journal.cycle(first.id).candidate == "4"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="unknown cycle state"):
        journal.set_state(first.id, "nonsense")


def _push_many(path: str, start: int) -> None:
    journal = Journal(Path(path))
    for i in range(start, start + 50):
        journal.push("m", {"kind": "manual", "n": i})
    journal.close()


def test_the_inbox_takes_every_trigger_once_from_processes_writing_at_once(tmp_path: Path):
    path = tmp_path / "j.db"
    Journal(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_push_many, args=(str(path), n * 100)) for n in range(3)]
    for p in procs:
        p.start()
    journal = Journal(path)
    taken = []
    while any(p.is_alive() for p in procs) or not taken or len(taken) < 150:
        taken.extend(journal.drain())
        if not any(p.is_alive() for p in procs):
            taken.extend(journal.drain())
            break
    for p in procs:
        p.join()
        assert p.exitcode == 0
    numbers = sorted(t["n"] for _, t in taken)
    assert numbers == sorted(n * 100 + i for n in range(3) for i in range(50))


def test_a_damaged_journal_is_moved_aside_and_a_new_one_begins(tmp_path: Path):
    path = tmp_path / "journal.db"
    path.write_bytes(b"this is not a database" * 100)
    journal = Journal(path)
    assert journal.recovered is not None and journal.recovered.read_bytes().startswith(b"this is not")
    assert journal.cycles() == []
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_audit_chain_holds_and_shows_where_it_was_changed(tmp_path: Path):
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(5):
        log.append("trigger", "m", f"alert {i}", cycle="c1", n=i)
    records = log.records()
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert all(b.prev == a.hash for a, b in zip(records, records[1:]))
    assert log.verify() == []

    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    changed = json.loads(lines[2])
    changed["summary"] = "something else"
    lines[2] = json.dumps(changed)
    del lines[3]
    (tmp_path / "audit.jsonl").write_text("\n".join(lines) + "\n")
    problems = log.verify()
    assert any("record 3" in p and "changed" in p for p in problems)
    assert any("record 5" in p and "does not follow" in p for p in problems)


def test_a_torn_last_line_is_skipped_and_the_chain_goes_on(tmp_path: Path):
    log = AuditLog(tmp_path / "audit.jsonl")
    first = log.append("agent", "m", "started")
    with (tmp_path / "audit.jsonl").open("ab") as handle:
        handle.write(b'{"seq": 2, "at": 1.0, "kind": "tri')  # a crash mid-append
    second = log.append("agent", "m", "again")
    assert second.seq == 2 and second.prev == first.hash
    assert [r.summary for r in log.records()] == ["started", "again"]
    assert log.verify() == []
