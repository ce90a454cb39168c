"""The continuous-training agent's numbers, on the reference project, same machine, same run.

    .venv/bin/python benchmarks/agent/bench_agent.py [--repeat 3] [--rate 500]

A. Roll-out transitions under a sustained, paced load (``--rate`` requests a second, open loop: each request
   is sent at its scheduled time, so a stall shows up as latency, not as fewer requests): steady state, hot
   swap, canary at 10 % and 50 %, promote, shadow, and a rollback (abort) — per phase the requests, failures
   and the client's p50/p99, and p99 as a ratio of the steady state's.
B. The agent (``mloop agent run``, a real process) on the reference project whose champion was trained weak:
   1. control plane from an alert to the candidate serving in shadow, training excluded (the journal's step
      times: gate, infra check, roll-out start, and the wait before the cycle started);
   2. an alert to the new version at 100 % through a 2-step canary of 15 s each (watch every 5 s, 6 times),
      under load;
   3. a failing measurement to the previous version at 100 % (the watch fails at once; measured from the
      measurement's time to the rollback's record, written after the server answered the abort).
Medians of ``--repeat`` runs. Writes benchmarks/agent/results.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
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
BIN = REPO / ".venv" / "bin"
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
AGENT = """
[automation]
strategy = "{strategy}"
canary_steps = [0.1, 0.5]
poll = "200ms"
port = {port}

[automation.triggers]
data = false
registry = false
debounce = "0s"

[automation.gate]
rules = [{{metric = "accuracy", floor = 0.8}}]

[automation.infra]
p99_ms = 1000
sample = 50

[automation.watch]
interval = "5s"
count = 6
metrics = [{watch}]
"""
GOOD_WATCH = '{metric = "error_ratio", above = 0.01, min_samples = 10}'
FAILING_WATCH = '{metric = "p99_latency_ms", above = 0.001, min_samples = 1}'


def mloop(root: Path, *args: str) -> str:
    done = subprocess.run([str(BIN / "mloop"), *args], cwd=root, env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"mloop {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


class PacedLoad:
    """Open-loop load: ``rate`` requests a second spread over ``clients`` keep-alive connections, each request
    sent at its scheduled time; latency is measured from that time (a late send counts as latency)."""

    def __init__(self, url: str, bodies: list[bytes], rate: float, clients: int = 8) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.bodies, self.rate, self.clients = host, int(port), bodies, rate, clients
        self.phase = "warm-up"
        self.stop = threading.Event()
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.failures: dict[str, int] = defaultdict(int)
        self.versions: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]

    def _client(self, n: int) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        period = self.clients / self.rate
        due = time.perf_counter() + n * period / self.clients
        i = n
        while not self.stop.is_set():
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            phase = self.phase
            try:
                conn.request("POST", "/predict", self.bodies[i % len(self.bodies)], {"content-type": "application/json"})
                response = conn.getresponse()
                response.read()
                ok, version = response.status == 200, response.getheader("x-model-version", "-")
            except (OSError, http.client.HTTPException):
                ok, version = False, "-"
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            took = (time.perf_counter() - due) * 1000
            with self.lock:
                if ok:
                    self.samples[phase].append(took)
                    self.versions.append((time.time(), version))
                else:
                    self.failures[phase] += 1
            due += period
            i += self.clients

    def __enter__(self) -> PacedLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def prepared_project(work: Path, db_template: Path) -> Path:
    """The reference project with its data, champion v1 trained weak (so a retrained model clearly passes)."""
    from tests.support.projects import EXAMPLE, copy_project

    root = copy_project(EXAMPLE, work / "template" / "breast_cancer", db_template)
    (root / "data").mkdir(exist_ok=True)
    subprocess.run([sys.executable, str(EXAMPLE / "write_data.py"), str(root / "data" / "breast_cancer.csv")],
                   check=True, capture_output=True)
    mloop(root, "run", "-p", "logreg.C=0.00001", "-p", "knn.n_neighbors=300")
    return root


def fresh(template: Path, work: Path, name: str, strategy: str, watch: str) -> tuple[Path, int]:
    from tests.support.servers import free_port

    root = Path(shutil.copytree(template, work / name / "breast_cancer"))
    port = free_port()
    with (root / "mloop.toml").open("a") as handle:
        handle.write(AGENT.format(strategy=strategy, port=port, watch=watch))
    return root, port


def bodies(root: Path) -> list[bytes]:
    import pandas as pd

    frame = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"])
    return [json.dumps({"instances": [row]}).encode() for row in frame.head(200).to_dict("records")]


# ------------------------------------------------------------------------------------------- A: transitions


def transitions(template: Path, work: Path, rate: float, name: str) -> dict[str, dict[str, float]]:
    from mloop.config import load_project
    from mloop.deploy import local

    root = Path(shutil.copytree(template, work / name / "breast_cancer"))
    cfg = load_project(root)
    mloop(root, "run")  # v2, a different model
    mloop(root, "deploy", "breast_cancer/1")
    url = local.load_state(cfg, "breast_cancer").url
    results: dict[str, dict[str, float]] = {}
    try:
        with PacedLoad(url, bodies(root), rate) as load:
            def phase(label: str, action: object = None, seconds: float = 6.0) -> None:
                load.phase = label
                if callable(action):
                    action()
                time.sleep(seconds)
            time.sleep(4.0)  # warm up
            phase("steady (before)")
            phase("hot swap to v2", lambda: local.deploy(cfg, "models:/breast_cancer/2"))
            phase("hot swap back to v1", lambda: local.deploy(cfg, "models:/breast_cancer/1"))
            phase("canary 10 %", lambda: local.start_rollout(cfg, "breast_cancer", "models:/breast_cancer/2", "canary", 0.1))
            phase("canary 50 %", lambda: local.set_rollout_weight(cfg, "breast_cancer", 0.5))
            phase("rollback (abort)", lambda: local.abort_rollout(cfg, "breast_cancer"))
            phase("shadow", lambda: local.start_rollout(cfg, "breast_cancer", "models:/breast_cancer/2", "shadow"))
            phase("promote", lambda: local.promote_rollout(cfg, "breast_cancer"))
            phase("steady (after)")
        for label, samples in load.samples.items():
            results[label] = {"requests": len(samples) + load.failures[label], "failed": load.failures[label],
                              "p50": p(samples, 0.5), "p99": p(samples, 0.99)}
    finally:
        local.undeploy(cfg, "breast_cancer")
    return results


# ------------------------------------------------------------------------------------------------ B: agent


def agent_cycle(template: Path, work: Path, name: str, strategy: str, watch: str, rate: float,
                stop_at: str) -> dict[str, float]:
    import httpx

    from mloop.automation.agent import open_audit, open_journal
    from mloop.config import load_project
    from mloop.deploy import local

    root, port = fresh(template, work, name, strategy, watch)
    cfg = load_project(root)
    mloop(root, "deploy")
    url = local.load_state(cfg, "breast_cancer").url
    agent = subprocess.Popen([str(BIN / "python"), "-m", "mloop.cli.main", "agent", "run"], cwd=root, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: dict[str, float] = {}
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        with PacedLoad(url, bodies(root), rate) as load:
            time.sleep(2.0)
            alert = {"version": "4", "status": "firing", "alerts": [{
                "status": "firing", "labels": {"alertname": "DataDrift", "model": "breast_cancer"},
                "annotations": {}, "startsAt": "2026-11-27T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": os.urandom(8).hex()}]}
            sent = time.time()
            httpx.post(f"http://127.0.0.1:{port}/alerts", json=alert, timeout=5).raise_for_status()
            deadline = time.time() + 240
            cycle = None
            while time.time() < deadline:
                journal = open_journal(cfg)
                cycles = journal.cycles("breast_cancer")
                journal.close()
                cycle = cycles[0] if cycles else None
                if cycle is not None and (cycle.final or (stop_at in cycle.steps and cycle.steps[stop_at].state == "done")):
                    break
                time.sleep(0.05)
            ended = time.time()
            time.sleep(1.0)
        assert cycle is not None, "no cycle"
        steps = cycle.steps
        span = {k: (v.ended or ended) - v.began for k, v in steps.items()}
        out["failed requests"] = float(sum(load.failures.values()))
        if stop_at == "rollout":
            out["alert -> shadow (s)"] = steps["rollout"].ended - sent  # type: ignore[operator]
            out["training (s)"] = span["train"]
            out["control plane (s)"] = out["alert -> shadow (s)"] - span["train"]
            out["wait before the cycle (s)"] = cycle.created - sent
            out["gate (s)"], out["infra check (s)"], out["roll-out start (s)"] = span["gate"], span["infra"], span["rollout"]
        elif cycle.state == "promoted":
            promoted = [r for r in open_audit(cfg).records(cycle=cycle.id) if r.kind == "promote"][0]
            out["alert -> 100 % (s)"] = promoted.at - sent
            out["training (s)"] = span["train"]
        else:
            records = open_audit(cfg).records(cycle=cycle.id)
            watch = [r for r in records if r.kind == "watch"][0]
            failing = [m for m in watch.data["measurements"] if m["phase"] == "Failed"][0]
            rollback = [r for r in records if r.kind == "rollback"][0]
            last_candidate = max((t for t, v in load.versions if v == cycle.candidate), default=float("nan"))
            out["failing measurement -> rolled back (s)"] = rollback.at - failing["at"]
            out["failing measurement -> last candidate answer (s)"] = last_candidate - failing["at"]
        if stop_at != "rollout":
            out["outcome: " + cycle.state] = 1.0
    finally:
        agent.terminate()
        agent.wait(timeout=90)
        local.undeploy(cfg, "breast_cancer")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--parts", default="AB", help="A (transitions), B (the agent), or AB")
    args = parser.parse_args()
    from mlflow import MlflowClient

    work = Path(tempfile.mkdtemp(prefix="mloop-bench-agent-"))
    db = work / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    template = prepared_project(work, db)
    phases: dict[str, list[dict[str, float]]] = defaultdict(list)
    runs: dict[str, list[dict[str, float]]] = defaultdict(list)
    for n in range(args.repeat):
        if "A" in args.parts:
            for label, row in transitions(template, work, args.rate, f"a{n}").items():
                if label != "warm-up":
                    phases[label].append(row)
        if "B" not in args.parts:
            print(f"repeat {n + 1} done", flush=True)
            continue
        runs["1. alert -> candidate in shadow"].append(
            agent_cycle(template, work, f"b1-{n}", "shadow", GOOD_WATCH, args.rate, "rollout"))
        runs["2. alert -> 100 % (2-step canary, 15 s each)"].append(
            agent_cycle(template, work, f"b2-{n}", "canary", GOOD_WATCH, args.rate, "final"))
        runs["3. failing measurement -> previous at 100 %"].append(
            agent_cycle(template, work, f"b3-{n}", "canary", FAILING_WATCH, args.rate, "final"))
        print(f"repeat {n + 1} done", flush=True)
    lines = [f"# The agent's numbers ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, {platform.machine()})", "",
             f"`{' '.join(['.venv/bin/python', 'benchmarks/agent/bench_agent.py', '--repeat', str(args.repeat), '--rate', str(int(args.rate))])}`"
             f" — medians of {args.repeat} runs; the load generator runs on the same 2 cores as the server.", "",
             f"## A. Roll-out transitions under {args.rate:.0f} requests/s (open loop, 8 keep-alive clients)", "",
             "| phase | requests | failed | p50 ms | p99 ms | p99 / steady |", "|---|---:|---:|---:|---:|---:|"]
    # the steady state's p99: the median over the runs of the two steady phases (before and after the transitions)
    steady = statistics.median(r["p99"] for r in phases["steady (before)"] + phases["steady (after)"]) if phases else 1.0
    for label, rows in phases.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("requests", "failed", "p50", "p99")}
        lines.append(f"| {label} | {med['requests']:.0f} | {sum(r['failed'] for r in rows):.0f} | {med['p50']:.2f} | "
                     f"{med['p99']:.2f} | {med['p99'] / steady:.2f} |")
    lines += ["", "## B. The agent, end to end (a real `mloop agent run`, a real deployment under the same load)", ""]
    for label, rows in runs.items():
        lines += [f"### {label}", "", "| measure | median | runs |", "|---|---:|---|"]
        keys = sorted({k for r in rows for k in r})
        for key in keys:
            values = [r[key] for r in rows if key in r]
            lines.append(f"| {key} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
        lines.append("")
    out = REPO / "benchmarks" / "agent" / ("results.md" if args.parts == "AB" else f"results-{args.parts}.md")
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
