"""A provider's zone-less time read in its zone (worker.providers.base `naive_epoch`, `naive_to_utc`,
`local_epoch`), now that an hour's start is remembered: the same answers as reading each time in the zone, across zone
changes. Expected values are worked out by hand from the zones' rules (tz database):
- Moscow, 2010: summer time from 28 March 02:00 (+03:00 -> +04:00) to 31 October 03:00 (back to
  +03:00). A time in the skipped hour is read with the offset before the change (PEP 495, fold 0),
  a time in the repeated hour as its first occurrence (+04:00).
- Lord Howe Island moves its clocks by half an hour, at 02:00 on 4 October 2026 (+10:30 -> +11:00):
  the hour 02 has two offsets, so remembering the offset at 02:00 would read 02:45 as +10:30.
- Shanghai is +08:00 and Moscow +03:00 on 2 November 2026."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from worker.providers import base
from worker.providers.base import naive_to_utc

CASES = [
    ("2026-11-02 14:59:03", "Asia/Shanghai", datetime(2026, 11, 2, 6, 59, 3, tzinfo=UTC)),
    ("2026-11-02 14:59:03", "Europe/Moscow", datetime(2026, 11, 2, 11, 59, 3, tzinfo=UTC)),   # same hour, other zone
    ("2026-11-02 14:00:00", "Asia/Shanghai", datetime(2026, 11, 2, 6, 0, 0, tzinfo=UTC)),
    ("2010-03-28 01:59:59", "Europe/Moscow", datetime(2010, 3, 27, 22, 59, 59, tzinfo=UTC)),
    ("2010-03-28 02:30:00", "Europe/Moscow", datetime(2010, 3, 27, 23, 30, 0, tzinfo=UTC)),    # skipped: +03:00
    ("2010-03-28 03:30:00", "Europe/Moscow", datetime(2010, 3, 27, 23, 30, 0, tzinfo=UTC)),    # +04:00
    ("2010-10-31 02:30:00", "Europe/Moscow", datetime(2010, 10, 30, 22, 30, 0, tzinfo=UTC)),   # repeated: first
    ("2010-10-31 03:30:00", "Europe/Moscow", datetime(2010, 10, 31, 0, 30, 0, tzinfo=UTC)),    # +03:00 again
    ("2026-10-04 01:59:59", "Australia/Lord_Howe", datetime(2026, 10, 3, 15, 29, 59, tzinfo=UTC)),
    ("2026-10-04 02:15:00", "Australia/Lord_Howe", datetime(2026, 10, 3, 15, 45, 0, tzinfo=UTC)),  # skipped: +10:30
    ("2026-10-04 02:45:00", "Australia/Lord_Howe", datetime(2026, 10, 3, 15, 45, 0, tzinfo=UTC)),  # +11:00
    ("2026-10-04 2:45:00", "Australia/Lord_Howe", datetime(2026, 10, 3, 15, 45, 0, tzinfo=UTC)),   # unpadded
]


@pytest.mark.parametrize(("text", "zone", "expected"), CASES,
                         ids=[f"{z.split('/')[-1]}-{t.replace(' ', 'T')}" for t, z, _ in CASES])
def test_each_time_reads_as_its_zone_says(text, zone, expected):
    got = naive_to_utc(text, ZoneInfo(zone))
    assert got == expected and got.tzinfo is UTC


def test_asked_twice_in_any_order_the_answers_stay():
    # the second pass answers from the remembered offsets
    first = [naive_to_utc(t, ZoneInfo(z)) for t, z, _ in CASES]
    again = [naive_to_utc(t, ZoneInfo(z)) for t, z, _ in reversed(CASES)]
    assert first == [e for _, _, e in CASES] and again == [e for _, _, e in reversed(CASES)]


REFUSED = ["2026-11-02T14:59:03", "2026-11-02 14:59+03", "2026-11-02 14:59:03+00:00", "2026-11-02  14:59:03",
           "\uff12\uff10\uff12\uff16-11-02 14:59:03", "2026-13-02 14:59:03"]


@pytest.mark.parametrize("text", REFUSED, ids=["T", "offset", "zone", "two-spaces", "wide-digits", "month-13"])
def test_other_shapes_are_refused(text):
    with pytest.raises(ValueError):
        naive_to_utc(text, ZoneInfo("Asia/Shanghai"))


SHANGHAI = ZoneInfo("Asia/Shanghai")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")


def hour(y: int, mo: int, d: int, h: int, mi: int = 0) -> int:
    """Unix seconds of a UTC time (the stdlib's arithmetic, not the code under test)."""
    return int(datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp())


@pytest.fixture
def starts(monkeypatch):
    monkeypatch.setattr(base, "_HOUR_STARTS", {})
    return base._HOUR_STARTS


def test_an_hours_start_is_remembered_by_zone_and_hour(starts):
    naive_to_utc("2026-11-02 14:59:03", SHANGHAI)
    naive_to_utc("2026-11-02 14:00:00", SHANGHAI)
    naive_to_utc("2026-11-02 15:00:00", SHANGHAI)
    assert starts == {(SHANGHAI, "2026-11-02 14"): hour(2026, 11, 2, 6), (SHANGHAI, "2026-11-02 15"): hour(2026, 11, 2, 7)}


def test_an_hour_with_two_offsets_is_not_remembered(starts):
    assert naive_to_utc("2026-10-04 02:45:00", LORD_HOWE) == datetime(2026, 10, 3, 15, 45, tzinfo=UTC)
    assert naive_to_utc("2026-10-04 03:00:00", LORD_HOWE) == datetime(2026, 10, 3, 16, 0, tzinfo=UTC)
    assert starts == {(LORD_HOWE, "2026-10-04 03"): hour(2026, 10, 3, 16)}


def test_at_its_bound_the_memory_starts_again(starts, monkeypatch):
    monkeypatch.setattr(base, "_HOUR_STARTS_MAX", 2)
    for h in ("10", "11", "12"):
        naive_to_utc(f"2026-11-02 {h}:30:00", SHANGHAI)
    assert starts == {(SHANGHAI, "2026-11-02 12"): hour(2026, 11, 2, 4)}     # emptied at 2, then the third


def test_a_remembered_hour_answers_in_seconds():
    # 14:59:03 in Shanghai is 06:59:03 UTC; the second call is answered from the remembered start
    assert base.naive_epoch("2026-11-02 14:00:00", SHANGHAI) == hour(2026, 11, 2, 6)
    assert base.naive_epoch("2026-11-02 14:59:03", SHANGHAI) == hour(2026, 11, 2, 6, 59) + 3


@pytest.mark.parametrize("text", ["2026-11-02 14:60:00", "2026-11-02 14:59:60", "2026-11-02 14:99:99"])
def test_a_minute_or_second_past_59_is_refused_in_a_remembered_hour(starts, text):
    base.naive_epoch("2026-11-02 14:00:00", SHANGHAI)
    assert (SHANGHAI, "2026-11-02 14") in starts
    with pytest.raises(ValueError):
        base.naive_epoch(text, SHANGHAI)


def test_a_minute_or_second_past_59_is_refused_in_a_new_hour(starts):
    with pytest.raises(ValueError):
        base.naive_epoch("2026-11-02 16:60:00", SHANGHAI)
    assert starts == {}


def test_local_epoch_takes_text_from_1970_only():
    assert base.local_epoch("1970-01-01 08:00:00", SHANGHAI) == 0
    with pytest.raises(ValueError):
        base.local_epoch("1970-01-01 07:59:59", SHANGHAI)     # 1969 in UTC
    with pytest.raises(TypeError):
        base.local_epoch(1_700_000_000, SHANGHAI)


def test_an_unpadded_minute_in_a_remembered_hour_is_read_in_full(starts):
    # "2026-11-02 14:5:03" starts like the remembered "2026-11-02 14"; its minute is 5, not "5:"
    base.naive_epoch("2026-11-02 14:00:00", SHANGHAI)
    assert base.naive_epoch("2026-11-02 14:5:03", SHANGHAI) == hour(2026, 11, 2, 6, 5) + 3
