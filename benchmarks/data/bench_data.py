"""`mloop data add` and `mloop data status` against the plain `dvc` commands, and `mloop reproduce` against a
plain run: whole processes (interpreter start to exit), same machine, same run, alternated per repeat.

    .venv/bin/python benchmarks/data/bench_data.py [--repeat 5] [--sizes 1 100 10000]

Each `add` sample gets its own fresh git + DVC repository (prepared outside the timing) holding N files
in one folder (N=1: a single file); `status` is timed on that repository once added and pushed to a local
remote, with the remote checked (`mloop data status` vs `dvc data status --not-in-remote`) and without
(`--no-remote` vs `dvc data status`). Writes benchmarks/data/results.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
       "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@mloop.invalid", "GIT_COMMITTER_NAME": "bench",
       "GIT_COMMITTER_EMAIL": "bench@mloop.invalid"}


def sh(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed in {cwd}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return took


def sh_env(cmd: list[str], cwd: Path, extra: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env={**ENV, **extra}, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed in {cwd}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return took


def project(parent: Path, name: str, files: int) -> tuple[Path, str]:
    """An mloop project under git + DVC (as `mloop init` makes it) with ``files`` CSV files to track."""
    sh([str(BIN / "mloop"), "init", name], parent)
    root = parent / name
    sh(["git", "commit", "-qm", "init"], root)
    if files == 1:
        (root / "data" / "one.csv").write_text("x,y\n" + "".join(f"{i},{i * 2}\n" for i in range(1000)))
        return root, "data/one.csv"
    folder = root / "data" / "files"
    folder.mkdir()
    for i in range(files):
        (folder / f"{i:05d}.csv").write_text(f"x,y\n{i},{i * 2}\n")
    return root, "data/files"


def row(name: str, samples: list[float]) -> dict[str, float | str]:
    return {"name": name, "median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def bench_size(work: Path, files: int, repeat: int) -> list[tuple[dict, dict]]:
    adds: dict[str, list[float]] = {"mloop": [], "dvc": []}
    for i in range(repeat + 1):  # the first pair warms the file cache and .pyc files
        for tool in ("mloop", "dvc") if i % 2 == 0 else ("dvc", "mloop"):
            root, target = project(work, f"add-{files}-{tool}-{i}", files)
            cmd = [str(BIN / "mloop"), "data", "add", target] if tool == "mloop" else [str(BIN / "dvc"), "add", "-q", target]
            took = sh(cmd, root)
            if i:
                adds[tool].append(took)
            if i < repeat:
                shutil.rmtree(root)
    root = work / f"add-{files}-mloop-{repeat}"
    sh([str(BIN / "mloop"), "data", "push"], root)
    status: dict[str, list[float]] = {k: [] for k in ("mloop remote", "dvc remote", "mloop local", "dvc local")}
    commands = {"mloop remote": [str(BIN / "mloop"), "data", "status"],
                "dvc remote": [str(BIN / "dvc"), "data", "status", "--not-in-remote"],
                "mloop local": [str(BIN / "mloop"), "data", "status", "--no-remote"],
                "dvc local": [str(BIN / "dvc"), "data", "status"]}
    for name, cmd in commands.items():
        sh(cmd, root)  # warm-up
    for i in range(repeat):
        for name in (list(commands) if i % 2 == 0 else list(reversed(commands))):
            status[name].append(sh(commands[name], root))
    label = "1 file" if files == 1 else f"{files:,} files in a folder"
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "data"], root)
    pushes: dict[str, list[float]] = {"mloop": [], "dvc": []}
    for i in range(repeat + 1):  # into an empty remote each time (set outside the timing)
        for tool in ("mloop", "dvc") if i % 2 == 0 else ("dvc", "mloop"):
            empty = work / f"remote-{files}-{tool}-{i}"
            if tool == "mloop":  # the remote set first (mloop.toml's change written to .dvc/config), as for dvc
                sh_env([str(BIN / "mloop"), "data", "status", "--no-remote"], root, {"MLOOP_DATA_REMOTE": str(empty)})
                took = sh_env([str(BIN / "mloop"), "data", "push"], root, {"MLOOP_DATA_REMOTE": str(empty)})
            else:
                sh([str(BIN / "dvc"), "remote", "add", "--local", f"r{i}", str(empty)], root)
                took = sh([str(BIN / "dvc"), "push", "-q", "-r", f"r{i}"], root)
            if i:
                pushes[tool].append(took)
            shutil.rmtree(empty, ignore_errors=True)
    pulls: dict[str, list[float]] = {"mloop": [], "dvc": []}
    remote = Path(ENV["XDG_DATA_HOME"]) / "mloop" / "dvc-remote"
    for i in range(repeat + 1):  # a fresh clone each, as CI pulls (the clone and its remote set outside the timing)
        for tool in ("mloop", "dvc") if i % 2 == 0 else ("dvc", "mloop"):
            clone = work / f"clone-{files}-{tool}-{i}"
            sh(["git", "clone", "-q", str(root), str(clone)], work)
            if tool == "dvc":  # plain DVC needs the machine's default remote named (mloop finds it itself)
                sh([str(BIN / "dvc"), "remote", "add", "--local", "-d", "mloop", str(remote)], clone)
            cmd = [str(BIN / "mloop"), "data", "pull"] if tool == "mloop" else [str(BIN / "dvc"), "pull", "-q"]
            took = sh(cmd, clone)
            if i:
                pulls[tool].append(took)
            shutil.rmtree(clone)
    return [(row(f"push to an empty remote, {label}: mloop data push", pushes["mloop"]), row("dvc push", pushes["dvc"])),
            (row(f"pull into a fresh clone, {label}: mloop data pull", pulls["mloop"]), row("dvc pull", pulls["dvc"])),
            (row(f"add, {label}: mloop data add", adds["mloop"]), row("dvc add", adds["dvc"])),
            (row(f"status, {label}, remote checked: mloop data status", status["mloop remote"]),
             row("dvc data status --not-in-remote", status["dvc remote"])),
            (row(f"status, {label}, no remote: mloop data status --no-remote", status["mloop local"]),
             row("dvc data status", status["dvc local"]))]


def bench_reproduce(work: Path, repeat: int) -> tuple[dict, dict]:
    root, _ = project(work, "reproduce", 1)
    (root / ".mloop").mkdir(exist_ok=True)
    sh([str(BIN / "mloop"), "run"], root)  # creates the store (migrations are not what we compare)
    runs, reproductions = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run([str(BIN / "mloop"), "run", "--no-cache"], cwd=root, env=ENV, capture_output=True, text=True)
        runs.append(time.perf_counter() - start)
        run_id = next(line.split()[1].rstrip(":") for line in done.stdout.splitlines() if line.startswith("run "))
        reproductions.append(sh([str(BIN / "mloop"), "reproduce", run_id], root))
    listed = [sh([str(BIN / "mloop"), "data", "versions", "data/data.csv"], root) for _ in range(repeat)]
    return (row("mloop run --no-cache (tracked)", runs), row("mloop reproduce RUN", reproductions),
            row(f"mloop data versions data/data.csv ({repeat + 1} runs to look up)", listed))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 10000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mloop-bench-data-") as tmp:
        work = Path(tmp)
        ENV["XDG_DATA_HOME"] = str(work / "xdg")  # the default remote, away from the home folder
        pairs = []
        for files in args.sizes:
            pairs += bench_size(work, files, args.repeat)
            print(f"{files} files done", flush=True)
        plain, again, listed = bench_reproduce(work, args.repeat)
    lines = [f"# Data versioning: mloop vs plain DVC ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}, median of {args.repeat}, whole processes)", "",
             "| command | mloop median s | dvc median s | mloop / dvc |", "|---|---:|---:|---:|"]
    for ours, theirs in pairs:
        lines.append(f"| {ours['name']} vs `{theirs['name']}` | {ours['median']:.2f} | {theirs['median']:.2f} | "
                     f"{ours['median'] / theirs['median']:.2f}x |")
    lines += ["", "| reproduction, and a lookup that needs the tracking store | median s | min s | max s |",
              "|---|---:|---:|---:|"]
    for r in (plain, again, listed):
        lines.append(f"| {r['name']} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} |")
    lines += ["", f"`mloop reproduce` costs {again['median'] / plain['median']:.2f}x a tracked uncached run "
              "(a git worktree, the data restored, the pipeline untracked in a child process, the comparison).", "",
              f"Reproduce: `.venv/bin/python benchmarks/data/bench_data.py --repeat {args.repeat}`"]
    text = "\n".join(lines) + "\n"
    (Path(__file__).with_name("results.md")).write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
