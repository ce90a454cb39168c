"""Steps in an importable module: they travel to worker processes by reference (module and name)."""

from mloop import step

OFFSET = 10


@step
def add_offset(x: int = 1) -> int:
    return x + OFFSET


@step(outputs=("low", "high"))
def split_at(values: list[int], at: int = 5) -> tuple[list[int], list[int]]:
    return [v for v in values if v < at], [v for v in values if v >= at]
