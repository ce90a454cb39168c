"""Which version of a data file a run read, and the history of a tracked path.

A version is named by DVC's content hash (md5): the file's object in the DVC cache and on the remote
(``<remote>/files/md5/ab/cdef…``), and the git commit whose ``.dvc`` file recorded it. Reading a
version needs no DVC repository to be opened: the ``.dvc`` files (YAML) and git say it all, so a run
pays a file hash and two git calls per tracked input.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from mloop.data.repo import dvc_root, git

COMMITTED, NOT_COMMITTED, MODIFIED, UNTRACKED = "committed", "not committed", "modified", "untracked"


@dataclass(frozen=True)
class DataVersion:
    """The version of one input file, as a run records it."""

    path: str  # the file, relative to the DVC repository ('' parts above it when there is none)
    md5: str  # the file's content as DVC names it: its object in the cache and on the remote
    tracked_by: str = ""  # the .dvc file, relative to the DVC repository ('' untracked)
    version: str = ""  # the tracked file's or folder's hash in that .dvc file
    commit: str = ""  # the git commit whose .dvc file recorded this version ('' not committed)
    state: str = UNTRACKED  # committed, not committed (added since), modified (changed since added), untracked
    remote: str = ""  # the DVC remote the version is pushed to

    @property
    def object_url(self) -> str:
        """Where this file's content is on the remote ('' when there is none)."""
        if not (self.remote and self.md5):
            return ""
        return f"{self.remote.rstrip('/')}/files/md5/{self.md5[:2]}/{self.md5[2:]}"

    def as_dict(self) -> dict[str, str]:
        return {**asdict(self), "object_url": self.object_url}


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    """The hash DVC 3 gives a file (``hash: md5``: of the raw bytes)."""
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_dvc_file(path: Path) -> dict[str, Any]:
    """The first output of a ``.dvc`` file: md5, size, nfiles, path ({} when unreadable)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        out = (data or {}).get("outs", [{}])[0]
        return out if isinstance(out, dict) else {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError, IndexError):
        return {}


def cache_dir(root: Path) -> Path:
    """The DVC cache of the repository at ``root`` (``.dvc/cache`` unless configured elsewhere)."""
    from configparser import ConfigParser

    for name in ("config.local", "config"):
        parser = ConfigParser()
        try:
            parser.read(root / ".dvc" / name, encoding="utf-8")
        except Exception:  # noqa: BLE001 - DVC's file is configobj, not always ConfigParser-clean: keep the default
            continue
        if parser.has_option("cache", "dir"):
            folder = Path(parser.get("cache", "dir"))
            return folder if folder.is_absolute() else (root / ".dvc" / folder).resolve()
    return root / ".dvc" / "cache"


def object_path(root: Path, md5: str) -> Path:
    """Where DVC keeps content ``md5`` in the repository's cache."""
    return cache_dir(root) / "files" / "md5" / md5[:2] / md5[2:]


def _tracking_file(root: Path, rel: Path) -> tuple[Path, Path] | None:
    """The ``.dvc`` file tracking ``rel`` (the file's own, or a parent folder's) and the tracked path."""
    for tracked in (rel, *rel.parents):
        if tracked == Path("."):
            return None
        candidate = root / f"{tracked}.dvc"
        if candidate.is_file():
            return candidate, tracked
    return None


def _folder_entry_md5(root: Path, folder_md5: str, inside: Path) -> str:
    """A file's md5 in a tracked folder's manifest ('' when the manifest is not in the cache)."""
    try:
        entries = json.loads(object_path(root, folder_md5).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return next((e.get("md5", "") for e in entries if e.get("relpath") == inside.as_posix()), "")


def _committed_at(root: Path, dvc_file: Path) -> str:
    """The last commit that changed ``dvc_file``, if the file has not changed since ('' otherwise)."""
    rel = str(dvc_file.relative_to(root))
    if git(root, "status", "--porcelain", "--", rel, check=False):
        return ""
    return git(root, "log", "-1", "--format=%H", "--", rel, check=False)


def version_of(project_root: Path, path: Path, remote: str = "") -> DataVersion:
    """The version of ``path`` (a file a step read) in the DVC repository holding the project."""
    full = (path if path.is_absolute() else project_root / path).resolve()
    root = dvc_root(project_root)
    if root is None:
        return DataVersion(path=str(path), md5="")
    root = root.resolve()
    try:
        rel = full.relative_to(root)
    except ValueError:
        return DataVersion(path=str(path), md5="")
    found = _tracking_file(root, rel)
    if found is None:
        return DataVersion(path=rel.as_posix(), md5="")
    dvc_file, tracked = found
    out = read_dvc_file(dvc_file)
    recorded = str(out.get("md5", ""))
    md5 = md5_of(full) if full.is_file() else ""
    expected = recorded if tracked == rel else _folder_entry_md5(root, recorded, rel.relative_to(tracked))
    if not md5 or md5 != expected:  # read as it is now, which is no recorded version
        state, commit, recorded = MODIFIED, "", ""
    else:
        commit = _committed_at(root, dvc_file)
        state = COMMITTED if commit else NOT_COMMITTED
    return DataVersion(path=rel.as_posix(), md5=md5, tracked_by=dvc_file.relative_to(root).as_posix(),
                       version=recorded, commit=commit, state=state, remote=remote)


def recorded_md5(project_root: Path, path: Path) -> str:
    """The md5 DVC's ``.dvc`` file records for ``path`` ('' when DVC does not track it): its entry in a tracked
    folder's manifest (the folder's own hash when the manifest is not in the cache). Reads no data, runs no
    git: cheap enough to poll."""
    root = dvc_root(project_root)
    if root is None:
        return ""
    root = root.resolve()
    try:
        rel = (path if path.is_absolute() else project_root / path).resolve().relative_to(root)
    except ValueError:
        return ""
    found = _tracking_file(root, rel)
    if found is None:
        return ""
    dvc_file, tracked = found
    recorded = str(read_dvc_file(dvc_file).get("md5", ""))
    if tracked == rel or not recorded:
        return recorded
    return _folder_entry_md5(root, recorded, rel.relative_to(tracked)) or recorded


@dataclass(frozen=True)
class HistoryEntry:
    """One committed (or, first, the working copy's not yet committed) version of a tracked path."""

    commit: str  # '' for the working copy's version not committed yet
    date: float  # commit time (seconds since the epoch); the .dvc file's mtime for the working copy's
    md5: str
    size: int
    files: int | None  # a folder's file count
    message: str = ""


def history(project_root: Path, path: Path) -> tuple[str, list[HistoryEntry]]:
    """Every version of a tracked file or folder, newest first: the ``.dvc`` file as each commit that
    changed it recorded it, then (first) the working copy's when it differs from the last commit's."""
    from mloop.errors import DataVersionError

    root = dvc_root(project_root)
    if root is None:
        raise DataVersionError(f"{project_root} is not under DVC", hint="run: mloop data init")
    full = (path if path.is_absolute() else Path.cwd() / path)
    full = full if full.exists() or full.with_name(full.name + ".dvc").exists() else project_root / path
    full = full.resolve()
    if full.suffix == ".dvc":
        full = full.with_suffix("")
    try:
        rel = full.relative_to(root.resolve())
    except ValueError:
        raise DataVersionError(f"{path} is outside the DVC repository {root}") from None
    found = _tracking_file(root, rel)
    if found is None:
        raise DataVersionError(f"{rel} is not tracked by DVC", hint=f"track it: mloop data add {path}")
    dvc_file, _ = found
    name = str(dvc_file.relative_to(root))
    entries = []
    log = git(root, "log", "--format=%H%x00%ct%x00%s", "--", name, check=False)
    for line in log.splitlines():
        commit, ctime, message = line.split("\0", 2)
        text = git(root, "show", f"{commit}:{name}", check=False)
        if not text:
            continue  # the commit deleted it
        try:
            out = (yaml.safe_load(text) or {}).get("outs", [{}])[0]
        except (yaml.YAMLError, AttributeError, IndexError):
            continue
        entries.append(HistoryEntry(commit, float(ctime), str(out.get("md5", "")), int(out.get("size", 0) or 0),
                                    out.get("nfiles"), message))
    current = read_dvc_file(dvc_file)
    if current.get("md5") and (not entries or entries[0].md5 != current.get("md5")):
        entries.insert(0, HistoryEntry("", dvc_file.stat().st_mtime, str(current["md5"]),
                                       int(current.get("size", 0) or 0), current.get("nfiles")))
    return dvc_file.relative_to(root).with_suffix("").as_posix(), entries
