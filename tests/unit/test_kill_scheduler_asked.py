"""Edges of the sweep-starvation rule (worker.poll.scheduler `next`) mutation testing found unpinned:
only a sweep in progress waits since its last page; a window due again waits since its due time,
whenever its previous sweep's last page came. Hand-worked: interval 300 s."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.test_kill_scheduler import NOW, TS, sched
from worker.model import EventType as T
from worker.poll.scheduler import Cursor
from worker.providers.base import PollPage


def test_a_window_due_again_waits_since_its_due_time_not_its_last_page():
    s = sched(status_filters=(T.INVALID, T.DELIVERED))
    s.after_page("2024-01-02|delivered", PollPage((), rows=3, next_offset=None), 0, NOW - timedelta(seconds=400))
    s.apply("2024-01-02|delivered", Cursor(interval=300.0, due_at=TS - 100))   # its last page came 400 s ago
    s.apply("2024-01-02|invalid", Cursor(interval=300.0, due_at=TS))
    assert s.next(NOW)[0] == "2024-01-02|invalid"     # delivered waits since TS - 100: not starving
