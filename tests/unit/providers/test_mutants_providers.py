"""Provider modules: cases mutation testing found unpinned, one block per provider.

Base URLs with a path prefix, the smallest page, rows without optional times, error envelopes that
carry only half of their fields, numbers sent as strings where the API documents numbers. Every
expected value is written out by hand from PROVIDERS.md's facts as the module docstrings quote them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest

from worker.errors import FatalConfig, Retriable
from worker.model import EventType, Reason, Scope
from worker.providers import engagelab, sendcloud, tencent_ses, unisender
from worker.providers.base import AccountContext, PollQuery, RejectedRow

UTC = UTC


# -- EngageLab --------------------------------------------------------------------------------------

EL_NOW = datetime(2024, 1, 1, 17, 0, tzinfo=UTC)   # 2024-01-02 in China


def el_account(**fields: Any) -> AccountContext:
    return AccountContext(**{"name": "acct", "provider": engagelab.NAME, "base_url": engagelab.DEFAULTS.base_url,
                             "api_user": "zymtest4", "api_key": "secret-key", **fields})


def test_engagelab_keeps_a_base_url_path_and_asks_for_pages_of_one():
    req = engagelab.build_poll_request(el_account(base_url="https://proxy.example/EX/"), PollQuery(limit=1), EL_NOW)
    assert req.url == "https://proxy.example/EX/v1/email_status"
    assert req.params == (("send_date", "2024-01-02"), ("offset", "0"), ("limit", "1"))


def test_engagelab_row_without_request_time_has_no_sent_time():
    record = {"email_id": "1667979556117_15_4_1.sc-10_10_20_196-inbound0$a@hotmail.com", "api_user": "zymtest4",
              "email": "a@hotmail.com", "request_time": None, "update_time": "2022-11-10T17:34:16+0800",
              "status": 1, "sub_status": None, "status_desc": "Delivered", "sub_status_desc": None,
              "response_message": "250 OK"}
    body = orjson.dumps({"result": [record], "total": "1", "count": 1})
    (obs,) = engagelab.parse_poll_response(el_account(), PollQuery(), 200, {}, body, EL_NOW).observations
    assert obs.sent_at is None
    assert obs.occurred_at == datetime(2022, 11, 10, 9, 34, 16, tzinfo=UTC)


# -- SendCloud --------------------------------------------------------------------------------------

SC_NOW = datetime(2024, 1, 2, 2, 0, tzinfo=UTC)


def sc_account(**fields: Any) -> AccountContext:
    return AccountContext(**{"name": "acct", "provider": sendcloud.NAME, "base_url": sendcloud.DEFAULTS.base_url,
                             "api_user": "u", "api_key": "k", **fields})


def sc_row(**fields: Any) -> dict[str, Any]:
    return {"emailId": "1704160800000_15_23357_8937.sc-10_10_126_221-inbound0$ann@qq.com", "status": "送达",
            "subStatus": None, "subStatusDesc": None, "apiUser": "u", "recipients": "ann@qq.com",
            "requestTime": "2024-01-02 10:00:00", "modifiedTime": "2024-01-02 10:00:05", "sendLog": "ok", **fields}


def sc_parse(envelope: dict[str, Any]):
    return sendcloud.parse_poll_response(sc_account(), PollQuery(), 200, {}, orjson.dumps(envelope), SC_NOW)


def test_sendcloud_keeps_a_base_url_path():
    req = sendcloud.build_poll_request(sc_account(base_url="https://proxy.example/SX/"), PollQuery(), SC_NOW)
    assert req.url == "https://proxy.example/SX/apiv2/data/emailStatus"


def test_sendcloud_an_error_code_counts_even_beside_result_true():
    with pytest.raises(FatalConfig):   # 40005: authentication failed
        sc_parse({"result": True, "statusCode": 40005, "message": "auth", "info": {}})


def test_sendcloud_rows_are_read_even_when_the_total_says_0():
    page = sc_parse({"result": True, "statusCode": 200, "message": "ok", "info": {"total": "0", "voList": [sc_row()]}})
    assert [o.recipient for o in page.observations] == ["ann@qq.com"]
    assert page.rows == 1


def test_sendcloud_row_without_request_time_has_no_sent_time():
    page = sc_parse({"result": True, "statusCode": 200, "message": "ok",
                     "info": {"total": "1", "voList": [sc_row(requestTime=None)]}})
    (obs,) = page.observations
    assert obs.sent_at is None
    assert obs.occurred_at == datetime(2024, 1, 2, 2, 0, 5, tzinfo=UTC)   # modifiedTime, China time


# -- UniSender --------------------------------------------------------------------------------------

UNI_NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
UNI = AccountContext(name="acct", provider=unisender.NAME, base_url=unisender.DEFAULTS.base_url, api_key="APIKEY123")


def uni_parse(doc: dict[str, Any], ids: tuple[str, ...] = ("5",)):
    return unisender.parse_poll_response(UNI, PollQuery(email_ids=ids, limit=500), 200, {}, orjson.dumps(doc), UNI_NOW)


def test_unisender_keeps_a_base_url_path():
    acct = AccountContext(name="acct", provider=unisender.NAME, base_url="https://proxy.example/UX/", api_key="K")
    req = unisender.build_poll_request(acct, PollQuery(email_ids=("5",), limit=500), UNI_NOW)
    assert req.url == "https://proxy.example/UX/en/api/checkEmail"


def test_unisender_an_error_envelope_with_only_a_text_or_only_a_code_is_an_error():
    with pytest.raises(Retriable):       # no code: "unspecified", retried
        uni_parse({"error": "Something went wrong"})
    with pytest.raises(FatalConfig):
        uni_parse({"code": "invalid_api_key"})


def test_unisender_observations_are_stamped_when_seen_and_keep_the_entry():
    (obs,) = uni_parse({"result": {"statuses": [{"id": "5", "status": "ok_delivered"}]}}).observations
    assert (obs.type, obs.occurred_at, obs.exact_time) == (EventType.DELIVERED, UNI_NOW, False)
    assert obs.raw == {"id": "5", "status": "ok_delivered"}


# -- Tencent Cloud SES ------------------------------------------------------------------------------

TX_NOW = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)   # 1700000000
TX = AccountContext(name="acct", provider=tencent_ses.NAME, base_url=tencent_ses.DEFAULTS.base_url,
                    secret_id="AKIDEXAMPLE", secret_key="SECRETKEYEXAMPLE")


def tx_row(**fields: Any) -> dict[str, Any]:
    return {"MessageId": "m-1", "ToEmailAddress": "Rcpt@Example.com", "SendStatus": 0, "DeliverStatus": 1,
            "DeliverMessage": "", "RequestTime": 1700000000, "DeliverTime": 1700000005, **fields}


def tx_parse(rows: Any):
    body = orjson.dumps({"Response": {"EmailStatusList": rows, "RequestId": "r"}})
    return tencent_ses.parse_poll_response(TX, PollQuery(send_date=date(2023, 11, 14)), 200, {}, body, TX_NOW)


def test_tencent_asks_for_pages_of_one():
    req = tencent_ses.build_poll_request(TX, PollQuery(send_date=date(2023, 11, 14), limit=1), TX_NOW)
    assert req.body == b'{"RequestDate":"2023-11-14","Offset":0,"Limit":1}'


@pytest.mark.parametrize("fields", [{"SendStatus": "0"}, {"DeliverStatus": "1"}, {"SendStatus": 1, "DeliverStatus": None}])
def test_tencent_statuses_must_be_numbers_and_both_present(fields):
    page = tx_parse([tx_row(**fields)])
    assert (page.observations, page.rejected, page.rows) == ((), (RejectedRow(0, "malformed"),), 1)


def test_tencent_a_deliver_message_that_is_not_text_is_no_message():
    (obs,) = tx_parse([tx_row(DeliverMessage=42)]).observations
    assert (obs.provider_message, obs.smtp) == (None, None)


def test_tencent_a_null_status_list_is_an_empty_page():
    page = tx_parse(None)
    assert (page.observations, page.rows, page.next_offset) == ((), 0, None)


def test_tencent_a_dropped_message_is_a_provider_soft_bounce_whatever_its_code():
    # docs/mapping.md: a drop is Tencent not sending (scope provider), never invalid; its SMTP text, a
    # routing (X.4.1) or an address (X.1.1) code alike, changes neither reason nor scope.
    expected = (EventType.SOFT_BOUNCE, Reason.SUPPRESSED, Scope.PROVIDER, True)
    (routing,) = tx_parse([tx_row(DeliverStatus=2, DeliverMessage="550 5.4.1 no answer from host")]).observations
    assert (routing.type, routing.reason, routing.scope, routing.final) == expected
    (address,) = tx_parse([tx_row(DeliverStatus=2, DeliverMessage="550 5.1.1 user unknown")]).observations
    assert (address.type, address.reason, address.scope, address.final) == expected
