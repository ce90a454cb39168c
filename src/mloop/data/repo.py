"""The project's DVC repository: made by ``mloop init`` (git + DVC, telemetry off), its remote kept as
``[data] remote`` says, and the commands ``mloop data add|status|push|pull``.

The remote is named ``mloop``. ``[data] remote`` set: it is written to ``.dvc/config`` (committed, so a
clone and plain ``dvc`` find it; credentials stay in the environment). Not set and no default remote
of the user's own: a folder on this machine shared by every clone (``default_remote``), written to
``.dvc/config.local`` (not committed). Every command brings the configuration in line first, so
editing ``mloop.toml`` is all it takes to move to another remote.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop._fs import file_lock
from mloop.errors import DataVersionError

if TYPE_CHECKING:
    from dvc.repo import Repo

    from mloop.config import ProjectConfig

REMOTE = "mloop"
BUCKETS = ("s3://", "gs://", "azure://", "oss://")  # remotes whose first path part is a bucket (container)


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """A git command's stdout; DataVersionError naming the command when it fails and ``check``."""
    try:
        out = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        raise DataVersionError(f"git {args[0]} failed: {err}", hint="install git (apt-get install git)") from err
    if check and out.returncode != 0:
        raise DataVersionError(f"git {' '.join(args[:2])} failed in {cwd}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip() if out.returncode == 0 else ""


def git_root(start: Path) -> Path | None:
    """The git working tree's root at or above ``start`` (``.git`` is a folder, or a file in a worktree);
    read from the file system, so a run's lookup of its data versions starts no process for it."""
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / ".git").exists():
            return folder
    return None


def default_remote() -> Path:
    """The remote used when ``[data] remote`` is empty: one folder per machine and user, shared by the
    clones of every project (DVC's objects are named by their content, so sharing is safe)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mloop" / "dvc-remote"


def dvc_root(start: Path) -> Path | None:
    """The DVC repository holding ``start`` (the nearest folder with ``.dvc/``, not above the git root)."""
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / ".dvc").is_dir():
            return folder
        if (folder / ".git").exists():  # not above the git root
            return None
    return None


@dataclass
class InitResult:
    root: Path
    git_created: bool
    dvc_created: bool
    remote: str


def init_repository(cfg: ProjectConfig) -> InitResult:
    """Make the project a git repository (unless it is in one) with DVC initialised (unless it is), DVC's
    telemetry and update checks off, staged files added to git automatically, and the remote set."""
    from dvc.repo import Repo

    root = cfg.root
    git_created = False
    if git_root(root) is None:
        git(root, "init", "-q")
        git_created = True
    existing = dvc_root(root)
    dvc_created = existing is None
    if existing is None:
        top = git_root(root)
        try:
            with quiet_dvc():
                repo = Repo.init(str(root), subdir=top is not None and top.resolve() != root.resolve())
        except Exception as err:
            raise DataVersionError(f"dvc init failed in {root}: {err}") from err
        with repo.config.edit("repo") as conf:
            conf["core"]["analytics"] = False
            conf["core"]["check_update"] = False
            conf["core"]["autostage"] = True
        repo.close()
        git(root, "add", "--", str(root / ".dvc" / "config"))  # staged as written, not as dvc init left it
    _ignore_the_store(root)
    git(root, "add", "--", *(str(root / n) for n in (".gitignore", ".dvcignore") if (root / n).is_file()), check=False)

    with open_repo(cfg) as repo:
        remote = remote_url(repo)
    return InitResult(root=existing or root, git_created=git_created, dvc_created=dvc_created, remote=remote)


def _ignore_the_store(root: Path) -> None:
    """``.mloop/`` (the stores, caches and locks of this machine) is neither git's nor DVC's to look into:
    said in .gitignore and .dvcignore (DVC would otherwise walk every stored object at each status)."""
    for name in (".gitignore", ".dvcignore"):
        ignore = root / name
        lines = ignore.read_text(encoding="utf-8").splitlines() if ignore.is_file() else []
        if not any(line.strip().rstrip("/") in (".mloop", "/.mloop") for line in lines):
            ignore.write_text("\n".join([*lines, ".mloop/"]) + "\n", encoding="utf-8")


def _local_url(url: str, base: Path) -> str:
    """A folder remote as an absolute path (relative ones are relative to ``base``, the project root)."""
    if "://" in url:
        return url
    path = Path(os.path.expanduser(url))
    return str(path if path.is_absolute() else (base / path).resolve())


def sync_remote(repo: Repo, cfg: ProjectConfig) -> None:
    """Bring DVC's remote configuration in line with ``[data] remote`` (only writes on a change; DVC's
    ``Config.edit`` reloads the repository's configuration). A URL DVC cannot use is a DataVersionError."""
    try:
        _sync_remote(repo, cfg)
    except DataVersionError:
        raise
    except Exception as err:
        text = " ".join(str(err).split())
        if "requires 'dvc-" in text:
            plugin = text.split("requires '", 1)[1].split("'", 1)[0]
            raise DataVersionError(f"[data] remote = {cfg.settings.data.remote!r} needs DVC's plugin {plugin}",
                                   hint=f"pip install {plugin}") from err
        raise DataVersionError(f"[data] remote = {cfg.settings.data.remote!r} is not a remote DVC can use: {text}",
                               hint="use s3://bucket/path, a folder, or another URL DVC supports, in mloop.toml") from err


def _sync_remote(repo: Repo, cfg: ProjectConfig) -> None:
    wanted = cfg.settings.data.remote
    config = repo.config
    if wanted:
        url = _local_url(wanted, cfg.root)
        current = config.load_one("repo")
        if current.get("remote", {}).get(REMOTE, {}).get("url") != url or current.get("core", {}).get("remote") != REMOTE:
            from dvc.config_schema import RelPath

            relative = "://" not in wanted and not Path(os.path.expanduser(wanted)).is_absolute()
            with config.edit("repo") as conf:  # a relative folder stays relative (to .dvc/): clones elsewhere find it
                conf["remote"][REMOTE] = {**conf["remote"].get(REMOTE, {}), "url": RelPath(url) if relative else url}
                conf["core"]["remote"] = REMOTE
        local = config.load_one("local")
        if REMOTE in local.get("remote", {}) or local.get("core", {}).get("remote"):
            with config.edit("local") as conf:  # a default folder written before [data] remote was set
                conf["remote"].pop(REMOTE, None)
                conf["core"].pop("remote", None)
        return
    if config["core"].get("remote"):  # a default remote the user configured with dvc remote add -d
        return
    folder = default_remote()
    folder.mkdir(parents=True, exist_ok=True)
    with config.edit("local") as conf:
        conf["remote"][REMOTE] = {"url": str(folder)}
        conf["core"]["remote"] = REMOTE


def configured_remote(root: Path) -> str:
    """The default remote's URL of the DVC repository at ``root``, read without opening the repository."""
    from dvc.config import Config

    with quiet_dvc():
        try:
            config = Config(dvc_dir=str(root / ".dvc"))
        except Exception:  # noqa: BLE001 - an unreadable config is reported by the data commands, not by a run
            return ""
    name = config["core"].get("remote")
    return str(config["remote"].get(name, {}).get("url", "")) if name else ""


def remote_url(repo: Repo) -> str:
    """The default remote's URL ('' when there is none)."""
    name = repo.config["core"].get("remote")
    if not name:
        return ""
    return str(repo.config["remote"].get(name, {}).get("url", ""))


@contextmanager
def open_repo(cfg: ProjectConfig, *, sync: bool = True) -> Iterator[Repo]:
    """The project's DVC repository, its remote in line with ``mloop.toml``; DataVersionError outside one."""
    from dvc.repo import Repo

    root = dvc_root(cfg.root)
    if root is None:
        raise DataVersionError(f"{cfg.root} is not under DVC: its data is not versioned",
                               hint="run: mloop data init   (git and DVC, with a default remote)")
    with quiet_dvc():
        try:
            repo = Repo(str(root))
        except Exception as err:
            raise DataVersionError(f"the DVC repository in {root} cannot be opened: {err}",
                                   hint="check .dvc/config (dvc doctor tells more)") from err
        try:
            if sync:
                sync_remote(repo, cfg)
            yield repo
        finally:
            repo.close()


@contextmanager
def quiet_dvc() -> Iterator[None]:
    """DVC logs to the console from its own handlers (set up when it is imported); mloop reports what
    happened itself, so DVC's loggers are silenced while mloop calls it and put back after."""
    import logging

    from dvc.logger import set_loggers_level

    with set_loggers_level(logging.CRITICAL + 1):
        yield


def _dvc_error(err: Exception, doing: str, cfg: ProjectConfig, remote: str = "") -> DataVersionError:
    """A DVC exception as one message with the next step."""
    text = " ".join(str(err).split()) or type(err).__name__  # DVC's messages span lines; one line here
    name = type(err).__name__
    if "YAML file structure is corrupted" in text or "unable to read:" in text:
        return _damaged(text)
    if "requires 'dvc-" in text:
        plugin = text.split("requires '", 1)[1].split("'", 1)[0]
        return DataVersionError(f"{doing}: the remote {remote} needs DVC's plugin {plugin}", hint=f"pip install {plugin}")
    if name == "NoRemoteError" or "no remote" in text.lower():
        return DataVersionError(f"{doing}: no DVC remote is configured", hint="set [data] remote in mloop.toml")
    if "credentials" in text.lower() or "access denied" in text.lower() or "403" in text:
        return DataVersionError(f"{doing}: the remote {remote} refused access: {text}",
                                hint="set the credentials in the environment (e.g. AWS_ACCESS_KEY_ID, "
                                     "AWS_SECRET_ACCESS_KEY for s3://)")
    if name == "NoOutputOrStageError":
        target = text.split("'", 2)[1] if text.count("'") >= 2 else text
        return DataVersionError(f"{doing}: {target} is not tracked by DVC", hint="mloop data status lists what is tracked")
    if name in ("UploadError", "DownloadError") and remote.startswith(BUCKETS) and not _container_exists(cfg, remote):
        bucket = remote.split("://", 1)[1].split("/", 1)[0]
        return DataVersionError(f"{doing}: the bucket {bucket!r} of the remote {remote} does not exist (or these "
                                "credentials cannot see it)", hint="create it, or fix [data] remote in mloop.toml")
    if name in ("CheckoutError", "DownloadError") or "missing" in text.lower():
        return DataVersionError(f"{doing}: {text}",
                                hint=f"push the data from the machine that added it (mloop data push); remote: {remote}")
    return DataVersionError(f"{doing}: {name}: {text}", hint=f"remote: {remote or 'none'}; dvc doctor tells more")


def _container_exists(cfg: ProjectConfig, url: str) -> bool:
    """Whether the bucket of a cloud remote exists (True when that cannot be told)."""
    try:
        import dvc.fs
        from dvc.config import Config

        cls, options, path = dvc.fs.get_cloud_fs(Config(dvc_dir=str(dvc_root(cfg.root) or cfg.root) + "/.dvc"), url=url)
        return bool(cls(**options).exists(path.split("/", 1)[0]))
    except Exception:  # noqa: BLE001 - no verdict: the original error stands
        return True


def _locked(cfg: ProjectConfig) -> Any:
    """DVC fails at once when another process holds its lock; mloop's commands wait their turn instead."""
    return file_lock(cfg.lock_path("dvc"))


def _targets(cfg: ProjectConfig, paths: Sequence[Path | str], root: Path) -> list[str]:
    out = []
    for path in paths:
        full = Path(path) if Path(path).is_absolute() else Path.cwd() / path
        full = full.resolve() if full.exists() else (cfg.root / path).resolve()
        try:
            full.relative_to(root.resolve())
        except ValueError:
            raise DataVersionError(f"{path} is outside the project's DVC repository {root}",
                                   hint="move it into the project folder first") from None
        out.append(str(full))
    return out


def add(cfg: ProjectConfig, paths: Sequence[Path | str]) -> list[Path]:
    """Track files or folders with DVC (a ``.dvc`` file each, staged in git); returns the ``.dvc`` files."""
    missing = [str(p) for p in paths if not (Path(p).exists() or (cfg.root / p).exists())]
    if missing:
        raise DataVersionError(f"no such file or folder: {', '.join(missing)}", hint="check the path")
    from mloop._fs import move_aside
    from mloop.data.versions import read_dvc_file

    with _locked(cfg), open_repo(cfg) as repo:
        targets = _targets(cfg, paths, Path(repo.root_dir))
        for target in targets:  # adding the data again is how a damaged .dvc file is repaired
            own = Path(f"{target.rstrip('/')}.dvc")
            if own.is_file() and not isinstance(read_dvc_file(own).get("md5"), str):
                kept = move_aside(own, cfg.store / "quarantine")
                kept.replace(kept.with_name(kept.name + ".damaged"))  # no longer a .dvc file DVC would read
        try:
            stages = repo.add(targets)
        except Exception as err:
            raise _add_error(err) from err
        return [Path(stage.path) for stage in stages]


def _add_error(err: Exception) -> DataVersionError:
    """DVC's refusals of ``dvc add`` as one line and the fix."""
    text = " ".join(str(err).split())
    if "already tracked by SCM" in text:
        path = text.split("output '", 1)[-1].split("'", 1)[0]
        return DataVersionError(f"{path} is committed to git: DVC versions data git does not hold",
                                hint=f"git rm -r --cached '{path}' && git commit -m 'move {path} to DVC', then "
                                     f"mloop data add {path}")
    if "overlapping with other DVC tracked output" in text:
        message, _, fix = text.partition(" To include ")
        return DataVersionError(message.removeprefix("Cannot add ").strip(),
                                hint=("to include it: " + fix.replace("'dvc add", "'mloop data add")) if fix else None)
    if "is git-ignored" in text:
        return DataVersionError(f"{text.removeprefix('bad DVC file name ')}: its .dvc file could not be committed",
                                hint="move the data out of the folder .gitignore ignores, or stop ignoring it")
    if "YAML file structure is corrupted" in text or "unable to read" in text:
        return _damaged(text)
    return DataVersionError(f"dvc add failed: {type(err).__name__}: {text}")


def _damaged(text: str) -> DataVersionError:
    """DVC could not read a .dvc file: name it and the two ways to repair it."""
    name = text.split("unable to read: '", 1)[-1].split("'", 1)[0] if "unable to read: '" in text else "FILE.dvc"
    return DataVersionError(f"the DVC file {name} is damaged (not a .dvc file DVC can read)",
                            hint=f"restore it from git (git checkout -- {name}), or track the data again "
                                 f"(mloop data add {name.removesuffix('.dvc')})")


def damaged_dvc_files(root: Path) -> list[str]:
    """The ``.dvc`` files below ``root`` that record no version (emptied, no outputs, no md5), DVC skips them."""
    from mloop.data.versions import read_dvc_file

    found = []
    for path in root.rglob("*.dvc"):
        inside = set(path.relative_to(root).parts[:-1])
        if path.is_file() and not inside & {".dvc", ".git", ".mloop"}:
            out = read_dvc_file(path)
            if not isinstance(out.get("md5"), str) or not out.get("md5"):
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


@dataclass
class DataStatus:
    """Where each tracked path stands (paths relative to the DVC repository)."""

    root: Path
    remote: str
    modified: list[str] = field(default_factory=list)  # changed since it was added: add it again
    not_committed: list[str] = field(default_factory=list)  # added, but its .dvc file is not committed
    not_in_cache: list[str] = field(default_factory=list)  # tracked, not here: pull
    not_in_remote: list[str] = field(default_factory=list)  # here, not pushed
    unchanged: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # .dvc files that record no version
    remote_checked: bool = False

    @property
    def clean(self) -> bool:
        return not (self.modified or self.not_committed or self.not_in_cache or self.not_in_remote or self.damaged)


def status(cfg: ProjectConfig, *, remote: bool = True) -> DataStatus:
    """Each tracked path's state; with ``remote``, which versions the remote does not have yet."""
    with open_repo(cfg) as repo:
        url = remote_url(repo)
        damaged = damaged_dvc_files(Path(repo.root_dir))
        try:
            found = repo.data_status(not_in_remote=remote and bool(url), remote_refresh=True, untracked_files="no")
        except Exception as err:
            text = " ".join(str(err).split())
            if "YAML file structure is corrupted" in text or "unable to read" in text:
                raise _damaged(text) from err
            raise _dvc_error(err, "dvc status failed", cfg, url) from err
    uncommitted, committed = found.get("uncommitted", {}), found.get("committed", {})
    not_in_cache = sorted(found.get("not_in_cache", []))
    missing = {p.rstrip("/") for p in not_in_cache}  # not pulled yet (a fresh clone): not "modified"
    return DataStatus(
        root=Path(repo.root_dir), remote=url,
        modified=sorted({p for p in (*uncommitted.get("modified", []), *uncommitted.get("deleted", []))
                         if p.rstrip("/") not in missing}),
        not_committed=sorted({p for kind in ("added", "modified", "renamed") for p in _paths(committed.get(kind, []))}),
        not_in_cache=not_in_cache, not_in_remote=sorted(found.get("not_in_remote", [])),
        unchanged=sorted(found.get("unchanged", [])), damaged=damaged, remote_checked=remote and bool(url))


def _paths(items: list[Any]) -> list[str]:
    return [item["new"] if isinstance(item, dict) else str(item) for item in items]


def push(cfg: ProjectConfig, targets: Sequence[str] = ()) -> int:
    """Send the tracked data the remote lacks; returns how many files were sent."""
    with _locked(cfg), open_repo(cfg) as repo:
        url = remote_url(repo)
        try:
            return int(repo.push(targets=_targets(cfg, targets, Path(repo.root_dir)) or None))
        except Exception as err:
            raise _dvc_error(err, f"dvc push to {url} failed", cfg, url) from err


@dataclass
class PullResult:
    fetched: int
    changed: list[str]


def pull(cfg: ProjectConfig, targets: Sequence[str] = ()) -> PullResult:
    """Fetch the tracked data from the remote and put it in the working copy."""
    with _locked(cfg), open_repo(cfg) as repo:
        url = remote_url(repo)
        try:
            stats = repo.pull(targets=_targets(cfg, targets, Path(repo.root_dir)) or None)
        except Exception as err:
            raise _dvc_error(err, f"dvc pull from {url} failed", cfg, url) from err
    changed = sorted({p for kind in ("added", "modified") for p in stats.get(kind, [])})
    return PullResult(fetched=int(stats.get("fetched", 0)), changed=changed)
