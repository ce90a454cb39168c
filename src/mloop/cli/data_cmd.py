"""``mloop data``: the project's data versioned with DVC (``mloop.data``), and production snapshots."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.table import Table

from mloop.cli.output import console, styled


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def init(*, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.data.repo import init_repository

    cfg = load_project(project)
    done = init_repository(cfg)
    made = [what for what, new in (("a git repository", done.git_created), ("DVC", done.dvc_created)) if new]
    console.print(f"{' and '.join(made) or 'DVC was already set up'} in {done.root}; remote {done.remote}",
                  soft_wrap=True)
    console.print("  next: mloop data add data/   then git commit", soft_wrap=True)


def add(paths: list[Path], *, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.data.repo import add as dvc_add

    cfg = load_project(project)
    written = dvc_add(cfg, paths)
    for dvc_file in written:
        console.print(f"tracking {dvc_file.with_suffix('').name} with DVC: {_relative(dvc_file)}", soft_wrap=True)
    console.print(f"  next: git commit -m 'data' {' '.join(_relative(p) for p in written)} && mloop data push",
                  soft_wrap=True)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def status(*, remote: bool, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.data.repo import status as dvc_status

    cfg = load_project(project)
    found = dvc_status(cfg, remote=remote)
    rows = [(path, "modified since it was added", "mloop data add " + path, "yellow") for path in found.modified]
    rows += [(path, "added, not committed", "git commit", "yellow") for path in found.not_committed]
    rows += [(path, "not in the cache", "mloop data pull", "red") for path in found.not_in_cache]
    rows += [(path, "not pushed", "mloop data push", "yellow") for path in found.not_in_remote]
    rows += [(path, "damaged .dvc file: no version recorded", "git checkout -- " + path, "bold red")
             for path in found.damaged]
    where = found.remote if found.remote_checked else f"{found.remote} (not checked: --no-remote)"
    if not rows:
        tracked = len(found.unchanged)
        console.print(f"data up to date: {tracked} tracked path{'s' if tracked != 1 else ''}, all pushed to {where}"
                      if found.remote_checked else f"data up to date: {tracked} tracked; remote {where}", soft_wrap=True)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("path", "state", "next"):
        table.add_column(column)
    for path, state, hint, style in rows:
        table.add_row(path, styled((state, style)), hint)
    console.print(table)
    console.print(f"remote: {where}", soft_wrap=True)


def push(targets: list[str], *, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.data.repo import push as dvc_push

    cfg = load_project(project)
    sent = dvc_push(cfg, targets)
    console.print(f"pushed {sent} file{'s' if sent != 1 else ''}" if sent else "the remote has every version already")


def pull(targets: list[str], *, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.data.repo import pull as dvc_pull

    cfg = load_project(project)
    done = dvc_pull(cfg, targets)
    if done.changed:
        fetched = f"fetched {done.fetched} file{'s' if done.fetched != 1 else ''}; " if done.fetched else ""
        console.print(f"{fetched}updated: {', '.join(done.changed)}", soft_wrap=True)
    else:
        console.print(f"fetched {done.fetched} file{'s' if done.fetched != 1 else ''}; the working copy was up to date")


def versions(path: Path, *, as_json: bool, project: Path | None) -> None:
    import json

    from mloop.config import load_project
    from mloop.project.datasets import data_history

    cfg = load_project(project)
    tracked, entries = data_history(cfg, path)
    if as_json:
        print(json.dumps([{**vars(e.entry), "runs": [r.id for r in e.runs]} for e in entries], indent=2))
        return
    if not entries:
        console.print(f"{tracked}: no version recorded yet")
        return
    table = Table(box=None, header_style="bold", pad_edge=False, title=f"versions of {tracked}", title_justify="left")
    for column in ("date", "commit", "md5", "size", "runs that trained on it"):
        table.add_column(column)
    for found in entries:
        e = found.entry
        when = dt.datetime.fromtimestamp(e.date).strftime("%Y-%m-%d %H:%M")
        size = _size(e.size) + (f" ({e.files} files)" if e.files else "")
        runs = ", ".join(f"{r.id[:8]}" + (f" (v{r.model_version})" if r.model_version else "") for r in found.runs[:5])
        if len(found.runs) > 5:
            runs += f" +{len(found.runs) - 5}"
        table.add_row(when, e.commit[:10] if e.commit else styled(("not committed", "yellow")),
                      e.md5.removesuffix(".dir")[:12], size, runs or "-")
    console.print(table)


def snapshot(model: str | None, *, out: Path, since: str | None, include_unlabelled: bool,
             project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.project.datasets import snapshot_production

    cfg = load_project(project)
    done = snapshot_production(cfg, out, model=model, since=since, include_unlabelled=include_unlabelled)
    rows = done.rows
    versions = ", ".join(f"v{v}" for v in rows.versions)
    kept = len(rows.frame)
    what = (f"{rows.labelled:,} labelled and {kept - rows.labelled:,} without a label (empty {rows.target})"
            if done.included_unlabelled else f"{kept:,} labelled")
    console.print(f"wrote {_relative(done.path)}: {kept:,} row{'s' if kept != 1 else ''} ({what}) served by "
                  f"{done.model} {versions}" + (f" {done.window}" if done.window else "")
                  + f"; label column {rows.target!r}", soft_wrap=True)
    if not done.included_unlabelled and rows.unlabelled:
        console.print(f"  left out: {rows.unlabelled:,} predictions without a label (--include-unlabelled keeps them)",
                      soft_wrap=True)
    repeats = [f"{n:,} {what}" for n, what in ((rows.repeated_predictions, "rows logged twice"),
                                               (rows.repeated_labels, "repeated labels (the first counts)"),
                                               (rows.unmatched_labels, "labels for predictions not read"))
               if n]
    if repeats:
        console.print(f"  counted once or left out: {', '.join(repeats)}", soft_wrap=True)
    console.print(f"tracking {done.path.name} with DVC: {_relative(done.dvc_file)} (md5 {done.md5})", soft_wrap=True)
    gitignore = done.path.parent / ".gitignore"
    staged = " ".join(_relative(p) for p in (done.dvc_file, gitignore) if p.exists())
    console.print(f"  next: git commit -m 'production data' {staged} && mloop data push", soft_wrap=True)
