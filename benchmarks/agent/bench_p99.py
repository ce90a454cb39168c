"""p99 latency through roll-out transitions, measured by a client in its own process (wrk, written in C).

    .venv/bin/python benchmarks/agent/bench_p99.py [--repeat 3] [--rate 500] [--seconds 10]

The reference project is served by a managed deployment (``mloop deploy``, monitoring on, its default 10 s
interval). Each phase is one ``wrk`` run of ``--seconds`` at about ``--rate`` requests a second (8 keep-alive
connections, each pausing between requests: ``delay()`` in the Lua script); the phase's transition is made one
second into its run, so the window holds the transition and what follows it. The benchmark's own process
makes the control-plane calls, warmed first (MLflow imported, its store opened) as the agent's would be. Steady phases are measured
between the transitions, so the noise of the machine shows in the steady state's own spread. Phases, in
order: steady, hot swap to a version never loaded, steady, hot swap back, canary 10 %, canary 50 %, rollback
(abort), shadow, promote, steady. Per phase: requests, non-2xx and socket errors, wrk's p50/p99, and p99 over
the steady state's median. ``wrk`` is a Debian package (apt-get install wrk). Writes results-p99.md.

wrk measures closed-loop: a connection waits for its answer before its next request, so during a stall it
sends fewer requests than scheduled (coordinated omission) and the p99 of a stall is understated; each
phase also reports its request rate, which drops when that happens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).parent))

from bench_agent import bodies, mloop, prepared_project  # noqa: E402

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_script(body: bytes, rate: float, connections: int) -> str:
    pause_ms = max(0.0, connections * 1000.0 / rate - 1.0)  # ~1 ms of it is the answer itself
    return (f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body.decode())}\nfunction delay() return {pause_ms:.0f} end\n")


def parse_wrk(text: str) -> dict[str, float]:
    def latency(label: str) -> float:
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(found.group(1)) * UNITS[found.group(2)] if found else float("nan")

    requests = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"requests": float(requests.group(1)) if requests else 0.0,
            "failed": float(non2xx.group(1) if non2xx else 0) + (sum(map(float, sockets.groups())) if sockets else 0.0),
            "p50": latency("50"), "p99": latency("99")}


def phases(template: Path, work: Path, name: str, rate: float, seconds: float, wrk: str) -> dict[str, dict[str, float]]:
    from mloop.config import load_project
    from mloop.deploy import local

    root = Path(shutil.copytree(template, work / name / "breast_cancer"))
    cfg = load_project(root)
    mloop(root, "run")  # v2, a different model
    mloop(root, "deploy", "breast_cancer/1")
    url = local.load_state(cfg, "breast_cancer").url
    # The control plane warm, as the agent's long-running process is: MLflow imported and its store opened in
    # this process before the first window, not during a transition (its ~2 s of CPU would otherwise run on
    # the 2 cores beside the server and the load generator, inside the hot swap's window).
    from mloop.registry.fetch import resolve_version

    resolve_version(cfg, "models:/breast_cancer/2")
    script = work / name / "paced.lua"
    script.write_text(wrk_script(bodies(root)[0], rate, 8))
    results: dict[str, dict[str, float]] = {}

    def phase(label: str, action: object = None) -> None:
        timer = threading.Timer(1.0, action) if callable(action) else None
        if timer is not None:
            timer.start()
        done = subprocess.run([wrk, "-t1", "-c8", f"-d{seconds:.0f}s", "-s", str(script), "--latency", f"{url}/predict"],
                              capture_output=True, text=True, timeout=seconds + 60)
        if timer is not None:
            timer.join()
        results[label] = parse_wrk(done.stdout)
        results[label]["rate"] = results[label]["requests"] / seconds

    try:
        phase("warm-up")
        phase("steady 1")
        phase("hot swap to v2 (never loaded)", lambda: local.deploy(cfg, "models:/breast_cancer/2"))
        phase("steady 2")
        phase("hot swap back to v1", lambda: local.deploy(cfg, "models:/breast_cancer/1"))
        phase("canary 10 %", lambda: local.start_rollout(cfg, "breast_cancer", "models:/breast_cancer/2", "canary", 0.1))
        phase("canary 50 %", lambda: local.set_rollout_weight(cfg, "breast_cancer", 0.5))
        phase("rollback (abort)", lambda: local.abort_rollout(cfg, "breast_cancer"))
        phase("steady 3")
        phase("shadow", lambda: local.start_rollout(cfg, "breast_cancer", "models:/breast_cancer/2", "shadow"))
        phase("promote", lambda: local.promote_rollout(cfg, "breast_cancer"))
        phase("steady 4")
    finally:
        local.undeploy(cfg, "breast_cancer")
    results.pop("warm-up")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    from mlflow import MlflowClient

    work = Path(tempfile.mkdtemp(prefix="mloop-bench-p99-"))
    db = work / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    template = prepared_project(work, db)
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    for n in range(args.repeat):
        for label, row in phases(template, work, f"r{n}", args.rate, args.seconds, wrk).items():
            rows[label].append(row)
        print(f"repeat {n + 1} done", flush=True)
    steady_p99 = [r["p99"] for label, rs in rows.items() if label.startswith("steady") for r in rs]
    steady = statistics.median(steady_p99)
    lines = [f"# p99 through roll-out transitions ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, {platform.machine()})", "",
             f"`.venv/bin/python benchmarks/agent/bench_p99.py --repeat {args.repeat} --rate {args.rate:.0f} "
             f"--seconds {args.seconds:.0f}` — wrk in its own process, one {args.seconds:.0f} s window per phase, "
             f"medians of {args.repeat} runs.", "",
             f"Steady state p99: median {steady:.2f} ms over {len(steady_p99)} steady windows "
             f"(min {min(steady_p99):.2f}, max {max(steady_p99):.2f}).", "",
             "| phase | requests/s | failed | p50 ms | p99 ms | p99 / steady | p99 of each run |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for label, rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("rate", "p50", "p99")}
        lines.append(f"| {label} | {med['rate']:.0f} | {sum(r['failed'] for r in rs):.0f} | {med['p50']:.2f} | "
                     f"{med['p99']:.2f} | {med['p99'] / steady:.2f} | {', '.join(format(r['p99'], '.1f') for r in rs)} |")
    out = REPO / "benchmarks" / "agent" / "results-p99.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
