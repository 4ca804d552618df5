"""Throttles that follow only a few of our calls teach no cap (polling audit of 2026-12-06, second
round): another client drained a shared quota for five minutes, and the provider throttled the one
call the worker made after each pause. Each such throttle cut the learned cap to a quarter, so five
in a row left the account at 40 / 4^5 = 0.039 calls a second, ~2 a minute, and the cap climbs back
only 5 % of the ceiling per clean hour: hours of staleness after the other client stopped. Now
those throttles halve the rate and pause (AIMD), and the account is back at its ceiling ten clean
windows later. Hand-worked numbers: ceiling 2400 a minute = 40 a second, window 60 s."""

from __future__ import annotations

import pytest

from tests.unit.test_limiter import make


async def test_five_throttles_of_a_lone_call_halve_the_rate_and_leave_the_cap():
    limiter, clock = make(2400)
    for _ in range(5):
        await limiter.acquire()                   # the one call after the pause...
        limiter.on_throttle()                     # ...is throttled
    assert limiter.cap == 40.0
    assert limiter.rate == pytest.approx(40 / 32)     # halved five times: 1.25 a second
    # the other client stopped: each clean window adds 10 % of the ceiling (4 a second)
    clock.now = limiter.paused_until + 9 * 60 + 1
    limiter.delay()
    assert limiter.rate == pytest.approx(1.25 + 9 * 4)          # 37.25
    clock.now += 60
    limiter.delay()
    assert limiter.rate == 40.0                                 # capped at the ceiling


@pytest.mark.parametrize(("calls", "cap"), [
    (1, 40.0),
    (4, 40.0),                  # below MIN_EVIDENCE (5): no cap learned
    (5, 10.0),                  # 0.9 x 5/60 a second is below a quarter of 40: a quarter
    (1200, 18.0),               # 0.9 x 1200/60 = 18
])
async def test_the_cap_a_throttle_teaches_depends_on_the_calls_it_follows(calls, cap):
    limiter, _ = make(2400)
    for _ in range(calls):
        await limiter.acquire()
    limiter.on_throttle()
    assert limiter.cap == pytest.approx(cap)
    assert limiter.rate == pytest.approx(min(20.0, cap))
