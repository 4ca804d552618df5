"""The date-window scheduler and the adaptive limiter: what mutation testing found unpinned.

A cursor's every field through two sweeps, retries cleared by `apply` and `forget`, the `/status`
snapshots of both (nothing read them before), and the account defaults `for_account` takes. All
expected values are worked out by hand in the comments; the limiter runs on a fake clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.integration.harness import worker_config
from worker.config import parse_config
from worker.model import EventType as T
from worker.poll.limiter import AdaptiveLimiter
from worker.poll.scheduler import Cursor, DateWindowScheduler
from worker.providers.base import CHINA_TZ, PollPage, PollQuery

NOW = datetime(2024, 1, 1, 17, 0, tzinfo=timezone.utc)   # 2024-01-02 01:00 in China
TS = 1_704_128_400.0                                       # NOW as Unix seconds


def sched(**kw) -> DateWindowScheduler:
    args = dict(tz=CHINA_TZ, lookback_days=0, status_filters=(), page_limit=100, interval_min=300,
                interval_max=3600, cache_ttl=600)
    args.update(kw)
    return DateWindowScheduler(**args)


def page(rows: int, next_offset: int | None, total: int | None = None) -> PollPage:
    return PollPage(observations=(), rows=rows, next_offset=next_offset, total=total)


def at(secs: float) -> datetime:
    return NOW + timedelta(seconds=secs)


# -- the scheduler --------------------------------------------------------------------------------


def test_for_account_takes_the_providers_zone_filters_and_page_and_the_accounts_intervals():
    accounts = [{"name": "sc", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
                 "webhook": {"app_key_env": "K"}, "poll": {"lookback_days": 1, "interval_max_secs": 7200}}]
    [sc] = parse_config(worker_config("127.0.0.1:9", "p", accounts, shards=1), {"K": "k"}).accounts
    old = Cursor(interval=900.0)
    s = DateWindowScheduler.for_account(sc, {"2024-01-01|invalid": old})
    assert (s.tz, s.lookback_days, s.page_limit) == (CHINA_TZ, 1, 100)
    assert s.status_filters == (T.INVALID, T.SOFT_BOUNCE, T.DELIVERED)
    assert (s.interval_min, s.interval_max, s.cache_ttl) == (600, 7200, 600)   # SendCloud's 10-minute cache
    assert s.cursors == {"2024-01-01|invalid": old}
    assert s.window_ids(NOW) == ["2024-01-02|invalid", "2024-01-02|soft_bounce", "2024-01-02|delivered",
                                 "2024-01-01|invalid", "2024-01-01|soft_bounce", "2024-01-01|delivered"]


def test_a_cursor_through_two_sweeps_field_by_field():
    s = sched()
    wid = "2024-01-02|*"
    s.apply(wid, Cursor(interval=1000.0, due_at=TS))

    first = s.after_page(wid, page(100, 100, 250), 3, NOW)       # a sweep starts
    assert first == Cursor(interval=1000.0, offset=100, in_sweep=True, started_at=TS, completed_at=0.0,
                           due_at=TS, total=250, seen=100, changes=3, sweeps=0)
    s.apply(wid, first)

    # its last page, 10 s later: 5 changes in the sweep halve the interval to 500; due again after
    # the 600 s cache TTL, which is longer
    done = s.after_page(wid, page(40, None, 250), 2, at(10))
    assert done == Cursor(interval=500.0, offset=0, in_sweep=False, started_at=TS, completed_at=TS + 10,
                          due_at=TS + 610, total=140, seen=140, changes=5, sweeps=1)
    s.apply(wid, done)

    # the next sweep counts afresh: one quiet page lengthens the interval by half, to 750
    again = s.after_page(wid, page(7, None), 0, at(1200))
    assert again == Cursor(interval=750.0, offset=0, in_sweep=False, started_at=TS + 1200,
                           completed_at=TS + 1200, due_at=TS + 1950, total=7, seen=7, changes=0, sweeps=2)


def test_apply_clears_a_windows_retry_wait():
    s = sched()
    wid, _ = s.next(NOW)
    s.failed(wid, NOW, 1000)
    assert s.next(NOW) is None
    s.apply(wid, Cursor(interval=600.0, due_at=TS))
    assert s.next(NOW) == (wid, PollQuery(send_date=s.today(NOW), status=None, offset=0, limit=100))


def test_forget_clears_the_cursor_and_the_retry_wait_and_tolerates_an_unknown_window():
    s = sched()
    wid, _ = s.next(NOW)
    s.apply(wid, s.after_page(wid, page(100, 100), 0, NOW))      # mid-sweep at offset 100
    s.failed(wid, NOW, 1000)
    s.forget(wid)
    s.forget("1999-01-01|*")
    assert s.next(NOW) == (wid, PollQuery(send_date=s.today(NOW), status=None, offset=0, limit=100))


def test_next_due_in_waits_for_a_failed_windows_retry():
    s = sched()
    wid, _ = s.next(NOW)
    s.apply(wid, s.after_page(wid, page(100, 100), 0, NOW))      # mid-sweep: due at once ...
    s.failed(wid, NOW, 30)                                         # ... but for the retry wait
    assert s.next_due_in(NOW) == 30.0
    assert s.next_due_in(at(12)) == 18.0


def test_snapshot_lists_every_window_with_rounded_times():
    s = sched(lookback_days=2)
    s.apply("2024-01-02|*", Cursor(interval=1234.56, offset=200, in_sweep=True, total=250, sweeps=7))
    s.failed("2024-01-02|*", NOW, 12.345)
    s.apply("2024-01-01|*", Cursor(interval=600.0, due_at=TS + 99.96))
    s.apply("2023-12-31|*", Cursor(interval=1800.0, due_at=TS - 50))
    assert s.snapshot(NOW) == [
        {"window": "2024-01-02|*", "in_sweep": True, "offset": 200, "total": 250, "sweeps": 7,
         "interval_secs": 1234.6, "due_in_secs": 12.3},
        {"window": "2024-01-01|*", "in_sweep": False, "offset": 0, "total": None, "sweeps": 0,
         "interval_secs": 600.0, "due_in_secs": 100.0},
        {"window": "2023-12-31|*", "in_sweep": False, "offset": 0, "total": None, "sweeps": 0,
         "interval_secs": 1800.0, "due_in_secs": 0.0},
    ]


# -- the limiter ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_snapshot_before_and_after_a_throttle():
    clock = FakeClock()
    limiter = AdaptiveLimiter(2 / 3, 60.0, clock=clock)        # 40 calls a minute
    assert limiter.snapshot() == {"rate_per_sec": 0.6667, "ceiling_per_sec": 0.6667, "cap_per_sec": 0.6667,
                                  "tokens": 1.0, "paused_secs": 0.0, "calls_last_window": 0, "throttles": 0}
    assert limiter.try_acquire()
    clock.now = 1000.2                                          # 0.2 s refill 0.2 * 2/3 = 0.1333 tokens
    assert limiter.snapshot() == {"rate_per_sec": 0.6667, "ceiling_per_sec": 0.6667, "cap_per_sec": 0.6667,
                                  "tokens": 0.133, "paused_secs": 0.0, "calls_last_window": 1, "throttles": 0}
    # throttled after 1 call in the window, fewer than MIN_EVIDENCE (5): no cap learned, the cap
    # stays 2/3 and the rate halves to 1/3; paused until 1000.2 + 60
    limiter.on_throttle()
    clock.now = 1000.32345
    assert limiter.snapshot() == {"rate_per_sec": 0.3333, "ceiling_per_sec": 0.6667, "cap_per_sec": 0.6667,
                                  "tokens": 0.0, "paused_secs": 59.877, "calls_last_window": 1, "throttles": 1}
