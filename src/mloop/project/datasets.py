"""The project's data versions with the runs that read them (DVC history joined with the tracking store)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mloop.config import ProjectConfig

if TYPE_CHECKING:
    from mloop.data.versions import HistoryEntry
    from mloop.tracking.queries import RunSummary


@dataclass
class VersionWithRuns:
    entry: HistoryEntry
    runs: list[RunSummary] = field(default_factory=list)


def data_history(cfg: ProjectConfig, path: Path) -> tuple[str, list[VersionWithRuns]]:
    """Each version of a tracked file or folder, newest first, with the pipeline runs that trained on it."""
    from mloop.data.versions import history
    from mloop.tracking.queries import runs_reading

    tracked, entries = history(cfg.root, path)
    readers = runs_reading(cfg, [e.md5 for e in entries]) if entries else {}
    return tracked, [VersionWithRuns(e, readers.get(e.md5, [])) for e in entries]
