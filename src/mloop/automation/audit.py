"""The audit log: every trigger, run, gate, override, traffic change and rollback, as a hash chain.

One JSON line per record in ``.mloop/automation/audit.jsonl``; each carries the SHA-256 of the record
before it (``prev``) and its own (``hash``, over the record without it), so a record changed, removed or
put in later breaks the chain where it happened (``verify``). Appends are fsync'd and serialised by a
file lock (the agent, ``mloop models promote --force`` and ``mloop deploy`` may write at once); a line
torn by a crash is skipped by readers and the chain goes on from the last whole record.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mloop._fs import append_synced, file_lock

GENESIS = "0" * 64
KINDS = ("trigger", "cycle", "run", "gate", "infra", "traffic", "watch", "promote", "rollback", "override",
         "agent")


@dataclass
class AuditRecord:
    seq: int
    at: float
    kind: str
    model: str
    summary: str
    cycle: str = ""
    version: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    prev: str = GENESIS
    hash: str = ""

    def digest(self) -> str:
        body = {k: v for k, v in asdict(self).items() if k != "hash"}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, kind: str, model: str, summary: str, *, cycle: str = "", version: str = "",
               at: float | None = None, **data: Any) -> AuditRecord:
        if kind not in KINDS:
            raise ValueError(f"unknown audit record kind {kind!r}")
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            last = self._last()
            record = AuditRecord(seq=last.seq + 1 if last else 1, at=time.time() if at is None else at, kind=kind,
                                 model=model, summary=summary, cycle=cycle, version=version,
                                 data=json.loads(json.dumps(data, default=str)), prev=last.hash if last else GENESIS)
            record.hash = record.digest()
            append_synced(self.path, (json.dumps(asdict(record), sort_keys=True) + "\n").encode())
        return record

    def records(self, *, model: str | None = None, cycle: str | None = None) -> list[AuditRecord]:
        found = [r for r in self._read() if (model is None or r.model == model) and (cycle is None or r.cycle == cycle)]
        return found

    def verify(self) -> list[str]:
        """Where the chain is broken ('' problems: intact)."""
        problems, prev = [], GENESIS
        for record in self._read():
            if record.prev != prev:
                problems.append(f"record {record.seq}: does not follow the record before it (one removed or inserted)")
            if record.digest() != record.hash:
                problems.append(f"record {record.seq}: its content does not match its hash (changed)")
            prev = record.hash
        return problems

    def _read(self) -> list[AuditRecord]:
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            try:
                found.append(AuditRecord(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line torn by a crash
        return found

    def _last(self) -> AuditRecord | None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return None
        with self.path.open("rb") as handle:
            block = 1 << 16
            while True:
                start = max(0, size - block)
                handle.seek(start)
                lines = handle.read().splitlines()
                candidates = lines if start == 0 else lines[1:]
                for line in reversed(candidates):
                    try:
                        return AuditRecord(**json.loads(line))
                    except (ValueError, TypeError):
                        continue
                if start == 0:
                    return None
                block *= 4
