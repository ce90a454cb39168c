"""Processes: whether one recorded earlier still runs, and children that die with their parent."""

from __future__ import annotations

import os
import signal


# How much later than recorded a process may seem to have started and still be the one recorded. A process's start
# time is its ticks since boot plus the boot time, which Linux derives from the wall clock (/proc/stat btime, whole
# seconds): a step of the clock (NTP, a resumed virtual machine) moves the start time of every process with it, and
# with 1 s here a step of two would make a running deployment look like a recycled pid. A pid recycled within 5 s of
# the process it replaced is not a real risk.
START_SLACK_S = 5.0


def process_alive(pid: int, *, started_by: float | None = None) -> bool:
    """Whether process ``pid`` runs, and (with ``started_by``) was started by then: a pid recycled by a
    later process is not the one a deployment, a run or a status file recorded."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_by is None or process.create_time() <= started_by + START_SLACK_S
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def started_at(pid: int | None = None) -> float:
    """When process ``pid`` (default: this one) started, as the kernel says (seconds since the epoch)."""
    import psutil

    return float(psutil.Process(pid or os.getpid()).create_time())


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux ``PR_SET_PDEATHSIG``); elsewhere
    nothing. For worker processes, so a parent killed with SIGKILL leaves no orphan behind."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
