"""The adaptive limiter (worker.poll.limiter): edges mutation testing found unpinned.

The constructor's checks and defaults, the exact wait `delay` reports inside and outside a pause,
the learned cap's hourly probe (one and several hours at once), AIMD steps over several windows at
once, the end of the calls window, and throttles that achieved nothing. Every expected value is
worked out by hand in the comments from the module docstring's rules; the clock is a fake.
"""

from __future__ import annotations

import pytest

from worker.poll.limiter import AdaptiveLimiter


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(ceiling: float = 40.0, window: float = 60.0, start: float = 1000.0) -> tuple[AdaptiveLimiter, Clock]:
    clock = Clock(start)
    return AdaptiveLimiter(ceiling, window, clock=clock), clock


# -- construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ceiling", [0, 0.0, -1.0])
def test_a_ceiling_that_is_not_positive_is_refused_with_its_reason(ceiling):
    with pytest.raises(ValueError, match=r"^the ceiling must be positive$"):
        AdaptiveLimiter(ceiling, clock=Clock())


def test_the_default_window_is_a_minute():
    clock = Clock()
    lim = AdaptiveLimiter(1.0, clock=clock)
    assert lim.window == 60.0
    lim.on_throttle()                               # paused for one (default) window
    assert lim.snapshot()["paused_secs"] == 60.0


def test_the_call_counter_starts_at_zero_and_counts_each_call():
    lim, _ = limiter()
    assert lim.calls == 0
    assert lim.try_acquire()
    assert lim.calls == 1


def test_a_fresh_limiter_lets_the_first_call_go_even_at_clock_zero():
    # time.monotonic() may be anywhere from 0 up; nothing was throttled, so nothing is paused
    lim, clock = limiter(2.0, 60.0, start=0.0)
    assert lim.delay() == 0.0
    assert lim.snapshot()["paused_secs"] == 0.0
    assert lim.try_acquire()


# -- delay ----------------------------------------------------------------------------------------


def test_delay_outside_a_pause_is_the_time_to_the_next_whole_token():
    lim, clock = limiter(2.0, 60.0)                 # 2 calls/s, burst max(1, 2*60/60) = 2
    assert lim.try_acquire()                        # 1 token -> 0
    clock.now = 1000.25                             # refill 0.25 * 2 = 0.5 token
    assert lim.delay() == pytest.approx(0.25)       # (1 - 0.5) / 2
    assert not lim.try_acquire()                    # a wait under a second is still a wait
    assert lim.calls == 1
    clock.now = 1000.75                             # 1.5 tokens: one is there
    assert lim.delay() == 0.0
    clock.now = 1010.0                              # full: min(2, ...) = 2 tokens
    assert lim.delay() == 0.0
    assert lim.snapshot()["tokens"] == 2.0


def test_delay_inside_a_pause_is_the_rest_of_the_pause_plus_one_token():
    lim, clock = limiter(40.0, 60.0)
    lim.on_throttle()                               # no calls: cap stays 40, rate 20; tokens 0; until 1060
    clock.now = 1010.0
    assert lim.delay() == pytest.approx(50.05, abs=1e-9)   # 50 s left + (1 - 0) / 20
    assert not lim.try_acquire()


# -- throttles ------------------------------------------------------------------------------------


def test_a_throttle_that_achieved_nothing_keeps_the_cap_and_every_throttle_counts():
    lim, clock = limiter(40.0, 60.0)
    lim.on_throttle()                               # no call in the window: no evidence of a limit
    snap = lim.snapshot()
    assert (snap["cap_per_sec"], snap["rate_per_sec"], snap["throttles"]) == (40.0, 20.0, 1)
    clock.now = 1100.0
    lim.on_throttle()                               # rate 20 at 1100 (nothing clean yet): halved to 10
    snap = lim.snapshot()
    assert (snap["cap_per_sec"], snap["rate_per_sec"], snap["throttles"]) == (40.0, 10.0, 2)


def test_a_sub_second_window_pauses_for_that_window():
    # the schema allows any positive quota window ("shorter only for tests")
    lim, clock = limiter(4.0, 0.5)
    lim.on_throttle()
    assert lim.snapshot()["paused_secs"] == 0.5
    assert lim.paused_until == 1000.5
    lim.on_throttle(retry_after=0.0)                # a zero Retry-After is no longer than the window
    assert lim.paused_until == 1000.5


# -- the calls window -----------------------------------------------------------------------------


def test_a_call_exactly_one_window_old_has_left_the_window():
    lim, clock = limiter(40.0, 60.0)
    assert lim.try_acquire()                        # at 1000
    clock.now = 1059.5
    assert lim.snapshot()["calls_last_window"] == 1
    clock.now = 1060.0                              # 1000 <= 1060 - 60: gone
    assert lim.snapshot()["calls_last_window"] == 0
    lim.on_throttle()                               # so no achieved rate: the cap stays the ceiling
    assert lim.cap == 40.0


# -- AIMD steps -----------------------------------------------------------------------------------


def test_clean_windows_passed_at_once_each_add_ten_percent_of_the_ceiling():
    lim, clock = limiter(40.0, 60.0)
    lim.on_throttle()                               # rate 20, cap 40, paused until 1060
    clock.now = 1060.0 + 150.0                      # 2.5 clean windows: 2 steps of 4
    assert lim.snapshot()["rate_per_sec"] == 28.0


def test_clean_windows_step_by_step_then_several_at_once():
    lim, clock = limiter(40.0, 60.0)
    lim.on_throttle()                               # rate 20, paused until 1060
    clock.now = 1060.0 + 60.0                       # 1 step
    assert lim.snapshot()["rate_per_sec"] == 24.0
    clock.now = 1060.0 + 180.0                      # 3 steps in all: 2 more
    assert lim.snapshot()["rate_per_sec"] == 32.0


def test_a_window_counts_only_once_it_has_really_passed():
    # window 1.3 s; throttled at 1.3 (paused until 2.6); at 6.5 the clean time is the float 3.9,
    # which is just under 3 * 1.3 in binary: two whole windows have passed, not three
    lim, clock = limiter(10.0, 1.3, start=1.3)
    lim.on_throttle()                               # no calls: cap 10, rate 5
    clock.now = 6.5
    assert lim.snapshot()["rate_per_sec"] == 7.0    # 5 + 2 * (0.10 * 10)


# -- the learned cap's probe ----------------------------------------------------------------------


def throttled_after_six_calls() -> tuple[AdaptiveLimiter, Clock]:
    """Ceiling 40/s, 6 calls in the window, then a throttle at 1005: achieved 6/60 = 0.1/s; 0.9 of
    that (0.09) is below a quarter of the cap before (40 / 4 = 10), so the cap is 10 and the rate
    min(40 / 2, 10) = 10; paused until 1065."""
    lim, clock = limiter(40.0, 60.0)
    for t in range(1000, 1006):
        clock.now = float(t)
        assert lim.try_acquire()
    lim.on_throttle()
    assert lim.cap == 10.0 and lim.rate == 10.0
    assert lim.paused_until == 1065.0
    return lim, clock


def test_the_cap_is_probed_up_by_five_percent_of_the_ceiling_each_clean_hour():
    lim, clock = throttled_after_six_calls()
    clock.now = 1065.0 + 3599.0                     # not yet an hour: no probe; the rate sits at the cap
    snap = lim.snapshot()
    assert (snap["cap_per_sec"], snap["rate_per_sec"]) == (10.0, 10.0)
    clock.now = 1065.0 + 3600.0                     # one probe: 10 + 0.05 * 40 = 12
    snap = lim.snapshot()
    assert (snap["cap_per_sec"], snap["rate_per_sec"]) == (12.0, 12.0)
    clock.now = 1065.0 + 7200.0                     # a second probe: 14
    snap = lim.snapshot()
    assert (snap["cap_per_sec"], snap["rate_per_sec"]) == (14.0, 14.0)


def test_two_clean_hours_at_once_are_two_probes():
    lim, clock = throttled_after_six_calls()
    clock.now = 1065.0 + 7200.0                     # 10 + 2 * 2 = 14
    snap = lim.snapshot()
    assert (snap["cap_per_sec"], snap["rate_per_sec"]) == (14.0, 14.0)


def test_a_second_throttle_starts_the_probe_count_afresh():
    lim, clock = throttled_after_six_calls()
    clock.now = 1065.0 + 3600.0                     # one probe: cap 12
    assert lim.snapshot()["cap_per_sec"] == 12.0
    lim.on_throttle()                               # no call left in the window: cap stays 12;
    assert lim.paused_until == 4725.0               # rate 12 / 2 = 6; paused until 4665 + 60
    assert (lim.cap, lim.rate) == (12.0, 6.0)
    clock.now = 4725.0 + 3600.0                     # the first hour after it probes again: 14
    snap = lim.snapshot()
    assert (snap["cap_per_sec"], snap["rate_per_sec"]) == (14.0, 14.0)


def test_throttles_after_a_few_calls_each_lower_the_cap_at_most_fourfold():
    # a provider whose limit is far below the configured one: every round of six calls is throttled.
    # Caps, worked by hand: max(0.9 * 6/60, cap / 4) = max(0.09, 10) = 10, then max(0.09, 2.5) = 2.5,
    # max(0.09, 0.625) = 0.625, max(0.09, 0.15625) = 0.15625, then max(0.09, 0.0390625) = 0.09:
    # the achieved rate's cap, reached by the fifth throttle. Each round's calls come after the last
    # pause, so the window holds that round's six calls alone.
    lim, clock = limiter(40.0, 60.0)
    caps = []
    for _ in range(5):
        calls = 0
        while calls < 6:
            clock.now += 1.0
            if lim.try_acquire():
                calls += 1
        assert lim.snapshot()["calls_last_window"] == 6
        lim.on_throttle()
        caps.append(lim.cap)
    assert caps == pytest.approx([10.0, 2.5, 0.625, 0.15625, 0.09])
