"""The event loop's lag (issue 15): a callback that holds the loop shows up in
esw_event_loop_lag_seconds and on /status, a free loop does not."""

from __future__ import annotations

import asyncio
import gc
import time

from worker import metrics
from worker.loopwatch import LoopWatch, freeze_startup


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


def test_freeze_startup_exempts_what_exists_from_full_collections_and_says_so_on_status():
    built = [[] for _ in range(1000)]                  # containers built before serving
    try:
        frozen = freeze_startup()
        assert frozen >= 1000 and gc.get_freeze_count() == frozen
        assert not any(o is built[0] for o in gc.get_objects())   # not in a generation a collection scans
        later: list = []
        assert any(o is later for o in gc.get_objects())           # what comes after still is
        assert LoopWatch().snapshot()["gc_frozen_objects"] == frozen
    finally:
        gc.unfreeze()
    assert LoopWatch().snapshot()["gc_frozen_objects"] == 0
