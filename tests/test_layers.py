"""The architecture, checked: imports point down only (import-linter), and process-wide state changes
only in entrypoints, so one process can hold many projects and models (shared/DESIGN.md)."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "mloop"

# Calls that change the whole process, and the places allowed to make them.
PROCESS_WIDE = {"set_config", "filterwarnings", "simplefilter", "freeze", "disable_created_metrics",
                "set_forkserver_preload", "setrlimit", "threadpool_limits", "setswitchinterval"}
MUTATORS = {"insert", "append", "extend", "remove", "pop", "clear", "update", "setdefault", "__setitem__"}
ENTRYPOINTS = {
    "serving/server.py",  # mloop serve: scikit-learn's finiteness check, warnings, native threads, the collector
    "ui/launch.py",  # the web app's process: the preloaded heap frozen out of the collector's sight
    "cli/main.py",  # the mloop command: libraries' log level and warnings
    "pipeline/executors/task.py",  # a worker process: the parent's sys.path
    # Not an entrypoint, a deliberate exception: Python keeps one fork server per process; the local
    # executor names what it preloads (module imports only) before it first starts it.
    "pipeline/executors/local.py",
    # Not an entrypoint, a deliberate exception: a project's pipeline module is in sys.modules under its
    # unique name only while its file runs (dataclasses and pydantic look it up there), then removed.
    "project/load.py",
}


def test_imports_point_down_only_and_siblings_are_independent():
    done = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=REPO,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def _process_wide_changes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in PROCESS_WIDE:
                found.append(f"{name}() at line {node.lineno}")
        target = node.func.value if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
        if (_is_sys(target, "path") or _is_sys(target, "modules")) and node.func.attr in MUTATORS:  # type: ignore[union-attr]
            found.append(f"sys.{target.attr}.{node.func.attr}() at line {node.lineno}")  # type: ignore[union-attr]
        if _is_environ(target) and node.func.attr in MUTATORS:  # type: ignore[union-attr]
            found.append(f"os.environ.{node.func.attr}() at line {node.lineno}")  # type: ignore[union-attr]
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for item in targets:
                if isinstance(item, ast.Subscript) and (_is_sys(item.value, "modules") or _is_sys(item.value, "path")):
                    found.append(f"sys.{item.value.attr}[...] changed at line {node.lineno}")  # type: ignore[attr-defined]
                if isinstance(item, ast.Subscript) and _is_environ(item.value):
                    found.append(f"os.environ[...] changed at line {node.lineno}")
    return found


def _is_environ(node: object) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and getattr(node.value, "id", "") == "os"


def _is_sys(node: object, name: str) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == name and getattr(node.value, "id", "") == "sys"


def test_process_wide_state_changes_only_in_entrypoints():
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        changes = _process_wide_changes(path)
        if changes and relative not in ENTRYPOINTS:
            offenders[relative] = changes
    assert offenders == {}
    found = " ".join(_process_wide_changes(SRC / "serving" / "server.py"))
    assert "os.environ[...]" in found and "threadpool_limits()" in found, "the check itself finds the server's changes"
