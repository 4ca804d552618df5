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
batches commit independently (their ids are disjoint: worker.poll.idcalls). Commits run beside the
fetches, so a call slot is never held by a commit. A call's failure, its wait and a commit's
failure are handled alike for both channels (worker.poll.calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from worker import metrics
from worker.config import AccountConfig
from worker.errors import UNEXPECTED, ShardClosed
from worker.poll.calls import UNEXPECTED_BACKOFF_SECS, Call
from worker.poll.fetch import Fetcher
from worker.poll.idcalls import IdCalls
from worker.poll.ids import IdTracker
from worker.poll.scheduler import Cursor, DateWindowScheduler
from worker.poll.sink import CursorChange, PollSink
from worker.providers.base import PollQuery

log = logging.getLogger("worker.poll")

IDLE_CHECK_SECS = 5.0


class PollRunner(IdCalls):
    def __init__(self, account: AccountConfig, fetcher: Fetcher, schedule: DateWindowScheduler | IdTracker,
                 sink: PollSink, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, gaps: IdTracker | None = None) -> None:
        super().__init__(account, fetcher, sink, clock, sleep)
        self.schedule = schedule
        self.gaps = gaps
        self._ready: dict[str, dict[int, Call]] = {}        # fetched pages by window and offset
        self._committing: set[str] = set()                  # windows with a commit outstanding
        self._retiring: set[str] = set()

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
            # a failed commit: retired again on the next turn
            if await self._persist([CursorChange(self.account.name, wid, None) for wid in retired], lambda: None):
                for wid in retired:
                    sched.forget(wid)
        finally:
            self._retiring.difference_update(retired)

    async def _page_call(self, sched: DateWindowScheduler, wid: str, query: PollQuery) -> None:
        fetched = await self._fetch(query, lambda secs: sched.failed(wid, self.clock(), secs, offset=query.offset))
        if fetched is None or query.offset not in sched.claimed(wid):
            return   # failed, or stale: the sweep ended or the window retired meanwhile
        sched.learn_extent(wid, fetched.page)
        self._ready.setdefault(wid, {})[query.offset] = Call(query, fetched, self.clock())
        if wid not in self._committing:
            self._committing.add(wid)
            self._start_commit(self._commit_window(sched, wid))

    async def _commit_window(self, sched: DateWindowScheduler, wid: str) -> None:
        """Stage every page ready in order after the window's cursor in one commit; repeat while
        pages arrived during it."""
        staged: list[Call] = []
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
                def failed(pages: list[Call] = staged) -> None:
                    for item in pages:   # asked again: the cursor did not move (the shard backs off)
                        sched.failed(wid, self.clock(), 0.0, offset=item.query.offset)

                if not await self._persist([CursorChange(self.account.name, wid, cursor)], failed):
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
