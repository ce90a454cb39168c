"""What `mloop serve` changes in its own process (in a child process here: the changes are process-wide)."""

from __future__ import annotations

import subprocess
import sys


def test_the_open_files_limit_is_raised_to_fit_the_connection_limit():
    code = """
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
from mloop.serving.server import _allow_open_files
_allow_open_files(1000)
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
"""
    soft, hard = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    expected = 1256 if int(hard) < 0 else min(1256, int(hard))  # -1: no hard limit
    assert int(soft) == expected
