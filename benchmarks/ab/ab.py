"""A/B benchmark: two versions of mloop side by side, in one run, on the same machine.

"base" is a git ref (--base); "head" is the working tree, or another ref (--head). Each ref is checked out
with ``git worktree add --detach benchmarks/.work/ab/<short-sha> <ref>`` and every measured process runs
with the same interpreter (.venv/bin/python) and ``PYTHONPATH=<that tree>/src``, so each version imports its
own mloop package (checked: ``mloop.__file__`` must come from the intended tree). The machine is shared and
noisy, so the versions are interleaved (base, head, base, head, ...) for every measurement, and each
reported number is the median of --repeat samples with its min-max spread.

    .venv/bin/python benchmarks/ab/ab.py --base HEAD~1 [--head REF] [--only serving,pipeline,drift]
                                        [--repeat 3] [--seconds 5] [--smoke]

Writes benchmarks/ab/results.md and prints the same. See benchmarks/ab/README.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "benchmarks" / "ab"
WORK = ROOT / "benchmarks" / ".work" / "ab"
PYTHON = ROOT / ".venv" / "bin" / "python"
CLI = ["-m", "mloop.cli.main"]
MEASUREMENTS = ("serving", "pipeline", "drift")
# (label, wrk connections, rows per request)
SERVING_POINTS = [("1 row, c=1", 1, 1), ("1 row, c=16", 16, 1), ("1 row, c=64", 64, 1), ("100 rows, c=16", 16, 100)]
N_FEATURES, N_REFERENCE, ALPHA = 30, 5000, 0.05
WRK_LUA = """\
-- POST the JSON body in BODY_FILE; print a one-line JSON summary when done.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("BODY_FILE", "rb"))
wrk.body = f:read("*a")
f:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'AB_JSON {"requests": %d, "duration_us": %d, "p50_us": %.1f, "p99_us": %.1f, "status_errors": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status,
    e.connect, e.read, e.write, e.timeout))
end
"""


class MeasurementError(RuntimeError):
    """A measured command failed; the harness notes it and goes on with the next measurement."""


# --------------------------------------------------------------------------------------------- versions


@dataclass
class Version:
    """One side of the comparison: a checkout whose ``src/`` is put on PYTHONPATH."""

    role: str  # "base" or "head"
    ref: str  # as given on the command line, or "working tree"
    sha: str
    tree: Path  # the checkout whose src/ is imported
    work: Path  # this version's scratch folder (project copies, request bodies)
    dirty: str = ""  # for the working tree: a summary of uncommitted changes under src/

    @property
    def short(self) -> str:
        return self.sha[:7]

    @property
    def env(self) -> dict[str, str]:
        """The environment of every process of this version: its own src/ first on sys.path."""
        env = {**os.environ, "PYTHONPATH": str(self.tree / "src"), "MLFLOW_DISABLE_TELEMETRY": "true",
               "DO_NOT_TRACK": "1", "HOME": str(WORK / "home"), "COLUMNS": "120",
               "PATH": f"{PYTHON.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        for name in ("MLOOP_TRACKING_URI", "MLOOP_TOKEN", "PYTHONHOME", "PYTHONSTARTUP"):
            env.pop(name, None)
        return env

    def describe(self) -> str:
        where = "working tree" if self.tree == ROOT else f"`{self.ref}`"
        extra = f" + uncommitted changes ({self.dirty})" if self.dirty else ""
        subject = git("log", "-1", "--format=%s", self.sha)
        subject = subject if len(subject) <= 80 else subject[:79] + "…"
        return f"{self.role} = {where} at {self.short}{extra}: {subject}"


def git(*args: str, cwd: Path = ROOT) -> str:
    """Run git in ``cwd`` and return its stripped stdout."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def materialize(role: str, ref: str | None) -> Version:
    """The working tree (``ref`` None) or a detached worktree of ``ref`` under benchmarks/.work/ab/<short-sha>."""
    if ref is None:
        changes = git("diff", "--shortstat", "HEAD", "--", "src")
        return Version(role, "working tree", git("rev-parse", "HEAD"), ROOT, WORK / "worktree", dirty=changes)
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    tree = WORK / git("rev-parse", "--short", sha)
    if (tree / ".git").exists():
        current = git("rev-parse", "HEAD", cwd=tree)
        if current != sha:
            raise SystemExit(f"{tree} is a worktree at {current}, not {sha}: remove it with "
                             f"`git worktree remove --force {tree}`")
    else:
        git("worktree", "prune")
        git("worktree", "add", "--detach", str(tree.relative_to(ROOT)), sha)
    return Version(role, ref, sha, tree, tree)


def check_import(version: Version) -> str:
    """Fail unless the version's interpreter imports mloop from ``<tree>/src``; return ``mloop.__file__``."""
    done = subprocess.run([str(PYTHON), "-c", "import mloop; print(mloop.__file__)"], env=version.env,
                          cwd=WORK, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{version.role}: `import mloop` failed:\n{done.stderr[-2000:]}")
    found = Path(done.stdout.strip().splitlines()[-1]).resolve()
    if not found.is_relative_to((version.tree / "src").resolve()):
        raise SystemExit(f"{version.role}: mloop imported from {found}, not from {version.tree / 'src'}")
    return str(found)


# --------------------------------------------------------------------------------------------- samples


@dataclass
class Metric:
    """The samples of one number (e.g. req/s at one load point) for both versions."""

    group: str  # serving, pipeline, drift
    name: str  # what is measured
    unit: str
    higher_is_better: bool
    samples: dict[str, list[float]] = field(default_factory=lambda: {"base": [], "head": []})
    errors: dict[str, int] = field(default_factory=lambda: {"base": 0, "head": 0})  # serving: non-2xx + socket


class Results:
    """Metrics in the order they were first measured, plus notes (failures, API used, checks)."""

    def __init__(self) -> None:
        self.metrics: dict[tuple[str, str], Metric] = {}
        self.notes: list[str] = []
        self.durations: dict[str, float] = {}  # wall time of each group, for planning runs

    def add(self, group: str, name: str, unit: str, role: str, value: float, higher_is_better: bool = False,
            errors: int = 0) -> None:
        key = (group, name)
        if key not in self.metrics:
            self.metrics[key] = Metric(group, name, unit, higher_is_better)
        self.metrics[key].samples[role].append(value)
        self.metrics[key].errors[role] += errors

    def note(self, text: str) -> None:
        print(f"note: {text}", flush=True)
        self.notes.append(text)


def timed(cmd: list[str], cwd: Path, version: Version) -> float:
    """Wall time of one whole process of ``version``; MeasurementError if it fails."""
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=version.env, capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise MeasurementError(f"{version.role}: `{shlex.join(cmd[1:])}` in {cwd} exited {done.returncode}:\n"
                               f"{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    return took


def interleave(versions: list[Version], repeat: int, sample: Callable[[Version], None]) -> None:
    """Call ``sample`` base, head, base, head, ... ``repeat`` times each."""
    for _ in range(repeat):
        for version in versions:
            sample(version)


# --------------------------------------------------------------------------------------------- projects


PREPARED: set[Path] = set()  # projects trained in this run


def copy_example(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".mloop", "__pycache__", "data"))


def prepare_project(version: Version) -> Path:
    """The version's own examples/breast_cancer, trained by that version into <work>/project.

    A commit's trained copy is reused (marker file ``.ab-trained``); the working tree's is retrained on
    every run, since its code may have changed since the last one.
    """
    project = version.work / "project"
    marker = project / ".ab-trained"
    if project in PREPARED or (marker.exists() and version.tree != ROOT):
        PREPARED.add(project)
        return project
    print(f"[{version.role}] training examples/breast_cancer into {project.relative_to(ROOT)}", flush=True)
    copy_example(version.tree / "examples" / "breast_cancer", project)
    timed([str(PYTHON), "write_data.py"], project, version)
    timed([str(PYTHON), *CLI, "run"], project, version)
    marker.write_text(version.sha + "\n")
    PREPARED.add(project)
    return project


def prepare_fanout(version: Version) -> Path:
    """A fresh copy of the version's benchmarks/flows (common.py + mloop_fanout) in <work>/flows."""
    flows = version.work / "flows"
    shutil.rmtree(flows, ignore_errors=True)
    source = version.tree / "benchmarks" / "flows"
    shutil.copytree(source / "mloop_fanout", flows / "mloop_fanout",
                    ignore=shutil.ignore_patterns(".mloop", "__pycache__"))
    shutil.copy2(source / "common.py", flows / "common.py")
    return flows / "mloop_fanout"


def same_files(a: Path, b: Path, names: list[str]) -> bool:
    """Whether the two trees hold byte-identical copies of ``names`` (so both versions get the same work)."""
    return all((a / n).exists() and (b / n).exists() and (a / n).read_bytes() == (b / n).read_bytes() for n in names)


# --------------------------------------------------------------------------------------------- serving


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise MeasurementError(f"server exited with {proc.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise MeasurementError(f"not ready after {timeout:.0f} s: {url}")


RUNNING: set[subprocess.Popen[bytes]] = set()  # servers to stop whatever happens


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it drains), SIGKILL it after 30 s; then check nothing is left."""
    try:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        try:  # children of the server (same process group) must be gone too
            os.killpg(proc.pid, 0)
            time.sleep(1)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    finally:
        RUNNING.discard(proc)


def write_bodies(version: Version, project: Path) -> dict[int, Path]:
    """wrk scripts POSTing V2 inference bodies of 1 and 100 rows of the project's 30 FP64 features."""
    with open(project / "data" / "breast_cancer.csv", newline="") as fh:
        rows = [r for _, r in zip(range(100), csv.DictReader(fh))]
    features = [k for k in rows[0] if k != "target"]
    values = [[float(r[f]) for f in features] for r in rows]
    bodies = {}
    for n in (1, 100):
        body = {"inputs": [{"name": "input-0", "shape": [n, len(features)], "datatype": "FP64", "data": values[:n]}]}
        body_file = version.work / f"body-{n}.json"
        body_file.write_text(json.dumps(body))
        bodies[n] = version.work / f"post-{n}.lua"
        bodies[n].write_text(WRK_LUA.replace("BODY_FILE", str(body_file)))
    return bodies


def check_inference(url: str, body: Path) -> None:
    """One request before the load: it must answer 200 with V2 outputs, or the numbers would be of errors."""
    request = urllib.request.Request(url, data=body.read_bytes(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except OSError as exc:
        raise MeasurementError(f"inference check failed: {exc}") from exc
    if not answer.get("outputs"):
        raise MeasurementError(f"inference check: no outputs in {str(answer)[:300]}")


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run; req/s, p50/p99 in ms and the count of errors (HTTP >= 400 and socket errors)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    done = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("AB_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise MeasurementError(f"`{shlex.join(cmd)}` failed:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    s = json.loads(line[len("AB_JSON "):])
    return {"rps": s["requests"] / (s["duration_us"] / 1e6), "p50": s["p50_us"] / 1000, "p99": s["p99_us"] / 1000,
            "status_errors": s["status_errors"],
            "socket_errors": s["connect"] + s["read"] + s["write"] + s["timeout"]}


def bench_serving(versions: list[Version], args: argparse.Namespace, results: Results) -> None:
    """wrk against ``mloop serve`` of each version's champion, one server at a time.

    A server is started fresh once per version per repeat and takes all four load points (each after a
    1 s warm-up): starting one per point would add ~8 server starts (seconds each, mostly imports) per
    repeat while the points are seconds apart anyway; a fresh start per repeat still samples start-up
    variation (memory layout, caches) across repeats and no server carries state (monitoring windows,
    logs) from one repeat into the next.
    """
    if shutil.which("wrk") is None:
        raise MeasurementError("wrk is needed: apt-get update && apt-get install -y wrk")
    projects = {v.role: prepare_project(v) for v in versions}
    bodies = {v.role: write_bodies(v, projects[v.role]) for v in versions}
    if len(versions) == 2 and any(
            (versions[0].work / f"body-{n}.json").read_bytes() != (versions[1].work / f"body-{n}.json").read_bytes()
            for n in (1, 100)):
        results.note("serving: the request bodies differ between versions (their example data differ)")

    def sample(version: Version) -> None:
        port = free_port()
        cmd = [str(PYTHON), *CLI, "serve", "models:/breast_cancer@champion", "--project", str(projects[version.role]),
               "--port", str(port), "--no-access-log"]
        log = open(version.work / "serve.log", "ab")
        proc = subprocess.Popen(cmd, cwd=projects[version.role], env=version.env, stdout=log, stderr=log,
                                start_new_session=True)
        RUNNING.add(proc)
        try:
            launched = time.perf_counter()
            wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", proc)
            ready = time.perf_counter() - launched
            results.add("serving", "start to ready", "s", version.role, ready)
            url = f"http://127.0.0.1:{port}/v2/models/breast_cancer/infer"
            check_inference(url, version.work / "body-1.json")
            for label, connections, n in SERVING_POINTS:
                wrk(url, bodies[version.role][n], connections, 1)  # warm-up
                got = wrk(url, bodies[version.role][n], connections, args.seconds)
                errors = int(got["status_errors"] + got["socket_errors"])
                results.add("serving", f"{label} req/s", "req/s", version.role, got["rps"], True, errors)
                results.add("serving", f"{label} p50", "ms", version.role, got["p50"])
                results.add("serving", f"{label} p99", "ms", version.role, got["p99"])
                print(f"[{version.role}] serving {label:15s} {got['rps']:8.0f} req/s  p50 {got['p50']:7.2f} ms  "
                      f"p99 {got['p99']:7.2f} ms  errors {errors}", flush=True)
        except MeasurementError as exc:
            raise MeasurementError(f"{version.role}: {exc} (server log: {version.work / 'serve.log'})") from exc
        finally:
            stop(proc)
            log.close()

    interleave(versions, args.repeat, sample)


# --------------------------------------------------------------------------------------------- pipeline


def bench_pipeline(versions: list[Version], args: argparse.Namespace, results: Results) -> None:
    """Whole-process wall times of ``mloop run``: the fan-out flow untracked and tracked, both --no-cache,
    and a fully cached re-run of the trained reference project. One untracked warm-up per version and
    command first (database creation, .pyc files), then interleaved samples."""
    fanouts = {v.role: prepare_fanout(v) for v in versions}
    projects = {v.role: prepare_project(v) for v in versions}
    if len(versions) == 2 and not same_files(versions[0].tree / "benchmarks" / "flows", versions[1].tree /
                                             "benchmarks" / "flows", ["common.py", "mloop_fanout/pipeline.py"]):
        results.note("pipeline: benchmarks/flows differs between the versions; each runs its own")
    if len(versions) == 2 and not same_files(versions[0].tree / "examples" / "breast_cancer", versions[1].tree /
                                             "examples" / "breast_cancer", ["pipeline.py", "mloop.toml"]):
        results.note("pipeline: examples/breast_cancer differs between the versions; each runs its own")
    cases = [
        ("fan-out `run --no-cache --no-track`", ["run", "--no-cache", "--no-track"], fanouts),
        ("fan-out `run --no-cache` (tracked)", ["run", "--no-cache"], fanouts),
        ("reference project, fully cached `run`", ["run"], projects),
    ]
    for name, cli_args, folders in cases:
        for version in versions:  # warm-up; for the cached case this is the first of "run twice"
            timed([str(PYTHON), *CLI, *cli_args], folders[version.role], version)

        def sample(version: Version, name: str = name, cli_args: list[str] = cli_args,
                   folders: dict[str, Path] = folders) -> None:
            took = timed([str(PYTHON), *CLI, *cli_args], folders[version.role], version)
            results.add("pipeline", name, "s", version.role, took)
            print(f"[{version.role}] pipeline {name:40s} {took:6.2f} s", flush=True)

        interleave(versions, args.repeat, sample)


# --------------------------------------------------------------------------------------------- drift


def make_drift_data(sizes: list[int]) -> dict[int, tuple[Path, Path]]:
    """Reference (5,000 rows) and current frames as .npy, as benchmarks/drift/bench_drift.py makes them:
    30 features at random scales, 10 of them shifted by 0.01 to 0.5 standard deviations."""
    import numpy as np

    folder = WORK / "drift"
    folder.mkdir(parents=True, exist_ok=True)
    found = {}
    for size in sizes:
        ref_path, cur_path = folder / "reference.npy", folder / f"current-{size}.npy"
        if not cur_path.exists() or not ref_path.exists():
            rng = np.random.default_rng(0)
            scales = rng.uniform(0.5, 20, N_FEATURES)
            reference = rng.normal(size=(N_REFERENCE, N_FEATURES)) * scales
            current = rng.normal(size=(size, N_FEATURES))
            shifts = np.zeros(N_FEATURES)
            shifts[:10] = np.geomspace(0.01, 0.5, 10)
            np.save(ref_path, reference)
            np.save(cur_path, (current + shifts) * scales)
        found[size] = (ref_path, cur_path)
    return found


def drift_child(ref_path: str, cur_path: str) -> dict[str, Any]:
    """In the version's interpreter: fit the reference profile (untimed), warm up on 10,000 rows, then time
    one drift test of the whole current frame. Tries the newer names first, then the older ones."""
    import numpy as np
    import pandas as pd

    import mloop

    api = []
    try:
        from mloop.bundle.profile import ReferenceProfile
        api.append("mloop.bundle.profile.ReferenceProfile")
    except ImportError:
        from mloop.monitor.profile import ReferenceProfile
        api.append("mloop.monitor.profile.ReferenceProfile")
    try:
        from mloop.monitor.drift import DriftDetector
        api.append("mloop.monitor.drift.DriftDetector")
    except ImportError:
        from mloop.bundle.drift import DriftDetector  # type: ignore[no-redef]
        api.append("mloop.bundle.drift.DriftDetector")
    columns = [f"f{i:02d}" for i in range(N_FEATURES)]
    reference = pd.DataFrame(np.load(ref_path), columns=columns)
    current = pd.DataFrame(np.load(cur_path), columns=columns)
    try:
        profile = ReferenceProfile(max_sample=N_REFERENCE).fit(reference)
    except TypeError:
        profile = ReferenceProfile().fit(reference)
    detector = DriftDetector(alpha=ALPHA).fit(profile)
    test = getattr(detector, "compare", None)
    api.append(".compare" if test is not None else ".score")
    test = test if test is not None else detector.score
    test(current.iloc[:10_000])  # warm-up: lazy imports, first-call costs
    started = time.perf_counter()
    report = test(current)
    took = time.perf_counter() - started
    drifted = sum(1 for f in report.features.values() if f.p_value is not None and f.p_value < ALPHA)
    return {"file": mloop.__file__, "api": " + ".join(api), "seconds": took, "drifted": drifted}


def bench_drift(versions: list[Version], args: argparse.Namespace, results: Results) -> None:
    """Each version's drift test in its own subprocess (its PYTHONPATH), interleaved, per size."""
    data = make_drift_data(args.drift_sizes)
    seen: dict[str, tuple[str, int, int]] = {}
    for size, (ref_path, cur_path) in data.items():
        def sample(version: Version, size: int = size, ref_path: Path = ref_path, cur_path: Path = cur_path) -> None:
            cmd = [str(PYTHON), str(Path(__file__).resolve()), "--drift-child", str(ref_path), str(cur_path)]
            done = subprocess.run(cmd, cwd=WORK, env=version.env, capture_output=True, text=True)
            if done.returncode != 0:
                raise MeasurementError(f"{version.role}: drift child failed:\n{done.stderr[-2000:]}")
            got = json.loads(done.stdout.strip().splitlines()[-1])
            if not Path(got["file"]).resolve().is_relative_to((version.tree / "src").resolve()):
                raise MeasurementError(f"{version.role}: drift child imported mloop from {got['file']}")
            seen[version.role] = (got["api"], got["drifted"], size)
            results.add("drift", f"{size:,} rows x {N_FEATURES} vs {N_REFERENCE:,}", "s", version.role,
                        got["seconds"])
            print(f"[{version.role}] drift {size:>9,} rows {got['seconds']:7.3f} s  ({got['drifted']} drifted; "
                  f"{got['api']})", flush=True)

        interleave(versions, args.repeat, sample)
    for role, (api, drifted, size) in seen.items():
        results.note(f"drift: {role} used {api}; {drifted}/{N_FEATURES} features drifted at {size:,} rows")


# --------------------------------------------------------------------------------------------- report


def spread(values: list[float], fmt: str) -> str:
    return f"{min(values):{fmt}}–{max(values):{fmt}}" if values else ""


def verdict(metric: Metric) -> str:
    """'head better' / 'head worse' when the min-max ranges do not overlap, else 'within noise'."""
    base, head = metric.samples["base"], metric.samples["head"]
    if not base or not head:
        return "missing"
    if len(base) < 2 or len(head) < 2:
        return "n=1, no spread"
    if max(head) < min(base):
        return "head better" if not metric.higher_is_better else "head worse"
    if min(head) > max(base):
        return "head better" if metric.higher_is_better else "head worse"
    return "within noise"


def report(versions: list[Version], args: argparse.Namespace, results: Results, started: float,
           load: tuple[float, ...], files: dict[str, str]) -> str:
    """The Markdown report: context, one table row per metric, notes."""
    command = shlex.join([os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT))
                          else sys.executable, os.path.relpath(Path(__file__).resolve(), ROOT), *sys.argv[1:]])
    end_load = os.getloadavg()
    lines = [
        f"# A/B benchmark, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        *[f"- {v.describe()}" for v in versions],
        *[f"- {role} imports mloop from `{os.path.relpath(path, ROOT)}`" for role, path in files.items()],
        f"- machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
        f"load average {load[0]:.2f} at start, {end_load[0]:.2f} at end",
        f"- command: `{command}` (run from the repository root)",
        f"- {args.repeat} interleaved sample(s) per version per row (base, head, base, head, ...); wrk -t1 "
        f"{args.seconds} s per point after a 1 s warm-up; whole run {time.time() - started:.0f} s ("
        + ", ".join(f"{name} {took:.0f} s" for name, took in results.durations.items()) + ")",
        "",
        "| group | measurement | base median | base min–max | head median | head min–max | head/base | better "
        "| verdict | errors base/head |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for m in results.metrics.values():
        fmt = ".0f" if m.unit == "req/s" else (".2f" if m.unit == "ms" else ".3f")
        base, head = m.samples["base"], m.samples["head"]
        mb = statistics.median(base) if base else None
        mh = statistics.median(head) if head else None
        ratio = f"{mh / mb:.3f}" if mb and mh is not None else ""
        errors = f"{m.errors['base']}/{m.errors['head']}" if m.group == "serving" and m.unit == "req/s" else ""
        lines.append(f"| {m.group} | {m.name} ({m.unit}) | {'' if mb is None else format(mb, fmt)} | "
                     f"{spread(base, fmt)} | {'' if mh is None else format(mh, fmt)} | {spread(head, fmt)} | "
                     f"{ratio} | {'higher' if m.higher_is_better else 'lower'} | {verdict(m)} | {errors} |")
    if results.notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in results.notes]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD~1", help="git ref of the base version (default: HEAD~1)")
    parser.add_argument("--head", default=None, help="git ref of the head version (default: the working tree)")
    parser.add_argument("--only", default=",".join(MEASUREMENTS),
                        help=f"comma-separated subset of {','.join(MEASUREMENTS)} (default: all)")
    parser.add_argument("--repeat", type=int, default=None, help="samples per version per measurement (3)")
    parser.add_argument("--seconds", type=int, default=None, help="wrk duration per load point (5)")
    parser.add_argument("--drift-sizes", default=None, help="current-window rows (100000,1000000)")
    parser.add_argument("--smoke", action="store_true",
                        help="quick check of the harness: --repeat 1 --seconds 1 --drift-sizes 10000,100000")
    parser.add_argument("--out", default=str(HERE / "results.md"), help="where to write the Markdown report")
    parser.add_argument("--drift-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    smoke = {"repeat": 1, "seconds": 1, "drift_sizes": "10000,100000"}
    default = {"repeat": 3, "seconds": 5, "drift_sizes": "100000,1000000"}
    for name in default:
        if getattr(args, name) is None:
            setattr(args, name, (smoke if args.smoke else default)[name])
    args.drift_sizes = [int(s) for s in str(args.drift_sizes).split(",") if s]
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s) {sorted(unknown)}; choose from {MEASUREMENTS}")
    return args


def on_sigterm(signum: int, frame: object) -> None:
    """A SIGTERM of the harness ends it like Ctrl-C: every `finally` runs, so no server is left behind."""
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    if args.drift_child:
        print(json.dumps(drift_child(*args.drift_child)))
        return 0
    started, load = time.time(), os.getloadavg()
    signal.signal(signal.SIGTERM, on_sigterm)
    (WORK / "home").mkdir(parents=True, exist_ok=True)
    versions = [materialize("base", args.base), materialize("head", args.head)]
    files = {}
    for version in versions:
        version.work.mkdir(parents=True, exist_ok=True)
        files[version.role] = check_import(version)
        print(f"{version.describe()}\n  mloop: {files[version.role]}", flush=True)
    results = Results()
    benches = {"serving": bench_serving, "pipeline": bench_pipeline, "drift": bench_drift}
    try:
        for name in args.only:
            begun = time.time()
            try:
                benches[name](versions, args, results)
            except MeasurementError as exc:
                results.note(f"{name}: FAILED, {exc}".replace("\n", " ")[:1500])
            results.durations[name] = time.time() - begun
    finally:
        for proc in list(RUNNING):
            stop(proc)
    text = report(versions, args, results, started, load, files)
    Path(args.out).write_text(text, encoding="utf-8")
    print("\n" + text)
    return 1 if any("FAILED" in n for n in results.notes) else 0


if __name__ == "__main__":
    sys.exit(main())
