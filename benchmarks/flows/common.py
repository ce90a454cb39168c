"""The work of the benchmark's four steps, shared by every tool so only orchestration differs."""

import numpy as np

N = 200_000


def load(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=N)


def top(values: np.ndarray) -> float:
    return float(np.sort(values)[-10:].sum())


def moments(values: np.ndarray) -> float:
    return float(values.mean() + values.std())


def combine(a: float, b: float) -> dict:
    return {"top": a, "moments": b}
