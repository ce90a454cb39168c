"""The promotion gate: the candidate and the champion scored on the same test set, the configured rule applied.

The metrics come from the one table in ``mloop.registry.metrics`` (shared with the live monitor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Decision:
    promote: bool
    reason: str
    candidate_score: float
    champion_score: float | None = None
    champion_version: str | None = None


def decide(metric: str, direction: str, min_improvement: float, candidate: float, champion: float | None,
           champion_version: str | None = None, *, on: str = "the same test set") -> Decision:
    """Promote when there is no champion, or the candidate beats it by at least ``min_improvement``, both
    scored ``on`` the rows the reason names.

    An undefined (NaN) score never wins: a candidate without one is not promoted, a champion without
    one is replaced by a candidate that has one.
    """
    if math.isnan(candidate):
        against = "" if champion is None else f" (vs champion v{champion_version} {champion:.4f})"
        return Decision(False, f"{metric} of the candidate is undefined on the test set{against}: not promoted",
                        candidate, champion, champion_version)
    if champion is None:
        return Decision(True, f"no champion yet; {metric} = {candidate:.4f}", candidate)
    verdict = f"{metric} {candidate:.4f} vs champion v{champion_version} {champion:.4f} on {on}"
    if math.isnan(champion):
        return Decision(True, f"{verdict}: the champion's is undefined", candidate, champion, champion_version)
    gain = candidate - champion if direction == "maximize" else champion - candidate
    if gain > 0 and gain >= min_improvement:
        return Decision(True, f"{verdict}: better by {gain:.4f}", candidate, champion, champion_version)
    need = f"needs to be {'higher' if direction == 'maximize' else 'lower'}"
    if min_improvement > 0:
        need += f" by at least {min_improvement}"
    return Decision(False, f"{verdict}: not promoted ({need})", candidate, champion, champion_version)
