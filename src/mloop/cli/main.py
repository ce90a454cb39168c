"""The ``mloop`` command. Each command imports what it needs when it runs, so ``--help`` stays fast.

Exit codes: 0 success; 1 an unexpected internal error (a bug: please report it with --verbose
output); 2 a problem with the input (config, data, parameters, a failing step); 3 drift above
``mloop monitor report --fail-on-drift``; 4 the latest candidate did not pass the promotion gate
(``mloop models gate``); 5 ``mloop reproduce`` got other metrics than the run; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

app = typer.Typer(
    name="mloop",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
monitor_app = typer.Typer(help="Served models: drift, outliers, live scores, alerts.", no_args_is_help=True)
runs_app = typer.Typer(help="List recent runs, or show one with 'mloop runs show RUN'.", invoke_without_command=True)
app.add_typer(runs_app, name="runs")
app.add_typer(monitor_app, name="monitor")

ProjectOpt = Annotated[Optional[Path], typer.Option("--project", "-C", help="Project folder (default: nearest mloop.toml).")]


def _version(value: bool) -> None:
    if value:
        from mloop._version import __version__

        print(f"mloop {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the traceback of an error (or MLOOP_VERBOSE=1).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print mloop's version and stop.")] = False,
) -> None:
    """mloop: pipelines, tracking and a model registry, serving and monitoring, from a laptop to production.

    Write plain Python steps; mloop runs them cached and in parallel, tracks every run in MLflow, registers
    the best model behind a promotion gate, serves it (Open Inference / KServe V2 and plain JSON) and
    watches it in production: drift, outliers, live accuracy and alerts.
    """
    if verbose:
        _VERBOSE[0] = True


_VERBOSE = [False]  # set by the --verbose callback for main()'s error report; one CLI run per process


@runs_app.command("compare")
def runs_compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two runs or more (ids or unique prefixes).")],
    all_rows: Annotated[bool, typer.Option("--all", help="Also the parameters and metrics that are the same.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Parameters and metrics of runs side by side, what differs first."""
    from mloop.cli import runs_cmd

    runs_cmd.compare_runs(run_ids, project=project, all_rows=all_rows)


@app.command(short_help="Run the pipeline: cached, independent steps in parallel.")
def run(
    param: Annotated[list[str], typer.Option("--param", "-p", help="Override a step parameter: STEP.PARAM=VALUE (repeatable).")] = [],  # noqa: B006
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every step even if its result is cached.")] = False,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not record the run in MLflow (nor register).")] = False,
    list_steps: Annotated[bool, typer.Option("--list", help="List the steps and their parameters, then stop.")] = False,
    show_output: Annotated[bool, typer.Option("--show-output", help="Show all each step printed, cached steps too "
                                                                    "(default: the last lines of the steps that ran).")] = False,
    project: ProjectOpt = None,
) -> None:
    """Run the project's pipeline: cached steps are reused, independent steps run in parallel."""
    from mloop.cli import run_cmd

    run_cmd.run(param, no_cache=no_cache, track=not no_track, list_steps=list_steps, project=project,
                show_output=show_output)


@runs_app.callback()
def runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs to list.")] = 20,
    project: ProjectOpt = None,
) -> None:
    """List recent pipeline runs with their key metrics."""
    if ctx.invoked_subcommand is None:
        from mloop.cli import runs_cmd

        runs_cmd.list_runs(limit=limit, project=project)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    project: ProjectOpt = None,
) -> None:
    """Show one run: its steps, parameters, metrics, data digest and lineage."""
    from mloop.cli import runs_cmd

    runs_cmd.show_run(run_id, project=project)


models_app = typer.Typer(help="Registered models: list them, or show one with 'mloop models show NAME[/VERSION]'.",
                         short_help="Registered models, or one with 'mloop models show NAME'.",
                         invoke_without_command=True)
app.add_typer(models_app, name="models")


@models_app.callback()
def models(ctx: typer.Context, project: ProjectOpt = None) -> None:
    """List registered models with their versions and aliases."""
    if ctx.invoked_subcommand is None:
        from mloop.cli import models_cmd

        models_cmd.list_models(project=project)


@models_app.command("show")
def models_show(
    model: Annotated[str, typer.Argument(help="NAME (its champion), NAME/VERSION, or models:/NAME@ALIAS.")],
    project: ProjectOpt = None,
) -> None:
    """One version: its input (types, ranges, categories), metrics, the gate's decision and lineage."""
    from mloop.cli import models_cmd

    models_cmd.show_model(model, project=project)


@models_app.command("gate")
def models_gate(project: ProjectOpt = None) -> None:
    """Whether the latest run's candidate passed the promotion gate: exit 0 if it is the champion, 4 if not
    (the gate's decision printed either way), 2 if the latest run registered nothing. For CI."""
    from mloop.cli import models_cmd

    models_cmd.gate(project=project)


@models_app.command("promote", short_help="Make a version the champion (over its gate with --force --reason).")
def models_promote(
    version: Annotated[str, typer.Argument(help="The version (3 or v3).")],
    force: Annotated[bool, typer.Option("--force", help="Promote a version that did not pass its gate (recorded).")] = False,
    reason: Annotated[str, typer.Option(help="Why (required with --force; kept in the audit log and on the version).")] = "",
    project: ProjectOpt = None,
) -> None:
    """Make a version the champion: a running deployment of the model serves it first, then the alias moves.
    A version whose gate did not pass needs --force and --reason, recorded as an override. Exit 4 when refused."""
    from mloop.cli import agent_cmd

    agent_cmd.promote(version, force=force, reason=reason, project=project)


@models_app.command("report")
def models_report(
    model: Annotated[Optional[str], typer.Argument(help="The model (default: the project's; its latest run's "
                                                        "candidate), or NAME/VERSION.")] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Markdown, as a CI job posts on a pull request; it "
                                                              "starts with <!-- mloop-report: NAME -->.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write report.md (with --markdown) or "
                                                                     "report.txt and the run's plots into this folder.")] = None,
    project: ProjectOpt = None,
) -> None:
    """The latest candidate next to the champion the gate compared it with: the gate's decision and rule,
    the metrics side by side, the candidate's lineage and the plots its run logged."""
    from mloop.cli import models_cmd

    models_cmd.report(model, markdown=markdown, out=out, project=project)


ci_app = typer.Typer(help="CI/CD: generate the workflow that tests, trains, gates, reports, publishes and deploys.",
                     no_args_is_help=True)
app.add_typer(ci_app, name="ci", short_help="CI/CD: generate the workflow for GitHub Actions or GitLab CI.")


@ci_app.command("init")
def ci_init(
    provider: Annotated[str, typer.Option(help="github (.github/workflows/mloop.yml) or gitlab (.gitlab-ci.yml).")],
    force: Annotated[bool, typer.Option("--force", help="Replace the workflow file if it exists.")] = False,
    default_branch: Annotated[Optional[str], typer.Option(help="The branch that publishes and deploys (default: "
                                                               "origin's default branch, else main or master).")] = None,
    install: Annotated[Optional[str], typer.Option("--install", help="The pip requirement the jobs install mloop "
                                                                      "from, e.g. 'mloop @ git+https://...' "
                                                                      "[default: mloop==VERSION, or the project's "
                                                                      "requirements.txt]")] = None,
    project: ProjectOpt = None,
) -> None:
    """Write a CI/CD workflow at the git repository's root: test, train (cached), the promotion gate and data
    drift, a report comment on pull/merge requests; on the default branch, publish the serving image and
    deploy it with kubectl. Prints the secrets to set."""
    from mloop.cli import ci_cmd

    ci_cmd.init(provider, force=force, default_branch=default_branch, project=project, mloop_requirement=install or "")


@app.command(short_help="The mloop web app: predict from a form, models, runs, deployments, monitoring.")
def ui(
    host: Annotated[Optional[str], typer.Option(help="Address to bind; anything but loopback needs [ui] token. [default: [ui] host, 127.0.0.1]")] = None,
    port: Annotated[Optional[int], typer.Option(help="[default: [ui] port, 8501]", min=1, max=65535)] = None,
    project: ProjectOpt = None,
) -> None:
    """Start the mloop web app (Streamlit): predict from a form, models, runs, deployments, monitoring, the agent."""
    from mloop.cli import ui_cmd

    ui_cmd.ui(host=host, port=port, project=project)


@app.command("mlflow-ui", short_help="The MLflow UI on this project's store (127.0.0.1).")
def mlflow_ui(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.", min=1, max=65535)] = 5000,
    project: ProjectOpt = None,
) -> None:
    """Start the MLflow UI on this project's store (127.0.0.1); the mloop app links into it."""
    from mloop.cli import ui_cmd

    ui_cmd.mlflow_ui(port=port, project=project)


@app.command(short_help="Serve a model: KServe V2, plain JSON, Prometheus metrics.")
def serve(
    model: Annotated[Optional[str], typer.Argument(help="NAME (its champion), NAME/VERSION, NAME@ALIAS, a models:/ URI "
                                                        "or a model folder (default: the project's champion).")] = None,
    host: Annotated[Optional[str], typer.Option(help="Address to bind; anything but loopback needs a token. [default: [serving] host, 127.0.0.1]")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="[default: [serving] port, 8080]")] = None,
    token: Annotated[Optional[str], typer.Option(help="Bearer token clients must send. [default: [serving] token, MLOOP_SERVING_TOKEN]")] = None,
    max_batch_rows: Annotated[Optional[int], typer.Option(min=1, help="Most rows in one predict call. [default: 1024]")] = None,
    max_wait_ms: Annotated[Optional[float], typer.Option(min=0, help="Extra wait to gather a batch (0: none). [default: 0]")] = None,
    max_body_mb: Annotated[Optional[float], typer.Option(min=0.001, help="Largest request body; bigger gets 413. [default: 10]")] = None,
    access_log: Annotated[Optional[bool], typer.Option("--access-log/--no-access-log", help="One JSON line per request on stderr. [default: on]")] = None,
    monitor_interval: Annotated[Optional[float], typer.Option(min=0, help="Seconds between monitoring updates (0: off; default: [monitor] interval).")] = None,
    name: Annotated[Optional[str], typer.Option(help="This server's monitoring folder, .mloop/monitor/NAME; two servers of one model need two names. [default: the model's name]")] = None,
    project: ProjectOpt = None,
) -> None:
    """Serve a model over HTTP: Open Inference (KServe V2) protocol, plain JSON and Prometheus metrics.

    Options not given come from [serving] in mloop.toml (MLOOP_SERVING_* variables).
    """
    from mloop.cli import serve_cmd

    serve_cmd.serve(model, project=project, monitor_interval=monitor_interval, name=name, host=host, port=port, token=token,
                    max_batch_rows=max_batch_rows, max_wait_ms=max_wait_ms, max_body_mb=max_body_mb,
                    access_log=access_log)


@app.command(short_help="Deploy a model: a managed local server, or Kubernetes.")
def deploy(
    model: Annotated[Optional[str], typer.Argument(help="NAME (its champion), NAME/VERSION, NAME@ALIAS or a models:/ URI "
                                                        "(default: the project's champion).")] = None,
    target: Annotated[str, typer.Option(help="local: a managed server process; kubernetes: image + manifests.")] = "local",
    name: Annotated[Optional[str], typer.Option(help="Deployment name (default: the model name).")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="Port on 127.0.0.1 (default: a free one).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="kubernetes: folder for the artifacts.")] = None,
    image: Annotated[str, typer.Option(help="kubernetes: image name (default: NAME:vVERSION).")] = "",
    replicas: Annotated[int, typer.Option(min=1, help="kubernetes: replicas.")] = 1,
    apply: Annotated[bool, typer.Option("--apply", help="kubernetes: run kubectl apply afterwards.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Deploy a model: a managed local server (hot swap on redeploy) or Kubernetes artifacts."""
    from mloop.cli import deploy_cmd
    from mloop.deploy import DeployOptions

    deploy_cmd.deploy(model, target=target, project=project,
                      options=DeployOptions(name=name, port=port, out=out, image=image, replicas=replicas, apply=apply))


@app.command()
def deployments(project: ProjectOpt = None) -> None:
    """List deployments with their health and served version."""
    from mloop.cli import deploy_cmd

    deploy_cmd.deployments(project=project)


BY_MODEL_NAME = " (default: the project's model name, as mloop deploy names it)."


@app.command()
def undeploy(
    name: Annotated[Optional[str], typer.Argument(help=f"The deployment to stop{BY_MODEL_NAME}")] = None,
    project: ProjectOpt = None,
) -> None:
    """Stop a deployment after it answered its in-flight requests."""
    from mloop.cli import deploy_cmd

    deploy_cmd.undeploy(name, project=project)


@app.command(short_help="Swap a deployment back to the version it served before.")
def rollback(
    name: Annotated[Optional[str], typer.Argument(help=f"The deployment to roll back{BY_MODEL_NAME}")] = None,
    project: ProjectOpt = None,
) -> None:
    """Swap a deployment back to the version it served before, with no downtime."""
    from mloop.cli import deploy_cmd

    deploy_cmd.rollback(name, project=project)


rollout_app = typer.Typer(help="A roll-out in progress on a local deployment (started by the agent or "
                               "deploy.local.start_rollout): promote its candidate, or abort it.",
                          short_help="Promote or abort a deployment's roll-out.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")


@rollout_app.command("promote", short_help="Make the roll-out's candidate the deployment's only served version.")
def rollout_promote(
    name: Annotated[Optional[str], typer.Argument(help=f"The deployment whose roll-out to promote{BY_MODEL_NAME}")] = None,
    project: ProjectOpt = None,
) -> None:
    """Make the candidate of a deployment's roll-out its only served version, with no request dropped (mloop
    rollback then goes back). Refused on the agent's own deployment: its watch decides there."""
    from mloop.cli import deploy_cmd

    deploy_cmd.promote_rollout(name, project=project)


@rollout_app.command("abort", short_help="Drop the roll-out's candidate: the served version answers everything.")
def rollout_abort(
    name: Annotated[Optional[str], typer.Argument(help=f"The deployment whose roll-out to abort{BY_MODEL_NAME}")] = None,
    project: ProjectOpt = None,
) -> None:
    """Drop the candidate of a deployment's roll-out: the version it served answers every request again.
    Refused on the agent's own deployment (mloop agent stop gives the champion all the traffic back)."""
    from mloop.cli import deploy_cmd

    deploy_cmd.abort_rollout(name, project=project)


@monitor_app.command("report")
def monitor_report(
    model: Annotated[Optional[str], typer.Argument(help="A model name (its champion), or models:/NAME@ALIAS or /VERSION "
                                                        "(default: the project's champion).")] = None,
    source: Annotated[Optional[Path], typer.Option("--from", help="A CSV or Parquet file to compare with the training data.")] = None,
    since: Annotated[Optional[str], typer.Option(help="Compare the served predictions of this last while (e.g. 1h) instead.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write a self-contained HTML report here.")] = None,
    alpha: Annotated[Optional[float], typer.Option(min=0, max=1, help="Significance level of the tests. [default: [monitor] alpha, 0.05]")] = None,
    min_samples: Annotated[Optional[int], typer.Option(min=1, help="Fewer values than this: no verdict. [default: [monitor] min_samples, 100]")] = None,
    fail_on_drift: Annotated[Optional[float], typer.Option(min=0, max=1, help="Exit 3 if the drifted share is above this.")] = None,
    project: ProjectOpt = None,
) -> None:
    """Drift of a data file (--from) or of the served predictions (--since 1h) against the training data.

    Judged as the live server judges it: [monitor] alpha, thresholds and min_samples from mloop.toml.
    """
    from mloop.cli import monitor_cmd

    monitor_cmd.report(source, since=since, model=model, out=out, project=project, alpha=alpha,
                       min_samples=min_samples, fail_on_drift=fail_on_drift)


@monitor_app.command("status")
def monitor_status(
    model: Annotated[Optional[str], typer.Argument(help="The served model or deployment name: its monitoring folder .mloop/monitor/NAME (default: the project's model).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """The current drift, outlier, accuracy and alert picture of a served model."""
    from mloop.cli import monitor_cmd

    monitor_cmd.status(model, as_json=as_json, project=project)


@monitor_app.command("alerts")
def monitor_alerts(
    model: Annotated[Optional[str], typer.Argument(help="The served model or deployment name: its monitoring folder .mloop/monitor/NAME (default: the project's model).")] = None,
    since: Annotated[Optional[str], typer.Option(help="Events of this last while only (e.g. 1h, 2d).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many recent events.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the events as JSON lines.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Alerts firing now and recent firing/resolved events (mloop's rules and Alertmanager's)."""
    from mloop.cli import monitor_cmd

    monitor_cmd.alerts(model, since=since, limit=limit, as_json=as_json, project=project)


@monitor_app.command("export")
def monitor_export(
    out: Annotated[Path, typer.Option(help="Folder to write the configs to.")],
    target: Annotated[Optional[str], typer.Option(help="host:port Prometheus scrapes (default: the model's running "
                                                       "deployment, else [serving] host and port).")] = None,
    alertmanager: Annotated[str, typer.Option(help="host:port of Alertmanager.")] = "127.0.0.1:9093",
    receiver: Annotated[Optional[str], typer.Option(help="URL of mloop's alert receiver (default: on the target).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model name (default: the project's model).")] = None,
    interval: Annotated[str, typer.Option(help="Prometheus scrape and rule evaluation interval.")] = "15s",
    group_wait: Annotated[str, typer.Option(help="Alertmanager group_wait and group_interval.")] = "30s",
    project: ProjectOpt = None,
) -> None:
    """Prometheus scrape config and alert rules, Alertmanager config and a Grafana dashboard for these rules."""
    from mloop.cli import monitor_cmd

    monitor_cmd.export(out, target=target, alertmanager=alertmanager, receiver=receiver, model=model, project=project,
                       interval=interval, group_wait=group_wait)


@app.command(short_help="Create a project that runs straight away, under git and DVC.")
def init(
    name: Annotated[str, typer.Argument(help="Name of the new project (also its folder).")],
    directory: Annotated[Optional[Path], typer.Option("--dir", help="Parent folder (default: here).")] = None,
    task: Annotated[str, typer.Option(help="binary, multiclass or regression: the pipeline, sample data, metric and "
                                           "alerts fit it.")] = "binary",
    no_data: Annotated[bool, typer.Option("--no-data-versioning", help="Do not set up git and DVC.")] = False,
) -> None:
    """Create a new project that 'mloop run' runs straight away: a git repository (unless inside one) with
    its data versioned by DVC."""
    from mloop.cli import init_cmd

    init_cmd.init(name, parent=directory or Path.cwd(), task=task, version_data=not no_data)


data_app = typer.Typer(help="The project's data, versioned with DVC: add, status, push, pull, versions, and "
                            "snapshots of production data.",
                       short_help="The project's data, versioned with DVC; production snapshots.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("init")
def data_init(project: ProjectOpt = None) -> None:
    """Version the project's data: git (unless in a repository) and DVC, with a remote ([data] remote, or a
    folder on this machine shared by every clone)."""
    from mloop.cli import data_cmd

    data_cmd.init(project=project)


@data_app.command("add")
def data_add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to track.")],
    project: ProjectOpt = None,
) -> None:
    """Track files or folders with DVC: a .dvc file each (staged in git) records the version."""
    from mloop.cli import data_cmd

    data_cmd.add(paths, project=project)


@data_app.command("status")
def data_status(
    no_remote: Annotated[bool, typer.Option("--no-remote", help="Do not ask the remote what it lacks.")] = False,
    project: ProjectOpt = None,
) -> None:
    """What changed since it was added, what is not committed, not pulled, not pushed."""
    from mloop.cli import data_cmd

    data_cmd.status(remote=not no_remote, project=project)


@data_app.command("push")
def data_push(
    targets: Annotated[Optional[list[str]], typer.Argument(help="Tracked paths (default: all).")] = None,
    project: ProjectOpt = None,
) -> None:
    """Send the versions the remote lacks."""
    from mloop.cli import data_cmd

    data_cmd.push(targets or [], project=project)


@data_app.command("pull")
def data_pull(
    targets: Annotated[Optional[list[str]], typer.Argument(help="Tracked paths (default: all).")] = None,
    project: ProjectOpt = None,
) -> None:
    """Fetch the tracked versions from the remote into the working copy."""
    from mloop.cli import data_cmd

    data_cmd.pull(targets or [], project=project)


@data_app.command("versions")
def data_versions(
    path: Annotated[Path, typer.Argument(help="A tracked file or folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Each version of a tracked file or folder: date, commit, size and the runs that trained on it."""
    from mloop.cli import data_cmd

    data_cmd.versions(path, as_json=as_json, project=project)


@data_app.command("snapshot", short_help="Served predictions with their true labels, as a new data version.")
def data_snapshot(
    model: Annotated[Optional[str], typer.Argument(help="The served model or deployment name: its monitoring folder .mloop/monitor/NAME (default: the project's model).")] = None,
    out: Annotated[Path, typer.Option(help="The Parquet file to write, inside the project (relative: to the current "
                                           "folder, or to the project root when run from outside it).")] = Path("data/production.parquet"),
    since: Annotated[Optional[str], typer.Option(help="Only the predictions served in this last while (e.g. 12h, 7d). [default: the whole log]")] = None,
    labelled_only: Annotated[bool, typer.Option("--labelled-only/--include-unlabelled",
                                                help="Keep only the predictions with a true label (the default), or "
                                                     "also those without one (their label empty).")] = True,
    project: ProjectOpt = None,
) -> None:
    """Production data back into training: the served model's predictions joined with the true labels sent as
    feedback, one row per predicted row (the model's features as requests carried them, the label under the
    target's name, served_version, request_id, served_at), written reproducibly and tracked with DVC as a new
    data version. A request and a label count once, however often they were logged or sent."""
    from mloop.cli import data_cmd

    data_cmd.snapshot(model, out=out, since=since, include_unlabelled=not labelled_only, project=project)


agent_app = typer.Typer(help="The continuous-training agent: it retrains on alerts, new data, new versions and a "
                             "schedule, gates with statistics, rolls out by canary or shadow, watches and rolls back.",
                        short_help="Continuous training: retrain, gate, roll out, watch, roll back.",
                        no_args_is_help=True)
app.add_typer(agent_app, name="agent")
PortOpt = Annotated[Optional[int], typer.Option(min=1, max=65535, help="Port on 127.0.0.1 for alerts and triggers "
                                                                       "(default: [automation] port).")]


@agent_app.command("run", short_help="Run the agent in the foreground.")
def agent_run(port: PortOpt = None,
              once: Annotated[bool, typer.Option("--once", help="Handle the triggers waiting now, then exit.")] = False,
              project: ProjectOpt = None) -> None:
    """Run the agent in the foreground (Ctrl-C stops it after the step under way)."""
    from mloop.cli import agent_cmd

    agent_cmd.run(port=port, once=once, project=project)


@agent_app.command("start", short_help="Start the agent as a background service.")
def agent_start(port: PortOpt = None, project: ProjectOpt = None) -> None:
    """Start the agent as a background service (its log: .mloop/automation/agent.log)."""
    from mloop.cli import agent_cmd

    agent_cmd.start(port=port, project=project)


@agent_app.command("stop", short_help="Stop the agent (the champion gets all traffic back).")
def agent_stop(project: ProjectOpt = None) -> None:
    """Stop the agent: a roll-out under way gives the champion all traffic back first."""
    from mloop.cli import agent_cmd

    agent_cmd.stop(project=project)


@agent_app.command("status")
def agent_status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
                 project: ProjectOpt = None) -> None:
    """Whether the agent runs, its cycle under way, what waits and why."""
    from mloop.cli import agent_cmd

    agent_cmd.status(as_json=as_json, project=project)


@agent_app.command("trigger")
def agent_trigger(reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "by hand",
                  project: ProjectOpt = None) -> None:
    """Start a cycle by hand (queued when the agent is not running)."""
    from mloop.cli import agent_cmd

    agent_cmd.trigger(reason, project=project)


@agent_app.command("history", short_help="The agent's cycles and their audit records.")
def agent_history(
    cycle: Annotated[Optional[str], typer.Argument(help="A cycle id (or its first characters): its audit records.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest cycles shown.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """The agent's cycles: triggers, run, gate, roll-out, watch, outcome."""
    from mloop.cli import agent_cmd

    agent_cmd.history(cycle, limit=limit, as_json=as_json, project=project)


@app.command("history", short_help="Which version served at a moment, and why it was promoted.")
def history_at(
    at: Annotated[str, typer.Option("--at", help="ISO time (this machine's zone unless given), 'now', or a while ago "
                                                 "(90m, 2h ago, 3d).")] = "now",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Which version was the champion and which served each deployment at that moment, and why it was promoted
    (the gate's report, the watch, or a person's override)."""
    from mloop.cli import agent_cmd

    agent_cmd.at(at, as_json=as_json, project=project)


@app.command(short_help="Run a past run again from its commit and data; compare.")
def reproduce(
    run: Annotated[str, typer.Argument(help="The run id (or its first characters), as 'mloop runs' lists it.")],
    tolerance: Annotated[float, typer.Option(min=0, help="Relative difference still counted as equal.")] = 0.0,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the temporary worktree (its path is printed).")] = False,
    project: ProjectOpt = None,
) -> None:
    """Check out the run's code commit and data version into a temporary worktree, run the pipeline there
    (untracked, uncached, the recorded parameters) and compare each step's metrics with the recorded ones.
    Exit 0 when they are equal, 5 when they differ (the differences and what may explain them listed)."""
    from mloop.cli import reproduce_cmd

    reproduce_cmd.reproduce(run, tolerance=tolerance, keep=keep, project=project)


@app.command(short_help="Check the project's stores and processes; repair what is safe.")
def doctor(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only check: change nothing.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Check the project: stored objects against their digests, cache entries, the MLflow database, runs
    left RUNNING by a killed process, versions without a gate decision, deployments whose server is gone,
    servers and workers nothing owns, monitoring logs, temporary files, permissions, the agent's journal, audit
    chain and leftovers. Repairs what it safely can (damaged files are moved to a quarantine folder, never
    deleted); exits 2 if problems remain."""
    from mloop.cli import doctor_cmd

    doctor_cmd.doctor(project=project, repair=not dry_run)


def _verbose() -> bool:
    return _VERBOSE[0] or os.environ.get("MLOOP_VERBOSE", "") not in ("", "0")


def _quiet_libraries() -> None:
    """MLflow logs each database migration at INFO, a failing statement at ERROR with its traceback (which
    mloop reports itself, as one line and a fix), and its dependencies warn about their own internals:
    none of it is the user's to act on (the CLI's entrypoint is where this may be decided)."""
    import warnings

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per download, on stderr, in CI logs
    for module in ("mlflow", "sqlalchemy", "alembic", "pydantic"):
        warnings.filterwarnings("ignore", module=module)


_TERMINATED = [False]  # set when SIGTERM arrived (see _terminate_like_ctrl_c); one CLI run per process


def _terminate_like_ctrl_c() -> Any:
    """SIGTERM (what ``timeout``, CI cancellation and ``docker stop`` send) is handled as Ctrl-C: a
    running pipeline stops its workers and records the run as failed instead of vanishing. Commands
    that serve (uvicorn) or wait on a child (``mloop ui``) install their own handlers over this one.
    Returns the handler it replaced (None off the main thread), for ``main`` to put back when the command
    is done: a SIGTERM while the process exits then ends it plainly, never as an exception in a finalizer."""
    import signal
    import threading

    def terminate(signum: int, frame: object) -> None:
        _TERMINATED[0] = True
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, terminate)


def _interrupted() -> int:
    print("terminated" if _TERMINATED[0] else "interrupted", file=sys.stderr)
    return 143 if _TERMINATED[0] else 130


def _verbose_first(args: list[str]) -> list[str]:
    """--verbose (-v) is the app's own option and may come anywhere on the line: move it to the front, where
    the app parses it (a command's own --help must stay the command's)."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in ("--verbose", "-v")]
    return flags + [a for a in args[:end] if a not in ("--verbose", "-v")] + args[end:]


def main(argv: list[str] | None = None) -> int:
    """Run the app and return its exit code, turning errors into one line and a hint."""
    args = _verbose_first(sys.argv[1:] if argv is None else argv)
    _VERBOSE[0] = False
    _quiet_libraries()
    _TERMINATED[0] = False
    previous = _terminate_like_ctrl_c()
    unraisable = sys.unraisablehook
    sys.unraisablehook = _quiet_interrupts(unraisable)
    import warnings

    show = warnings.showwarning
    warnings.showwarning = _own_warnings_as_one_line(show)
    try:
        return _run(args)
    finally:
        sys.unraisablehook = unraisable
        warnings.showwarning = show
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


def _own_warnings_as_one_line(show: Any) -> Any:
    """mloop's own warnings (``MloopWarning``) printed as ``warning: ...`` on stderr, without Python's file and
    line; any other warning as Python prints it."""
    from mloop.errors import MloopWarning

    def one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
        if issubclass(category, MloopWarning):
            print(f"warning: {message}", file=sys.stderr if file is None else file)
            return
        show(message, category, filename, lineno, file, line)

    return one_line


def _quiet_interrupts(hook: Any) -> Any:
    """The unraisable-exception hook, without the KeyboardInterrupt that SIGTERM or Ctrl-C raises when it lands
    in a finalizer or a weakref callback (Python would print it as "Exception ignored" with a traceback; the
    signal was recorded, and the command ends as the interrupt decides)."""
    def quiet(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            return
        hook(unraisable)

    return quiet


def _run(args: list[str]) -> int:
    try:
        app(args=args, prog_name="mloop")
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if code != 130:
            return code
        # Typer turns a KeyboardInterrupt raised in a command into a silent exit 130
        return _interrupted()
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as err:
        from mloop.cli.output import report_error

        return report_error(err, verbose=_verbose())
    return 0


def entry() -> None:
    """The ``mloop`` console script: ``main`` and then a quick exit.

    After the atexit handlers ran and the output was flushed, the interpreter's own teardown only
    frees memory, and with MLflow, SQLAlchemy and pandas loaded that takes about 0.8 s (measured in
    benchmarks/); ``os._exit`` skips it.
    """
    code = main()
    import atexit

    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is not None:
        run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
