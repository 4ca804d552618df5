"""Status queries by email id on the date-window providers (gap-driven polling, issue 14).

Every expected request below is written out by hand from PROVIDERS.md (parameter names, `;` as the
id separator, Tencent's JSON body) and the documented encodings, not computed by the code under
test; the Tencent signature is also checked with Tencent's own SDK.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
import pytest
from tencentcloud.common.abstract_client import AbstractClient
from tencentcloud.common.http.request import RequestInternal

from worker.errors import BadRequest
from worker.model import EventType, Provider
from worker.providers import aurora_sendcloud, engagelab, sendcloud, tencent_ses, unisender
from worker.providers.base import AccountContext, HttpRequest, PollQuery

NOW = datetime(2024, 5, 10, 11, 0, tzinfo=UTC)  # 19:00 on 2024-05-10 in China
DAY = date(2024, 5, 9)

# Per-recipient ids of one SendCloud-family request (PROVIDERS.md 1.1 and 2.3): <message id><index>$<recipient>
A = "1676615711309_104117_18546_8821.sc-10_43_7_16-inbound0$alice@example.com"
B = "1676615711309_104117_18546_8821.sc-10_43_7_16-inbound1$Bob@Example.com"
# The two ids form-encoded and joined: `$` %24, `@` %40, the `;` between them %3B.
A_B_FORM = ("1676615711309_104117_18546_8821.sc-10_43_7_16-inbound0%24alice%40example.com%3B"
            "1676615711309_104117_18546_8821.sc-10_43_7_16-inbound1%24Bob%40Example.com")

# PROVIDERS.md 5.3's example MessageId; the worker's Tencent email id is "<MessageId>:<recipient>".
MID = "qcloudses-30-4123414323-date-20210101094334-syNARhMTbKI1"


def family_account(provider: Provider, **kw) -> AccountContext:
    return AccountContext(name="a", provider=provider, base_url="", api_user="u", api_key="k", **kw)


def id_query(*ids: str, day: date = DAY) -> PollQuery:
    return PollQuery(send_date=day, email_ids=ids, offset=0, limit=100)


# -- the batch each provider takes ----------------------------------------------------------------


def test_id_batches() -> None:
    # 20 where no maximum is documented (worker.providers._sendcloud_family.ID_BATCH), one
    # MessageId a call for Tencent, UniSender's documented 500 unchanged.
    assert engagelab.DEFAULTS.id_batch == 20
    assert sendcloud.DEFAULTS.id_batch == 20
    assert aurora_sendcloud.DEFAULTS.id_batch == 20
    assert tencent_ses.DEFAULTS.id_batch == 1
    assert unisender.DEFAULTS.id_batch == 500


@pytest.mark.parametrize("module", [engagelab, sendcloud, aurora_sendcloud, tencent_ses], ids=lambda m: m.NAME.value)
def test_a_batch_of_rows_fits_one_page(module) -> None:
    # One SendCloud-family id is one recipient, one row; Tencent's one MessageId is one message.
    d = module.DEFAULTS
    assert d.polling == "date" and 0 < d.id_batch <= d.page_limit == 100


# -- EngageLab ------------------------------------------------------------------------------------


def test_engagelab_id_query() -> None:
    acct = AccountContext(name="a", provider=Provider.ENGAGELAB, base_url="", api_user="zymtest4",
                          api_key="secret-key")
    assert engagelab.build_poll_request(acct, id_query(A, B), NOW) == HttpRequest(
        "GET",
        "https://email.api.engagelab.cc/v1/email_status",
        params=(("send_date", "2024-05-09"), ("offset", "0"), ("limit", "100"), ("email_ids", f"{A};{B}")),
        headers=(("Authorization", "Basic enltdGVzdDQ6c2VjcmV0LWtleQ=="),),
    )


# -- SendCloud and Aurora -------------------------------------------------------------------------


def test_sendcloud_id_query_is_a_form_post_of_one_day() -> None:
    assert sendcloud.build_poll_request(family_account(Provider.SENDCLOUD), id_query(A, B), NOW) == HttpRequest(
        "POST",
        "https://api.sendcloud.net/apiv2/data/emailStatus",
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=(b"apiUser=u&apiKey=k&startDate=2024-05-09&endDate=2024-05-09&start=0&limit=100&emailIds="
              + A_B_FORM.encode()),
    )


def test_sendcloud_id_query_over_get() -> None:
    acct = family_account(Provider.SENDCLOUD, options={"method": "GET"})
    assert sendcloud.build_poll_request(acct, id_query(A), NOW) == HttpRequest(
        "GET", "https://api.sendcloud.net/apiv2/data/emailStatus", params=(
            ("apiUser", "u"), ("apiKey", "k"), ("startDate", "2024-05-09"), ("endDate", "2024-05-09"),
            ("start", "0"), ("limit", "100"), ("emailIds", A)))


def test_aurora_id_query() -> None:
    req = aurora_sendcloud.build_poll_request(family_account(Provider.AURORA_SENDCLOUD), id_query(A, B), NOW)
    assert req == HttpRequest(
        "POST",
        "https://api.aurorasendcloud.com/api/data/emailStatus",
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=(b"apiUser=u&apiKey=k&startDate=2024-05-09&endDate=2024-05-09&start=0&limit=100&emailIds="
              + A_B_FORM.encode()),
    )


FAMILY = [(engagelab, "email_ids"), (sendcloud, "emailIds"), (aurora_sendcloud, "emailIds")]


@pytest.mark.parametrize(("module", "param"), FAMILY, ids=lambda v: getattr(v, "NAME", v))
def test_a_full_batch_of_twenty_goes_out_and_twenty_one_is_refused(module, param) -> None:
    acct = family_account(module.NAME, options={"method": "GET"} if module is not engagelab else {})
    ids = tuple(f"1676615711309_104117_18546_8821.sc-10_43_7_16-inbound{n}$u{n}@example.com" for n in range(21))
    req = module.build_poll_request(acct, id_query(*ids[:20]), NOW)
    assert dict(req.params)[param] == ";".join(ids[:20])
    with pytest.raises(BadRequest, match="^21 email ids in one query; the most is 20$"):
        module.build_poll_request(acct, id_query(*ids), NOW)


@pytest.mark.parametrize(("module", "param"), FAMILY, ids=lambda v: getattr(v, "NAME", v))
@pytest.mark.parametrize("bad", ["", "a;b"])
def test_an_id_the_separator_cannot_carry_is_refused(module, param, bad: str) -> None:
    with pytest.raises(BadRequest, match="^email ids must be non-empty and free of ';'$"):
        module.build_poll_request(family_account(module.NAME), id_query(A, bad), NOW)


@pytest.mark.parametrize(("module", "param"), FAMILY, ids=lambda v: getattr(v, "NAME", v))
def test_no_ids_no_id_parameter(module, param) -> None:
    req = module.build_poll_request(family_account(module.NAME, options={"method": "GET"}
                                                   if module is not engagelab else {}), PollQuery(send_date=DAY), NOW)
    assert param not in dict(req.params)


# -- Tencent --------------------------------------------------------------------------------------

TC_NOW = datetime(2021, 1, 1, 10, 0, tzinfo=UTC)  # 1609495200
TC_ACCT = AccountContext(name="a", provider=Provider.TENCENT_SES, base_url="https://ses.tencentcloudapi.com",
                         secret_id="AKIDEXAMPLE", secret_key="SECRETKEYEXAMPLE")
TC_BODY = (b'{"RequestDate":"2021-01-01","Offset":0,"Limit":100,'
           b'"MessageId":"qcloudses-30-4123414323-date-20210101094334-syNARhMTbKI1"}')


def _sdk_signature(body: bytes, timestamp: int) -> str:
    host = "ses.tencentcloudapi.com"
    req = RequestInternal(host, "POST", "/", {"Content-Type": "application/json; charset=utf-8", "Host": host,
                                              "X-TC-Timestamp": str(timestamp)}, body)
    day = datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")
    return AbstractClient._get_tc3_signature(None, {}, req, day, "ses", "SECRETKEYEXAMPLE")


def test_tencent_id_query_sends_the_message_id_last_in_the_signed_body() -> None:
    req = tencent_ses.build_poll_request(TC_ACCT, id_query(f"{MID}:alice@example.com", day=date(2021, 1, 1)), TC_NOW)
    assert req.body == TC_BODY
    assert list(orjson.loads(req.body)) == ["RequestDate", "Offset", "Limit", "MessageId"]
    signature = "fab341f6947a550afffaf483ab931caf025bd0c8baf244b88bda49fa40c61d82"
    assert signature == _sdk_signature(TC_BODY, 1609495200)
    assert req == HttpRequest(
        "POST",
        "https://ses.tencentcloudapi.com/",
        headers=(
            ("Authorization", "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2021-01-01/ses/tc3_request, "
                              f"SignedHeaders=content-type;host, Signature={signature}"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Host", "ses.tencentcloudapi.com"),
            ("X-TC-Action", "GetSendEmailStatus"),
            ("X-TC-Version", "2020-10-02"),
            ("X-TC-Timestamp", "1609495200"),
            ("X-TC-Region", "ap-singapore"),
        ),
        body=TC_BODY,
    )


@pytest.mark.parametrize("email_id", [
    f"{MID}:alice@example.com",
    f'{MID}:"odd:local"@example.com',  # a quoted local part may hold ':'; a MessageId never does
    MID,                                # a bare MessageId, as Tencent's SendEmail returns it
])
def test_tencent_message_id_is_the_text_before_the_first_colon(email_id: str) -> None:
    req = tencent_ses.build_poll_request(TC_ACCT, id_query(email_id, day=date(2021, 1, 1)), TC_NOW)
    assert req.body == TC_BODY


@pytest.mark.parametrize("ids", [
    (f"{MID}:alice@example.com", "qcloudses-30-4123414323-date-20210101094335-AAAAAAAAAAAA:bob@example.com"),
    (f"{MID}:alice@example.com", f"{MID}:bob@example.com"),  # two recipients of one message: still two ids
])
def test_tencent_query_with_two_ids_is_a_caller_bug(ids: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="^GetSendEmailStatus takes one MessageId, got 2 email ids$"):
        tencent_ses.build_poll_request(TC_ACCT, id_query(*ids, day=date(2021, 1, 1)), TC_NOW)


def test_tencent_email_id_without_a_message_id_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="^the email id names no MessageId$"):
        tencent_ses.build_poll_request(TC_ACCT, id_query(":alice@example.com", day=date(2021, 1, 1)), TC_NOW)


def test_tencent_id_query_answer_reads_every_recipient_of_the_message() -> None:
    """The answer to a MessageId query is the message's rows, one per recipient: parsed as any page."""
    def row(rcpt: str, deliver: int) -> dict:
        return {"MessageId": MID, "ToEmailAddress": rcpt, "FromEmailAddress": "noreply@example.com",
                "SendStatus": 0, "DeliverStatus": deliver, "DeliverMessage": "", "RequestTime": 1609494000,
                "DeliverTime": 1609494060 if deliver else 0, "UserOpened": False, "UserClicked": False,
                "UserUnsubscribed": False, "UserComplainted": False}

    body = orjson.dumps({"Response": {"EmailStatusList": [row("Alice@Example.com", 1), row("bob@example.com", 0)],
                                      "RequestId": "r"}})
    query = id_query(f"{MID}:alice@example.com", day=date(2021, 1, 1))
    page = tencent_ses.parse_poll_response(TC_ACCT, query, 200, {"content-type": "application/json"}, body, TC_NOW)
    assert [(o.email_id, o.type) for o in page.observations] == [
        (f"{MID}:alice@example.com", EventType.DELIVERED),
        (f"{MID}:bob@example.com", None),
    ]
    assert (page.rows, page.next_offset) == (2, None)
