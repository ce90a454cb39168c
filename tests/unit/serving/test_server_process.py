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


THREADS = """
import json, sys, threading
import sklearn.neighbors  # scikit-learn's OpenMP and scipy's BLAS loaded before the limit
from threadpoolctl import threadpool_info
from mloop.serving.server import _configure_process
_configure_process(int(sys.argv[1]))
import lightgbm  # another OpenMP runtime, loaded after it (as a swapped-in version's is)
seen = {"loop": threadpool_info()}
worker = threading.Thread(target=lambda: seen.update(worker=threadpool_info()))
worker.start()
worker.join()
print(json.dumps({thread: sorted({(i["filepath"], i["num_threads"]) for i in infos}) for thread, infos in seen.items()}))
"""


def test_a_prediction_s_native_code_runs_on_compute_threads_threads():
    """OpenMP regions on the serving thread with a thread per core stalled the event loop (issue 12's p99)."""
    import json

    for threads in (1, 3):
        seen = json.loads(subprocess.run([sys.executable, "-c", THREADS, str(threads)], capture_output=True, text=True,
                                         check=True).stdout)
        assert {n for _, n in seen["loop"]} == {threads}, seen  # every library, on the thread that runs the loop
        lightgbm_omp = [n for path, n in seen["worker"] if "gomp" in path or "libomp" in path  # GNU's or LLVM's
                        if "scikit_learn" not in path]
        assert lightgbm_omp == [threads], seen  # a library loaded later: on every thread


def test_compute_threads_is_at_least_one():
    import pytest
    from pydantic import ValidationError

    from mloop.config import ServingSection

    assert ServingSection().compute_threads == 1
    with pytest.raises(ValidationError, match="compute_threads"):
        ServingSection(compute_threads=0)


def test_as_mloop_serve_starts_every_thread_s_openmp_is_limited():
    """`mloop serve` configures the process before scikit-learn loads, so its OpenMP runtime reads the limit for
    every thread (a shadow scorer's, the monitor's), not only the event loop's."""
    code = """
import json, threading
from mloop.serving.server import _configure_process
_configure_process(1)
import sklearn.neighbors
from threadpoolctl import threadpool_info
seen = {}
worker = threading.Thread(target=lambda: seen.update(worker=threadpool_info()))
worker.start()
worker.join()
print(json.dumps(sorted({(i["internal_api"], i["num_threads"]) for i in seen["worker"]})))
"""
    import json

    seen = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert ["openmp", 1] in seen and all(n == 1 for _, n in seen), seen


def test_what_mloop_serve_imports_before_the_limit_loads_no_openmp_library():
    """`mloop serve` sets the limit in `serve_model`, after these imports: were one of them to load scikit-learn (or
    scipy, lightgbm, xgboost) at import, its OpenMP runtime would start unlimited in every thread but the loop's."""
    code = """
import sys
import mloop.cli.main, mloop.cli.serve_cmd, mloop.config, mloop.serving.server
import mloop.bundle.loaded, mloop.registry.fetch  # what serve_model imports before _configure_process
print(sorted(m for m in ("sklearn", "scipy", "lightgbm", "xgboost") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
