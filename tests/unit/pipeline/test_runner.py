"""The scheduler against a real store and real worker processes, without tracking."""

import os
import time
from pathlib import Path

import pytest

from mloop.errors import StepFailed
from mloop.pipeline.artifacts import register_materializer
from mloop.pipeline.dsl import pipeline, step
from mloop.pipeline.executors.local import InlineExecutor, LocalExecutor
from mloop.pipeline.runner import Runner, raise_for_failures

@step
def source(n: int = 3) -> list[int]:
    return list(range(n))


@step
def slow_a(data: list[int], pause: float = 0.6) -> int:
    time.sleep(pause)
    return sum(data)


@step
def slow_b(data: list[int], pause: float = 0.6) -> int:
    time.sleep(pause)
    return len(data)


@step
def combine(a: int, b: int) -> int:
    return a + b


@step
def flaky(data: list[int], broken_if: str = "") -> int:
    if broken_if and os.path.exists(broken_if):  # a file, so the worker processes see the fix
        raise ValueError("bad batch")
    return max(data)


@step
def after_flaky(x: int) -> int:
    return x * 2


@pipeline
def fan_out():
    data = source()
    return {"total": combine(slow_a(data), slow_b(data))}


@pipeline
def with_failure():
    data = source()
    after_flaky(flaky(data))
    return {"ok": slow_a(data, pause=0.0)}


def run(graph, tmp_path: Path, executor=None, use_cache=True):
    runner = Runner(graph, store_root=tmp_path / ".mloop", project_root=tmp_path,
                    executor=executor or LocalExecutor(max_workers=3), use_cache=use_cache)
    return runner.run()


def test_independent_steps_overlap_in_time_in_separate_processes(tmp_path: Path):
    result = run(fan_out.build(), tmp_path)
    a, b = result.steps["slow_a"], result.steps["slow_b"]
    assert a.state == b.state == "done"
    assert a.started < b.ended and b.started < a.ended, "the two branches did not run at the same time"
    assert result.result("total") == 3 + 3


def test_second_run_is_served_from_the_cache_and_a_parameter_change_reruns_only_dependents(tmp_path: Path):
    run(fan_out.build(), tmp_path)
    again = run(fan_out.build(), tmp_path)
    assert {r.state for r in again.steps.values()} == {"cached"}
    changed = run(fan_out.build({"slow_b": {"pause": 0.05}}), tmp_path)
    states = {name: r.state for name, r in changed.steps.items()}
    assert states == {"source": "cached", "slow_a": "cached", "slow_b": "done", "combine": "cached"}, (
        "slow_b returned the same value, so combine's inputs are unchanged and it stays cached")


def test_a_failing_step_stops_its_dependents_and_unrelated_branches_finish(tmp_path: Path):
    broken = tmp_path / "broken"
    broken.touch()
    params = {"flaky": {"broken_if": str(broken)}}
    result = run(with_failure.build(params), tmp_path)
    states = {name: r.state for name, r in result.steps.items()}
    assert states == {"source": "done", "flaky": "failed", "after_flaky": "skipped", "slow_a": "done"}
    assert result.steps["flaky"].error == "ValueError: bad batch"
    assert result.steps["flaky"].location.endswith(f"test_runner.py:{flaky.fn.__code__.co_firstlineno + 3}")
    with pytest.raises(StepFailed, match=r"(?s)step 'flaky' failed: ValueError: bad batch.*not run because of it: after_flaky") as info:
        raise_for_failures(result)
    assert "mloop run" in info.value.hint and "Traceback" in info.value.failures["flaky"]

    broken.unlink()  # the fix
    resumed = run(with_failure.build(params), tmp_path)
    states = {name: r.state for name, r in resumed.steps.items()}
    assert states == {"source": "cached", "flaky": "done", "after_flaky": "done", "slow_a": "cached"}


class Exploding:
    """A value whose materializer dies halfway through writing it."""


class ExplodingMaterializer:
    name = "exploding"
    suffix = ".bin"

    def save(self, value, path):
        with open(path, "wb") as fh:
            fh.write(b"half of the bytes")
            fh.flush()
            os._exit(3)  # the worker is killed mid-write

    def load(self, path):
        raise AssertionError("never stored, so never loaded")


register_materializer(ExplodingMaterializer(), f"{Exploding.__module__}.{Exploding.__qualname__}")


@step
def explode(data: list[int]) -> Exploding:
    return Exploding()


@pipeline
def crashing():
    data = source()
    explode(data)
    return {"ok": slow_a(data, pause=0.0)}


def test_a_worker_killed_mid_write_leaves_no_entry_and_the_store_readable(tmp_path: Path):
    result = run(crashing.build(), tmp_path, executor=LocalExecutor(max_workers=1))
    assert result.steps["explode"].state == "failed"
    assert "worker process" in result.steps["explode"].error
    objects = tmp_path / ".mloop" / "objects"
    stored = [p for p in objects.rglob("*.bin") if p.parent.name != "tmp"]
    assert stored == [], "a half-written object reached the store"
    again = run(crashing.build(), tmp_path, executor=LocalExecutor(max_workers=1))
    assert again.steps["source"].state == "cached"
    assert again.steps["explode"].state == "failed"


def test_a_truncated_store_object_is_rebuilt_by_the_next_run(tmp_path: Path):
    params = {"slow_a": {"pause": 0.0}, "slow_b": {"pause": 0.0}}
    first = run(fan_out.build(params), tmp_path, executor=InlineExecutor())
    ref = first.steps["source"].outputs["output"]
    path = tmp_path / ".mloop" / "objects" / ref.digest[:2] / f"{ref.digest}.json"
    path.write_bytes(path.read_bytes()[:-2])
    again = run(fan_out.build(params), tmp_path, executor=InlineExecutor())
    assert again.ok and again.result("total") == 6
    assert again.steps["source"].state == "done"  # its output was damaged: it ran again
    assert again.steps["combine"].state == "cached"  # the rest was whole
    assert path.read_text() == "[0, 1, 2]"


def test_inline_executor_runs_the_same_graph_in_process(tmp_path: Path):
    result = run(fan_out.build({"slow_a": {"pause": 0.0}, "slow_b": {"pause": 0.0}}), tmp_path,
                 executor=InlineExecutor())
    assert result.ok and result.result("total") == 6
    assert {r.state for r in result.steps.values()} == {"done"}


def test_no_cache_reruns_everything(tmp_path: Path):
    graph = fan_out.build({"slow_a": {"pause": 0.0}, "slow_b": {"pause": 0.0}})
    run(graph, tmp_path)
    again = run(fan_out.build({"slow_a": {"pause": 0.0}, "slow_b": {"pause": 0.0}}), tmp_path, use_cache=False)
    assert {r.state for r in again.steps.values()} == {"done"}


def test_step_stdout_goes_to_its_log_not_the_terminal(tmp_path: Path, capfd):
    @step
    def chatty(data: list[int]) -> int:
        print("hello from the step")
        return 1

    @pipeline
    def talk():
        chatty(source())

    result = run(talk.build(), tmp_path)
    assert "hello from the step" not in capfd.readouterr().out
    log = result.store.file_path(result.steps["chatty"].files["step.log"]).read_text()
    assert log.strip() == "hello from the step"


@step
def knn_in_worker(data: list[int]) -> int:
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 20))
    model = KNeighborsClassifier().fit(x, (x[:, 0] > 0).astype(int))
    return int(model.predict(x[:500]).sum())


@pipeline
def knn_flow():
    knn_in_worker(source())


@pytest.mark.timeout(120)
def test_workers_do_not_deadlock_after_the_parent_used_openmp(tmp_path: Path):
    """Forking a process whose OpenMP runtime is initialised hangs k-NN in the child (seen here)."""
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 20))
    KNeighborsClassifier().fit(x, (x[:, 0] > 0).astype(int)).predict(x[:500])  # OpenMP threads start here
    result = run(knn_flow.build(), tmp_path)
    assert result.steps["knn_in_worker"].state == "done", result.steps["knn_in_worker"].error


@step
def fit_without_rows(data: list[int]) -> int:
    from sklearn.linear_model import LogisticRegression

    LogisticRegression().fit([], [])  # fails inside scikit-learn
    return 0


@pipeline
def failing_in_a_library():
    fit_without_rows(source())


def test_a_failure_inside_a_library_points_at_the_users_own_line(tmp_path: Path):
    result = run(failing_in_a_library.build(), tmp_path, executor=InlineExecutor())
    record = result.steps["fit_without_rows"]
    assert record.state == "failed"
    assert record.location == f"{__file__}:{fit_without_rows.fn.__code__.co_firstlineno + 4}"
