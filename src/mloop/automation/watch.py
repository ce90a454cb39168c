"""The watch: an analysis of a roll-out with Argo Rollouts' semantics, over mloop's live metrics.

A measurement every ``interval``, ``count`` of them. Each measurement reads the candidate's figures
(``Reading``) and judges every configured metric: failed (its condition holds), inconclusive (fewer
samples than ``min_samples``: no traffic, no feedback yet) or successful. A measurement that cannot be
taken at all (the server unreachable, no roll-out there) is a provider *error*, counted apart: it says
nothing about the model. The analysis fails once more than ``failure_limit`` measurements failed or more
than ``error_limit`` errors came in a row, holds once more than ``inconclusive_limit`` were
inconclusive, and passes after ``count`` measurements otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from mloop.config import WatchMetric, WatchSection

Phase = Literal["Successful", "Failed", "Inconclusive", "Error"]
Verdict = Literal["passed", "failed", "held", "stopped"]


class ProviderError(Exception):
    """A measurement could not be taken (not a failing metric)."""


@dataclass
class Reading:
    """What one measurement read: per metric its value and how many samples it stands on."""

    values: dict[str, float | None]
    samples: dict[str, int]


@dataclass
class Measurement:
    at: float
    phase: Phase
    weight: float | None
    values: dict[str, float | None] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # the conditions that held
    message: str = ""


@dataclass
class Analysis:
    verdict: Verdict
    reason: str
    measurements: list[Measurement]

    def counts(self) -> dict[str, int]:
        phases = [m.phase for m in self.measurements]
        return {phase: phases.count(phase) for phase in ("Successful", "Failed", "Inconclusive", "Error")}

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "counts": self.counts(),
                "measurements": [asdict(m) for m in self.measurements]}


def judge(metrics: list[WatchMetric], reading: Reading) -> tuple[Phase, list[str], str]:
    """One measurement's phase: Failed if any condition holds (on enough samples), else Inconclusive if any
    metric lacks samples, else Successful; Error when no metric has a single sample (no data: the provider's
    problem, such as a candidate no request reached, not the model's)."""
    if metrics and all(reading.values.get(m.metric) is None or not reading.samples.get(m.metric, 0) for m in metrics):
        return "Error", [], "no data: no metric has a sample yet (" + ", ".join(m.metric for m in metrics) + ")"
    failed, short = [], []
    for metric in metrics:
        value, samples = reading.values.get(metric.metric), reading.samples.get(metric.metric, 0)
        if value is None or samples < metric.min_samples:
            short.append(f"{metric.metric} ({samples} of {metric.min_samples} samples)")
        elif metric.failed(value):
            failed.append(f"{metric.condition} (measured {value:.4g} on {samples})")
    if failed:
        return "Failed", failed, "; ".join(failed)
    if short:
        return "Inconclusive", [], "too few samples: " + ", ".join(short)
    return "Successful", [], "every metric within its limit"


def analyse(settings: WatchSection, read: Callable[[], Reading], *, weights: list[float] | None = None,
            set_weight: Callable[[float], None] | None = None, stopped: Callable[[], bool] = lambda: False,
            sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
            on_measurement: Callable[[Measurement], None] | None = None) -> Analysis:
    """Run the analysis. With ``weights`` (a canary), the measurements are split evenly among the steps and
    ``set_weight`` is called as each step begins."""
    measurements: list[Measurement] = []
    failures = inconclusive = errors_in_a_row = 0
    weight: float | None = None
    for index in range(settings.count):
        if weights:
            step_weight = weights[min(index * len(weights) // settings.count, len(weights) - 1)]
            if step_weight != weight and set_weight is not None:
                set_weight(step_weight)
            weight = step_weight
        sleep_or_stop(settings.interval_s, sleep, stopped)
        if stopped():
            return Analysis("stopped", "the agent is stopping", measurements)
        try:
            reading = read()
        except ProviderError as err:
            measurement = Measurement(clock(), "Error", weight, message=str(err))
            errors_in_a_row += 1
        else:
            phase, failed, message = judge(settings.metrics, reading)
            measurement = Measurement(clock(), phase, weight, reading.values, failed, message)
            errors_in_a_row = errors_in_a_row + 1 if phase == "Error" else 0
            failures += phase == "Failed"
            inconclusive += phase == "Inconclusive"
        measurements.append(measurement)
        if on_measurement is not None:
            on_measurement(measurement)
        if failures > settings.failure_limit:
            return Analysis("failed", f"measurement {index + 1} of {settings.count} failed: {measurement.message}",
                            measurements)
        if errors_in_a_row > settings.error_limit:
            return Analysis("failed", f"{errors_in_a_row} measurements in a row could not be taken: "
                            f"{measurement.message}", measurements)
        if inconclusive > settings.inconclusive_limit:
            return Analysis("held", f"{inconclusive} measurements were inconclusive ({measurement.message})",
                            measurements)
    successful = sum(m.phase == "Successful" for m in measurements)
    if not successful:  # nothing was ever measured on enough samples: no evidence either way
        return Analysis("held", f"none of {settings.count} measurements had enough samples ({inconclusive} "
                        f"inconclusive, {settings.count - inconclusive} could not be taken)", measurements)
    return Analysis("passed", f"{successful} of {settings.count} measurements successful, {failures} failed, "
                    f"{inconclusive} inconclusive", measurements)


def sleep_or_stop(seconds: float, sleep: Callable[[float], None], stopped: Callable[[], bool]) -> None:
    """Sleep ``seconds`` in short naps, returning early once ``stopped()``."""
    left = seconds
    while left > 0 and not stopped():
        nap = min(left, 0.2)
        sleep(nap)
        left -= nap
