"""Rows, not pages: a status-API row that cannot be read is a RejectedRow, the page's other rows
still count and the cursor moves past it; only an unusable answer is a page error; an empty answer
is an empty page. Every expectation is typed out here, per provider.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest

from worker.errors import Retriable
from worker.model import EventType, Reason
from worker.providers import aurora_sendcloud, engagelab, sendcloud, tencent_ses, unisender
from worker.providers.base import AccountContext, PollPage, PollQuery, RejectedRow

BAD = "malformed"

# -- EngageLab ----------------------------------------------------------------------------------

EL_NOW = datetime(2024, 1, 1, 17, 0, tzinfo=UTC)
EL = AccountContext(name="acct", provider=engagelab.NAME, base_url="https://email.api.engagelab.cc",
                    api_user="zymtest4", api_key="k")
EL_MID = "1676615711309_104117_18546_8821.sc-10_43_7_16-inbound"


def el_row(n: int, **fields: Any) -> dict[str, Any]:
    return {"email_id": f"{EL_MID}{n}$user{n}@hotmail.com", "api_user": "zymtest4", "email": f"user{n}@hotmail.com",
            "request_time": "2022-11-10T15:39:01+0800", "update_time": "2022-11-10T17:34:16+0800", "status": 1,
            "sub_status": None, "status_desc": "Delivered", "sub_status_desc": None, "response_message": "250 OK",
            **fields}


def el_parse(doc: Any, query: PollQuery = PollQuery(offset=0, limit=100)) -> PollPage:
    return engagelab.parse_poll_response(EL, query, 200, {}, orjson.dumps(doc), EL_NOW)


def test_engagelab_a_bad_row_is_rejected_and_its_neighbours_count() -> None:
    rows = [el_row(0), el_row(1, email_id=None), el_row(2)]
    page = el_parse({"result": rows, "total": "250", "count": 3}, PollQuery(offset=100, limit=3))
    assert [o.email_id for o in page.observations] == [f"{EL_MID}0$user0@hotmail.com", f"{EL_MID}2$user2@hotmail.com"]
    assert page.rejected == (RejectedRow(1, BAD),)
    assert (page.rows, page.next_offset, page.total) == (3, 103, 250)


@pytest.mark.parametrize("bad", [
    "not a row",
    None,
    ["a", "list"],
    el_row(1, email_id=None),
    el_row(1, email_id=""),
    el_row(1, email_id={"id": 1}),
    el_row(1, status=None),
    el_row(1, status=[1]),
    el_row(1, update_time="2022-11-10 25:34:16"),           # no such hour
    el_row(1, update_time="10/11/2022 17:34"),              # not ISO 8601
    el_row(1, update_time=None, request_time=None),          # no time at all
    el_row(1, request_time=1668065941),                      # a number, not the documented text
    el_row(1, email="", email_id=f"{EL_MID}1"),              # no address and none in the id
    el_row(1, email="", email_id="$"),                       # seed 000's own row: `"email_id": "$", "email": ""`
])
def test_engagelab_rows_that_cannot_be_read(bad: Any) -> None:
    page = el_parse({"result": [el_row(0), bad, el_row(2)], "total": "3", "count": 3})
    assert len(page.observations) == 2
    assert page.rejected == (RejectedRow(1, BAD),)
    assert (page.rows, page.next_offset, page.total) == (3, None, 3)


def test_engagelab_an_empty_email_takes_the_recipient_from_the_id() -> None:
    # The seed's example row has `"email": ""`; its per-recipient id ends in `$<recipient>`.
    (obs,) = el_parse({"result": [el_row(0, email="", email_id=f"{EL_MID}0$Lee@Example.com")],
                       "total": "1", "count": 1}).observations
    assert (obs.email_id, obs.recipient, obs.type) == (f"{EL_MID}0$Lee@Example.com", "Lee@Example.com",
                                                       EventType.DELIVERED)


def test_engagelab_an_empty_day_without_total_is_an_empty_page_and_a_bad_total_is_not() -> None:
    assert el_parse({"result": [], "count": 0}) == PollPage((), rows=0, next_offset=None, total=None)
    for total in ("many", "", -1.5, True, {"n": 1}):
        with pytest.raises(Retriable):
            el_parse({"result": [], "total": total, "count": 0})


def test_engagelab_rows_without_total_page_on_while_pages_are_full() -> None:
    full = el_parse({"result": [el_row(0), el_row(1)], "count": 2}, PollQuery(offset=4, limit=2))
    assert (full.rows, full.next_offset, full.total, len(full.observations)) == (2, 6, None, 2)
    short = el_parse({"result": [el_row(0)], "count": 1}, PollQuery(offset=4, limit=2))
    assert (short.rows, short.next_offset, short.total) == (1, None, None)


# -- SendCloud and Aurora (one engine) ----------------------------------------------------------

SC_NOW = datetime(2024, 1, 1, 17, 0, tzinfo=UTC)
SC_ID = "1704160800000_15_23357_8937.sc-10_10_126_221-inbound"


def sc_account(module: Any = sendcloud) -> AccountContext:
    return AccountContext(name="acct", provider=module.NAME, base_url=module.DEFAULTS.base_url,
                          api_user="u", api_key="k")


def sc_row(n: int, **fields: Any) -> dict[str, Any]:
    return {"emailId": f"{SC_ID}{n}$u{n}@qq.com", "status": "送达", "subStatus": None, "subStatusDesc": None,
            "apiUser": "u", "recipients": f"u{n}@qq.com", "requestTime": "2024-01-02 10:00:00",
            "modifiedTime": "2024-01-02 10:00:05", "sendLog": "successfully delivered", **fields}


def sc_answer(info: Any) -> dict[str, Any]:
    return {"result": True, "statusCode": 200, "message": "请求成功", "info": info}


def sc_parse(doc: Any, query: PollQuery = PollQuery(offset=0, limit=100), module: Any = sendcloud) -> PollPage:
    return module.parse_poll_response(sc_account(module), query, 200, {}, orjson.dumps(doc), SC_NOW)


def test_sendcloud_99_good_rows_and_one_without_recipients() -> None:
    rows = [sc_row(n) for n in range(100)]
    rows[37]["recipients"] = ""
    page = sc_parse(sc_answer({"total": "250", "voListSize": 100, "voList": rows}), PollQuery(offset=100, limit=100))
    assert len(page.observations) == 99
    assert f"{SC_ID}37$u37@qq.com" not in {o.email_id for o in page.observations}
    assert page.observations[36].email_id == f"{SC_ID}36$u36@qq.com"
    assert page.observations[37].email_id == f"{SC_ID}38$u38@qq.com"
    assert page.rejected == (RejectedRow(37, BAD),)
    assert (page.rows, page.next_offset, page.total) == (100, 200, 250)


@pytest.mark.parametrize("bad", [
    "x",
    17,
    sc_row(1, emailId=None),
    sc_row(1, emailId=""),
    sc_row(1, recipients=None),
    sc_row(1, recipients=""),
    sc_row(1, status=None),
    sc_row(1, status=["送达"]),
    sc_row(1, modifiedTime="2024/01/02 10:00:05"),
    sc_row(1, modifiedTime=None, requestTime=None),
    sc_row(1, requestTime="yesterday"),
    sc_row(1, modifiedTime="0001-01-01 00:00:00"),
    sc_row(1, modifiedTime=1704160805),
])
def test_sendcloud_rows_that_cannot_be_read(bad: Any) -> None:
    page = sc_parse(sc_answer({"total": "3", "voListSize": 3, "voList": [sc_row(0), bad, sc_row(2)]}))
    assert [o.email_id for o in page.observations] == [f"{SC_ID}0$u0@qq.com", f"{SC_ID}2$u2@qq.com"]
    assert page.rejected == (RejectedRow(1, BAD),)
    assert (page.rows, page.next_offset, page.total) == (3, None, 3)


def test_sendcloud_several_bad_rows_are_each_reported_in_order() -> None:
    rows = [None, sc_row(1), sc_row(2, emailId=None), sc_row(3), "x"]
    page = sc_parse(sc_answer({"total": "5", "voList": rows}))
    assert [o.email_id for o in page.observations] == [f"{SC_ID}1$u1@qq.com", f"{SC_ID}3$u3@qq.com"]
    assert page.rejected == (RejectedRow(0, BAD), RejectedRow(2, BAD), RejectedRow(4, BAD))
    assert page.rows == 5


@pytest.mark.parametrize("info", [
    {},
    {"voList": []},
    {"voList": None},
    {"voListSize": 0, "voList": []},
    {"total": None},
])
def test_sendcloud_an_empty_answer_is_an_empty_page(info: dict[str, Any]) -> None:
    assert sc_parse(sc_answer(info)) == PollPage((), rows=0, next_offset=None, total=None)


@pytest.mark.parametrize("info", [
    {"total": "x", "voList": [sc_row(0)]},      # a total that is present but unreadable
    {"total": "", "voList": []},
    {"total": [3], "voList": []},
    {"total": "3"},                             # rows promised, list missing
    {"total": "3", "voList": {"0": "x"}},       # not a list
])
def test_sendcloud_an_unusable_answer_stays_a_page_error_beside_an_empty_one(info: dict[str, Any]) -> None:
    assert sc_parse(sc_answer({})) == PollPage((), rows=0, next_offset=None, total=None)
    with pytest.raises(Retriable):
        sc_parse(sc_answer(info))


def test_sendcloud_rows_without_total_page_on_while_pages_are_full() -> None:
    full = sc_parse(sc_answer({"voListSize": 2, "voList": [sc_row(0), sc_row(1)]}), PollQuery(offset=0, limit=2))
    assert (full.rows, full.next_offset, full.total, len(full.observations)) == (2, 2, None, 2)
    short = sc_parse(sc_answer({"voListSize": 1, "voList": [sc_row(2)]}), PollQuery(offset=2, limit=2))
    assert (short.rows, short.next_offset, short.total, len(short.observations)) == (1, None, None, 1)


def test_aurora_a_bad_row_is_rejected_and_its_neighbours_count() -> None:
    rows = [sc_row(0, status="Delivered"), sc_row(1, status="Soft Bounce", subStatus=503, recipients=None),
            sc_row(2, status="Soft Bounce", subStatus=503)]
    page = sc_parse(sc_answer({"total": "3", "voListSize": 3, "voList": rows}), module=aurora_sendcloud)
    assert [(o.email_id, o.type, o.reason) for o in page.observations] == [
        (f"{SC_ID}0$u0@qq.com", EventType.DELIVERED, None),
        (f"{SC_ID}2$u2@qq.com", EventType.SOFT_BOUNCE, Reason.SERVER_UNREACHABLE),
    ]
    assert page.rejected == (RejectedRow(1, BAD),)
    assert (page.rows, page.next_offset, page.total) == (3, None, 3)


def test_aurora_an_empty_info_is_an_empty_page() -> None:
    assert sc_parse(sc_answer({}), module=aurora_sendcloud) == PollPage((), rows=0, next_offset=None, total=None)


# -- Tencent SES --------------------------------------------------------------------------------

TX_NOW = datetime(2023, 11, 15, tzinfo=UTC)
TX = AccountContext(name="acct", provider=tencent_ses.NAME, base_url="https://ses.tencentcloudapi.com",
                    secret_id="AKIDEXAMPLE", secret_key="SECRETKEYEXAMPLE")


def tx_row(to: str, **fields: Any) -> dict[str, Any]:
    return {"MessageId": "m-1", "ToEmailAddress": to, "FromEmailAddress": "noreply@mail.example.com",
            "SendStatus": 0, "DeliverStatus": 1, "DeliverMessage": "250 OK", "RequestTime": 1700000000,
            "DeliverTime": 1700000005, "UserOpened": False, "UserClicked": False, "UserUnsubscribed": False,
            "UserComplainted": False, **fields}


def tx_parse(rows: Any, offset: int = 0, limit: int = 100) -> PollPage:
    body = orjson.dumps({"Response": {"EmailStatusList": rows, "RequestId": "r"}})
    query = PollQuery(send_date=date(2023, 11, 14), offset=offset, limit=limit)
    return tencent_ses.parse_poll_response(TX, query, 200, {}, body, TX_NOW)


@pytest.mark.parametrize("bad", [
    "row",
    None,
    tx_row("b@example.com", MessageId=None),
    tx_row("b@example.com", MessageId=""),
    tx_row(""),
    tx_row("b@example.com", ToEmailAddress=7),
    tx_row("b@example.com", SendStatus="0"),
    tx_row("b@example.com", DeliverStatus=None),
    tx_row("b@example.com", DeliverStatus="1"),
    tx_row("b@example.com", SendStatus=1, DeliverStatus=None),
    tx_row("b@example.com", DeliverStatus=True),
    tx_row("b@example.com", RequestTime="yesterday"),
    tx_row("b@example.com", DeliverTime=-5),
    tx_row("b@example.com", DeliverTime=10**13),
])
def test_tencent_rows_that_cannot_be_read(bad: Any) -> None:
    page = tx_parse([tx_row("a@example.com"), bad, tx_row("c@example.com")])
    assert [o.email_id for o in page.observations] == ["m-1:a@example.com", "m-1:c@example.com"]
    assert page.rejected == (RejectedRow(1, BAD),)
    assert (page.rows, page.next_offset, page.total) == (3, None, None)


def test_tencent_a_full_page_with_a_bad_row_still_pages_on_and_keeps_the_engagement_flags() -> None:
    rows = [tx_row("a@example.com"), tx_row("b@example.com", SendStatus="0"),
            tx_row("C@Example.com", UserUnsubscribed=True, UserComplainted=True)]
    page = tx_parse(rows, offset=6, limit=3)
    assert [(o.email_id, o.recipient, o.type, o.reason, o.provider_status, o.final) for o in page.observations] == [
        ("m-1:a@example.com", "a@example.com", EventType.DELIVERED, None, "0", True),
        ("m-1:c@example.com", "C@Example.com", EventType.DELIVERED, None, "0", True),
        ("m-1:c@example.com", "C@Example.com", EventType.UNSUBSCRIBED, Reason.UNSUBSCRIBED, "UserUnsubscribed", True),
        ("m-1:c@example.com", "C@Example.com", EventType.COMPLAINT, None, "UserComplainted", True),
    ]
    flagged = page.observations[1:]
    assert {o.occurred_at for o in flagged} == {datetime(2023, 11, 14, 22, 13, 25, tzinfo=UTC)}
    assert page.rejected == (RejectedRow(1, BAD),)
    assert (page.rows, page.next_offset) == (3, 9)


# -- UniSender ----------------------------------------------------------------------------------

UNI_NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
UNI = AccountContext(name="acct", provider=unisender.NAME, base_url="https://api.unisender.com", api_key="K")


def uni_parse(statuses: Any, ids: tuple[str, ...]) -> PollPage:
    body = orjson.dumps({"result": {"statuses": statuses}})
    return unisender.parse_poll_response(UNI, PollQuery(email_ids=ids), 200, {}, body, UNI_NOW,
                                         recipients={"1": "a@example.com", "3": "c@example.com"})


@pytest.mark.parametrize("bad", [
    "1",
    1,
    None,
    {"status": "ok_sent"},                     # no id
    {"id": None, "status": "ok_sent"},
    {"id": True, "status": "ok_sent"},
    {"id": 1.5, "status": "ok_sent"},
    {"id": "", "status": "ok_sent"},
    {"id": "2"},                               # no status
    {"id": "2", "status": 3},                  # status not a string
    {"id": "2", "status": ["ok_sent"]},
    {"id": "9", "status": "ok_delivered"},     # an id that was not asked for
    {"id": 9, "status": "ok_delivered"},
])
def test_unisender_entries_that_cannot_be_read(bad: Any) -> None:
    page = uni_parse([{"id": "1", "status": "ok_delivered"}, bad, {"id": 3, "status": "err_user_unknown"}],
                     ("1", "2", "3"))
    assert [(o.email_id, o.recipient, o.type, o.occurred_at) for o in page.observations] == [
        ("1", "a@example.com", EventType.DELIVERED, UNI_NOW),
        ("3", "c@example.com", EventType.INVALID, UNI_NOW),
    ]
    assert page.rejected == (RejectedRow(1, BAD),)
    assert (page.rows, page.next_offset, page.total) == (3, None, None)


def test_unisender_rejected_entries_beside_unknown_ids() -> None:
    body = orjson.dumps({"result": {"statuses": [{"id": "7", "status": "ok_sent"}, {"id": "1", "status": "ok_read"}]},
                         "failed_email_id": [{"23": "email_id does not exist"}]})
    page = unisender.parse_poll_response(UNI, PollQuery(email_ids=("1", "23")), 200, {}, body, UNI_NOW)
    assert [(o.email_id, o.provider_status) for o in page.observations] == [("1", "ok_read")]
    assert page.rejected == (RejectedRow(0, BAD),)
    assert (page.rows, page.unknown_ids) == (2, ("23",))
