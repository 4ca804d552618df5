"""The per-account adaptive rate limiter (DESIGN.md section 5).

A token bucket at `quota * share / window` calls a second. A throttle answer halves the rate at
once and pauses calls until a whole quota window (or the provider's Retry-After, if longer) has
passed; each clean window afterwards adds back 10 % of the ceiling (AIMD).

AIMD alone climbs back to the configured ceiling and is throttled again, over and over, when the
provider's real limit is lower than configured. So a throttle also records a learned cap: 90 % of
the rate actually achieved over the last window, the best evidence of the real limit there is, but
no lower than a quarter of the cap before it: one throttle after a few calls says little of the
limit, and a far lower one is reached by the throttles that follow (three for a limit a 24th of the
configured one), each halving the rate and pausing as AIMD does. A throttle after fewer than
MIN_EVIDENCE calls in the window teaches no cap at all: the quota was spent by someone else (another
client on the account, the provider counting otherwise), not by us, and the rate's halving and the
pause are the whole answer. (Until 2026-12-06 each such throttle cut the cap to a quarter: five in a
row, each answering the one call after a pause while another client drained the quota, left an
account at 40/4^5 calls a second, ~2 a minute, for many hours after the other client stopped.) A throttle that follows the hourly
probes (below) returns the cap at least to where the last throttle left it, so an account far
over-configured is throttled once a probe, not twice.
The rate never climbs above the cap; the cap itself is re-probed upwards (5 % of the ceiling)
only after an hour of clean windows, so a limit that was raised again is found, slowly.

With several calls in flight, one episode of throttling answers several of them. Only the first
answer halves the rate: a throttle answer to a call that was sent before the last throttle arrived
(`asked_at`, the time `acquire` returned) says nothing new, and only extends the pause if the
provider asks for longer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable


class AdaptiveLimiter:
    INCREASE = 0.10          # of the ceiling, per clean window
    CAP_MARGIN = 0.90        # of the achieved rate when throttled
    CAP_CUT = 0.25           # the lowest one throttle sets the cap to, of the cap before it
    MIN_EVIDENCE = 5         # calls in the last window a throttle must follow to teach a cap
    PROBE = 0.05             # of the ceiling, per probe
    PROBE_AFTER_SECS = 3600.0

    def __init__(
        self,
        ceiling_per_sec: float,
        window_secs: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if ceiling_per_sec <= 0:
            raise ValueError("the ceiling must be positive")
        self.ceiling = ceiling_per_sec
        self.window = window_secs
        self.floor = min(ceiling_per_sec, 1.0 / window_secs)   # at least one call per window
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self.rate = ceiling_per_sec
        self.cap = ceiling_per_sec
        self.tokens = 1.0
        self._filled_at = now
        self.paused_until = 0.0
        self._clean_since = now        # start of the current run of clean windows
        self._steps_taken = 0          # AIMD steps already applied in that run
        self._probes_taken = 0
        self._settled = ceiling_per_sec   # the cap as the last throttle left it (the probes since are above it)
        self._calls: deque[float] = deque()
        self.throttles = 0
        self.calls = 0
        self.throttled_at = float("-inf")

    @property
    def burst(self) -> float:
        # A sixtieth of a window's worth (one second of a minute): any window then sees at most
        # rate * W * 61/60 calls, which stays under the quota both at the configured share (0.8)
        # and at the learned cap (0.9 of the achieved rate), whatever the window's length.
        return max(1.0, self.rate * self.window / 60.0)

    def _advance(self, now: float) -> None:
        """Apply the clean windows that passed since the last throttle, then refill tokens."""
        if now >= self.paused_until:
            clean = now - max(self._clean_since, self.paused_until)
            probes = int(clean // self.PROBE_AFTER_SECS)
            if probes > self._probes_taken and self.cap < self.ceiling:
                self.cap = min(self.ceiling, self.cap + self.PROBE * self.ceiling * (probes - self._probes_taken))
                self._probes_taken = probes
            steps = int(clean // self.window)
            if steps > self._steps_taken:
                self.rate = min(self.cap, self.rate + self.INCREASE * self.ceiling * (steps - self._steps_taken))
                self._steps_taken = steps
        start = max(self._filled_at, self.paused_until)
        if now > start:
            self.tokens = min(self.burst, self.tokens + (now - start) * self.rate)
        self._filled_at = now
        while self._calls and self._calls[0] <= now - self.window:
            self._calls.popleft()

    def delay(self) -> float:
        """Seconds until the next call may go (0 when a token is there)."""
        now = self._clock()
        self._advance(now)
        if now < self.paused_until:
            return self.paused_until - now + (0 if self.tokens >= 1 else (1 - self.tokens) / self.rate)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def try_acquire(self) -> bool:
        if self.delay() > 0:
            return False
        self.tokens -= 1
        self.calls += 1
        self._calls.append(self._clock())
        return True

    async def acquire(self) -> float:
        """Wait for a token; the time it was taken (pass it to `on_throttle`)."""
        while not self.try_acquire():
            await self._sleep(self.delay())
        return self._clock()

    def on_throttle(self, retry_after: float | None = None, asked_at: float | None = None) -> None:
        now = self._clock()
        self._advance(now)
        if asked_at is not None and asked_at < self.throttled_at:
            # in flight when the episode's first throttle arrived: counted already
            self.paused_until = max(self.paused_until, now + (retry_after or 0.0))
            self._clean_since = max(self._clean_since, self.paused_until)
            return
        self.throttled_at = now
        achieved = len(self._calls) / self.window
        self.throttles += 1
        if len(self._calls) >= self.MIN_EVIDENCE:
            # One throttle is one sample: after a few calls (a fresh start, a quiet spell, a quota
            # another client shares) it says little of the limit (below MIN_EVIDENCE calls,
            # nothing: module docstring). So one throttle lowers the cap at most to a quarter of
            # what it was; a limit that low is found by the throttles that follow. A throttle after
            # probes above a cap learned before goes back to that cap at least: it was clean for an
            # hour, the probe was not.
            learned = min(max(self.CAP_MARGIN * achieved, self.CAP_CUT * self.cap), self._settled)
            self.cap = max(self.floor, min(self.cap, learned))
        self._settled = self.cap
        self.rate = max(self.floor, min(self.rate / 2, self.cap))
        self.paused_until = now + max(self.window, retry_after or 0.0)
        self.tokens = min(self.tokens, 0.0)
        self._clean_since = self.paused_until
        self._steps_taken = 0
        self._probes_taken = 0

    def snapshot(self) -> dict[str, float]:
        now = self._clock()
        self._advance(now)
        return {
            "rate_per_sec": round(self.rate, 4),
            "ceiling_per_sec": round(self.ceiling, 4),
            "cap_per_sec": round(self.cap, 4),
            "tokens": round(self.tokens, 3),
            "paused_secs": round(max(0.0, self.paused_until - now), 3),
            "calls_last_window": len(self._calls),
            "throttles": self.throttles,
        }
