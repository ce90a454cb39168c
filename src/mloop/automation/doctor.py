"""``mloop doctor``'s check of the agent's files under ``.mloop/automation/`` (``project.doctor`` runs it: the
CLI passes it in, as the project layer knows nothing of the agent).

The journal must open (a damaged one is moved to ``quarantine/`` when no agent runs: the next agent starts a
new one), the audit log's hash chain must verify (never repaired: it is the evidence), a frozen holdout
belongs to a cycle the journal has, an infra check's folder in ``.mloop/tmp`` belongs to a running agent,
``agent.json`` to a live process; and a cycle left unfinished, a roll-out nothing watches, or an agent that
stopped itself is named with the command that resumes it.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from pathlib import Path

from mloop._fs import move_aside
from mloop.automation.agent import (
    AgentState,
    automation_dir,
    deployment_name,
    open_audit,
    open_journal,
    read_state,
    state_path,
)
from mloop.automation.cycle import holdout_path
from mloop.config import ProjectConfig
from mloop.project.doctor import STALE_TEMP_S, Finding

CHECK = "agent"


def check_agent(cfg: ProjectConfig, repair: bool) -> list[Finding]:
    """The findings on the agent's files (none without them); repairs only with ``repair``."""
    from mloop.automation.service import running_agent

    folder = automation_dir(cfg)
    if not folder.is_dir():
        return []
    running = running_agent(cfg)
    journal_ok, findings = _check_journal(cfg, repair, running)
    findings += _check_audit(cfg)
    findings += _check_leftovers(cfg, repair, running, journal_ok)
    if journal_ok and running is None:
        findings += _check_unattended(cfg)
    if not findings:
        findings.append(Finding(CHECK, "ok", "the journal opens, the audit chain verifies, nothing is left over"))
    return findings


def _journal_damage(path: Path) -> str:
    """Why the journal at ``path`` cannot be read ('' when it can), read only: nothing is moved."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            answer = [str(row[0]) for row in db.execute("PRAGMA quick_check").fetchall()]
            db.execute("SELECT count(*) FROM cycles").fetchone()
    except sqlite3.DatabaseError as err:
        return str(err)
    return "" if answer == ["ok"] else "; ".join(answer[:3])


def _check_journal(cfg: ProjectConfig, repair: bool, running: AgentState | None) -> tuple[bool, list[Finding]]:
    path = automation_dir(cfg) / "journal.db"
    if not path.exists():
        return False, []
    damage = _journal_damage(path)
    if not damage:
        return True, []
    what = f"the agent's journal {path} is damaged ({damage}): its cycles cannot be read"
    if running is not None:
        return False, [Finding(CHECK, "problem", what, "mloop agent stop, then mloop doctor (moves it to quarantine)")]
    if not repair:
        return False, [Finding(CHECK, "problem", what, "mloop doctor (moves it to quarantine; the next agent starts a "
                                                       "new journal, the audit log keeps the history)")]
    moved = move_aside(path, path.parent / "quarantine")
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return False, [Finding(CHECK, "repaired", f"{what}; moved to {moved} (the next agent starts a new one, the audit "
                                              "log keeps the history)")]


def _check_audit(cfg: ProjectConfig) -> list[Finding]:
    audit = open_audit(cfg)
    broken = audit.verify()
    if not broken:
        return []
    return [Finding(CHECK, "problem", f"{audit.path}: its hash chain is broken in {len(broken)} place(s), it was "
                                      f"changed after it was written: " + "; ".join(broken[:3]),
                    f"restore it from a backup; or keep it as evidence and start a new chain: "
                    f"mv {audit.path} {audit.path}.broken")]


def _check_leftovers(cfg: ProjectConfig, repair: bool, running: AgentState | None, journal_ok: bool) -> list[Finding]:
    """Holdouts of cycles the journal does not have, an infra check's folder whose agent is gone, agent.json of
    a process that is gone."""
    findings = []
    folder = holdout_path(cfg, "x").parent
    if journal_ok and folder.is_dir():
        journal = open_journal(cfg)
        try:
            orphans = [p for p in sorted(folder.glob("*.parquet")) if journal.cycle(p.stem) is None]
        finally:
            journal.close()
        if orphans:
            size = sum(p.stat().st_size for p in orphans)
            if repair:
                for path in orphans:
                    path.unlink(missing_ok=True)
            findings.append(Finding(CHECK, "repaired" if repair else "problem",
                                    f"{len(orphans)} frozen holdouts of cycles the journal does not have "
                                    f"({size / 1e6:.1f} MB)" + (", removed" if repair else ": " + ", ".join(
                                        p.name for p in orphans[:3])), "" if repair else "mloop doctor"))
    if running is None:  # an infra check runs only in the agent: its folder outlived it (older ones: the store check)
        scratch = cfg.store / "tmp"
        killed = [p for p in sorted(scratch.glob("mloop-infra-*"))
                  if p.is_dir() and time.time() - p.stat().st_mtime <= STALE_TEMP_S] if scratch.is_dir() else []
        if killed:
            if repair:
                for path in killed:
                    shutil.rmtree(path, ignore_errors=True)
            findings.append(Finding(CHECK, "repaired" if repair else "problem",
                                    f"{len(killed)} infra check folders left by an agent that is gone"
                                    + (", removed" if repair else ": " + ", ".join(str(p) for p in killed[:3])),
                                    "" if repair else "mloop doctor"))
        gone = read_state(cfg)
        if gone is not None:
            if repair:
                state_path(cfg).unlink(missing_ok=True)
            findings.append(Finding(CHECK, "repaired" if repair else "problem",
                                    f"{state_path(cfg)} names an agent that is gone (pid {gone.pid})"
                                    + ("; removed" if repair else ""), "" if repair else "mloop doctor"))
    return findings


def _check_unattended(cfg: ProjectConfig) -> list[Finding]:
    """With no agent running: a roll-out nothing watches, cycles left unfinished, an agent that stopped itself."""
    from mloop.automation.service import AgentHome, agent_status

    found = agent_status(AgentHome(cfg.root, cfg))
    findings = []
    if found.rollout:
        rollout = found.rollout
        findings.append(Finding(CHECK, "problem", f"a roll-out of v{rollout.get('candidate_version')} is active in "
                                                  f"deployment {deployment_name(cfg)} and no "
                                                  "agent runs to watch it", "mloop agent start (resumes its cycle)"))
    for cycle in found.unfinished:
        findings.append(Finding(CHECK, "problem", f"cycle {cycle['id']} is unfinished ({cycle['state']}) and no agent "
                                                  "runs", "mloop agent start (resumes it)"))
    if found.stopped:
        findings.append(Finding(CHECK, "problem", f"the agent stopped itself: {found.stopped.get('reason', '')}",
                                "look at mloop agent history, then: mloop agent start"))
    return findings
