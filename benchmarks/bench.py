"""Side-by-side wall times: mloop's local executor vs Kedro's runners and Metaflow's local runtime.

Every tool runs the same 4-step pipeline with a 2-way fan-out (flows/), as a whole process, in one
session on the same machine: one warm-up, then the median (and min/max) of --repeat runs.
Also times a fully cached re-run of the reference project. Writes results.md beside this file.

    python benchmarks/bench.py [--repeat 5]      (run through benchmarks/run.sh)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work"
MLOOP = REPO / ".venv" / "bin" / "mloop"
MLOOP_PY = REPO / ".venv" / "bin" / "python"
BENCH_PY = REPO / ".venv-bench" / "bin" / "python"


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return took


def measure(name: str, cmd: list[str], cwd: Path, env: dict[str, str], repeat: int) -> dict[str, object]:
    timed(cmd, cwd, env)  # warm-up: first-run costs (database creation, .pyc files) are not what we compare
    samples = [timed(cmd, cwd, env) for _ in range(repeat)]
    row = {"name": name, "median": statistics.median(samples), "min": min(samples), "max": max(samples),
           "cmd": " ".join(str(c) for c in cmd)}
    print(f"{name:45s} median {row['median']:.2f} s  (min {row['min']:.2f}, max {row['max']:.2f})", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    shutil.copytree(HERE / "flows", WORK / "flows")
    home = WORK / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "USER": "bench", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true", "METAFLOW_DEFAULT_METADATA": "local",
           "METAFLOW_DEFAULT_DATASTORE": "local", "COLUMNS": "120"}
    env.pop("MLOOP_TRACKING_URI", None)
    flows = WORK / "flows"
    rows = [
        measure("mloop run --no-cache (tracked in MLflow)", [str(MLOOP), "run", "--no-cache"],
                flows / "mloop_fanout", env, args.repeat),
        measure("mloop run --no-cache --no-track", [str(MLOOP), "run", "--no-cache", "--no-track"],
                flows / "mloop_fanout", env, args.repeat),
        measure("kedro SequentialRunner", [str(BENCH_PY), "kedro_fanout.py"], flows, env, args.repeat),
        measure("kedro ParallelRunner (2 workers)", [str(BENCH_PY), "kedro_fanout.py", "parallel"], flows, env,
                args.repeat),
        measure("metaflow local runtime", [str(BENCH_PY), "metaflow_fanout.py", "--quiet", "run"], flows, env,
                args.repeat),
    ]
    reference = WORK / "breast_cancer"
    shutil.copytree(REPO / "examples" / "breast_cancer", reference,
                    ignore=shutil.ignore_patterns(".mloop", "__pycache__"))
    subprocess.run([str(MLOOP_PY), "write_data.py"], cwd=reference, check=True, capture_output=True)
    cached = measure("reference project, fully cached `mloop run`", [str(MLOOP), "run"], reference, env, args.repeat)

    metaflow = next(r for r in rows if r["name"].startswith("metaflow"))["median"]
    lines = [
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}; "
        f"medians of {args.repeat} runs after one warm-up; {time.strftime('%Y-%m-%d')}.",
        "",
        "| 4-step pipeline, 2-way fan-out (whole process) | median s | min s | max s | vs Metaflow |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['name']} | {row['median']:.2f} | {row['min']:.2f} | {row['max']:.2f} | "
                     f"{row['median'] / metaflow:.2f}x |")
    lines += ["", "| reference project | median s | min s | max s |", "|---|---:|---:|---:|",
              f"| {cached['name']} | {cached['median']:.2f} | {cached['min']:.2f} | {cached['max']:.2f} |", ""]
    breakdown = subprocess.run([str(MLOOP_PY), str(HERE / "breakdown.py"), str(reference)], env=env,
                               capture_output=True, text=True, check=True).stdout
    lines += ["Where a fully cached re-run of the reference project spends its time (one process, in order):",
              "", breakdown]
    (HERE / "results.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
