"""The date-window scheduler (worker.poll.scheduler): edges mutation testing found unpinned.

The query `next` hands out (filter and page size), the starvation boundary, a sweep in progress
being continued whatever its due time, no hidden minimum timestamp, `next_due_in` with no windows,
and `snapshot` of windows never seen before. Expected values are worked out by hand in comments.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from worker.model import EventType as T
from worker.poll.scheduler import Cursor, DateWindowScheduler
from worker.providers.base import CHINA_TZ, PollQuery

NOW = datetime(2024, 1, 1, 17, 0, tzinfo=timezone.utc)   # 2024-01-02 01:00 in China
TS = 1_704_128_400.0                                       # NOW as Unix seconds
TODAY = date(2024, 1, 2)


def sched(**kw) -> DateWindowScheduler:
    args = dict(tz=CHINA_TZ, lookback_days=0, status_filters=(), page_limit=100, interval_min=300,
                interval_max=3600, cache_ttl=600)
    args.update(kw)
    return DateWindowScheduler(**args)


def test_the_query_carries_the_windows_status_filter_and_the_page_size():
    s = sched(status_filters=(T.INVALID, T.SOFT_BOUNCE, T.DELIVERED), page_limit=37)
    assert s.next(NOW) == ("2024-01-02|invalid", PollQuery(send_date=TODAY, status=T.INVALID, offset=0, limit=37))
    s.apply("2024-01-02|invalid", Cursor(interval=300.0, due_at=TS + 10))
    s.apply("2024-01-02|soft_bounce", Cursor(interval=300.0, due_at=TS + 10))
    assert s.next(NOW) == ("2024-01-02|delivered",
                           PollQuery(send_date=TODAY, status=T.DELIVERED, offset=0, limit=37))


def test_a_window_overdue_by_exactly_its_interval_is_not_yet_starving():
    s = sched(status_filters=(T.INVALID, T.DELIVERED))
    s.apply("2024-01-02|invalid", Cursor(interval=300.0, due_at=TS))           # due now
    s.apply("2024-01-02|delivered", Cursor(interval=600.0, due_at=TS - 600))   # overdue by 600 = its interval
    assert s.next(NOW)[0] == "2024-01-02|invalid"                              # status order holds
    s.apply("2024-01-02|delivered", Cursor(interval=600.0, due_at=TS - 601))   # overdue by more
    assert s.next(NOW)[0] == "2024-01-02|delivered"                            # starving: first


def test_a_sweep_in_progress_continues_whatever_its_due_time():
    s = sched()
    s.apply("2024-01-02|*", Cursor(interval=600.0, offset=200, in_sweep=True, due_at=TS + 500))
    assert s.next(NOW) == ("2024-01-02|*", PollQuery(send_date=TODAY, status=None, offset=200, limit=100))
    assert s.next_due_in(NOW) == 0.0
    assert s.snapshot(NOW)[0]["due_in_secs"] == 0.0


def test_no_hidden_minimum_timestamp_windows_are_ready_from_the_epoch_on():
    epoch = datetime(1970, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)         # timestamp 0.5
    s = sched()
    wid = "1970-01-01|*"                                                       # 08:00 in China
    assert s.next(epoch) == (wid, PollQuery(send_date=date(1970, 1, 1), status=None, offset=0, limit=100))
    s.apply(wid, Cursor(interval=300.0, offset=100, in_sweep=True))            # mid-sweep, due_at 0.0
    assert s.next(epoch) == (wid, PollQuery(send_date=date(1970, 1, 1), status=None, offset=100, limit=100))
    assert s.next_due_in(epoch) == 0.0


def test_next_due_in_without_any_window_waits_the_longest_interval():
    s = sched(lookback_days=-1)                                                # no dates at all
    assert s.window_ids(NOW) == []
    assert s.next_due_in(NOW) == 3600.0


def test_snapshot_creates_the_cursors_of_windows_never_seen():
    s = sched(lookback_days=1)
    # new windows: due at once; interval 300 * (1 + age in days), at most 3600
    assert s.snapshot(NOW) == [
        {"window": "2024-01-02|*", "in_sweep": False, "offset": 0, "total": None, "sweeps": 0,
         "interval_secs": 300.0, "due_in_secs": 0.0},
        {"window": "2024-01-01|*", "in_sweep": False, "offset": 0, "total": None, "sweeps": 0,
         "interval_secs": 600.0, "due_in_secs": 0.0},
    ]
    assert s.cursors["2024-01-01|*"] == Cursor(interval=600.0, due_at=TS)


def test_snapshot_due_time_counts_from_now():
    s = sched()
    s.apply("2024-01-02|*", Cursor(interval=600.0, due_at=TS + 42))
    assert s.snapshot(NOW + timedelta(seconds=2))[0]["due_in_secs"] == 40.0
