"""One account's polling: several calls in flight, at the quota, never a cursor past a commit.

A runner is given everything it works with: the account, a `Fetcher` (with the account's limiter,
which outlives the runner: see worker.group), its schedule (the date windows' cursors or the id
tracker, restored from `_state` by the shard), for a gap-driven account also the tracker of its
sent emails (worker.poll.ids), and a `PollSink`.

Concurrency. Far providers answer in 100-300 ms, so one call at a time would spend the round trip,
not the quota. The runner keeps as many calls in flight as the limiter's rate times the observed
round trip needs (plus one), at most `poll.max_in_flight`; every call still waits for its token,
so the limiter alone bounds the rate, and its AIMD sees one throttle episode once
(worker.poll.limiter). Work is claimed from the schedule, so no page or id is asked twice at once:
gap-driven id batches first (the emails whose status is overdue), then date-window pages (several
pages of one sweep in parallel once its first page gave the total), then, with a token to spare,
early id re-checks.

Commits. A fetched page is staged in the shard's open batch (`observe`) with the state it moves
(`persist`), without an await between them, so they commit together. A window's pages are staged
in offset order, one commit of a window at a time: a page that arrives before the one in front of
it waits in a small buffer (at most `ahead` pages), and all pages ready in order go in one commit.
So the cursor never passes a page that is not committed; a failed call on page k retries page k
only; a failed commit releases its pages, which are asked again (the cursor did not move). Id
batches commit independently (their ids are disjoint). Commits run beside the fetches, so a call
slot is never held by a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import attrs

from worker import metrics
from worker.config import AccountConfig
from worker.errors import UNEXPECTED, BadRequest, CommitFailed, FatalConfig, PollError, ShardClosed, Throttled
from worker.poll.fetch import Fetched, Fetcher, failure_reason, fetch_error_type
from worker.poll.ids import IdPlan, IdTracker
from worker.poll.isolate import COOLDOWN_SECS as ISOLATE_COOLDOWN_SECS
from worker.poll.isolate import refused_alone, unsendable
from worker.poll.scheduler import Cursor, DateWindowScheduler
from worker.poll.sink import CursorChange, IdChange, PollSink
from worker.providers import get_module
from worker.providers.base import PollQuery
from worker.raw import PollPageRecord

log = logging.getLogger("worker.poll")

FATAL_BACKOFF_SECS = 300.0
UNEXPECTED_BACKOFF_SECS = 30.0
COMMIT_RETRY_SECS = 5.0   # ids whose check did not commit are due again after this
IDLE_CHECK_SECS = 5.0
FAILURES = (PollError, aiohttp.ClientError, asyncio.TimeoutError)


@attrs.frozen
class _Page:
    """A fetched page of a date window, waiting for its turn to commit."""

    query: PollQuery
    fetched: Fetched
    at: datetime


class PollRunner:
    def __init__(self, account: AccountConfig, fetcher: Fetcher, schedule: DateWindowScheduler | IdTracker,
                 sink: PollSink, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, gaps: IdTracker | None = None) -> None:
        self.account = account
        self.fetcher = fetcher
        self.schedule = schedule
        self.gaps = gaps
        self.sink = sink
        self.clock = clock
        self._sleep = sleep
        self.labels = (account.provider.value, account.name)
        self.state = "starting"
        self.last_success: datetime | None = None
        self.last_error: str | None = None
        self.last_reason: str | None = None   # the provider's answer to the last failed call
        self._failed_at: datetime | None = None   # when that call failed
        self.pages = 0
        self._ready: dict[str, dict[int, _Page]] = {}       # fetched pages by window and offset
        self._committing: set[str] = set()                  # windows with a commit outstanding
        self._tasks: set[asyncio.Task] = set()              # calls in flight
        self._commits: set[asyncio.Task] = set()            # commits outstanding
        self._closed: ShardClosed | None = None
        self._isolate_after = 0.0          # refused id batches are not taken apart before (isolate.COOLDOWN_SECS)
        self._paused = False
        self._retiring: set[str] = set()
        self._wake = asyncio.Event()

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until the shard closes. A bug that escapes the typed errors is logged, counted and
        backed off from, never allowed to end this account's polling silently."""
        try:
            while self._closed is None:
                try:
                    # cleared before the finished calls are collected: one that ends after this sets it again
                    self._wake.clear()
                    self._collect()
                    started = self._fill()
                    self._export()
                    if not self._tasks and not self._commits:
                        if not started:
                            self.state = "idle"
                            await self._sleep(self._wait_secs())
                        continue
                    # every call and commit sets `_wake` when it ends; no task of its own for the wait
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._wait_secs() or IDLE_CHECK_SECS):
                            await self._wake.wait()
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
            for task in (*self._tasks, *self._commits):
                task.cancel()
            for task in (*self._tasks, *self._commits):
                with contextlib.suppress(BaseException):
                    await task

    def _collect(self) -> None:
        """Forget the calls and commits that ended; a bug one of them raised is raised here."""
        for task in [t for t in (*self._tasks, *self._commits) if t.done()]:
            self._tasks.discard(task)
            self._commits.discard(task)
            task.result()

    def target(self) -> int:
        """Calls to keep in flight: the rate times the round trip, plus one; within [1, max]."""
        rtt = getattr(self.fetcher, "rtt", None) or 0.0
        rate = self.fetcher.limiter.rate
        return max(1, min(self.account.poll.max_in_flight, math.ceil(rate * rtt) + 1))

    def _fill(self) -> int:
        """Start calls for claimed work up to the target; how many started. Work is claimed only when
        a token is there for its call: a call claimed earlier would wait for its token holding what
        was due at the claim, and an id batch would miss every id falling due meanwhile (UniSender
        under load sent 84 ids of 500 a call, quota-bound with the rest due)."""
        started = 0
        while not self._paused and len(self._tasks) < self.target() and self._token_for(started):
            work = self._claim(early=False) or (self._claim(early=True) if self._spare() else None)
            if work is None:
                break
            task = asyncio.ensure_future(work)
            task.add_done_callback(lambda _t: self._wake.set())
            self._tasks.add(task)
            started += 1
        return started

    def _token_for(self, started: int) -> bool:
        """A token for one call more than the `started` ones (they take theirs once they run)."""
        limiter = self.fetcher.limiter
        return limiter.delay() == 0 and limiter.tokens >= started + 1

    def _spare(self) -> bool:
        return self.fetcher.limiter.delay() == 0

    def _wait_secs(self) -> float:
        """Until work is due and a token is there for it (at most IDLE_CHECK_SECS)."""
        return min(IDLE_CHECK_SECS, max(self._next_due_in(), self.fetcher.limiter.delay()))

    def _claim(self, early: bool) -> Awaitable[None] | None:
        """The next call's coroutine, its work claimed; None when nothing is due."""
        now = self.clock()
        for tracker in (self.gaps, self.schedule):
            if isinstance(tracker, IdTracker) and (not early or not tracker.gap_driven):
                asked = tracker.claim(now.timestamp(), early=early)
                if asked:
                    return self._ids_call(tracker, asked)
        if early or not isinstance(self.schedule, DateWindowScheduler):
            return None
        sched = self.schedule
        if self.gaps is not None and self.gaps.fed:
            sched.widen()   # the sent feed carries this account: gap-driven polling, sweeps as the safety net
        retired = [wid for wid in sched.retired(now) if wid not in self._retiring]
        if retired:
            for wid in retired:
                self._ready.pop(wid, None)
            self._retiring.update(retired)
            return self._retire(sched, retired)
        nxt = sched.claim(now)
        return None if nxt is None else self._page_call(sched, *nxt)

    def _next_due_in(self) -> float:
        now = self.clock()
        waits = [t.next_due_in(now.timestamp()) for t in (self.gaps, self.schedule) if isinstance(t, IdTracker)]
        if isinstance(self.schedule, DateWindowScheduler):
            waits.append(self.schedule.next_due_in(now))
        return min(waits, default=IDLE_CHECK_SECS)

    def _export(self) -> None:
        now = self.clock()
        stale = [t.staleness(now.timestamp()) for t in (self.gaps, self.schedule) if isinstance(t, IdTracker)]
        if isinstance(self.schedule, DateWindowScheduler):
            stale.append(self.schedule.staleness(now))
        metrics.poll_staleness(*self.labels, max(stale, default=0.0))
        metrics.poll_in_flight(*self.labels, len(self._tasks))
        metrics.poll_rate(*self.labels, self.fetcher.limiter.rate)   # also for an account with nothing due

    async def step(self) -> None:
        """One claimed piece of work done to the end, its commit included, or a short wait: the
        sequential form of `run`, for tests and tools."""
        work = self._claim(early=False)
        if work is None:
            self.state = "idle"
            await self._sleep(min(self._next_due_in(), IDLE_CHECK_SECS))
            return
        await work
        while self._commits:
            done = self._commits.pop()
            await done
        if self._closed is not None:
            raise self._closed

    # -- date windows ---------------------------------------------------------------------------

    async def _retire(self, sched: DateWindowScheduler, retired: list[str]) -> None:
        try:
            await self.sink.persist([CursorChange(self.account.name, wid, None) for wid in retired])
        except CommitFailed:
            return   # retired again on the next turn
        except ShardClosed as exc:
            self._closed = exc
            return
        else:
            for wid in retired:
                sched.forget(wid)
        finally:
            self._retiring.difference_update(retired)

    async def _page_call(self, sched: DateWindowScheduler, wid: str, query: PollQuery) -> None:
        fetched = await self._fetch(query, lambda secs: sched.failed(wid, self.clock(), secs, offset=query.offset))
        if fetched is None or query.offset not in sched.claimed(wid):
            return   # failed, or stale: the sweep ended or the window retired meanwhile
        sched.learn_extent(wid, fetched.page)
        self._ready.setdefault(wid, {})[query.offset] = _Page(query, fetched, self.clock())
        if wid not in self._committing:
            self._committing.add(wid)
            self._start_commit(self._commit_window(sched, wid))

    def _start_commit(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        task.add_done_callback(lambda _t: self._wake.set())
        self._commits.add(task)

    async def _commit_window(self, sched: DateWindowScheduler, wid: str) -> None:
        """Stage every page ready in order after the window's cursor in one commit; repeat while
        pages arrived during it."""
        staged: list[_Page] = []
        try:
            while True:
                ready = self._ready.get(wid, {})
                now = self.clock()
                cursor: Cursor = sched.cursor(wid, now)
                staged = []
                while (item := ready.pop(cursor.offset, None)) is not None:
                    self._reject(item)
                    emitted = self.sink.observe(item.fetched.page.observations, item.at, self._record(item))
                    # timed now, not when fetched: a sweep ends after the last of its calls
                    cursor = sched.after_page(wid, item.fetched.page, emitted, now, base=cursor)
                    staged.append(item)
                    if not cursor.in_sweep:
                        break
                if not staged:
                    return
                try:
                    await self.sink.persist([CursorChange(self.account.name, wid, cursor)])
                except CommitFailed:
                    for item in staged:   # asked again: the cursor did not move (the shard backs off)
                        sched.failed(wid, self.clock(), 0.0, offset=item.query.offset)
                    return
                except ShardClosed as exc:
                    self._closed = exc
                    return
                sched.apply(wid, cursor)
                for item in staged:
                    sched.release(wid, item.query.offset)
                    self._succeeded(item.at)
                if not cursor.in_sweep:
                    self._ready.pop(wid, None)   # pages past the end of a shrunk window
                    return
        except BaseException:
            # a bug (or cancellation): nothing of this window may stay claimed for ever
            waiting = [item.query.offset for item in staged] + list(self._ready.pop(wid, {}))
            for offset in waiting:
                sched.failed(wid, self.clock(), UNEXPECTED_BACKOFF_SECS, offset=offset)
            raise
        finally:
            self._committing.discard(wid)

    # -- ids ------------------------------------------------------------------------------------

    async def _ids_call(self, tracker: IdTracker, asked: list[str]) -> None:
        query = self._id_query(tracker, asked)
        try:
            fetched = await self._fetch(query, lambda secs: tracker.failed(asked, self.clock().timestamp(), secs),
                                        refused=True)
        except BadRequest as exc:   # a batch refused as a request: find the ids it cannot take
            await self._refused(tracker, asked, exc)
            return
        if fetched is None:
            return
        self._start_commit(self._commit_ids(tracker, asked, query, fetched, self.clock()))

    async def _refused(self, tracker: IdTracker, asked: list[str], exc: BadRequest) -> None:
        """A batch of ids refused as a request (worker.poll.isolate). Ids the worker itself would
        not send are dropped at once and the rest is due again. Else a batch of several is asked
        again in parts, unless one was in vain within the cooldown: the ids refused alone are
        dropped when others were answered; when none was, the refusal was the request's, and the
        batch waits as any bad request does."""
        now = self.clock()
        own = [i for i in asked if unsendable(self.account, self._id_query(tracker, [i]), now)]
        if own:
            rest = [i for i in asked if i not in own]
            if rest:
                tracker.failed(rest, now.timestamp(), 0.0)
            await self._drop(tracker, own)
            return
        if len(asked) == 1 or now.timestamp() < self._isolate_after:
            await self._failure(exc, lambda secs: tracker.failed(asked, self.clock().timestamp(), secs))
            return
        done: set[str] = set()

        async def ask(part: list[str]) -> bool:
            query = self._id_query(tracker, part)
            try:
                fetched = await self.fetcher.fetch(query)
            except BadRequest:
                return False
            await self._commit_ids(tracker, part, query, fetched, self.clock())
            done.update(part)
            if self._closed is not None:
                raise self._closed
            return True

        def later(secs: float) -> None:
            tracker.failed([i for i in asked if i not in done], self.clock().timestamp(), secs)

        try:
            refused, answered = await refused_alone(asked, ask)
        except ShardClosed:
            return   # the runner stops (`_closed`); the shard's next owner starts from `_state`
        except FAILURES as failure:   # a throttle or an outage meanwhile: what was not answered waits
            await self._failure(failure, later)
            return
        except BaseException:
            later(UNEXPECTED_BACKOFF_SECS)
            raise
        if not answered:   # the request's fault, not an id's: the batch waits as any bad request does
            self._isolate_after = self.clock().timestamp() + ISOLATE_COOLDOWN_SECS
            await self._failure(exc, later)
            return
        if refused:
            await self._drop(tracker, refused)

    async def _drop(self, tracker: IdTracker, ids: list[str]) -> None:
        """Tombstone ids the provider cannot take; once committed, forget them."""
        log.warning("the provider refuses ids alone: dropped from id polling",
                    extra={"provider": self.labels[0], "account": self.labels[1], "ids": len(ids),
                           "error_type": BadRequest.error_type})
        metrics.error("poll", BadRequest.error_type)
        try:
            await self.sink.persist([IdChange(self.account.name, email_id, None) for email_id in ids])
        except CommitFailed:
            tracker.failed(ids, self.clock().timestamp(), COMMIT_RETRY_SECS)
            return
        except ShardClosed as closed:
            self._closed = closed
            return
        tracker.apply(IdPlan((), dict.fromkeys(ids), ()), self.clock().timestamp())

    def _id_query(self, tracker: IdTracker, asked: list[str]) -> PollQuery:
        if not tracker.gap_driven:
            return PollQuery(email_ids=tuple(asked), limit=len(asked))
        limit = get_module(self.account.provider).DEFAULTS.page_limit
        return PollQuery(send_date=tracker.send_date(tracker.ids[asked[0]]), email_ids=tuple(asked), limit=limit)

    async def _commit_ids(self, tracker: IdTracker, asked: list[str], query: PollQuery, fetched: Fetched,
                          answered: datetime) -> None:
        observed = self.clock()
        try:
            self._reject(_Page(query, fetched, observed))
            plan = tracker.plan(asked, fetched.page, observed.timestamp())
            self.sink.observe(plan.observations, observed)
            await self.sink.persist([IdChange(self.account.name, eid, t) for eid, t in plan.writes.items()])
        except CommitFailed:
            tracker.failed(asked, self.clock().timestamp(), COMMIT_RETRY_SECS)
            return
        except ShardClosed as exc:
            self._closed = exc
            return
        except BaseException:
            tracker.failed(asked, self.clock().timestamp(), UNEXPECTED_BACKOFF_SECS)
            raise
        tracker.apply(plan, self.clock().timestamp())
        self._succeeded(answered)

    # -- one call -------------------------------------------------------------------------------

    async def _fetch(self, query: PollQuery, retry: Callable[[float], None], refused: bool = False) -> Fetched | None:
        """The answer, or None after a failure: `retry(secs)` reschedules what failed, nothing
        advances. With `refused`, a bad request is raised for the caller to take apart."""
        self.state = "polling"
        try:
            return await self.fetcher.fetch(query)
        except FAILURES as exc:
            if refused and isinstance(exc, BadRequest):
                raise
            await self._failure(exc, retry)
            return None
        except BaseException:
            retry(UNEXPECTED_BACKOFF_SECS)
            raise

    def _record(self, item: _Page) -> PollPageRecord:
        f = item.fetched
        return PollPageRecord(self.account.provider, self.account.name, item.at, item.query, f.status, f.headers,
                              f.body)

    def _reject(self, item: _Page) -> None:
        """A page with unreadable rows goes whole to the dead-letter topic, in the batch of its
        readable rows."""
        if item.fetched.page.rejected:
            self.sink.reject(self._record(item), item.fetched.page.rejected[0].reason)

    async def _failure(self, exc: BaseException, retry: Callable[[float], None]) -> None:
        self.last_error, self.last_reason = fetch_error_type(exc), failure_reason(exc)
        self._failed_at = self.clock()
        said = {"provider": self.labels[0], "account": self.labels[1], "error_type": self.last_error,
                "reason": self.last_reason}
        if isinstance(exc, Throttled):
            retry(0.0)  # the fetcher slowed the limiter down; its pause is the wait
            self.state = "throttled"
        elif isinstance(exc, FatalConfig):
            self.state = "fatal_config"
            log.error("account misconfigured; polling paused", extra=said)
            self._paused = True   # the whole account waits, not only this call
            try:
                await self._sleep(FATAL_BACKOFF_SECS)
            finally:
                self._paused = False
                retry(0.0)
        elif isinstance(exc, BadRequest):
            self.state = "bad_request"
            log.error("provider rejected a request", extra=said)
            retry(self.account.poll.interval_max_secs)
        else:
            self.state = "retrying"
            retry(min(60.0, self.account.poll.retry_max_secs))

    def _succeeded(self, answered: datetime) -> None:
        """A page committed; `answered`: when its call returned. A call answered before the last
        failure, committed after it, does not clear that failure's reason (polling audit of
        2026-12-06: /status showed `fatal_config` with no reason, cleared by an earlier page)."""
        self.pages += 1
        self.last_success = self.clock()
        if self._failed_at is None or answered >= self._failed_at:
            self.last_error = self.last_reason = None

    def snapshot(self) -> dict:
        out = {"provider": self.labels[0], "account": self.labels[1], "state": self.state, "pages": self.pages,
               "last_success": self.last_success.isoformat() if self.last_success else None,
               "last_error": self.last_error, "last_reason": self.last_reason, "limiter": self.fetcher.limiter.snapshot(),
               "in_flight": len(self._tasks), "target_in_flight": self.target()}
        if isinstance(self.schedule, DateWindowScheduler):
            out["windows"] = self.schedule.snapshot(self.clock())
        else:
            out["tracked_ids"] = len(self.schedule)
        if self.gaps is not None:
            out["gap_ids"] = len(self.gaps)
        return out
