"""What the app's Altair charts share: a time axis whose labels can be read at any span."""

from __future__ import annotations

from typing import Any


def time_format(span_s: float) -> str:
    """The label format of a time axis spanning ``span_s`` seconds: every label says the hour, the minute and the
    second (the milliseconds below ten seconds, the day beyond one), never a bare ".900" or ":30"."""
    if span_s < 10:
        return "%H:%M:%S.%L"
    return "%H:%M:%S" if span_s < 86400 else "%b %d %H:%M"


def time_x(frame: Any, start: str = "start", end: str = "end", *, title: str = "time (UTC)") -> Any:
    """The x encoding of ``frame``'s ``start`` column (a time), its labels formatted for the span from the first
    ``start`` to the last ``end``."""
    import altair as alt

    span = (frame[end].max() - frame[start].min()).total_seconds() if len(frame) else 0.0
    return alt.X(f"{start}:T", title=title, axis=alt.Axis(format=time_format(span), labelOverlap=True))
