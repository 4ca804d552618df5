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


def test_a_throttle_after_an_hourly_probe_returns_the_cap_to_where_the_last_throttle_left_it():
    # A limit far below the ceiling (40/s): five rounds of six calls, each throttled, bring the cap to
    # 0.09 (10, 2.5, 0.625, 0.15625, then 0.9 * 6/60). A clean hour probes it up by 0.05 * 40 = 2 to
    # 2.09; the next throttle (six calls again) would set max(0.09, 2.09 / 4 = 0.5225): still over the
    # limit, a second throttle that hour. It goes back to 0.09, where the last throttle left it.
    now = [1000.0]
    lim = AdaptiveLimiter(40.0, 60.0, clock=lambda: now[0])

    def six_calls_then_a_throttle() -> float:
        calls = 0
        while calls < 6:
            now[0] += 1.0
            if lim.try_acquire():
                calls += 1
        lim.on_throttle()
        return lim.cap

    caps = [six_calls_then_a_throttle() for _ in range(5)]
    assert caps == pytest.approx([10.0, 2.5, 0.625, 0.15625, 0.09])
    now[0] = lim.paused_until + 3600.0
    assert lim.snapshot()["cap_per_sec"] == pytest.approx(2.09)
    assert six_calls_then_a_throttle() == pytest.approx(0.09)
