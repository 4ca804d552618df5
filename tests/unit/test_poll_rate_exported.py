"""`esw_poll_rate` is there for every account a replica polls, also one with nothing due (operator
audit of 2026-12-06: it appeared only with an account's first call, so after a start or a rebalance
the dashboard's quota panel had gaps for idle accounts, e.g. UniSender without tracked ids)."""

from __future__ import annotations

import asyncio
import contextlib

from tests.unit.test_runner import NOW, UNI, FakeFetcher, FakeSink
from worker import metrics
from worker.metrics import REGISTRY
from worker.poll.ids import IdTracker
from worker.poll.limiter import AdaptiveLimiter
from worker.poll.runner import PollRunner


async def test_an_idle_poller_exports_its_limiters_rate_before_any_call():
    labels = {"provider": "unisender", "account": UNI.name}
    with contextlib.suppress(KeyError):             # another test's value
        metrics.POLL_RATE.remove("unisender", UNI.name)
    fetcher = FakeFetcher([], limiter=AdaptiveLimiter(2.5))
    idle = asyncio.Event()

    async def sleep(secs: float) -> None:          # the runner waits: nothing is due
        idle.set()
        await asyncio.sleep(3600)

    runner = PollRunner(UNI, fetcher, IdTracker.for_account(UNI, {}, NOW.timestamp()), FakeSink([]),
                        clock=lambda: NOW, sleep=sleep)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(idle.wait(), 5)
        assert fetcher.asked == []
        assert REGISTRY.get_sample_value("esw_poll_rate", labels) == 2.5
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
