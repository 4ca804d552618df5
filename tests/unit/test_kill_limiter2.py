"""The limiter's floor, one call per quota window (worker.poll.limiter), where it decides: a ceiling
under two calls a window, halved by a throttle, stops at the floor. Worked by hand."""

from __future__ import annotations

import pytest

from worker.poll.limiter import AdaptiveLimiter


def test_a_halved_rate_stops_at_one_call_a_window():
    clock = lambda: 1000.0  # noqa: E731 - a clock that stands still
    lim = AdaptiveLimiter(0.03, 60.0, clock=clock)     # 1.8 calls a minute
    assert lim.floor == pytest.approx(1 / 60)          # min(0.03, 1/60)
    lim.on_throttle()                                  # no call in the window: the cap stays 0.03
    # halved: 0.015, under the floor: one call a window, 1/60 (not two, 2/60, which the ceiling would cut to 0.03)
    assert (lim.cap, lim.rate) == (0.03, pytest.approx(1 / 60))
