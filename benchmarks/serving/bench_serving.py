"""Side-by-side serving benchmark: mloop serve vs mlflow models serve vs MLServer, plus a hello-world
ceiling, on the reference model, with the same load generator (wrk) on the same machine, in one run.

    python benchmarks/serving/bench_serving.py [--seconds 5] [--repeat 3]     (see benchmarks/README.md)

Writes benchmarks/serving/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORK = REPO / "benchmarks" / ".work" / "serving"
VENV = REPO / ".venv" / "bin"
MLSERVER = REPO / ".venv-mlserver" / "bin"
POINTS = [("1 row", 1, 1), ("1 row", 16, 1), ("1 row", 64, 1), ("100 rows", 16, 100)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"not ready: {url}")


def prepare_model() -> tuple[Path, Path, list[str], list[list[float]]]:
    """The reference project trained and registered; its champion exported as an MLflow model folder."""
    project = WORK / "breast_cancer"
    if not (project / ".mloop" / "mlflow.db").exists():
        shutil.rmtree(project, ignore_errors=True)
        shutil.copytree(REPO / "examples" / "breast_cancer", project, ignore=shutil.ignore_patterns(".mloop", "__pycache__"))
        subprocess.run([str(VENV / "python"), "write_data.py"], cwd=project, check=True, capture_output=True)
        subprocess.run([str(VENV / "mloop"), "run"], cwd=project, check=True, capture_output=True)
    model_dir = WORK / "model"
    if not model_dir.exists():
        code = ("import sys, shutil; from pathlib import Path; from mloop.config import load_project; "
                "from mloop.registry.fetch import download_model; "
                f"p = download_model(load_project(Path('{project}')), 'models:/breast_cancer@champion'); "
                f"shutil.copytree(p, '{model_dir}')")
        subprocess.run([str(VENV / "python"), "-c", code], check=True)
    joblib_file = WORK / "model.joblib"
    if not joblib_file.exists():  # MLflow stores the model with skops; MLServer's runtime reads joblib
        code = ("import joblib, mlflow.sklearn; "
                f"joblib.dump(mlflow.sklearn.load_model('{model_dir}'), '{joblib_file}')")
        subprocess.run([str(VENV / "python"), "-c", code], check=True)
    import csv

    with open(project / "data" / "breast_cancer.csv") as fh:
        reader = csv.DictReader(fh)
        rows = [dict(r) for _, r in zip(range(100), reader)]
    features = [k for k in rows[0] if k != "target"]
    return project, model_dir, features, [[float(r[f]) for f in features] for r in rows]


def bodies(features: list[str], rows: list[list[float]], n: int) -> dict[str, bytes]:
    v2 = {"inputs": [{"name": "input-0", "shape": [n, len(features)], "datatype": "FP64", "data": rows[:n]}]}
    mlflow = {"dataframe_split": {"columns": features, "data": rows[:n]}}
    return {"v2": json.dumps(v2).encode(), "mlflow": json.dumps(mlflow).encode()}


def wrk(url: str, body: bytes, connections: int, seconds: int) -> dict[str, float]:
    body_file = WORK / "body.json"
    body_file.write_bytes(body)
    script = WORK / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_errors = re.search(r"Socket errors: (.*)", out)

    def latency(pct: str) -> float:
        value, unit = re.search(rf"{pct}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": rps, "p50": latency("50"), "p99": latency("99"), "errors": int(errors.group(1)) if errors else 0,
            "socket_errors": sock_errors.group(1) if sock_errors else ""}


def servers(project: Path, model_dir: Path) -> list[tuple[str, list[str], dict[str, str], str, str, str]]:
    """(label, command, env, ready path, infer path, body kind); the port is appended by run()."""
    settings = WORK / "mlserver"
    # mlflow models serve starts `uvicorn` by name: the venv's bin must be on PATH
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": f"{VENV}:{os.environ['PATH']}"}
    found = [
        ("mloop serve", [str(VENV / "mloop"), "serve", "models:/breast_cancer@champion", "--no-access-log", "--port"],
         env, "/v2/health/ready", "/v2/models/breast_cancer/infer", "v2"),
        ("mloop serve (JSON access log on)", [str(VENV / "mloop"), "serve", "models:/breast_cancer@champion", "--port"],
         env, "/v2/health/ready", "/v2/models/breast_cancer/infer", "v2"),
        ("mloop serve (monitoring off)", [str(VENV / "mloop"), "serve", "models:/breast_cancer@champion",
                                          "--no-access-log", "--monitor-interval", "0", "--port"],
         env, "/v2/health/ready", "/v2/models/breast_cancer/infer", "v2"),
        ("mloop serve (monitoring on, every 10 s)", [str(VENV / "mloop"), "serve", "models:/breast_cancer@champion",
                                                     "--no-access-log", "--monitor-interval", "10", "--port"],
         env, "/v2/health/ready", "/v2/models/breast_cancer/infer", "v2"),
        ("mlflow models serve", [str(VENV / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
                                 "-h", "127.0.0.1", "-p"], env, "/ping", "/invocations", "mlflow"),
        ("hello-world ASGI (ceiling)", [str(VENV / "python"), str(HERE / "hello.py")], env, "/", "/", "v2"),
    ]
    if (MLSERVER / "mlserver").exists():
        for workers in (0, 2):
            folder = settings / f"w{workers}"
            model = folder / "breast-cancer"
            model.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(WORK / "model.joblib", model / "model.joblib")
            (model / "model-settings.json").write_text(json.dumps({
                "name": "breast-cancer", "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"}}))
            (folder / "settings.json").write_text(json.dumps({
                "parallel_workers": workers, "metrics_endpoint": None, "host": "127.0.0.1"}))
            found.append((f"MLServer (parallel_workers={workers})", [str(MLSERVER / "mlserver"), "start", str(folder)],
                          {**env, "MLSERVER_HTTP_PORT": "{port}", "MLSERVER_GRPC_PORT": "{grpc}"},
                          "/v2/health/ready", "/v2/models/breast-cancer/infer", "v2"))
    return found


def run(seconds: int, repeat: int, only: str = "") -> list[dict[str, object]]:
    WORK.mkdir(parents=True, exist_ok=True)
    project, model_dir, features, rows = prepare_model()
    results: list[dict[str, object]] = []
    for label, command, env, ready, infer, kind in servers(project, model_dir):
        if only and not re.search(only, label):
            continue
        port = free_port()
        env = {k: v.replace("{port}", str(port)).replace("{grpc}", str(free_port())) for k, v in env.items()}
        cmd = command + [str(port)] if "mlserver" not in command[0] else command
        proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            wait_ready(f"http://127.0.0.1:{port}{ready}", proc)
            for point, connections, n in POINTS:
                body = bodies(features, rows, n)[kind]
                url = f"http://127.0.0.1:{port}{infer}"
                wrk(url, body, connections, 1)  # warm-up
                samples = [wrk(url, body, connections, seconds) for _ in range(repeat)]
                best = sorted(samples, key=lambda s: s["rps"])[len(samples) // 2]  # the median run
                row = {"server": label, "point": point, "c": connections, **best}
                print(f"{label:38s} {point:8s} c={connections:<3d} {best['rps']:9.0f} req/s  p50 {best['p50']:7.2f} ms"
                      f"  p99 {best['p99']:7.2f} ms  non-2xx {best['errors']} {best['socket_errors']}", flush=True)
                results.append(row)
        finally:
            stop(proc)
    return results


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it drains), SIGKILL it if it has not gone in 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def write_results(out: str, caption: str, header: list[str], rows: list[list[str]]) -> None:
    """A caption and a Markdown table, printed and written to ``out``."""
    lines = [caption, "", f"| {' | '.join(header)} |", "|---|" + "---:|" * (len(header) - 1)]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="run only the servers whose label matches this regex")
    parser.add_argument("--out", default=str(HERE / "results.md"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    results = run(args.seconds, args.repeat, args.only)
    write_results(args.out, f"wrk -t1, {args.seconds} s per run, median of {args.repeat} runs after a 1 s warm-up; "
                  f"{os.cpu_count()} cores shared by server and load generator; {time.strftime('%Y-%m-%d')}.",
                  ["server", "request", "connections", "req/s", "p50 ms", "p99 ms", "non-2xx"],
                  [[str(r["server"]), str(r["point"]), str(r["c"]), f"{r['rps']:.0f}", f"{r['p50']:.2f}",
                    f"{r['p99']:.2f}", str(r["errors"])] for r in results])


if __name__ == "__main__":
    sys.exit(main())
