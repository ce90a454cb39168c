"""What monitoring costs the server: the same `mloop serve` with monitoring off and on, interleaved.

Both servers run side by side (idle while the other is measured); each load point is measured
A, B, A, B, ... `--rounds` times with wrk and the medians compared, so drift of the machine's speed
during the run hits both alike. The monitored server updates every 2 s (the default is 10 s), so
a 10 s run contains its drift updates, outlier scoring and log writes for all but the last ~2 s of
its rows; after each run the script waits for that last update, so it does not land in the other
server's run. The per-update costs (drift over the window, status file) are paid five times as
often as by default: the measured cost is an upper bound for the default setting.

    .venv/bin/python benchmarks/serving/bench_monitoring.py [--rounds 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import HERE, VENV, bodies, free_port, prepare_model, stop, wait_ready, write_results, wrk  # noqa: E402

POINTS = [("1 row", 64, 1), ("1 row", 16, 1), ("100 rows", 16, 100)]
INTERVAL_S = 2


def start(project: Path, interval: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen([str(VENV / "mloop"), "serve", "models:/breast_cancer@champion", "--no-access-log",
                             "--monitor-interval", str(interval), "--port", str(port)], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", proc)
    return proc, f"http://127.0.0.1:{port}/v2/models/breast_cancer/infer"


def wait_for_update(status: Path, after: float, timeout: float = 3 * INTERVAL_S) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if json.loads(status.read_text())["updated"] > after:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--out", default=str(HERE / "monitoring.md"))
    args = parser.parse_args()
    project, _, features, rows = prepare_model()
    status = project / ".mloop" / "monitor" / "breast_cancer" / "status.json"
    off, off_url = start(project, 0)
    on, on_url = start(project, INTERVAL_S)
    results = []
    try:
        for point, connections, n in POINTS:
            body = bodies(features, rows, n)["v2"]
            for url in (off_url, on_url):
                wrk(url, body, connections, 1)  # warm-up
            wait_for_update(status, time.time())
            samples: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
            for _ in range(args.rounds):
                samples["off"].append(wrk(off_url, body, connections, args.seconds))
                samples["on"].append(wrk(on_url, body, connections, args.seconds))
                wait_for_update(status, time.time())  # its flush of these rows happens before the next run
            off_rps = statistics.median(s["rps"] for s in samples["off"])
            on_rps = statistics.median(s["rps"] for s in samples["on"])
            off_p99 = statistics.median(s["p99"] for s in samples["off"])
            on_p99 = statistics.median(s["p99"] for s in samples["on"])
            cost = 1 - on_rps / off_rps
            paired = sorted(1 - b["rps"] / a["rps"] for a, b in zip(samples["off"], samples["on"], strict=True))
            results.append((point, connections, off_rps, on_rps, cost, off_p99, on_p99, paired[0], paired[-1]))
            print(f"{point:8s} c={connections:<3d} off {off_rps:8.0f} req/s  on {on_rps:8.0f} req/s  cost {cost:6.1%}"
                  f"  p99 {off_p99:.2f} / {on_p99:.2f} ms", flush=True)
    finally:
        stop(off)
        stop(on)
    write_results(args.out, f"wrk -t1, {args.seconds} s per run, off and on interleaved, median of {args.rounds} "
                  f"rounds; monitoring interval {INTERVAL_S} s; {os.cpu_count()} cores shared by both servers and wrk; "
                  f"{time.strftime('%Y-%m-%d')}.",
                  ["request", "connections", "off req/s", "on req/s", "cost (medians)", "cost per round, min to max",
                   "off p99 ms", "on p99 ms"],
                  [[point, str(c), f"{off_rps:,.0f}", f"{on_rps:,.0f}", f"{cost:.1%}", f"{low:.1%} to {high:.1%}",
                    f"{off_p99:.2f}", f"{on_p99:.2f}"]
                   for point, c, off_rps, on_rps, cost, off_p99, on_p99, low, high in results])


if __name__ == "__main__":
    sys.exit(main())
