"""The agent's journal as another process might hold it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusively_locked(path: Path) -> Iterator[None]:
    """Another connection holding the journal's exclusive lock, as a writer in the middle of a transaction."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO kv (key, value) VALUES ('x', '1')")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()
