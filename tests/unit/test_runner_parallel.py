"""Several calls in flight per account (issue 14), through the runner's seams: a fetcher whose answers
take a (short, real) round trip and can come back out of order, and a sink that commits in batches
like a shard. The rules under test: a window's cursor never passes a page that is not committed,
a failed page is asked again alone, every page is staged exactly once, and no more calls are in
flight than the round trip needs (within `max_in_flight`)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timezone

import attrs
import pytest

from tests.integration.harness import worker_config
from worker.config import parse_config
from worker.errors import CommitFailed, Retriable, Throttled
from worker.model import EventType, Observation
from worker.poll.fetch import Fetched
from worker.poll.ids import IdTracker, Tracked
from worker.poll.limiter import AdaptiveLimiter
from worker.poll.runner import PollRunner
from worker.poll.scheduler import DateWindowScheduler
from worker.poll.sink import CursorChange
from worker.providers.base import PollPage, PollQuery

NOW = datetime(2026, 11, 2, 4, 0, tzinfo=timezone.utc)          # 12:00 in UTC+8
TODAY = date(2026, 11, 2)
WID = "2026-11-02|*"


def account(max_in_flight: int):
    config = parse_config(worker_config("127.0.0.1:9", "p", [
        {"name": "tx", "provider": "tencent_ses", "credentials": {"secret_id": "AKID", "secret_key_env": "K"},
         "webhook": {"enabled": False}, "poll": {"lookback_days": 1, "max_in_flight": max_in_flight}},
    ]), {"K": "k"})
    return config.accounts[0]


def obs(offset: int) -> Observation:
    return Observation(email_id=f"m{offset}:r@x.test", recipient="r@x.test", type=EventType.DELIVERED, reason=None,
                       occurred_at=NOW, provider_status="0")


@attrs.define
class Window:
    """A provider's window of `rows` rows served `limit` a page, with a total; `delays[offset]`
    seconds before a page answers, `fail[offset]` exceptions raised first."""

    rows: int
    limit: int = 100
    delays: dict = attrs.field(factory=dict)
    fail: dict = attrs.field(factory=dict)
    rtt: float = 0.01
    limiter: AdaptiveLimiter = attrs.field(factory=lambda: AdaptiveLimiter(1000.0))
    asked: list = attrs.field(factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    async def fetch(self, query: PollQuery):
        if query.send_date != TODAY:                  # yesterday's window is empty
            return Fetched(PollPage((), rows=0, next_offset=None, total=0), 200, {}, b"{}")
        self.asked.append(query.offset)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delays.get(query.offset, self.rtt))
            if self.fail.get(query.offset):
                raise self.fail[query.offset].pop(0)
        finally:
            self.in_flight -= 1
        n = max(0, min(self.limit, self.rows - query.offset))
        nxt = query.offset + n if query.offset + n < self.rows else None
        page = PollPage(tuple(obs(query.offset + i) for i in range(n)), rows=n, next_offset=nxt, total=self.rows)
        return Fetched(page, 200, {}, b"{}")


@attrs.define
class BatchingSink:
    """Commits like a shard: whatever was staged before the commit starts goes in one batch; a
    batch's outcome comes a few ms later. `outcomes` (popped per batch): None or an exception."""

    outcomes: list = attrs.field(factory=list)
    batches: list = attrs.field(factory=list)        # committed: (observed email ids, cursor changes)
    _open: tuple = attrs.field(factory=lambda: ([], []))
    _waiters: list = attrs.field(factory=list)
    _task: asyncio.Task | None = None

    def observe(self, observations, observed_at, page=None) -> int:
        self._open[0].extend(o.email_id for o in observations)
        return len(observations)

    def reject(self, page, reason) -> None:
        raise AssertionError("no page here has unreadable rows")

    def persist(self, changes):
        self._open[1].extend(changes)
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._commit())
        return fut

    async def _commit(self) -> None:
        while self._waiters:
            await asyncio.sleep(0.005)
            staged, waiters = self._open, self._waiters
            self._open, self._waiters = ([], []), []
            outcome = self.outcomes.pop(0) if self.outcomes else None
            if outcome is None:
                self.batches.append(staged)
            for fut in waiters:
                if outcome is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(outcome)


async def run_until_swept(r: PollRunner, sched: DateWindowScheduler, sweeps: int = 1) -> None:
    task = asyncio.ensure_future(r.run())
    try:
        for _ in range(2000):
            if sched.cursors.get(WID) is not None and sched.cursors[WID].sweeps >= sweeps:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"the sweep did not end; asked {sorted(r.fetcher.asked)}")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def committed_ids(sink: BatchingSink) -> list[str]:
    return [email_id for ids, _ in sink.batches for email_id in ids]


def today_batches(sink: BatchingSink) -> list[int]:
    return [len(ids) for ids, changes in sink.batches if ids or any(c.window == WID for c in changes)]


def check_cursors_follow_commits(sink: BatchingSink) -> None:
    """Every committed cursor of the window points exactly past the rows committed so far."""
    rows = 0
    for ids, changes in sink.batches:
        rows += len(ids)
        for change in changes:
            assert isinstance(change, CursorChange)
            if change.window == WID and change.cursor.in_sweep:
                assert change.cursor.offset == rows, (change.cursor.offset, rows)


async def test_pages_of_a_window_go_in_parallel_once_the_first_gives_the_total():
    acct = account(max_in_flight=4)
    provider = Window(rows=950, rtt=0.02)
    sched = DateWindowScheduler.for_account(acct, {})
    sink = BatchingSink()
    r = PollRunner(acct, provider, sched, sink, clock=lambda: NOW)
    r.target = lambda: 4                               # the round trip measured elsewhere
    await run_until_swept(r, sched)
    assert sorted(provider.asked) == [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]
    assert provider.most_in_flight == 4
    assert committed_ids(sink) == [f"m{i}:r@x.test" for i in range(950)]   # in order, each once
    check_cursors_follow_commits(sink)
    assert len(today_batches(sink)) < 10              # pages ready together commit together


async def test_pages_answering_out_of_order_wait_for_the_one_before_them():
    acct = account(max_in_flight=4)
    provider = Window(rows=400, delays={100: 0.15, 200: 0.01, 300: 0.01})
    sched = DateWindowScheduler.for_account(acct, {})
    sink = BatchingSink()
    r = PollRunner(acct, provider, sched, sink, clock=lambda: NOW)
    r.target = lambda: 4
    await run_until_swept(r, sched)
    assert sorted(provider.asked) == [0, 100, 200, 300]
    check_cursors_follow_commits(sink)
    assert committed_ids(sink) == [f"m{i}:r@x.test" for i in range(400)]
    # pages 200 and 300 arrived first and waited: they committed in page 100's batch
    assert today_batches(sink) == [100, 300]


@pytest.mark.parametrize("failure", [Retriable("HTTP 502"), Throttled("slow down", None)])
async def test_a_failed_page_is_asked_again_alone(failure):
    acct = account(max_in_flight=4)
    provider = Window(rows=500, fail={200: [failure]})
    sched = DateWindowScheduler.for_account(acct, {})
    sink = BatchingSink()
    clock = [NOW]
    r = PollRunner(acct, provider, sched, sink, clock=lambda: clock[0])
    r.target = lambda: 4
    task = asyncio.ensure_future(r.run())
    try:
        for _ in range(400):
            await asyncio.sleep(0.005)
            if provider.asked.count(200) == 1 and 200 not in sched.claimed(WID):
                clock[0] = NOW.replace(minute=5)      # past the page's backoff (a minute at most)
            if sched.cursors.get(WID) is not None and sched.cursors[WID].sweeps:
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(provider.asked) == [0, 100, 200, 200, 300, 400]
    assert committed_ids(sink) == [f"m{i}:r@x.test" for i in range(500)]
    check_cursors_follow_commits(sink)


async def test_a_failed_commit_asks_its_pages_again_and_moves_nothing():
    acct = account(max_in_flight=1)
    provider = Window(rows=300)
    sched = DateWindowScheduler.for_account(acct, {})
    sink = BatchingSink(outcomes=[None, CommitFailed("kafka")])
    r = PollRunner(acct, provider, sched, sink, clock=lambda: NOW)
    await run_until_swept(r, sched)
    assert sorted(provider.asked) == [0, 100, 100, 200]   # page 200 went on while 100 waited
    assert committed_ids(sink) == [f"m{i}:r@x.test" for i in range(300)]
    check_cursors_follow_commits(sink)


@pytest.mark.parametrize(("rate", "rtt", "most", "expected"), [
    (40.0, 0.15, 8, 7),      # 40 calls/s x 150 ms = 6 in flight, plus one
    (40.0, 0.15, 4, 4),      # bounded by poll.max_in_flight
    (1.0, 0.15, 8, 2),       # a slow quota: one call plus one
    (40.0, None, 8, 1),      # no round trip measured yet: one at a time
    (16.0, 0.30, 64, 6),     # ceil(4.8) + 1
])
def test_the_target_is_the_rate_times_the_round_trip_plus_one(rate, rtt, most, expected):
    acct = account(max_in_flight=most)
    fetcher = Window(rows=0, limiter=AdaptiveLimiter(rate))
    fetcher.rtt = rtt  # type: ignore[attr-defined]
    r = PollRunner(acct, fetcher, DateWindowScheduler.for_account(acct, {}), BatchingSink(), clock=lambda: NOW)
    assert r.target() == expected


@attrs.define
class IdProvider:
    """A UniSender-like status API `rtt` away whose calls take the limiter's tokens as the real
    Fetcher does (after the call was claimed); every id answers 'not sent yet'."""

    limiter: AdaptiveLimiter
    rtt: float = 0.01
    batches: list = attrs.field(factory=list)

    async def fetch(self, query: PollQuery):
        await self.limiter.acquire()
        self.batches.append(len(query.email_ids))
        await asyncio.sleep(self.rtt)
        return Fetched(PollPage((), rows=len(query.email_ids), next_offset=None), 200, {}, b"{}")


async def test_an_id_batch_is_claimed_when_its_token_is_there_and_holds_every_id_due_by_then():
    """Quota-bound (5 calls/s, burst 1), ids falling due all the time (3,000 over 1.2 s): each call
    after the first carries the ids due since the one before, ~500 (a full batch). Claimed when the
    previous call ended and then waiting ~0.2 s for its token, a batch held only the few ids due
    at that moment (UniSender under load: 84 of 500 a call)."""
    config = parse_config(worker_config("127.0.0.1:9", "p", [
        {"name": "uni", "provider": "unisender", "credentials": {"api_key_env": "K"}}]), {"K": "k"})
    acct = config.accounts[0]
    start = datetime.now(timezone.utc).timestamp()
    tracker = IdTracker(86400.0, 500, min_recheck_secs=1e9)        # no early re-checks here
    for i in range(3000):
        tracker.restore(f"id{i}", Tracked("r@x.test", start), start + 0.2 + i * 0.0004)   # due 0.2..1.4 s
    limiter = AdaptiveLimiter(5.0)
    limiter.tokens = 0.0
    provider = IdProvider(limiter)
    r = PollRunner(acct, provider, tracker, BatchingSink())
    task = asyncio.ensure_future(r.run())
    await asyncio.sleep(1.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert 5 <= len(provider.batches) <= 8, provider.batches
    assert min(provider.batches[1:-1]) >= 300, provider.batches   # before: [3, 105, 4, 500, 500, 500, 500]
