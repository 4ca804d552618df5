"""Date-window scheduling: order, cache-aware intervals, adaptation, retirement, cursors."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from worker.model import EventType as T
from worker.poll.scheduler import Cursor, DateWindowScheduler, window_id
from worker.providers.base import CHINA_TZ, PollPage

NOW = datetime(2024, 1, 1, 17, 0, tzinfo=timezone.utc)  # 2024-01-02 01:00 in China


def sched(**kw) -> DateWindowScheduler:
    args = dict(tz=CHINA_TZ, lookback_days=2, status_filters=(T.INVALID, T.SOFT_BOUNCE, T.DELIVERED),
                page_limit=100, interval_min=600, interval_max=3600, cache_ttl=600)
    args.update(kw)
    return DateWindowScheduler(**args)


def page(rows, next_offset, total=None):
    return PollPage(observations=(), rows=rows, next_offset=next_offset, total=total)


def test_windows_are_dates_in_the_provider_zone():
    s = sched()
    assert s.today(NOW) == date(2024, 1, 2)
    ids = s.window_ids(NOW)
    assert ids[:3] == ["2024-01-02|invalid", "2024-01-02|soft_bounce", "2024-01-02|delivered"]
    assert len(ids) == 9 and ids[-1] == "2023-12-31|delivered"


def test_urgent_statuses_first_then_newer_dates():
    s = sched()
    order = []
    now = NOW
    while (nxt := s.next(now)) is not None:
        wid, query = nxt
        order.append(wid)
        s.apply(wid, s.after_page(wid, page(0, None), 0, now))
    assert order == [
        "2024-01-02|invalid", "2024-01-01|invalid", "2023-12-31|invalid",
        "2024-01-02|soft_bounce", "2024-01-01|soft_bounce", "2023-12-31|soft_bounce",
        "2024-01-02|delivered", "2024-01-01|delivered", "2023-12-31|delivered",
    ]


def test_when_quota_is_short_urgent_windows_go_first_but_none_starves():
    """Every call is one page; the invalid and soft-bounce windows have so many pages that they
    are always due again. The delivered windows still get their turn."""
    s = sched(lookback_days=1, interval_min=60, interval_max=600, cache_ttl=60)
    served = []
    now = NOW
    for _ in range(400):  # one call every 3 s: the quota is the limit
        wid, query = s.next(now)
        served.append(wid)
        more = 100 if "delivered" not in wid else None  # urgent windows: endless pages
        s.apply(wid, s.after_page(wid, page(100, None if more is None else query.offset + 100), 1, now))
        now += timedelta(seconds=3)
    assert served[0].endswith("|invalid")
    assert {"2024-01-02|delivered", "2024-01-01|delivered"} <= set(served)
    first_delivered = min(i for i, w in enumerate(served) if w.endswith("|delivered"))
    assert first_delivered > 5  # but only after the urgent ones had theirs


def test_a_sweep_pages_through_then_waits_at_least_the_cache_ttl_after_its_end():
    s = sched(status_filters=(), interval_min=600)
    wid, q = s.next(NOW)
    assert (q.send_date, q.status, q.offset, q.limit) == (date(2024, 1, 2), None, 0, 100)
    s.apply(wid, s.after_page(wid, page(100, 100, 250), 3, NOW))
    later = NOW + timedelta(seconds=5)
    wid2, q2 = s.next(later)
    assert wid2 == wid and q2.offset == 100  # the sweep in progress goes on
    s.apply(wid, s.after_page(wid, page(100, 200, 250), 0, later))
    s.apply(wid, s.after_page(wid, page(50, None, 250), 0, later))
    c = s.cursors[wid]
    assert not c.in_sweep and c.offset == 0 and c.total == 250 and c.sweeps == 1
    assert c.due_at >= later.timestamp() + 600
    # nothing repeats within the cache TTL: the same window is not offered before due
    queries = []
    t = later
    while t < later + timedelta(seconds=599):
        nxt = s.next(t)
        if nxt and nxt[0] == wid:
            queries.append(t)
        t += timedelta(seconds=30)
    assert queries == []


def test_intervals_adapt_between_floor_and_ceiling():
    s = sched(status_filters=(), lookback_days=0, interval_min=600, interval_max=3600, cache_ttl=0)
    wid = window_id(date(2024, 1, 2), None)
    t = NOW
    intervals = []
    for emitted in (0, 0, 0, 0, 5, 5, 5):
        s.apply(wid, s.after_page(wid, page(1, None), emitted, t))
        intervals.append(s.cursors[wid].interval)
        t += timedelta(hours=2)
    assert intervals == [900, 1350, 2025, 3037.5, 1518.75, 759.375, 600]


def test_older_dates_start_with_longer_intervals():
    s = sched(status_filters=())
    assert [s.cursor(w, NOW).interval for w in s.window_ids(NOW)] == [600, 1200, 1800]


def test_day_rollover_retires_old_windows():
    s = sched(status_filters=(), lookback_days=1)
    for wid in s.window_ids(NOW):
        s.apply(wid, Cursor(interval=600))
    tomorrow = NOW + timedelta(days=1)
    assert s.retired(tomorrow) == ["2024-01-01|*"]
    s.forget("2024-01-01|*")
    assert "2024-01-03|*" in s.window_ids(tomorrow)


def test_a_failed_page_does_not_advance_and_backs_off_the_window():
    s = sched(status_filters=(), lookback_days=0)
    wid, q = s.next(NOW)
    s.apply(wid, s.after_page(wid, page(100, 100), 0, NOW))
    s.failed(wid, NOW, backoff_secs=30)
    assert s.next(NOW + timedelta(seconds=10)) is None
    wid2, q2 = s.next(NOW + timedelta(seconds=31))
    assert q2.offset == 100


def test_after_page_does_not_apply_by_itself():
    s = sched(status_filters=(), lookback_days=0)
    wid, _ = s.next(NOW)
    s.after_page(wid, page(100, 100), 0, NOW)
    assert s.cursors[wid].offset == 0 and not s.cursors[wid].in_sweep


def test_next_due_in():
    s = sched(status_filters=(), lookback_days=0)
    assert s.next_due_in(NOW) == 0
    wid, _ = s.next(NOW)
    s.apply(wid, s.after_page(wid, page(1, None), 0, NOW))
    assert s.next_due_in(NOW) == pytest.approx(900)
