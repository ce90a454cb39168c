"""How the CLI prints: one rich console, error lines with hints, durations."""

from __future__ import annotations

import os
import sys
import traceback

from rich.console import Console
from rich.text import Text

# Piped output (logs, CI, tests) gets wide lines instead of rich's 80-column default. No markup: names,
# categories and messages print as they are ("[project] task" stays); styles are Text spans (``styled``).
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
console = Console(highlight=False, width=_WIDTH, markup=False)
err_console = Console(stderr=True, highlight=False, width=_WIDTH, markup=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """One line of plain strings and ``(text, style)`` pairs, e.g. ``styled(("error:", "bold red"), " ", message)``."""
    return Text.assemble(*parts)


def report_error(err: BaseException, *, verbose: bool) -> int:
    """Print an error as one line plus a hint (the traceback only when verbose); return the exit code."""
    from mloop.errors import MloopError, StepFailed

    if verbose:
        traceback.print_exception(err, file=sys.stderr)
        if isinstance(err, StepFailed):
            for step, text in err.failures.items():
                print(f"--- traceback of step {step!r} (in its worker) ---\n{text}", file=sys.stderr)
    if isinstance(err, MloopError):
        err_console.print(styled(("error:", "bold red"), f" {err.message}"), soft_wrap=True)
        if err.hint:
            err_console.print(f"  hint: {err.hint}", soft_wrap=True, markup=False)
        return err.exit_code
    if isinstance(err, OSError) and err.filename is not None:
        # the file system refused: a path of the wrong kind, no permission, a full disk — not a bug of mloop
        import errno

        path = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
        err_console.print(styled(("error:", "bold red"), f" {err.strerror or type(err).__name__}: {path}"),
                          soft_wrap=True)
        fix = ("free space on that disk" if err.errno in (errno.ENOSPC, errno.EDQUOT) else
               "check that path (what it is, its permissions)")
        err_console.print(f"  hint: {fix}; under .mloop/, mloop doctor checks the project", soft_wrap=True,
                          markup=False)
        return 2
    err_console.print(styled(("internal error:", "bold red"), f" {type(err).__name__}: {err}"), soft_wrap=True)
    if not verbose:
        err_console.print("  hint: re-run with --verbose (or MLOOP_VERBOSE=1) for the traceback, and report it if "
                          "it looks like mloop's fault",
                          markup=False)
    return 1


def seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"
