"""How a step travels to a worker: by reference when its module can be imported there, by value otherwise."""

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import cloudpickle

from mloop.config import load_project
from mloop.pipeline.dsl import Step, step
from mloop.project import load_pipeline
from tests.support import steps
from tests.support.projects import write_project

REPO = Path(__file__).resolve().parents[3]


def load_elsewhere(blob: bytes, *, path: list[str]) -> str:
    """Unpickle in a fresh interpreter with only ``path`` added; returns what the step computes (or the error)."""
    code = textwrap.dedent("""
        import pickle, sys
        step = pickle.loads(sys.stdin.buffer.read())
        print(step.name, step.outputs, step.fn(**{"x": 2} if step.name.startswith("add") else {}))
    """)
    done = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, cwd="/",
                          env={"PYTHONPATH": ":".join(path)}, timeout=60)
    return done.stdout.decode().strip() or done.stderr.decode().strip().splitlines()[-1]


def test_a_step_of_an_importable_module_pickles_by_reference():
    blob = cloudpickle.dumps(steps.add_offset)
    assert b"tests.support.steps" in blob and b"add_offset" in blob
    assert b"OFFSET" not in blob and len(blob) < 300, "no code and no module globals travel"
    again = pickle.loads(blob)
    assert isinstance(again, Step) and again.fn is steps.add_offset.fn
    renamed = pickle.loads(cloudpickle.dumps(steps.add_offset.with_name("add_again")))
    assert renamed.name == "add_again" and renamed.fn is steps.add_offset.fn
    assert pickle.loads(cloudpickle.dumps(steps.split_at)).outputs == ("low", "high")
    assert load_elsewhere(blob, path=[str(REPO), str(REPO / "src")]) == "add_offset ('output',) 12"


def test_a_step_defined_in_a_function_pickles_by_value():
    @step
    def nested(x: int = 1) -> int:
        return x * 100

    blob = cloudpickle.dumps(nested)
    assert pickle.loads(blob).fn(x=3) == 300
    assert b"tests.support" not in blob


def test_a_projects_steps_pickle_by_value_and_load_where_the_project_is_unknown(tmp_path):
    root = write_project(tmp_path / "p", "p", """
        from mloop import pipeline, step

        FACTOR = 7

        @step
        def add_seven(x: int = 1) -> int:
            return x + FACTOR

        @pipeline
        def training():
            add_seven()
    """)
    pipe = load_pipeline(load_project(root))
    [node] = pipe.build()
    blob = cloudpickle.dumps(node.step)
    assert b"FACTOR" in blob, "the module is not importable elsewhere: the code and its globals travel"
    assert load_elsewhere(blob, path=[str(REPO / "src")]) == "add_seven ('output',) 9"
