"""The agent's journal: every cycle, each step of it, the triggers waiting, in SQLite (WAL mode).

A transition is written here *before* its side effect (``begin``), and its result after (``finish``):
a restarted agent finds, per cycle, which steps are done (their results are kept, so they are not
redone) and which one was under way when it died (redone: every step's side effect is idempotent per
(cycle, step)). SQLite in WAL mode with ``synchronous=FULL`` keeps each committed transition through a
kill -9 or a power cut, and lets ``mloop agent status`` read while the agent writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mloop._fs import move_aside
from mloop.errors import MloopError

# A cycle's states, in order; the last seven are final.
STATES = ("pending", "snapshot", "training", "gating", "checking", "rolling_out", "watching", "promoting",
          "rolling_back")
FINAL = ("promoted", "rejected", "held", "rolled_back", "unchanged", "failed", "abandoned")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cycles (
    id TEXT PRIMARY KEY, model TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    triggers TEXT NOT NULL, candidate TEXT, champion TEXT, outcome TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS cycles_by_model ON cycles (model, created);
CREATE TABLE IF NOT EXISTS steps (
    cycle TEXT NOT NULL, step TEXT NOT NULL, state TEXT NOT NULL, began REAL NOT NULL, ended REAL,
    attempts INTEGER NOT NULL DEFAULT 1, result TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (cycle, step));
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, model TEXT NOT NULL, trigger TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


READ_TIMEOUT_S = 2.0  # how long a reader waits on a writer's lock before saying the journal is busy


class JournalError(MloopError):
    """The journal cannot be opened or written."""


@dataclass
class Cycle:
    id: str
    model: str
    state: str
    created: float
    updated: float
    triggers: list[dict[str, Any]]
    candidate: str | None = None
    champion: str | None = None
    outcome: str = ""
    reason: str = ""
    steps: dict[str, Step] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "state": self.state, "created": self.created,
                "updated": self.updated, "triggers": self.triggers, "candidate": self.candidate,
                "champion": self.champion, "outcome": self.outcome, "reason": self.reason,
                "steps": {name: step.to_dict() for name, step in self.steps.items()}}


@dataclass
class Step:
    name: str
    state: str  # "started" (its side effect may or may not have happened), "done", "failed"
    began: float
    ended: float | None
    attempts: int
    result: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "began": self.began, "ended": self.ended, "attempts": self.attempts,
                "result": self.result}


class Journal:
    """One journal file; safe to share between the threads of a process and between processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.recovered: Path | None = None  # where a damaged journal was moved (then this one is new)
        self.read_only = False
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as err:
            if "locked" in str(err):
                raise JournalError(f"the agent's journal {path} is locked", hint="try again") from err
            self.recovered = move_aside(path, path.parent / "quarantine")
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            self._db = self._open()

    @classmethod
    def open_read_only(cls, path: Path, *, timeout: float = READ_TIMEOUT_S) -> Journal:
        """The journal at ``path`` for reading only (``mloop agent status``, the web app): no schema written, no
        check, nothing moved or created but SQLite's ``-wal``/``-shm`` beside it; a lock held longer than
        ``timeout`` is not waited out. JournalError when it is missing, damaged or locked."""
        journal = cls.__new__(cls)
        journal.path = path
        journal._lock = threading.Lock()
        journal.recovered = None
        journal.read_only = True
        if not path.is_file():
            raise JournalError(f"the agent's journal {path} does not exist", hint="mloop agent start creates it")
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout,
                                 isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as err:
            raise JournalError(f"the agent's journal {path} cannot be opened: {err}",
                               hint="mloop doctor says what is wrong with it") from err
        try:
            db.execute("SELECT count(*) FROM cycles").fetchone()
        except sqlite3.DatabaseError as err:
            db.close()
            if "locked" in str(err) or "busy" in str(err):
                raise JournalError(f"the agent's journal {path} is locked by another process (for more than "
                                   f"{timeout:.0f} s)", hint="try again in a moment") from err
            raise JournalError(f"the agent's journal {path} cannot be read: {err}",
                               hint="mloop doctor checks it (and, once the agent is stopped, moves a damaged one "
                                    "to quarantine)") from err
        journal._db = db
        return journal

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute("SELECT count(*) FROM cycles").fetchone()
            db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if not self.read_only:
                return self._db.execute(sql, args).fetchall()
            try:  # a reader is told, not shown SQLite's error: a writer may lock it, or it may be damaged, meanwhile
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as err:
                raise JournalError(f"the agent's journal {self.path} cannot be read: {err}",
                                   hint="try again in a moment; mloop doctor checks it") from err

    # ---------------------------------------------------------------------------------------- cycles

    def new_cycle(self, model: str, triggers: list[dict[str, Any]], *, now: float | None = None) -> Cycle:
        now = time.time() if now is None else now
        cycle_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + os.urandom(3).hex()
        with self._transaction() as db:
            db.execute("INSERT INTO cycles (id, model, state, created, updated, triggers) VALUES (?, ?, ?, ?, ?, ?)",
                       (cycle_id, model, "pending", now, now, json.dumps(triggers)))
        return Cycle(cycle_id, model, "pending", now, now, triggers)

    def set_state(self, cycle_id: str, state: str, **fields: Any) -> None:
        """Move a cycle to ``state`` (with ``candidate``, ``champion``, ``outcome``, ``reason`` if given)."""
        if state not in STATES and state not in FINAL:
            raise ValueError(f"unknown cycle state {state!r}")
        columns = {k: v for k, v in fields.items() if k in ("candidate", "champion", "outcome", "reason")}
        sets = ", ".join(f"{k} = ?" for k in columns)
        with self._transaction() as db:
            db.execute(f"UPDATE cycles SET state = ?, updated = ?{', ' + sets if sets else ''} WHERE id = ?",
                       (state, time.time(), *columns.values(), cycle_id))

    def cycle(self, cycle_id: str) -> Cycle | None:
        found = self._cycles("WHERE id = ?", (cycle_id,))
        return found[0] if found else None

    def cycles(self, model: str | None = None, *, limit: int = 50, open_only: bool = False) -> list[Cycle]:
        """The newest cycles first (of ``model``; only those not final with ``open_only``)."""
        where, args = [], []
        if model is not None:
            where.append("model = ?")
            args.append(model)
        if open_only:
            where.append(f"state NOT IN ({', '.join('?' * len(FINAL))})")
            args.extend(FINAL)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._cycles(f"{clause} ORDER BY created DESC, rowid DESC LIMIT ?", (*args, limit))

    def _cycles(self, clause: str, args: tuple[Any, ...]) -> list[Cycle]:
        rows = self._query("SELECT id, model, state, created, updated, triggers, candidate, champion, outcome, reason "
                           f"FROM cycles {clause}", args)
        found = [Cycle(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], r[9]) for r in rows]
        for cycle in found:
            for name, state, began, ended, attempts, result in self._query(
                    "SELECT step, state, began, ended, attempts, result FROM steps WHERE cycle = ? ORDER BY began",
                    (cycle.id,)):
                cycle.steps[name] = Step(name, state, began, ended, attempts, json.loads(result))
        return found

    # ----------------------------------------------------------------------------------------- steps

    def begin(self, cycle_id: str, step: str) -> Step | None:
        """Record that ``step`` starts (before its side effect). A step done already is returned as it is
        (its result stands, nothing is redone); otherwise None, and the attempt is counted."""
        with self._transaction() as db:
            row = db.execute("SELECT state, began, ended, attempts, result FROM steps WHERE cycle = ? AND step = ?",
                             (cycle_id, step)).fetchone()
            if row is not None and row[0] == "done":
                return Step(step, row[0], row[1], row[2], row[3], json.loads(row[4]))
            if row is None:
                db.execute("INSERT INTO steps (cycle, step, state, began) VALUES (?, ?, 'started', ?)",
                           (cycle_id, step, time.time()))
            else:
                db.execute("UPDATE steps SET state = 'started', attempts = attempts + 1, began = ? "
                           "WHERE cycle = ? AND step = ?", (time.time(), cycle_id, step))
        return None

    def finish(self, cycle_id: str, step: str, result: dict[str, Any], *, failed: bool = False) -> None:
        with self._transaction() as db:
            db.execute("UPDATE steps SET state = ?, ended = ?, result = ? WHERE cycle = ? AND step = ?",
                       ("failed" if failed else "done", time.time(), json.dumps(result, default=str), cycle_id, step))

    def reset(self, cycle_id: str, steps: tuple[str, ...]) -> None:
        """Forget ``steps`` of a cycle, so they run again (a roll-out that a restart or an abort undid)."""
        with self._transaction() as db:
            db.executemany("DELETE FROM steps WHERE cycle = ? AND step = ?", [(cycle_id, step) for step in steps])

    def step_result(self, cycle_id: str, step: str) -> dict[str, Any]:
        rows = self._query("SELECT result FROM steps WHERE cycle = ? AND step = ? AND state = 'done'", (cycle_id, step))
        if not rows:
            raise JournalError(f"cycle {cycle_id} has no finished {step!r} step")
        result: dict[str, Any] = json.loads(rows[0][0])
        return result

    # ------------------------------------------------------------------------ inbox and the agent's state

    def push(self, model: str, trigger: dict[str, Any]) -> None:
        """A trigger for the agent to take (from ``mloop agent trigger``, an alert webhook, any process)."""
        with self._transaction() as db:
            db.execute("INSERT INTO inbox (at, model, trigger) VALUES (?, ?, ?)",
                       (time.time(), model, json.dumps(trigger)))

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        """Take every waiting trigger, oldest first: (model, trigger)."""
        with self._transaction() as db:
            rows = db.execute("SELECT id, model, trigger FROM inbox ORDER BY id").fetchall()
            if rows:
                db.execute("DELETE FROM inbox WHERE id <= ?", (rows[-1][0],))
        return [(model, json.loads(trigger)) for _, model, trigger in rows]

    def queued(self, model: str | None = None) -> list[dict[str, Any]]:
        """The triggers waiting in the inbox (of ``model``), oldest first, left there for the agent to take."""
        rows = self._query("SELECT model, trigger FROM inbox ORDER BY id")
        return [json.loads(trigger) for found, trigger in rows if model is None or found == model]

    def get(self, key: str) -> Any:
        rows = self._query("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def put(self, key: str, value: Any) -> None:
        """Keep ``value`` (JSON) under ``key``; None forgets the key."""
        with self._transaction() as db:
            if value is None:
                db.execute("DELETE FROM kv WHERE key = ?", (key,))
                return
            db.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                       (key, json.dumps(value, default=str)))
