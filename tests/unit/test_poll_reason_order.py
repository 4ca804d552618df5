"""A page answered before a failed call, committed after it, does not clear that failure's reason
(status-API audit of 2026-12-06: `/status` showed `fatal_config` with `last_error` and `last_reason`
null, cleared by the commit of a page fetched just before the 40005). The runner's clock is the
seam; the failure and the commits are driven directly."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.test_runner import NOW, TX, FakeFetcher, FakeSink, no_sleep
from worker.errors import Retriable
from worker.poll.runner import PollRunner
from worker.poll.scheduler import DateWindowScheduler


async def test_an_older_answer_committed_later_keeps_the_failure():
    now = [NOW]
    r = PollRunner(TX, FakeFetcher([]), DateWindowScheduler.for_account(TX, {}), FakeSink([]),
                   clock=lambda: now[0], sleep=no_sleep)
    answered_before = NOW
    now[0] = NOW + timedelta(seconds=10)
    await r._failure(Retriable("HTTP 502"), lambda _secs: None)
    now[0] = NOW + timedelta(seconds=11)
    r._succeeded(answered_before)                      # its commit lands after the failure
    assert (r.snapshot()["last_error"], r.snapshot()["last_reason"], r.pages) == ("retriable", "HTTP 502", 1)
    r._succeeded(NOW + timedelta(seconds=11))          # a call answered after it: the account works again
    assert (r.snapshot()["last_error"], r.snapshot()["last_reason"], r.pages) == (None, None, 2)
