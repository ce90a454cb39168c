"""load -> (top, moments) -> combine, as an mloop pipeline."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common  # noqa: E402

from mloop import pipeline, step  # noqa: E402


@step
def load(seed: int = 0):
    return common.load(seed)


@step
def top(values):
    return common.top(values)


@step
def moments(values):
    return common.moments(values)


@step
def combine(a, b):
    return common.combine(a, b)


@pipeline
def fanout():
    values = load()
    return {"result": combine(top(values), moments(values))}
