"""The poll runner: the I/O around a provider module for one account, while its shard is owned.

Loop: ask the scheduler what is due, take a token from the account's limiter, call the API
(transport errors and 5xx retried here, and only here, by tenacity: bounded in attempts and time,
jittered), parse, hand the page to the shard with the cursor it moves, and apply the cursor only
once the shard's transaction committed. Throttles halve the limiter; nothing that fails advances.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_random_exponential

from worker import metrics
from worker.config import AccountConfig
from worker.poll.limiter import AdaptiveLimiter
from worker.poll.scheduler import DateWindowScheduler
from worker.providers import get_module
from worker.providers.base import BadRequest, FatalConfig, PollError, PollPage, PollQuery, Retriable, Throttled
from worker.shards import CommitFailed, Shard, ShardClosed, cursor_key, id_key

log = logging.getLogger("worker.poll")

TRANSIENT = (Retriable, aiohttp.ClientError, asyncio.TimeoutError)
FATAL_BACKOFF_SECS = 300.0


class PollRunner:
    def __init__(self, account: AccountConfig, shard: Shard, session: aiohttp.ClientSession,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.account = account
        self.shard = shard
        self.session = session
        self.clock = clock
        self.module = get_module(account.provider)
        self.ctx = account.context()
        p = account.poll
        self.limiter = AdaptiveLimiter(p.calls_per_second, p.quota_window_secs)
        self.labels = (account.provider.value, account.name)
        self.state = "starting"
        self.last_success: datetime | None = None
        self.last_error: str | None = None
        self.pages = 0
        self.scheduler: DateWindowScheduler | None = None

    # -- one call -------------------------------------------------------------------------------

    async def fetch(self, query: PollQuery) -> PollPage:
        p = self.account.poll
        retrying = AsyncRetrying(
            stop=stop_after_attempt(p.retry_attempts) | stop_after_delay(p.retry_max_secs),
            wait=wait_random_exponential(multiplier=0.5, max=min(30.0, p.retry_max_secs)),
            retry=retry_if_exception_type(TRANSIENT),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._call(query)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(self, query: PollQuery) -> PollPage:
        await self.limiter.acquire()
        metrics.POLL_RATE.labels(*self.labels).set(self.limiter.rate)
        request = self.module.build_poll_request(self.ctx, query, self.clock())
        started = time.monotonic()
        outcome = "transport"
        try:
            async with self.session.request(
                request.method, request.url, params=list(request.params) or None, headers=dict(request.headers),
                data=request.body, timeout=aiohttp.ClientTimeout(total=self.account.poll.request_timeout_secs),
            ) as response:
                body = await response.read()
                headers = {k.lower(): v for k, v in response.headers.items()}
                status = response.status
            page = self.module.parse_poll_response(self.ctx, query, status, headers, body, self.clock())
            outcome = "ok"
            return page
        except PollError as exc:
            outcome = exc.error_type
            raise
        finally:
            metrics.POLL_REQUESTS.labels(*self.labels, outcome).inc()
            log.info("poll", extra={"provider": self.labels[0], "account": self.labels[1], "outcome": outcome,
                                    "send_date": str(query.send_date) if query.send_date else None,
                                    "status_filter": query.status.value if query.status else None,
                                    "offset": query.offset, "ids": len(query.email_ids),
                                    "ms": round((time.monotonic() - started) * 1000, 1)})

    # -- loops ----------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self.module.DEFAULTS.polling == "ids":
                await self._run_ids()
            else:
                await self._run_dates()
        except ShardClosed:
            pass
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
