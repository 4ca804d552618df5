"""One account's polling loop: ask the schedule what is due, fetch it, hand it to the sink.

A runner is given everything it works with: the account, a `Fetcher` (with the account's limiter,
which outlives the runner: see worker.group), its schedule (the date windows' cursors or the id
tracker, restored from `_state` by the shard) and a `PollSink`. It never advances its schedule
before the sink says the page's batch committed; a failed call or commit leaves the cursor where
it was and only delays that window or those ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiohttp

from worker import metrics
from worker.config import AccountConfig
from worker.errors import UNEXPECTED, BadRequest, CommitFailed, FatalConfig, PollError, ShardClosed, Throttled
from worker.poll.fetch import Fetcher, fetch_error_type
from worker.poll.ids import IdTracker
from worker.poll.scheduler import DateWindowScheduler
from worker.poll.sink import CursorChange, IdChange, PollSink
from worker.providers.base import PollPage, PollQuery
from worker.raw import PollPageRecord

log = logging.getLogger("worker.poll")

FATAL_BACKOFF_SECS = 300.0
UNEXPECTED_BACKOFF_SECS = 30.0
COMMIT_RETRY_SECS = 5.0   # ids whose check did not commit are due again after this
IDLE_CHECK_SECS = 5.0
FAILURES = (PollError, aiohttp.ClientError, asyncio.TimeoutError)


class PollRunner:
    def __init__(self, account: AccountConfig, fetcher: Fetcher, schedule: DateWindowScheduler | IdTracker,
                 sink: PollSink, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.account = account
        self.fetcher = fetcher
        self.schedule = schedule
        self.sink = sink
        self.clock = clock
        self._sleep = sleep
        self.labels = (account.provider.value, account.name)
        self.state = "starting"
        self.last_success: datetime | None = None
        self.last_error: str | None = None
        self.pages = 0

    # -- loops ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until the shard closes. A bug that escapes the typed errors is logged, counted and
        backed off from, never allowed to end this account's polling silently."""
        try:
            while True:
                try:
                    await self.step()
                except ShardClosed:
                    return
                except Exception:
                    self.state, self.last_error = "error", UNEXPECTED
                    metrics.error("poll", UNEXPECTED)
                    log.exception("poll loop failed; restarting it", extra={
                        "provider": self.labels[0], "account": self.labels[1], "error_type": UNEXPECTED})
                    await self._sleep(UNEXPECTED_BACKOFF_SECS)
        finally:
            self.state = "stopped"

    async def step(self) -> None:
        """One turn: poll what is due (a page, or a batch of ids), or wait a little."""
        if isinstance(self.schedule, DateWindowScheduler):
            await self._dates_step()
        else:
            await self._ids_step()

    async def _dates_step(self) -> None:
        sched = self.schedule
        assert isinstance(sched, DateWindowScheduler)
        name = self.account.name
        now = self.clock()
        retired = sched.retired(now)
        if retired:
            await self.sink.persist([CursorChange(name, wid, None) for wid in retired])
            for wid in retired:
                sched.forget(wid)
        nxt = sched.next(now)
        if nxt is None:
            self.state = "idle"
            await self._sleep(min(sched.next_due_in(now), IDLE_CHECK_SECS))
            return
        wid, query = nxt
        page = await self._fetch(query, lambda secs: sched.failed(wid, self.clock(), secs))
        if page is None:
            return
        observed = self.clock()
        emitted = self.sink.observe(page.observations, observed)
        cursor = sched.after_page(wid, page, emitted, observed)
        try:
            await self.sink.persist([CursorChange(name, wid, cursor)])
        except CommitFailed:
            return  # the cursor stays: the same page is asked again (the shard backs off its commits)
        sched.apply(wid, cursor)
        self._succeeded()

    async def _ids_step(self) -> None:
        tracker = self.schedule
        assert isinstance(tracker, IdTracker)
        now = self.clock().timestamp()
        asked = tracker.due(now)
        if not asked:
            self.state = "idle"
            await self._sleep(min(tracker.next_due_in(now), IDLE_CHECK_SECS))
            return
        query = PollQuery(email_ids=tuple(asked), limit=len(asked))
        page = await self._fetch(query, lambda secs: tracker.failed(asked, self.clock().timestamp(), secs))
        if page is None:
            return
        observed = self.clock()
        plan = tracker.plan(asked, page, observed.timestamp())
        self.sink.observe(plan.observations, observed)
        try:
            await self.sink.persist([IdChange(self.account.name, eid, t) for eid, t in plan.writes.items()])
        except CommitFailed:
            tracker.failed(asked, self.clock().timestamp(), COMMIT_RETRY_SECS)
            return
        tracker.apply(plan, self.clock().timestamp())
        self._succeeded()

    # -- one call -------------------------------------------------------------------------------

    async def _fetch(self, query: PollQuery, retry: Callable[[float], None]) -> PollPage | None:
        """The page, or None after a failure: `retry(secs)` reschedules what failed, nothing advances.
        A page with unreadable rows is also handed whole to the sink's `reject`."""
        self.state = "polling"
        try:
            fetched = await self.fetcher.fetch(query)
        except FAILURES as exc:
            await self._failure(exc, retry)
            return None
        if fetched.page.rejected:
            record = PollPageRecord(self.account.provider, self.account.name, self.clock(), query, fetched.status,
                                    fetched.headers, fetched.body)
            self.sink.reject(record, fetched.page.rejected[0].reason)
        return fetched.page

    async def _failure(self, exc: BaseException, retry: Callable[[float], None]) -> None:
        self.last_error = fetch_error_type(exc)
        if isinstance(exc, Throttled):
            retry(0.0)  # the fetcher slowed the limiter down; its pause is the wait
            self.state = "throttled"
        elif isinstance(exc, FatalConfig):
            self.state = "fatal_config"
            log.error("account misconfigured; polling paused", extra={
                "provider": self.labels[0], "account": self.labels[1], "error_type": self.last_error})
            await self._sleep(FATAL_BACKOFF_SECS)
        elif isinstance(exc, BadRequest):
            self.state = "bad_request"
            log.error("provider rejected a request", extra={
                "provider": self.labels[0], "account": self.labels[1], "error_type": self.last_error})
            retry(self.account.poll.interval_max_secs)
        else:
            self.state = "retrying"
            retry(min(60.0, self.account.poll.retry_max_secs))

    def _succeeded(self) -> None:
        self.pages += 1
        self.last_success = self.clock()
        self.last_error = None

    def snapshot(self) -> dict:
        out = {"provider": self.labels[0], "account": self.labels[1], "state": self.state, "pages": self.pages,
               "last_success": self.last_success.isoformat() if self.last_success else None,
               "last_error": self.last_error, "limiter": self.fetcher.limiter.snapshot()}
        if isinstance(self.schedule, DateWindowScheduler):
            out["windows"] = self.schedule.snapshot(self.clock())
        else:
            out["tracked_ids"] = len(self.schedule)
        return out
