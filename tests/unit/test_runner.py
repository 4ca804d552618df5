"""The poll runner through its seams: a fake fetcher (the network side) and a fake sink (the shard
side). The rule under test: nothing advances before the sink says the page committed."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone

import attrs
import pytest

from tests.integration.harness import worker_config
from worker.config import parse_config
from worker.errors import CommitFailed, Retriable, ShardClosed, Throttled
from worker.model import EventType, Observation
from worker.poll.fetch import Fetched
from worker.poll.ids import IdTracker, Tracked
from worker.poll.limiter import AdaptiveLimiter
from worker.poll.runner import PollRunner
from worker.poll.scheduler import DateWindowScheduler
from worker.poll.sink import CursorChange, IdChange
from worker.providers.base import PollPage, PollQuery, RejectedRow
from worker.raw import PollPageRecord

NOW = datetime(2026, 11, 2, 4, 0, tzinfo=timezone.utc)          # 12:00 in UTC+8
TODAY = date(2026, 11, 2)
CONFIG = parse_config(worker_config("127.0.0.1:9", "p", [
    {"name": "tx", "provider": "tencent_ses", "credentials": {"secret_id": "AKID", "secret_key_env": "K"},
     "webhook": {"enabled": False}, "poll": {"lookback_days": 1}},
    {"name": "uni", "provider": "unisender", "credentials": {"api_key_env": "K"}},
]), {"K": "k"})
TX, UNI = CONFIG.accounts


@attrs.define
class FakeFetcher:
    answers: list                      # PollPage or an exception, one per call
    limiter: AdaptiveLimiter = attrs.field(factory=lambda: AdaptiveLimiter(10.0))
    asked: list = attrs.field(factory=list)

    async def fetch(self, query: PollQuery):
        self.asked.append(query)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return Fetched(answer, 200, {"content-type": "application/json"}, b'{"page": %d}' % len(self.asked))


@attrs.define
class FakeSink:
    outcome: list                      # per persist: None (committed) or an exception
    observed: list = attrs.field(factory=list)
    persisted: list = attrs.field(factory=list)
    rejected: list = attrs.field(factory=list)
    emitted: int = 1

    def reject(self, page, reason) -> None:
        self.rejected.append((page, reason))

    def observe(self, observations, observed_at, page=None) -> int:
        self.observed.append(list(observations))
        return self.emitted

    def persist(self, changes):
        self.persisted.append(list(changes))
        fut = asyncio.get_running_loop().create_future()
        result = self.outcome.pop(0)
        if result is None:
            fut.set_result(None)
        else:
            fut.set_exception(result)
        return fut


def obs(i: int) -> Observation:
    return Observation(email_id=f"m{i}:r@x.test", recipient="r@x.test", type=EventType.DELIVERED, reason=None,
                       occurred_at=NOW, provider_status="0")


async def no_sleep(secs: float) -> None:
    return None


def runner(account, fetcher, schedule, sink) -> PollRunner:
    return PollRunner(account, fetcher, schedule, sink, clock=lambda: NOW, sleep=no_sleep)


async def test_a_commit_failure_mid_sweep_does_not_advance_the_cursor():
    sched = DateWindowScheduler.for_account(TX, {})
    full = PollPage((obs(1), obs(2)), rows=100, next_offset=100)
    fetcher = FakeFetcher([full, full, PollPage((), rows=3, next_offset=None)])
    sink = FakeSink([CommitFailed("kafka"), None, None])
    r = runner(TX, fetcher, sched, sink)
    await r.step()                                    # page 0 fetched, its commit fails
    wid = "2026-11-02|*"
    assert fetcher.asked[0] == PollQuery(send_date=TODAY, status=None, offset=0, limit=100)
    assert sched.cursors[wid].offset == 0 and not sched.cursors[wid].in_sweep and r.pages == 0
    await r.step()                                    # the same page again, committed this time
    assert fetcher.asked[1] == fetcher.asked[0]
    assert sched.cursors[wid].offset == 100 and sched.cursors[wid].in_sweep and r.pages == 1
    [[change]] = sink.persisted[1:]
    assert change == CursorChange("tx", wid, sched.cursors[wid])   # the committed cursor is the applied one
    await r.step()
    assert fetcher.asked[2].offset == 100
    assert not sched.cursors[wid].in_sweep and sched.cursors[wid].sweeps == 1


async def test_a_failed_call_moves_nothing_and_a_throttle_just_retries():
    sched = DateWindowScheduler.for_account(TX, {})
    fetcher = FakeFetcher([Throttled("slow down", 30.0), Retriable("HTTP 502")])
    sink = FakeSink([])
    r = runner(TX, fetcher, sched, sink)
    await r.step()
    assert r.state == "throttled" and r.last_error == "throttled" and sink.persisted == []
    await r.step()                                    # due again at once: the limiter's pause is the wait
    assert fetcher.asked[1] == fetcher.asked[0]
    assert r.state == "retrying" and r.last_error == "retriable"
    assert sched.next(NOW) is not None and sched.next(NOW)[0] != "2026-11-02|*"   # that window waits
    assert sched.cursors["2026-11-02|*"].offset == 0 and sink.observed == []


async def test_retired_windows_are_tombstoned_before_they_are_forgotten():
    old = "2026-10-30|*"
    sched = DateWindowScheduler.for_account(TX, {old: DateWindowScheduler.for_account(TX, {}).cursor(old, NOW)})
    fetcher = FakeFetcher([PollPage((), rows=0, next_offset=None)])
    sink = FakeSink([None, None])
    await runner(TX, fetcher, sched, sink).step()
    assert sink.persisted[0] == [CursorChange("tx", old, None)]
    assert old not in sched.cursors


async def test_ids_whose_check_did_not_commit_keep_their_state_and_wait():
    tracker = IdTracker.for_account(UNI, {"1": Tracked("a@x", NOW.timestamp() - 60, "ok_sent")}, NOW.timestamp())
    answer = PollPage((Observation(email_id="1", recipient="", type=EventType.DELIVERED, reason=None,
                                   occurred_at=NOW, provider_status="ok_delivered", exact_time=False),),
                      rows=1, next_offset=None)
    fetcher = FakeFetcher([answer, answer])
    sink = FakeSink([CommitFailed("timeout"), None])
    r = runner(UNI, fetcher, tracker, sink)
    await r.step()
    assert fetcher.asked[0].email_ids == ("1",)
    [[seen]] = sink.observed
    assert seen.recipient == "a@x"                      # the tracker supplies the address
    assert sink.persisted[0] == [IdChange("uni", "1", Tracked("a@x", NOW.timestamp() - 60, "ok_delivered"))]
    assert tracker.ids["1"].status == "ok_sent"        # not applied
    assert tracker.due(NOW.timestamp() + 4) == [] and tracker.due(NOW.timestamp() + 5) == ["1"]


async def test_a_closed_shard_stops_the_runner():
    sched = DateWindowScheduler.for_account(TX, {})
    fetcher = FakeFetcher([PollPage((obs(1),), rows=1, next_offset=None)])
    sink = FakeSink([ShardClosed("revoked")])
    r = runner(TX, fetcher, sched, sink)
    await asyncio.wait_for(r.run(), 5)                 # returns instead of looping
    assert r.state == "stopped"


@pytest.mark.parametrize("days_back", [0, 1])
async def test_every_date_of_the_lookback_is_asked(days_back):
    sched = DateWindowScheduler.for_account(TX, {})
    wanted = (TODAY - timedelta(days=days_back)).isoformat() + "|*"
    assert wanted in sched.window_ids(NOW)


async def test_a_page_with_unreadable_rows_goes_whole_to_the_sink_and_the_cursor_still_moves():
    sched = DateWindowScheduler.for_account(TX, {})
    page = PollPage((obs(1), obs(3)), rows=3, next_offset=None, rejected=(RejectedRow(1, "malformed"),))
    fetcher = FakeFetcher([page])
    sink = FakeSink([None])
    await runner(TX, fetcher, sched, sink).step()
    [(record, reason)] = sink.rejected
    assert reason == "malformed" and isinstance(record, PollPageRecord)
    assert (record.account, record.query, record.status, record.body) == ("tx", fetcher.asked[0], 200, b'{"page": 1}')
    assert [[o.email_id for o in seen] for seen in sink.observed] == [["m1:r@x.test", "m3:r@x.test"]]
    assert sched.cursors["2026-11-02|*"].sweeps == 1          # the window moved on
