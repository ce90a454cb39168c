"""Where a run came from: git commit and dirty flag, Python and key package versions."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

KEY_PACKAGES = ("mloop", "mlflow", "scikit-learn", "pandas", "numpy", "pyarrow", "scipy")


@dataclass(frozen=True)
class GitState:
    commit: str
    dirty: bool  # uncommitted changes to tracked files below the project folder
    branch: str


def git_state(root: Path) -> GitState | None:
    """The commit, dirty flag and branch of the repository holding ``root``, or None outside one."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise OSError(out.stderr.strip())
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "."))
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None
    return GitState(commit, dirty, branch)


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def environment() -> dict[str, object]:
    """Python version and every installed distribution's version (for the run's environment.json)."""
    dists = sorted({(d.metadata["Name"] or "?", d.version) for d in metadata.distributions()})
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": {name: version for name, version in dists},
    }
