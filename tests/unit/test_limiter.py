"""The adaptive limiter under a fake clock: the project's own seam, no real time passes."""

from __future__ import annotations

from collections import deque

import pytest

from worker.poll.limiter import AdaptiveLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, secs: float) -> None:
        self.now += max(secs, 1e-6)


class SlidingQuota:
    """A provider's per-window quota, as the simulator enforces it."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window, self.calls = limit, window, deque()

    def call(self, now: float) -> bool:
        while self.calls and self.calls[0] <= now - self.window:
            self.calls.popleft()
        if len(self.calls) >= self.limit:
            return False
        self.calls.append(now)
        return True


def make(ceiling_per_min=3000 * 0.8, window=60.0):
    clock = FakeClock()
    return AdaptiveLimiter(ceiling_per_min / window, window, clock=clock, sleep=clock.sleep), clock


async def test_steady_state_stays_under_the_quota_in_every_window():
    quota = SlidingQuota(3000, 60)
    limiter, clock = make(3000 * 0.8)
    start = clock.now
    while clock.now < start + 600:
        await limiter.acquire()
        assert quota.call(clock.now), "the limiter went over the quota"
    assert limiter.calls == pytest.approx(2400 * 10, rel=0.01)  # it does use its share


@pytest.mark.parametrize("window", [5.0, 10.0, 60.0])
async def test_the_learned_cap_stays_under_the_real_limit_for_any_window_length(window):
    quota = SlidingQuota(40, window)
    limiter, clock = make(120 * 0.8, window)
    start, throttled_at = clock.now, []
    while clock.now < start + 40 * window:
        await limiter.acquire()
        if not quota.call(clock.now):
            throttled_at.append(clock.now - start)
            limiter.on_throttle()
    assert throttled_at and max(throttled_at) < 5 * window, throttled_at


async def test_small_quota_one_call_per_window_edge():
    limiter, clock = make(1, 60)  # 1 call a minute: burst must not let two through
    quota = SlidingQuota(1, 60)
    for _ in range(5):
        await limiter.acquire()
        assert quota.call(clock.now)


async def test_throttle_halves_the_rate_and_pauses_a_window():
    limiter, clock = make(2400)
    for _ in range(3000):  # a full window at 40/s, then the provider says no
        await limiter.acquire()
    limiter.on_throttle()
    assert limiter.rate == pytest.approx(20.0)
    before = clock.now
    await limiter.acquire()
    assert clock.now - before >= 60


async def test_retry_after_longer_than_the_window_is_honoured():
    limiter, clock = make(2400)
    await limiter.acquire()
    limiter.on_throttle(retry_after=150)
    before = clock.now
    await limiter.acquire()
    assert clock.now - before >= 150


async def test_clean_windows_add_back_ten_percent_of_the_ceiling():
    limiter, clock = make(2400)  # 40/s
    for _ in range(3000):  # ~75 s at 40/s: the window is full
        await limiter.acquire()
    limiter.on_throttle()
    assert limiter.rate == pytest.approx(20.0)
    cap = limiter.cap
    clock.now = limiter.paused_until + 60.5
    limiter.delay()
    assert limiter.rate == pytest.approx(min(cap, 24.0))
    clock.now += 60
    limiter.delay()
    assert limiter.rate == pytest.approx(min(cap, 28.0))


async def test_real_limit_lower_than_configured_converges_without_more_throttles():
    """Configured 600/min, the provider really allows 240/min: after adapting, no throttles."""
    window = 60.0
    quota = SlidingQuota(240, window)
    limiter, clock = make(600 * 0.8, window)
    throttle_times = []
    start = clock.now
    while clock.now < start + 3 * 3600:
        await limiter.acquire()
        if not quota.call(clock.now):
            throttle_times.append(clock.now - start)
            limiter.on_throttle()
    late = [t for t in throttle_times if t > 1800]
    assert throttle_times, "the lower real limit should have been hit at first"
    # After adapting, only the hourly upward probe may touch the limit again, at most once per probe.
    assert len(late) <= 3
    achieved_last_hour = sum(1 for t in quota.calls) / window  # calls in the last window
    assert achieved_last_hour >= 0.6 * 240 / window


async def test_one_throttle_after_few_calls_lowers_the_cap_at_most_to_a_quarter():
    # 100 calls achieved 100/60 a second; 0.9 of that (1.5) would be the cap, but one throttle is one
    # sample: the cap goes no lower than a quarter of what it was, 40 / 4 = 10 (rate min(20, 10))
    limiter, clock = make(2400)
    for _ in range(100):
        await limiter.acquire()
    limiter.on_throttle()
    assert (limiter.cap, limiter.rate) == (10.0, 10.0)


async def test_a_throttle_of_the_first_call_does_not_pin_the_account_to_a_call_a_minute():
    # polling audit 2026-12-06: the provider throttled the very first call (its quota shared, or
    # counted otherwise); the cap learned from 1 call was the floor, 1/60 a second, for an hour.
    # Then a quarter of the ceiling; now (a second audit the same day) no cap at all from one call:
    # the rate halved (20 a second) after the pause, the cap where it was
    limiter, clock = make(2400)
    await limiter.acquire()
    limiter.on_throttle()
    assert (limiter.cap, limiter.rate) == (40.0, 20.0)
    clock.now += 60.0                             # the pause is over: 20 calls a second again
    started = clock()
    for _ in range(10):
        await limiter.acquire()
    assert clock() - started == pytest.approx(0.5)   # from an empty bucket, 0.05 s a token


def test_snapshot_reports_rate_and_throttles():
    limiter, _ = make(2400)
    limiter.on_throttle()
    snap = limiter.snapshot()
    assert snap["throttles"] == 1 and snap["paused_secs"] == pytest.approx(60.0)
    assert snap["ceiling_per_sec"] == pytest.approx(40.0)
