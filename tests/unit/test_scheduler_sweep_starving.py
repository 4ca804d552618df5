"""A sweep in progress can starve too (status-API audit of 2026-12-06): with the quota below what
is due, windows that came due again counted as starving and went first, while a sweep owing its
later pages never did: a three-page `invalid` window sat at offset 100 for minutes while one-page
windows were polled every 20 s. Now a sweep in progress is starving once no page of it was handed
out for longer than its interval; a sweep that keeps getting its pages does not crowd out the rest
(test_scheduler's `..._none_starves`). Hand-worked with test_kill_scheduler's scheduler."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.test_kill_scheduler import NOW, TODAY, TS, sched
from worker.model import EventType as T
from worker.poll.scheduler import Cursor
from worker.providers.base import PollQuery


def test_a_sweep_whose_pages_wait_is_not_outranked_by_windows_due_again():
    s = sched(status_filters=(T.INVALID, T.DELIVERED))
    s.apply("2024-01-02|invalid", Cursor(interval=300.0, offset=100, in_sweep=True, due_at=TS - 1000))
    s.apply("2024-01-02|delivered", Cursor(interval=300.0, due_at=TS - 1000))     # due again, 700 s past its interval
    assert s.claim(NOW) == ("2024-01-02|invalid", PollQuery(send_date=TODAY, status=T.INVALID, offset=100, limit=100))


def test_a_sweep_asked_lately_is_not_starving():
    s = sched(status_filters=(T.INVALID, T.DELIVERED))
    s.apply("2024-01-02|invalid", Cursor(interval=300.0, offset=100, in_sweep=True, due_at=TS - 1000))
    s.apply("2024-01-02|delivered", Cursor(interval=300.0, due_at=TS - 1000))
    assert s.claim(NOW)[0] == "2024-01-02|invalid"                     # its page 100, asked at NOW
    s.release("2024-01-02|invalid", 100)                               # answered; the sweep owes more
    later = NOW + timedelta(seconds=300)
    assert s.next(later)[0] == "2024-01-02|delivered"                  # asked 300 s ago: not past its interval
    assert s.next(later + timedelta(seconds=1))[0] == "2024-01-02|invalid"   # 301 s: both starve; the sweep first


def test_a_retired_window_is_forgotten_whole():
    s = sched(status_filters=(T.INVALID,))
    s.claim(NOW)
    s.forget("2024-01-02|invalid")
    assert s._asked_at == {}
