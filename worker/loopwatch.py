"""How late the event loop runs. One task sleeps `interval` seconds again and again and measures
how much later than asked it woke: whatever holds the loop (a dedup table merge, a restore's
decoding, a page's staging) delays by as much every webhook answer, Kafka heartbeat and poll.
Exported as `esw_event_loop_lag_seconds`; `/status` shows the worst since start and the last."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

from worker import metrics

INTERVAL_SECS = 0.1


class LoopWatch:
    def __init__(self, interval: float = INTERVAL_SECS, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.last = 0.0
        self.worst = 0.0
        self._task: asyncio.Task | None = None

    async def run(self) -> None:
        while True:
            asked = self.clock()
            await asyncio.sleep(self.interval)
            self.observe(self.clock() - asked - self.interval)

    def observe(self, lag: float) -> None:
        self.last = max(0.0, lag)
        self.worst = max(self.worst, self.last)
        metrics.loop_lag(self.last)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def snapshot(self) -> dict[str, float]:
        return {"last_secs": round(self.last, 4), "worst_secs": round(self.worst, 4),
                "gc_frozen_objects": gc.get_freeze_count()}


def freeze_startup() -> int:
    """Exempt what the process built before it serves (modules, classes, the config: ~60,000
    objects) from Python's full garbage collections, which hold the event loop for as long as they
    take: ~30 ms of every full collection on the benchmark machine was those objects (`gc.freeze`).
    Done once, before any shard holds state: an object frozen that later becomes cyclic garbage is
    never collected, so nothing built per request, batch or shard may be frozen (the soak benchmark
    tried an hourly freeze and dropped it for that reason). How many objects it froze."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
