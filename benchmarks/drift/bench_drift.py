"""Drift on 30 numeric features: mloop's DriftDetector vs Evidently's DataDriftPreset, same data, same test.

Both run the two-sample Kolmogorov-Smirnov test (alpha 0.05) of each feature of a current window
(10k, 100k, 1M rows) against the same 5,000-row reference. mloop compares with the reference profile
it stores at training time (fitted once, outside the timing, as in serving; its sample holds all 5,000
rows, so the test is the same one); Evidently gets the reference frame. Evidently runs in its own venv
(it needs pandas < 3): this script calls itself there with ``--evidently``.

    .venv/bin/python benchmarks/drift/bench_drift.py [--sizes 10000,100000,1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "benchmarks" / ".work" / "drift"
EVIDENTLY_PY = ROOT / ".venv-evidently" / "bin" / "python"
N_FEATURES, N_REFERENCE, ALPHA = 30, 5000, 0.05


def make_data(n_rows: int, seed: int = 0) -> tuple[object, object]:
    """A reference and a current frame: 10 of the 30 features shifted, by 0.01 to 0.5 standard deviations."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns = [f"f{i:02d}" for i in range(N_FEATURES)]
    scales = rng.uniform(0.5, 20, N_FEATURES)
    reference = pd.DataFrame(rng.normal(size=(N_REFERENCE, N_FEATURES)) * scales, columns=columns)
    current = rng.normal(size=(n_rows, N_FEATURES))
    shifts = np.zeros(N_FEATURES)
    shifts[:10] = np.geomspace(0.01, 0.5, 10)
    current = pd.DataFrame((current + shifts) * scales, columns=columns)
    return reference, current


def run_evidently(reference_path: str, current_path: str, repeats: int) -> dict[str, object]:
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference, current = pd.read_parquet(reference_path), pd.read_parquet(current_path)
    times, snapshot = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        snapshot = Report([DataDriftPreset(method="ks", threshold=ALPHA)]).run(current_data=current,
                                                                               reference_data=reference)
        times.append(time.perf_counter() - started)
    p_values = {}
    for metric in snapshot.dict()["metrics"]:  # type: ignore[union-attr]
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            p_values[config["column"]] = float(metric["value"])
    return {"times": times, "p_values": p_values}


def run_mloop(reference: object, current: object, repeats: int) -> dict[str, object]:
    from mloop.monitor.drift import DriftDetector
    from mloop.bundle.profile import ReferenceProfile

    profile = ReferenceProfile(max_sample=N_REFERENCE).fit(reference)  # at training time, once
    times, report = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        report = DriftDetector(alpha=ALPHA).fit(profile).compare(current)
        times.append(time.perf_counter() - started)
    assert report is not None
    return {"times": times, "p_values": {n: f.p_value for n, f in report.features.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--evidently", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evidently:
        print(json.dumps(run_evidently(*args.evidently, args.repeats)))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        reference, current = make_data(size)
        ref_path, cur_path = WORK / "reference.parquet", WORK / f"current-{size}.parquet"
        reference.to_parquet(ref_path)  # type: ignore[attr-defined]
        current.to_parquet(cur_path)  # type: ignore[attr-defined]
        ours = run_mloop(reference, current, args.repeats)
        done = subprocess.run([str(EVIDENTLY_PY), __file__, "--evidently", str(ref_path), str(cur_path),
                               "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
        theirs = json.loads(done.stdout.strip().splitlines()[-1])
        agree = sum((ours["p_values"][c] < ALPHA) == (theirs["p_values"][c] < ALPHA)  # type: ignore[index]
                    for c in theirs["p_values"])
        max_diff = max(abs(ours["p_values"][c] - theirs["p_values"][c]) for c in theirs["p_values"])  # type: ignore[index]
        drifted = sum(p < ALPHA for p in ours["p_values"].values())  # type: ignore[union-attr]
        m, e = statistics.median(ours["times"]), statistics.median(theirs["times"])  # type: ignore[arg-type]
        rows.append((size, m, e, e / m, agree, drifted, max_diff))
        print(f"{size:>9,} rows: mloop {m:.3f} s, Evidently {e:.3f} s, {e / m:.0f}x; verdicts agree on {agree}/30 "
              f"({drifted} drifted); max |p difference| {max_diff:.2e}", flush=True)
    print("\n| rows | mloop (median) | Evidently (median) | Evidently / mloop | same verdicts | drifted | max abs p-value difference |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size, m, e, ratio, agree, drifted, diff in rows:
        print(f"| {size:,} | {m:.3f} s | {e:.2f} s | {ratio:.0f}x | {agree}/30 | {drifted} | {diff:.1e} |")


if __name__ == "__main__":
    sys.exit(main())
