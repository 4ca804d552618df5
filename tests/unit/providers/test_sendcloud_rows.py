"""SendCloud/Aurora status rows read column by column (issue 14: a duplicate row's CPU).

`sendcloud._columns` reads a page whose rows all hold plain text where text is documented; any other
page is read row by row, so an unreadable row is rejected alone. The expected values here are worked
out by hand (China is UTC+8 all year: 2024-01-02 10:00:05 there is 02:00:05 UTC); the two readings
are also compared on the same pages, field by field.
"""

from __future__ import annotations

import calendar
from typing import Any

import pytest

from tests.unit.providers.test_sendcloud import NOW, account, answer, row
from worker.model import EventType, Reason
from worker.providers import aurora_sendcloud, base, sendcloud
from worker.providers.base import PollQuery, RejectedRow, local_epoch, naive_epoch
from worker.rows import Rows

ACCT = account()


def utc_epoch(*fields: int) -> int:
    return calendar.timegm((*fields, 0, 0, 0))


def columns(rows: Rows) -> dict[str, list[Any]]:
    return {"ids": rows.email_ids, "types": rows.types, "times": rows.times, "exact": rows.exact,
            "finals": rows.finals, "plain": rows.plain}


def by_columns(records: list[Any]) -> Rows:
    read = sendcloud._columns(sendcloud.EDITION, ACCT, records)
    assert read is not None, "the page was not read column by column"
    return sendcloud._rows(ACCT, read)


def row_by_row(records: list[Any]) -> tuple[Rows, tuple[RejectedRow, ...]]:
    read, rejected = sendcloud._columns_row_by_row(sendcloud.EDITION, ACCT, records)
    return sendcloud._rows(ACCT, read), rejected


PAGE = [
    row(emailId="a$ann@qq.com", recipients="ann@qq.com"),
    row(emailId="b$bob@qq.com", recipients="bob@qq.com", status="无效邮件", subStatus=401, sendLog=None,
        subStatDesc="550 5.1.1 user unknown", modifiedTime="2024-01-02 10:59:59"),
    row(emailId="c$cy@qq.com", recipients="cy@qq.com", status="软退信", subStatus="", sendLog="",
        requestTime="2024-01-02 09:00:00", modifiedTime=None),
    row(emailId="d$di@qq.com", recipients="di@qq.com", status="请求中", requestTime=None, modifiedTime="2024-01-02 10:00:07"),
    row(emailId="e$ed@qq.com", recipients="ed@qq.com", requestTime="", modifiedTime="2024-01-02 10:00:08"),
]


def test_a_page_of_plain_rows_is_read_by_columns_as_worked_out_by_hand() -> None:
    rows = by_columns(PAGE)
    assert columns(rows) == {
        "ids": ["a$ann@qq.com", "b$bob@qq.com", "c$cy@qq.com", "d$di@qq.com", "e$ed@qq.com"],
        "types": [EventType.DELIVERED, EventType.INVALID, EventType.SOFT_BOUNCE, None, EventType.DELIVERED],
        "times": [utc_epoch(2024, 1, 2, 2, 0, 5), utc_epoch(2024, 1, 2, 2, 59, 59), utc_epoch(2024, 1, 2, 1, 0, 0),
                  utc_epoch(2024, 1, 2, 2, 0, 7), utc_epoch(2024, 1, 2, 2, 0, 8)],
        "exact": [True] * 5,
        "finals": [True, True, False, False, True],
        "plain": [True] * 5,
    }
    invalid = rows[1]
    assert (invalid.recipient, invalid.provider_status, invalid.provider_sub_status) == ("bob@qq.com", "无效邮件", "401")
    assert invalid.provider_message == "550 5.1.1 user unknown" and invalid.reason is Reason.SUPPRESSED   # 401: on SendCloud's blacklist (PROVIDERS.md, sub-status table)
    assert invalid.sent_at.timestamp() == utc_epoch(2024, 1, 2, 2, 0, 0)
    assert invalid.raw is PAGE[1]
    soft = rows[2]   # no modification time yet: the request time; an empty sub-status and log are none
    assert soft.occurred_at.timestamp() == soft.sent_at.timestamp() == utc_epoch(2024, 1, 2, 1, 0, 0)
    assert soft.provider_sub_status is None and soft.provider_message is None
    assert rows[3].sent_at is None and rows[4].sent_at is None   # no request time, or an empty one


def test_a_plain_page_is_not_read_row_by_row(monkeypatch) -> None:
    def refuse(*args: Any) -> None:
        raise AssertionError("read row by row")

    monkeypatch.setattr(sendcloud, "_columns_row_by_row", refuse)
    page = sendcloud.parse_poll_response(ACCT, PollQuery(), 200, {}, answer(*PAGE), NOW)
    assert page.observations.email_ids == [r["emailId"] for r in PAGE] and page.rejected == ()


@pytest.mark.parametrize("records", [
    PAGE,
    [row(emailId=f"{i}$x{i}@qq.com", modifiedTime=f"2024-01-02 1{i % 3}:{i:02d}:{59 - i:02d}") for i in range(40)],
    [row(subStatus=sub, status=status, sendLog=log)
     for sub in (None, 0, 406, "406", "5xx", "") for status in ("送达", "软退信", " Soft Bounce") for log in ("x", None)],
    [row(recipients="r" * 200)],
    [row(sendLog=None, subStatDesc=None, subStatusDesc="550 only here"), row(sendLog="", subStatDesc="", subStatusDesc="x")],
    [row(), row(emailId="e" * 129), row(status="s" * 300), row(subStatus="9" * 129), row(subStatus=10 ** 130)],
])
def test_both_readings_agree_on_pages_of_plain_rows(records: list[dict[str, Any]]) -> None:
    fast = by_columns(records)
    slow, rejected = row_by_row(records)
    assert rejected == ()
    assert columns(fast) == columns(slow)
    assert list(fast) == list(slow)
    assert [o.raw for o in fast] == [o.raw for o in slow] == records


def test_plain_is_false_only_for_the_rows_past_the_smallest_cap() -> None:
    rows = by_columns([row(), row(emailId="e" * 129), row(recipients="r" * 128), row(subStatus=10 ** 128)])
    assert rows.plain == [True, False, True, False]


@pytest.mark.parametrize(("field", "short", "long"), [
    # in each column the long value sorts first, so only its length can single it out
    ("emailId", "9$z@qq.com", "0" * 129),
    ("recipients", "z@qq.com", "a" * 129),
    ("status", "送达", "S" * 129),
    ("subStatus", "9", "1" * 129),
])
def test_a_column_whose_longest_value_is_not_its_greatest(field: str, short: str, long: str) -> None:
    rows = by_columns([row(**{field: short}), row(**{field: long}), row(**{field: short})])
    assert rows.plain == [True, False, True]


@pytest.mark.parametrize("odd", [
    {"emailId": 1234},                        # a number: rendered as sent, row by row
    {"recipients": ""},
    {"status": None},
    {"sendLog": 5},
    {"sendLog": ["x"]},
    {"subStatus": True},
    {"subStatus": 4.0},
    {"subStatus": [401]},
    {"requestTime": ["2024-01-02 10:00:00"]},
    {"requestTime": 0},
    {"modifiedTime": "2024-01-02 10:00:60"},
    {"modifiedTime": "2024-01-02T10:00:05"},
    {"modifiedTime": None, "requestTime": None},
])
def test_a_page_with_a_row_out_of_the_ordinary_is_read_row_by_row(odd: dict[str, Any]) -> None:
    records = [row(emailId="a$a@qq.com"), row(**odd), row(emailId="c$c@qq.com")]
    assert sendcloud._columns(sendcloud.EDITION, ACCT, records) is None
    page = sendcloud.parse_poll_response(ACCT, PollQuery(), 200, {}, answer(*records), NOW)
    slow, rejected = row_by_row(records)
    assert page.rejected == rejected and list(page.observations) == list(slow)
    assert "a$a@qq.com" in page.observations.email_ids and "c$c@qq.com" in page.observations.email_ids


def test_rows_that_are_not_objects_are_rejected_alone() -> None:
    records = [row(emailId="a$a@qq.com"), "row", None, row(emailId="c$c@qq.com")]
    assert sendcloud._columns(sendcloud.EDITION, ACCT, records) is None
    page = sendcloud.parse_poll_response(ACCT, PollQuery(), 200, {}, answer(*records), NOW)
    assert page.observations.email_ids == ["a$a@qq.com", "c$c@qq.com"]
    assert [r.index for r in page.rejected] == [1, 2]


def test_the_odd_row_of_a_page_is_the_only_one_rejected() -> None:
    page = sendcloud.parse_poll_response(
        ACCT, PollQuery(), 200, {}, answer(row(emailId="a$a@qq.com"), row(status=""), row(modifiedTime="x")), NOW)
    assert page.observations.email_ids == ["a$a@qq.com"] and [r.index for r in page.rejected] == [1, 2]


def test_a_number_for_an_id_reads_as_its_digits() -> None:
    page = sendcloud.parse_poll_response(ACCT, PollQuery(), 200, {}, answer(row(emailId=1234), row()), NOW)
    assert page.observations.email_ids == ["1234", row()["emailId"]] and page.rejected == ()


def test_aurora_reads_its_rows_in_its_own_zone_by_columns() -> None:
    aurora = account(aurora_sendcloud)
    records = [row(status="delivered", modifiedTime="2024-01-02 10:00:05")]
    read = sendcloud._columns(aurora_sendcloud.EDITION, aurora, records)
    assert read is not None
    offset = aurora_sendcloud.DEFAULTS.tz.utcoffset(None)
    assert read.occurred == [utc_epoch(2024, 1, 2, 10, 0, 5) - int(offset.total_seconds())]


# -- times in a remembered hour -------------------------------------------------------------------


def test_a_time_in_a_remembered_hour_is_read_without_the_pattern_and_still_checked() -> None:
    tz = sendcloud.DEFAULTS.tz
    assert naive_epoch("2024-01-02 10:00:00", tz) == utc_epoch(2024, 1, 2, 2, 0, 0)   # the hour is remembered
    assert naive_epoch("2024-01-02 10:59:59", tz) == utc_epoch(2024, 1, 2, 2, 59, 59)
    assert naive_epoch("2024-01-02 10:7:05", tz) == utc_epoch(2024, 1, 2, 2, 7, 5)    # unpadded: the pattern
    for bad in ("2024-01-02 10:60:00", "2024-01-02 10:00:60", "2024-01-02 10:0a:00", "2024-01-02 10-00:00",
                "2024-01-02 10:00:0٣"):
        with pytest.raises(ValueError):
            naive_epoch(bad, tz)
    with pytest.raises(TypeError):
        local_epoch(20240102, tz)


def test_a_time_in_a_remembered_hour_does_not_go_through_the_pattern(monkeypatch) -> None:
    tz = sendcloud.DEFAULTS.tz
    naive_epoch("2024-03-04 05:00:00", tz)   # remembers the hour
    matched: list[str] = []
    pattern = base._NAIVE_TIME

    class Counting:
        def fullmatch(self, text: str):
            matched.append(text)
            return pattern.fullmatch(text)

    monkeypatch.setattr(base, "_NAIVE_TIME", Counting())
    assert naive_epoch("2024-03-04 05:33:44", tz) == utc_epoch(2024, 3, 3, 21, 33, 44)
    assert matched == []
    assert naive_epoch("2024-03-04 05:3:44", tz) == utc_epoch(2024, 3, 3, 21, 3, 44)   # unpadded: the pattern reads it
    assert matched == ["2024-03-04 05:3:44"]


# What an id tracker reads (`finals`): a row in the provider's own invalid status is final whatever the
# scope rule published it as (the provider does not retry it: PROVIDERS.md 1.4 "delivery failed
# (permanent)"); a row in its soft-bounce status is not. Before, a 405 or a "452 ... mailbox full" row
# under 无效邮件 (published as a soft bounce) was re-asked by a gap-driven tracker until id_max_age_days.
FINALITY_PAGE = [
    row(emailId="a$a@qq.com", status="无效邮件", subStatus="405", sendLog="550 5.7.1 IP blocked"),   # our IP
    row(emailId="b$b@qq.com", status="无效邮件", subStatus="409", sendLog="452 4.2.2 mailbox full"),  # temporary
    row(emailId="c$c@qq.com", status="无效邮件", subStatus="406", sendLog="550 5.1.1 user unknown"),
    row(emailId="d$d@qq.com", status="软退信", subStatus="503", sendLog="421 4.4.1 no answer"),
    row(emailId="e$e@qq.com", status="某种新状态", subStatus="406", sendLog="x"),   # word unknown: its number decides
    row(emailId="f$f@qq.com", status="某种新状态", subStatus="405", sendLog="x"),
]


@pytest.mark.parametrize("read", [by_columns, lambda records: row_by_row(records)[0]], ids=["columns", "row by row"])
def test_a_row_in_the_providers_invalid_status_is_final_whatever_it_is_published_as(read) -> None:
    rows = read(FINALITY_PAGE)
    soft, invalid = EventType.SOFT_BOUNCE, EventType.INVALID
    assert rows.types == [soft, soft, invalid, soft, invalid, soft]
    assert rows.finals == [True, True, True, False, True, False]
    assert [o.final for o in rows] == [True, True, True, False, True, False]
