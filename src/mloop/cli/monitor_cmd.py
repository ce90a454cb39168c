"""``mloop monitor report``: drift of a data file against a registered model's training reference."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from mloop.cli.output import console
from mloop.errors import DataError, MloopError

EXIT_DRIFT = 3  # --fail-on-drift was exceeded (distinct from 1, internal error, and 2, bad input)


class DriftFound(MloopError):
    exit_code = EXIT_DRIFT


def read_table(path: Path):  # type: ignore[no-untyped-def]
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path} does not exist", hint="pass a CSV or Parquet file with --from")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as err:  # pandas and pyarrow raise many types for unreadable files
        raise DataError(f"cannot read {path}: {str(err).splitlines()[0]}",
                        hint="CSV with a header row, or Parquet (.parquet)") from err


def report(source: Path, *, model: str | None, out: Path | None, project: Path | None, alpha: float,
           min_samples: int, fail_on_drift: float | None) -> None:
    from mloop.config import load_project
    from mloop.models.fetch import download_model, parse_model_uri, resolve_version
    from mloop.models.bundle import read_bundle
    from mloop.monitor.drift import DriftDetector
    from mloop.monitor.report import number, render

    cfg = load_project(project)
    uri = model or f"models:/{cfg.model_name}@champion"
    name, _, _ = parse_model_uri(uri)
    version = resolve_version(cfg, uri)
    _, profile, _ = read_bundle(download_model(cfg, f"models:/{name}/{version}"))
    frame = read_table(source)
    known = [c for c in frame.columns if c in profile.features_]
    if not known:
        raise DataError(f"{source} shares no column with {name} v{version}'s training data",
                        hint=f"its columns are: {', '.join(list(profile.features_)[:6])}, ...")
    drift = DriftDetector(alpha=alpha, min_samples=min_samples).fit(profile).score(frame[known])
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("feature", "verdict", "PSI", "KS D / chi2", "p-value", "values", "missing"):
        table.add_column(column)
    for fname, f in sorted(drift.features.items(), key=lambda kv: (not kv[1].drifted, kv[0])):
        verdict = "no verdict" if f.drifted is None else ("[bold red]drift[/]" if f.drifted else "stable")
        table.add_row(fname, verdict, number(f.psi), number(f.statistic), number(f.p_value), str(f.n), str(f.missing))
    console.print(table)
    share = drift.drifted_share
    if share is None:
        console.print(f"{len(frame)} rows: not enough data for a verdict (min {min_samples} per feature)")
    else:
        console.print(f"{name} v{version}: {sum(bool(f.drifted) for f in drift.evaluated)} of {len(drift.evaluated)} "
                      f"features drifted ({share:.0%}) in {len(frame)} rows of {source.name}")
    ignored = [c for c in frame.columns if c not in profile.features_]
    if ignored:
        console.print(f"not in the training data, not compared: {', '.join(map(str, ignored[:8]))}", soft_wrap=True)
    if out is not None:
        from mloop.pipeline.artifacts import atomic_write_text

        atomic_write_text(out, render(f"Drift of {source.name} against {name} v{version}", profile, frame, drift))
        console.print(f"report: {out}")
    if fail_on_drift is not None and share is not None and share > fail_on_drift:
        raise DriftFound(f"{share:.0%} of features drifted, above --fail-on-drift {fail_on_drift:.0%}",
                         hint="retrain on recent data, or inspect the report")
