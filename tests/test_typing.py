"""src/ stays clean under mypy --strict (STYLE.md: type hints everywhere)."""

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mloop"


def test_mypy_strict_is_clean_on_src(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports", "--cache-dir", str(tmp_path), str(SRC)],
        capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
