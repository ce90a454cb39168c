"""The project's data: its versions with the runs that read them (DVC history joined with the tracking store),
and production snapshots (a served model's predictions with their true labels, a new data version)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mloop.config import ProjectConfig
from mloop.errors import DataError, DataVersionError, MloopError

if TYPE_CHECKING:
    from mloop.data.versions import HistoryEntry
    from mloop.monitor.production import LabelledRows
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


@dataclass
class ProductionSnapshot:
    """A snapshot written and tracked: where, its DVC hash, and what went into it."""

    path: Path
    dvc_file: Path
    md5: str
    served: str  # the monitoring folder's name (a deployment's or server's --name)
    model: str  # the registered model that served the rows
    rows: LabelledRows
    window: str = ""  # "in the last 7d", or "" for the whole log

    @property
    def included_unlabelled(self) -> bool:
        return len(self.rows.frame) > self.rows.labelled


def snapshot_production(cfg: ProjectConfig, out: Path, *, model: str | None = None, since: str | None = None,
                        include_unlabelled: bool = False) -> ProductionSnapshot:
    """Join what a served model predicted with the true labels sent for it (``mloop.monitor.production``),
    write it to ``out`` (Parquet, reproducibly) and track it with DVC as a new data version.

    ``model`` is the served model's monitoring folder name (``.mloop/monitor/NAME``; default the project's
    model), ``since`` a duration (``7d``) that keeps the predictions served in that last while. The target
    column is named as the served version's bundle names it. DataError when nothing (labelled) was served,
    ``out`` is outside the project, or ``since`` is not a duration; DataVersionError when the project is
    not under DVC.
    """
    from mloop.data.repo import add, dvc_root
    from mloop.data.snapshot import write_table
    from mloop.monitor import queries
    from mloop.monitor.production import join_labels

    served = model or cfg.model_name
    path = _output_path(cfg, out)
    if dvc_root(cfg.root) is None:
        raise DataVersionError(f"{cfg.root} is not under DVC: a snapshot is tracked as a data version",
                               hint="run: mloop data init   (git and DVC, with a default remote)")
    start, window = _window(since)
    folder = cfg.monitor_dir(served)
    log = queries.served_log(folder, served, since=start, window=window)
    status = queries.status(folder)
    registered = status.model if status is not None else served
    try:
        features, target = _model_columns(cfg, served, registered, log.versions)
    except DataError:
        if status is not None or served == cfg.model_name:
            raise
        # a server stopped before its first status update: the project's own model is the likely one
        registered = cfg.model_name
        features, target = _model_columns(cfg, served, registered, log.versions)
    rows = join_labels(log.predictions, log.feedback, features=features, target=target,
                       include_unlabelled=include_unlabelled)
    if not include_unlabelled and not rows.labelled:
        raise DataError(f"none of the {rows.predicted:,} predictions of {served!r} served {window or 'so far'} has a "
                        f"true label yet: the snapshot would be empty",
                        hint="send the labels to the server (POST /feedback with each prediction's x-request-id), "
                             f"or pass --include-unlabelled to keep the {rows.unlabelled:,} predictions without one")
    md5 = write_table(rows.frame, path)
    dvc_files = add(cfg, [path])
    return ProductionSnapshot(path=path, dvc_file=dvc_files[0] if dvc_files else path.with_name(path.name + ".dvc"),
                              md5=md5, served=served, model=registered, rows=rows, window=window)


def _output_path(cfg: ProjectConfig, out: Path) -> Path:
    """``out`` as an absolute path inside the project (relative: to the current folder when that is in the
    project, else to the project root); DataError when it is outside or not a Parquet file."""
    root = cfg.root.resolve()
    here = Path.cwd().resolve()
    base = here if here == root or root in here.parents else root
    path = (out if out.is_absolute() else base / out).resolve()
    if path != root and root not in path.parents:
        raise DataError(f"--out {out} is outside the project {root}: DVC versions only the project's files",
                        hint="write it inside the project, e.g. --out data/production.parquet")
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise DataError(f"--out {out}: a snapshot is written as Parquet, name it .parquet",
                        hint="e.g. --out data/production.parquet")
    if path.is_dir():
        raise DataError(f"--out {out} is a folder", hint="name a file, e.g. --out data/production.parquet")
    return path


def _window(since: str | None) -> tuple[float | None, str]:
    if since is None:
        return None, ""
    from mloop.config import duration_s

    try:
        seconds = duration_s(since)
    except ValueError as err:
        raise DataError(f"--since {since!r}: {err}", hint="e.g. --since 12h, 7d or 30d") from err
    start = time.time() - seconds
    return (start if start > 0 else None), f"in the last {since}"  # longer than the clock goes back: all of it


def _model_columns(cfg: ProjectConfig, served: str, registered: str, versions: list[str]) -> tuple[list[str], str]:
    """The feature columns (the newest version's order, then any an older version had besides) and the
    target's name (the newest version's) of the registered versions that served the rows."""
    from mloop.monitor.production import version_order
    from mloop.registry.fetch import fetch_bundle

    features: list[str] = []
    target = ""
    for version in sorted(versions, key=version_order, reverse=True):
        try:
            info = fetch_bundle(cfg, f"models:/{registered}/{version}").info
        except MloopError as err:
            raise DataError(f"the prediction log of {served!r} names {registered} v{version}, whose bundle (its "
                            f"features and target) cannot be read: {err.message}",
                            hint="snapshot a model served from this project's registry (mloop serve NAME, mloop "
                                 "deploy NAME); its monitoring status names the registered model") from err
        target = target or info.target
        features += [name for name in info.features if name not in features]
    return features, target
