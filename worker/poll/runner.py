"""The poll runner: one account's polling loop, while its shard is owned.

Loop: ask the scheduler what is due, fetch it (worker.poll.fetch: limiter, retries, parse), hand
the page to the shard with the cursor it moves, and apply the cursor only once the shard's
transaction committed. Throttles halve the limiter; nothing that fails advances.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timezone

import aiohttp

from worker import metrics
from worker.config import AccountConfig
from worker.poll.fetch import Fetcher
from worker.poll.limiter import AdaptiveLimiter
from worker.poll.scheduler import DateWindowScheduler
from worker.providers import get_module
from worker.providers.base import BadRequest, FatalConfig, PollError, PollPage, PollQuery, Throttled
from worker.shards import CommitFailed, Shard, ShardClosed
from worker.state import cursor_key, id_key

log = logging.getLogger("worker.poll")

FATAL_BACKOFF_SECS = 300.0
UNEXPECTED_BACKOFF_SECS = 30.0


class PollRunner:
    def __init__(self, account: AccountConfig, shard: Shard, session: aiohttp.ClientSession,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.account = account
        self.shard = shard
        self.session = session
        self.clock = clock
        self.module = get_module(account.provider)
        p = account.poll
        self.limiter = AdaptiveLimiter(p.calls_per_second, p.quota_window_secs)
        self.fetcher = Fetcher(account, session, self.limiter, clock)
        self.labels = (account.provider.value, account.name)
        self.state = "starting"
        self.last_success: datetime | None = None
        self.last_error: str | None = None
        self.pages = 0
        self.scheduler: DateWindowScheduler | None = None

    async def fetch(self, query: PollQuery) -> PollPage:
        return (await self.fetcher.fetch(query)).page

    # -- loops ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until the shard closes. A bug that escapes the typed errors is logged, counted and
        backed off from, never allowed to end this account's polling silently."""
        loop = self._run_ids if self.module.DEFAULTS.polling == "ids" else self._run_dates
        try:
            while True:
                try:
                    await loop()
                except ShardClosed:
                    return
                except Exception as exc:  # noqa: BLE001
                    self.state, self.last_error = "error", type(exc).__name__
                    metrics.ERRORS.labels("poll", type(exc).__name__).inc()
                    log.exception("poll loop failed; restarting it", extra={
                        "provider": self.labels[0], "account": self.labels[1], "error_type": type(exc).__name__})
                    await asyncio.sleep(UNEXPECTED_BACKOFF_SECS)
        finally:
            self.state = "stopped"

    async def _failure(self, exc: BaseException, retry: Callable[[float], None]) -> None:
        """Classify a failed call; `retry(secs)` reschedules what failed. Never advances anything."""
        self.last_error = getattr(exc, "error_type", type(exc).__name__)
        if isinstance(exc, Throttled):
            metrics.THROTTLES.labels(*self.labels).inc()
            self.limiter.on_throttle(exc.retry_after)
            retry(0.0)  # the limiter's pause is the wait
            self.state = "throttled"
        elif isinstance(exc, FatalConfig):
            self.state = "fatal_config"
            log.error("account misconfigured; polling paused", extra={
                "provider": self.labels[0], "account": self.labels[1], "error_type": self.last_error})
            await asyncio.sleep(FATAL_BACKOFF_SECS)
        elif isinstance(exc, BadRequest):
            self.state = "bad_request"
            log.error("provider rejected a request", extra={
                "provider": self.labels[0], "account": self.labels[1], "error_type": self.last_error})
            retry(self.account.poll.interval_max_secs)
        else:
            self.state = "retrying"
            retry(min(60.0, self.account.poll.retry_max_secs))

    async def _run_dates(self) -> None:
        p = self.account.poll
        d = self.module.DEFAULTS
        sched = DateWindowScheduler(
            tz=d.tz, lookback_days=p.lookback_days, status_filters=d.status_filters, page_limit=d.page_limit,
            interval_min=p.interval_min_secs, interval_max=p.interval_max_secs, cache_ttl=p.cache_ttl_secs,
            cursors=self.shard.cursors.setdefault(self.account.name, {}),
        )
        self.scheduler = sched
        name = self.account.name
        while True:
            now = self.clock()
            retired = sched.retired(now)
            if retired:
                await self.shard.stage_state([(cursor_key(name, w), None) for w in retired])
                for wid in retired:
                    sched.forget(wid)
            nxt = sched.next(now)
            if nxt is None:
                self.state = "idle"
                await asyncio.sleep(min(sched.next_due_in(now), 5.0))
                continue
            wid, query = nxt
            self.state = "polling"
            try:
                page = await self.fetch(query)
            except (PollError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                await self._failure(exc, lambda secs: sched.failed(wid, self.clock(), secs))
                continue
            observed = self.clock()
            planned = {}

            def writes(emitted: int) -> list:
                planned["cursor"] = sched.after_page(wid, page, emitted, observed)
                return [(cursor_key(name, wid), planned["cursor"].encode())]

            try:
                await self.shard.submit_poll(self.account, page.observations, observed, writes)
            except CommitFailed:
                continue
            sched.apply(wid, planned["cursor"])
            self._succeeded()

    async def _run_ids(self) -> None:
        tracker = self.shard.trackers[self.account.name]
        name = self.account.name
        while True:
            now = self.clock().timestamp()
            asked = tracker.due(now)
            if not asked:
                self.state = "idle"
                await asyncio.sleep(min(tracker.next_due_in(now), 5.0))
                continue
            self.state = "polling"
            query = PollQuery(email_ids=tuple(asked), limit=len(asked))
            try:
                page = await self.fetch(query)
            except (PollError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                await self._failure(exc, lambda secs: tracker.failed(asked, self.clock().timestamp(), secs))
                continue
            observed = self.clock()
            plan = tracker.plan(asked, page, observed.timestamp())

            def writes(emitted: int) -> list:
                return [(id_key(name, eid), t.encode() if t else None) for eid, t in plan.writes.items()]

            try:
                await self.shard.submit_poll(self.account, plan.observations, observed, writes)
            except CommitFailed:
                tracker.failed(asked, self.clock().timestamp(), 5.0)
                continue
            tracker.apply(plan, self.clock().timestamp())
            self._succeeded()

    def _succeeded(self) -> None:
        self.pages += 1
        self.last_success = self.clock()
        self.last_error = None

    def snapshot(self) -> dict:
        out = {"provider": self.labels[0], "account": self.labels[1], "state": self.state, "pages": self.pages,
               "last_success": self.last_success.isoformat() if self.last_success else None,
               "last_error": self.last_error, "limiter": self.limiter.snapshot()}
        if self.scheduler is not None:
            out["windows"] = self.scheduler.snapshot(self.clock())
        else:
            out["tracked_ids"] = len(self.shard.trackers.get(self.account.name, ()))
        return out
