"""``mloop run``: the pipeline with a live table of step states and timings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.table import Table

from mloop.cli.output import console, seconds, styled
from mloop.errors import ParameterError

_STYLE = {"pending": "dim", "running": "yellow", "cached": "cyan", "done": "green", "failed": "bold red", "skipped": "dim"}
_LABEL = {"cached": "cached", "done": "ran", "running": "running", "pending": "waiting", "failed": "FAILED",
          "skipped": "skipped"}


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["knn.n_neighbors=7"]`` → ``{"knn": {"n_neighbors": "7"}}`` (values are typed later)."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        step, dot, param = key.strip().partition(".")
        if not sep or not dot or not step or not param:
            raise ParameterError(f"-p {item!r} is not STEP.PARAM=VALUE", hint="for example: -p knn.n_neighbors=7")
        overrides.setdefault(step, {})[param] = value
    return overrides


def _table(records: dict[str, Any]) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("step")
    table.add_column("state")
    table.add_column("time", justify="right")
    table.add_column("")
    now = time.time()
    for name, record in records.items():
        if record.state == "running":
            took = seconds(now - record.started)
        elif record.state in ("done", "failed"):
            took = seconds(record.duration_s)
        else:
            took = ""
        note = record.error or (f"because {record.skipped_because!r} failed" if record.skipped_because else "")
        table.add_row(name, styled((_LABEL[record.state], _STYLE[record.state])), took, note[:100])
    return table


OUTPUT_LINES = 20  # of a step's printed output shown after the table (--show-output: all of it)


def _show_output(result: Any, *, everything: bool) -> None:
    """What the steps printed: of the steps that ran, the last lines (every step's, in full, with ``everything``)."""
    for name, record in result.steps.items():
        ref = record.files.get("step.log")
        if ref is None or not (everything or record.state == "done"):
            continue
        lines = result.store.file_path(ref).read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
        shown = lines if everything else lines[-OUTPUT_LINES:]
        more = "" if len(shown) == len(lines) else f" (last {len(shown)} of {len(lines)} lines; --show-output: all)"
        console.print(styled((f"--- printed by {name}{' (from the cache)' if record.cached else ''}{more}", "dim")))
        console.print("\n".join(shown), markup=False, highlight=False, soft_wrap=True)


def run(params: list[str], *, no_cache: bool, track: bool, list_steps: bool, project: Path | None,
        show_output: bool = False) -> None:
    from mloop.config import load_project
    from mloop.pipeline.runner import StepRecord, raise_for_failures
    from mloop.project import load_pipeline, merged_params, run_project

    cfg = load_project(project)
    overrides = parse_overrides(params)
    pipe = load_pipeline(cfg)
    if list_steps:
        graph = pipe.build(merged_params(cfg, overrides))
        for node in graph:
            inputs = ", ".join(f"{k}<-{v}" for k, v in node.inputs.items())
            values = ", ".join(f"{k}={v!r}" for k, v in node.params.items())
            console.print(styled(f"{node.name}  ", (node.where().strip(), "dim"),
                                 f"\n    inputs: {inputs or '-'}\n    params: {values or '-'}"))
        return

    started = time.time()
    records: dict[str, StepRecord] = {}
    graph = pipe.build(merged_params(cfg, overrides))
    records.update({node.name: StepRecord(node.name) for node in graph})
    # The table is rebuilt at every refresh, so a running step's time keeps counting between events.
    live = Live(console=console, get_renderable=lambda: _table(records), auto_refresh=True, refresh_per_second=4,
                transient=False)

    def listener(record: StepRecord) -> None:
        records[record.name] = record
        live.refresh()

    console.print(styled("running pipeline ", (pipe.name, "bold"), " of project ", (cfg.name, "bold"),
                         f" ({len(graph)} steps)"))
    with live:
        outcome = run_project(cfg, pipe=pipe, params=overrides, track=track, use_cache=not no_cache, listener=listener)
    if not console.is_terminal:
        console.print()  # a non-interactive Live leaves its last line open
    result = outcome.result
    _show_output(result, everything=show_output)
    ran, cached = result.count("done"), result.count("cached")
    summary = f"{ran} ran, {cached} from cache" if ran else f"all {cached} steps from cache"
    console.print(f"{'run ' + result.tracking_id if track else 'untracked run'}: {summary} in {seconds(time.time() - started)}")
    raise_for_failures(result)
    reg = outcome.registration
    if reg is not None:
        aliases = ", ".join(reg.aliases) or "no alias"
        if reg.reused:
            console.print(f"model {reg.model_name} v{reg.version} ({aliases}): unchanged, already registered",
                          soft_wrap=True)
        else:
            console.print(f"model {reg.model_name} v{reg.version} registered as {aliases}", soft_wrap=True)
            console.print(f"  promotion: {reg.decision.reason}", soft_wrap=True)
    if track:
        remote = cfg.tracking_uri.startswith(("http://", "https://"))
        ui = cfg.tracking_uri if remote else f"mloop mlflow-ui  (or: mlflow ui --backend-store-uri {cfg.tracking_uri}); the mloop app: mloop ui"
        console.print(f"details: mloop runs show {result.tracking_id[:8]}    MLflow UI: {ui}", soft_wrap=True)
