"""Put the exact data a past run read into another checkout (``mloop reproduce``'s temporary worktree).

Each input is found by the content hash the run recorded, from the cheapest place first: the checkout
itself (a file committed to git, or DVC's checkout of the commit's ``.dvc`` files from the shared
cache), the user's DVC cache, the DVC remote (a ``.dvc`` file naming that version is written into the
checkout and pulled), and last the user's working copy when it still holds the same bytes. Every file
is verified against the run's SHA-256 before anything runs on it.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from mloop.data.repo import REMOTE, dvc_root, quiet_dvc
from mloop.data.versions import cache_dir, object_path


@dataclass(frozen=True)
class RecordedInput:
    """A file a run read: its path (relative to the project), SHA-256 and, if DVC tracked it, its md5."""

    path: str
    sha256: str
    md5: str = ""


@dataclass(frozen=True)
class Restored:
    path: str
    source: str  # "the commit", "the DVC cache", "the DVC remote", "the working copy", or "" (not found)

    @property
    def found(self) -> bool:
        return bool(self.source)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _matches(path: Path, sha256: str) -> bool:
    return path.is_file() and _sha256(path) == sha256


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    shutil.copyfile(source, target)


def share_dvc_setup(user_root: Path, checkout_root: Path, remote: str = "") -> None:
    """Let the checkout's DVC repository use the user's cache and the remote the run's data was pushed
    to (``remote``, else the user's own ``.dvc/config.local`` settings, which are not committed)."""
    dvc = checkout_root / ".dvc"
    if not dvc.is_dir():
        return
    local = user_root / ".dvc" / "config.local"
    text = local.read_text(encoding="utf-8") if local.is_file() and not remote else ""
    if remote:
        text = f"[core]\n    remote = {REMOTE}\n['remote \"{REMOTE}\"']\n    url = {remote}\n"
    (dvc / "config.local").write_text(f"{text}\n[cache]\n    dir = {cache_dir(user_root)}\n", encoding="utf-8")


def _pull(checkout_root: Path, targets: list[str]) -> None:
    """DVC's pull of ``targets`` in the checkout; what it cannot find is left for the next place to look."""
    from dvc.repo import Repo

    with quiet_dvc():
        try:
            repo = Repo(str(checkout_root))
        except Exception:  # noqa: BLE001 - no usable DVC repository: the other places are still looked at
            return
        try:
            repo.pull(targets=targets, allow_missing=True)
        except Exception:  # noqa: BLE001 - a missing version or an unreachable remote: reported per file below
            pass
        finally:
            repo.close()


def _checkout_dvc_root(user_project: Path, checkout_project: Path) -> tuple[Path | None, Path | None]:
    """The user's DVC repository and the same folder in the checkout (None, None without DVC)."""
    user = dvc_root(user_project)
    if user is None:
        return None, None
    folder = checkout_project
    for _ in user_project.resolve().relative_to(user.resolve()).parts:
        folder = folder.parent
    return user, folder


def restore_inputs(user_project: Path, checkout_project: Path, inputs: list[RecordedInput],
                   remote: str = "") -> list[Restored]:
    """Make every input exist in the checkout of the project with the content the run read (paths are
    relative to the project folder; ``remote``: where the run's data versions were pushed, as it recorded
    them); say where each came from ('' when found nowhere)."""
    user_dvc, checkout_dvc = _checkout_dvc_root(user_project, checkout_project)
    has_dvc = checkout_dvc is not None and (checkout_dvc / ".dvc").is_dir()
    if has_dvc:
        assert user_dvc is not None and checkout_dvc is not None
        share_dvc_setup(user_dvc, checkout_dvc, remote)
    found: dict[str, str] = {}
    pending = []
    for item in inputs:
        if _matches(checkout_project / item.path, item.sha256):  # an absolute path: the very file, if unchanged
            found[item.path] = "the commit"
        else:
            pending.append(item)
    if has_dvc and pending:
        assert checkout_dvc is not None
        _pull(checkout_dvc, [])  # the commit's own .dvc files, from the shared cache (or the remote)
        for item in list(pending):
            if _matches(checkout_project / item.path, item.sha256):
                found[item.path] = "the commit's DVC version"
                pending.remove(item)
    for item in list(pending):  # versions added but not committed at the time: the cache has them by md5
        cached = object_path(user_dvc, item.md5) if item.md5 and user_dvc is not None else None
        if cached is not None and _matches(cached, item.sha256):
            _copy(cached, checkout_project / item.path)
            found[item.path] = "the DVC cache"
            pending.remove(item)
    remote_ones = [item for item in pending if item.md5 and has_dvc and not Path(item.path).is_absolute()]
    if remote_ones:
        assert checkout_dvc is not None
        targets = []
        for item in remote_ones:  # a .dvc file naming the version, next to the file (unless a folder's covers it)
            dvc_file = checkout_project / f"{item.path}.dvc"
            if not dvc_file.exists() and _covered_by_folder(checkout_dvc, checkout_project / item.path):
                continue
            dvc_file.parent.mkdir(parents=True, exist_ok=True)
            dvc_file.write_text(yaml.safe_dump({"outs": [{"md5": item.md5, "path": Path(item.path).name,
                                                          "hash": "md5"}]}), encoding="utf-8")
            targets.append(str(dvc_file))
        if targets:
            _pull(checkout_dvc, targets)
        for item in remote_ones:
            if _matches(checkout_project / item.path, item.sha256):
                found[item.path] = "the DVC remote"
                pending.remove(item)
    for item in list(pending):
        current = user_project / item.path
        if not Path(item.path).is_absolute() and _matches(current, item.sha256):
            _copy(current, checkout_project / item.path)
            found[item.path] = "the working copy"
            pending.remove(item)
    return [Restored(item.path, found.get(item.path, "")) for item in inputs]


def _covered_by_folder(root: Path, path: Path) -> bool:
    return any((root / f"{parent.relative_to(root)}.dvc").is_file()
               for parent in path.parents if parent != root and root in parent.parents)
