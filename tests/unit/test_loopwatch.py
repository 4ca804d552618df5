"""The event loop's lag (issue 15): a callback that holds the loop shows up in
esw_event_loop_lag_seconds and on /status, a free loop does not."""

from __future__ import annotations

import asyncio
import time

from worker import metrics
from worker.loopwatch import LoopWatch


def over(secs: str) -> float:
    """Observations above `secs` so far (the +Inf bucket minus the one at `secs`)."""
    total = metrics.REGISTRY.get_sample_value("esw_event_loop_lag_seconds_bucket", {"le": "+Inf"}) or 0.0
    return total - (metrics.REGISTRY.get_sample_value("esw_event_loop_lag_seconds_bucket", {"le": secs}) or 0.0)


async def test_a_callback_holding_the_loop_is_measured_as_lag():
    watch = LoopWatch(interval=0.02)
    before = over("0.1")
    watch.start()
    try:
        await asyncio.sleep(0.1)
        time.sleep(0.15)                               # a 150 ms merge on the loop
        await asyncio.sleep(0.1)
    finally:
        await watch.stop()
    assert 0.12 <= watch.worst < 0.5, watch.snapshot()
    assert over("0.1") >= before + 1                   # the late wake-up, in the histogram
    assert watch.snapshot()["worst_secs"] == round(watch.worst, 4)


def test_a_wake_up_on_time_or_early_counts_as_no_lag():
    watch = LoopWatch(interval=1.0)
    watch.observe(-0.01)
    assert (watch.last, watch.worst) == (0.0, 0.0)
    watch.observe(0.25)
    watch.observe(0.05)
    assert (watch.last, watch.worst) == (0.05, 0.25)
