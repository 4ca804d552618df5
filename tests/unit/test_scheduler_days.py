"""The lookback's windows are made once a day (worker.poll.scheduler `windows`) and follow the
provider's day as it turns: the answers below are written out by hand from the provider's zone
(China, +08:00: 16:00 UTC is midnight there)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from tests.unit.test_scheduler import sched
from worker.model import EventType as T
from worker.poll.scheduler import parse_window_id
from worker.providers.base import PollQuery

BEFORE = datetime(2024, 1, 1, 15, 59, 59, tzinfo=timezone.utc)   # 2024-01-01 23:59:59 in China
AFTER = BEFORE + timedelta(seconds=1)                            # 2024-01-02 00:00:00 in China


def test_the_windows_turn_with_the_providers_day():
    s = sched(lookback_days=1, status_filters=(T.INVALID,))
    assert s.windows(BEFORE) == (("2024-01-01|invalid", date(2024, 1, 1), T.INVALID),
                                 ("2023-12-31|invalid", date(2023, 12, 31), T.INVALID))
    assert s.window_ids(AFTER) == ["2024-01-02|invalid", "2024-01-01|invalid"]
    assert s.window_ids(BEFORE) == ["2024-01-01|invalid", "2023-12-31|invalid"]   # a clock seen going back


def test_the_next_query_names_the_date_and_status_of_its_window():
    s = sched(lookback_days=0, status_filters=())
    assert s.next(BEFORE) == ("2024-01-01|*", PollQuery(send_date=date(2024, 1, 1), status=None, offset=0, limit=100))
    assert s.next(AFTER) == ("2024-01-02|*", PollQuery(send_date=date(2024, 1, 2), status=None, offset=0, limit=100))


def test_the_same_day_gets_the_same_windows_without_making_them_again():
    s = sched(lookback_days=1, status_filters=(T.INVALID,))
    assert s.windows(AFTER) is s.windows(AFTER + timedelta(hours=23))


def test_a_window_id_reads_back_as_its_date_and_status():
    assert parse_window_id("2024-01-02|invalid") == (date(2024, 1, 2), T.INVALID)
    assert parse_window_id("2024-01-02|*") == (date(2024, 1, 2), None)
