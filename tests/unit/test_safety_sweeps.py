"""Gap-driven polling's safety sweeps (issue 14, part c), worked by hand: once widened, a date
window is swept every `safety_sweep * (1 + age in days)`, quiet or not (worker.poll.scheduler).
"""


from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.poll.scheduler import DateWindowScheduler
from worker.providers.base import CHINA_TZ, PollPage

NOW = datetime(2024, 1, 1, 17, 0, tzinfo=UTC)  # 2024-01-02 01:00 in China: today is 2024-01-02
SAFETY = 7200.0


def sched(safety: float | None = SAFETY) -> DateWindowScheduler:
    return DateWindowScheduler(tz=CHINA_TZ, lookback_days=5, status_filters=(), page_limit=100, interval_min=600,
                               interval_max=3600, cache_ttl=600, ahead=8, safety_sweep=safety)


def last_page(rows: int) -> PollPage:
    return PollPage((), rows=rows, next_offset=None, total=rows)


# -- safety sweeps by age ------------------------------------------------------------------------


@pytest.mark.parametrize(("wid", "changes", "interval"), [
    ("2024-01-02|*", 0, 7200.0),     # today: the safety interval
    ("2024-01-02|*", 4, 7200.0),     # events found change nothing: the by-id checks are the fast path
    ("2024-01-01|*", 0, 14400.0),    # yesterday: twice
    ("2023-12-30|*", 3, 28800.0),    # three days old: four times
    ("2023-12-28|*", 0, 43200.0),    # the lookback's oldest date (5 days): six times
])
def test_a_widened_sweep_ends_at_the_safety_interval_times_one_plus_the_dates_age(wid, changes, interval):
    s = sched()
    s.widen()
    end = s.after_page(wid, last_page(30), changes, NOW)
    assert end.interval == interval
    assert end.due_at == NOW.timestamp() + interval


def test_a_window_first_seen_after_the_widening_starts_at_its_ages_safety_interval_and_is_due_now():
    s = sched()
    s.widen()
    c = s.cursor("2023-12-31|*", NOW)           # two days old
    assert (c.interval, c.due_at) == (21600.0, NOW.timestamp())


def test_before_the_widening_intervals_adapt_as_date_sweeps_do():
    s = sched()
    c = s.cursor("2024-01-01|*", NOW)           # yesterday: 600 x 2
    assert c.interval == 1200.0
    quiet = s.after_page("2024-01-01|*", last_page(30), 0, NOW)
    assert quiet.interval == 1800.0             # lengthened by half
    busy = s.after_page("2024-01-01|*", last_page(30), 2, NOW)
    assert busy.interval == 600.0               # halved


def test_an_account_without_gap_driven_polling_never_widens():
    s = sched(safety=None)
    s.widen()
    assert s.widened is False
    assert s.after_page("2024-01-01|*", last_page(30), 0, NOW).interval == 1800.0


def test_a_new_windows_interval_is_capped_by_interval_max_until_the_widening_and_not_after():
    s = DateWindowScheduler(tz=CHINA_TZ, lookback_days=5, status_filters=(), page_limit=100, interval_min=600,
                            interval_max=1000, cache_ttl=600, ahead=8, safety_sweep=SAFETY)
    assert s.cursor("2024-01-01|*", NOW).interval == 1000.0        # 600 x 2, capped at 1,000
    s.widen()
    assert s.cursor("2023-12-31|*", NOW).interval == 21600.0       # 7,200 x 3, no cap
