"""What the app's pages print of numbers and times: time axes labelled at any span, p-values people can read."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from mloop.ui.charts import time_format, time_x
from mloop.ui.monitoring import p_value_text


@pytest.mark.parametrize(("span_s", "shown"), [(0.5, "%H:%M:%S.%L"), (9.9, "%H:%M:%S.%L"), (10, "%H:%M:%S"),
                                               (3 * 3600, "%H:%M:%S"), (3 * 86400, "%b %d %H:%M")])
def test_a_time_axis_always_says_hours_minutes_and_seconds_and_milliseconds_below_ten_seconds(span_s, shown):
    assert time_format(span_s) == shown
    assert time.strftime(shown.replace(".%L", ""), time.gmtime(0)).startswith(("00:00:00", "Jan 01 00:00"))


def test_time_x_formats_for_the_span_of_a_frame_from_its_first_start_to_its_last_end():
    frame = pd.DataFrame({"start": pd.to_datetime([0.0, 0.4], unit="s"), "end": pd.to_datetime([0.3, 0.9], unit="s")})
    assert time_x(frame).to_dict()["axis"]["format"] == "%H:%M:%S.%L"
    assert time_x(frame.assign(end=frame["end"] + pd.Timedelta(minutes=5))).to_dict()["axis"]["format"] == "%H:%M:%S"


@pytest.mark.parametrize(("p_value", "shown"), [(6.06e-36, "< 1e-6"), (0.0, "< 1e-6"), (4.2e-5, "4.2e-05"),
                                                (0.00123, "0.00123"), (0.7536, "0.754"), (1.0, "1"),
                                                (None, "-"), (float("nan"), "-")])
def test_p_values_are_shown_with_at_most_three_significant_digits(p_value, shown):
    assert p_value_text(p_value) == shown
