"""Every mapping-table row as the event a consumer reads: type, reason, scope and final (issue 13).

Literal tables typed from the issue-13 contract (docs/consumers.md "What a failure is about", the
rule in worker/providers/classify.py's docstring) and PROVIDERS.md, never read from the worker.
Each row is driven through a provider's public parsing functions with a minimal payload and
encoded as a `StatusEvent`, so what is checked is what lands on the topic. A row without SMTP
text shows the table alone; the SMTP rows show evidence and the invariant at work; the last test
is the invariant over every row: an `invalid` is about the recipient, its domain or the provider.
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.model import EventType, Observation, Provider, Source, StatusEvent
from worker.providers import get_module
from worker.providers.base import AccountContext, PollQuery, WebhookRequest

NOW = datetime(2030, 1, 1, tzinfo=UTC)
SC_ID = "1652117389552_218362_2287_3497.sc-10_9_13_213-inbound0$bob@example.com"
UNI_ID = "11411542313"
TC_ID = "20210105152818.2cfa8a8c@example.com"


def acct(provider: Provider, policy: EventType | None = None) -> AccountContext:
    return AccountContext(name="acct", provider=provider, base_url="http://x", api_user="u", api_key="k",
                          secret_id="id", secret_key="key", sender_rejection=policy)


def event(obs: Observation) -> tuple:
    """(type, reason, scope, final) of the encoded event; None for a status that is not emitted."""
    if obs.type is None:
        return None
    d = StatusEvent.from_observation(obs, provider=Provider.SENDCLOUD, account="a", source=Source.POLL,
                                     observed_at=NOW).to_dict()
    assert d["attempt"] is None       # no supported API reports an attempt number
    return (d["type"], d["reason"], d["scope"], d["final"])


def only(observations: Any) -> Observation:
    observations = list(observations)
    assert len(observations) == 1, observations
    return observations[0]


def webhook(provider: Provider, body: bytes, content_type: str, policy: EventType | None = None) -> list[Observation]:
    module = get_module(provider)
    return [obs for record in module.split_webhook(WebhookRequest(body, content_type))
            for obs in module.webhook_observations(acct(provider, policy), record)]


# -- SendCloud family ---------------------------------------------------------------------------

def sc_poll(provider: Provider, code: int, log: str = "", policy: EventType | None = None) -> Observation:
    if provider is Provider.ENGAGELAB:
        row: dict[str, Any] = {
            "email_id": SC_ID, "api_user": "u", "email": "bob@example.com", "request_time": "2022-11-10T15:39:01+0800",
            "update_time": "2022-11-10T15:39:05+0800", "status": 4 if code < 500 else 5, "status_desc": "d",
            "sub_status": code, "sub_status_desc": None, "response_message": log}
        body = json.dumps({"result": [row], "total": "1", "count": 1})
    else:
        row = {"emailId": SC_ID, "apiUser": "u", "recipients": "bob@example.com",
               "status": "无效邮件" if code < 500 else "软退信", "subStatus": code, "subStatusDesc": None,
               "requestTime": "2022-05-10 01:29:50", "modifiedTime": "2022-05-10 01:29:51", "sendLog": log}
        body = json.dumps({"result": True, "statusCode": 200, "message": "ok",
                           "info": {"total": "1", "voListSize": 1, "voList": [row]}}, ensure_ascii=False)
    page = get_module(provider).parse_poll_response(acct(provider, policy), PollQuery(), 200,
                                                    {"content-type": "application/json"}, body.encode(), NOW)
    return only(page.observations)


def sc_webhook(event_name: str, substat: int | None = None, message: str | None = None) -> Observation:
    fields: dict[str, Any] = {"event": event_name, "emailId": SC_ID, "recipient": "bob@example.com", "apiUser": "u",
                              "timestamp": 1652117391000, "token": "t" * 50, "signature": "0" * 64}
    if substat is not None:
        fields.update(substat=substat, substatdesc="d")
    if message is not None:
        fields["message"] = message
    return only(webhook(Provider.SENDCLOUD, urllib.parse.urlencode(fields).encode(),
                        "application/x-www-form-urlencoded"))


FAMILY = [Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD, Provider.ENGAGELAB]
INV, SOFT = "invalid", "soft_bounce"

# sub-status -> (type, reason, scope, final) without SMTP evidence (the table).
FAMILY_ROWS = {
    401: (INV, "suppressed", "provider", True),
    402: (INV, "unsubscribed", "provider", True),
    403: (INV, "server_unreachable", "domain", True),
    404: (INV, "bad_address", "recipient", True),
    405: (SOFT, "sender_rejected", "sender", True),
    406: (INV, "unknown_user", "recipient", True),
    407: (SOFT, "spam_rejected", "content", True),
    408: (SOFT, "policy_rejected", "policy", True),
    409: (SOFT, "other", "unknown", True),
    410: (SOFT, "other", "unknown", True),          # a 4xx added later: as "other"
    503: (SOFT, "server_unreachable", "domain", True),
    505: (SOFT, "sender_rejected", "sender", True),
    506: (SOFT, "unknown_user", "recipient", True),
    507: (SOFT, "spam_rejected", "content", True),
    508: (SOFT, "policy_rejected", "policy", True),
    509: (SOFT, "other", "unknown", True),
    599: (SOFT, "other", "unknown", True),
}


@pytest.mark.parametrize("code", sorted(FAMILY_ROWS))
@pytest.mark.parametrize("provider", FAMILY)
def test_family_sub_status_rows(provider, code) -> None:
    assert event(sc_poll(provider, code, "log line")) == FAMILY_ROWS[code]


# (sub-status, SMTP text) -> event: evidence sets scope and reason, the provider's own refusals stay.
FAMILY_SMTP = {
    (406, "550 5.1.1 user unknown"): (INV, "unknown_user", "recipient", True),
    (405, "554 5.7.1 client host blocked"): (SOFT, "policy_rejected", "policy", True),
    (409, "Other(scheduler: deleted)"): (SOFT, "other", "unknown", True),
    (409, "550 5.1.1 no such user"): (INV, "unknown_user", "recipient", True),
    (409, "550 5.1.10 recipient domain has a null MX"): (INV, "domain_invalid", "domain", True),
    (408, "550 5.2.1 mailbox disabled"): (INV, "mailbox_disabled", "recipient", True),
    (406, "550 5.7.26 unauthenticated mail is prohibited"): (SOFT, "sender_rejected", "sender", True),
    (404, "553 mailbox name not allowed"): (INV, "bad_address", "recipient", True),
    (409, "550 not here"): (SOFT, "other", "unknown", True),               # a bare 550 is no evidence
    (401, "550 5.1.1 user unknown"): (INV, "suppressed", "provider", True),  # not sent: old evidence
    (402, "550 5.7.1 blocked"): (INV, "unsubscribed", "provider", True),
    (506, "450 4.1.1 mailbox unavailable"): (SOFT, "unknown_user", "recipient", True),
    (509, "452 4.2.2 mailbox full"): (SOFT, "mailbox_full", "recipient", True),
    (503, "451 4.3.0 temporary local problem"): (SOFT, "server_unreachable", "domain", True),
    (507, "554 5.6.0 content rejected"): (SOFT, "policy_rejected", "content", True),
}


@pytest.mark.parametrize(("code", "log"), sorted(FAMILY_SMTP))
def test_family_smtp_evidence(code, log) -> None:
    assert event(sc_poll(Provider.SENDCLOUD, code, log)) == FAMILY_SMTP[(code, log)]


SC_EVENTS = {
    ("deliver", None): ("delivered", None, None, True),
    ("report_spam", None): ("complaint", None, "recipient", True),
    ("unsubscribe", None): ("unsubscribed", "unsubscribed", "recipient", True),
    ("invalid", 406): (INV, "unknown_user", "recipient", True),
    ("invalid", 401): (INV, "suppressed", "provider", True),
    ("invalid", None): (SOFT, "other", "unknown", True),     # no sub-status, no SMTP: not evidence
    ("soft_bounce", 506): (SOFT, "unknown_user", "recipient", True),
    ("soft_bounce", None): (SOFT, "other", "unknown", True),
}


@pytest.mark.parametrize(("name", "substat"), list(SC_EVENTS))
def test_sendcloud_webhook_events(name, substat) -> None:
    assert event(sc_webhook(name, substat)) == SC_EVENTS[(name, substat)]


def test_the_sender_rejection_switch_never_makes_an_address_invalid() -> None:
    for policy in (None, EventType.INVALID, EventType.SOFT_BOUNCE):
        assert event(sc_poll(Provider.SENDCLOUD, 405, "", policy)) == (SOFT, "sender_rejected", "sender", True)


# -- UniSender ----------------------------------------------------------------------------------

def uni_poll(status: str) -> Observation:
    body = json.dumps({"result": {"statuses": [{"id": UNI_ID, "status": status}]}, "failed_email_id": []}).encode()
    page = get_module(Provider.UNISENDER).parse_poll_response(
        acct(Provider.UNISENDER), PollQuery(email_ids=(UNI_ID,)), 200, {"content-type": "application/json"},
        body, NOW, recipients={UNI_ID: "bob@example.com"})
    return only(page.observations)


def uni_webhook(status: str) -> Observation:
    body = json.dumps({"auth": "0" * 32, "events_by_user": [{"login": "demo", "events": [
        {"event_name": "email_status", "event_time": "2017-06-19 10:38:22",
         "event_data": {"email": "bob@example.com", "status": status, "status_group": "g1",
                        "email_id": 11411542313}}]}]}).encode()
    return only(webhook(Provider.UNISENDER, body, "application/json"))


UNI_ROWS = {
    "ok_delivered": ("delivered", None, None, True),
    "ok_read": ("delivered", None, None, True),
    "ok_link_visited": ("delivered", None, None, True),
    "ok_spam_folder": ("delivered", None, None, True),
    "ok_unsubscribed": ("unsubscribed", "unsubscribed", "recipient", True),
    "ok_fbl": ("complaint", None, "recipient", True),
    "err_blacklisted": (SOFT, "blocklisted", "policy", False),
    "err_will_retry": (SOFT, "deferred", "unknown", False),
    "err_resend": (SOFT, "deferred", "unknown", False),
    "err_user_unknown": (INV, "unknown_user", "recipient", True),
    "err_user_inactive": (INV, "mailbox_disabled", "recipient", True),
    "err_mailbox_discarded": (INV, "mailbox_disabled", "recipient", True),
    "err_mailbox_full": (SOFT, "mailbox_full", "recipient", True),
    "err_no_dns": (INV, "domain_invalid", "domain", True),
    "err_no_smtp": (INV, "domain_invalid", "domain", True),
    "err_domain_inactive": (INV, "domain_invalid", "domain", True),
    "err_destination_misconfigured": (SOFT, "other", "domain", False),
    "err_spam_rejected": (SOFT, "spam_rejected", "content", True),
    "err_spam_may_retry": (SOFT, "spam_rejected", "content", True),
    "err_giveup": (SOFT, "other", "unknown", True),
    "err_delivery_failed": (SOFT, "other", "unknown", True),
    "err_skip_letter": (INV, "suppressed", "provider", True),
    "err_not_available": (INV, "suppressed", "provider", True),
    "skip_dup_unreachable": (INV, "suppressed", "provider", True),
    "err_dest_invalid": (INV, "bad_address", "recipient", True),
    "err_unreachable": (INV, "bad_address", "recipient", True),
    "skip_dup_temp_unreachable": (SOFT, "server_unreachable", "provider", True),
    "skip_dup_mailbox_full": (SOFT, "mailbox_full", "provider", True),
    "err_unsubscribed": ("unsubscribed", "unsubscribed", "provider", True),
    "err_brand_new": (SOFT, "other", "unknown", False),    # an err_* added later: still retrying
    # not emitted
    "not_sent": None, "ok_sent": None, "delayed": None, "err_internal": None, "err_too_large": None,
    "err_spam_removed": None, "err_spam_skipped": None, "err_src_invalid": None, "err_not_allowed": None,
    "err_over_quota": None, "err_lost": None, "ok_brand_new": None,
}


@pytest.mark.parametrize("status", list(UNI_ROWS))
def test_unisender_rows_polled_and_pushed(status) -> None:
    assert event(uni_poll(status)) == UNI_ROWS[status]
    assert event(uni_webhook(status)) == UNI_ROWS[status]


# -- Tencent Cloud SES --------------------------------------------------------------------------

def tc_poll(send: int, deliver: int = 0, message: str = "", **flags: bool) -> list[Observation]:
    row = {"MessageId": TC_ID, "ToEmailAddress": "bob@example.com", "FromEmailAddress": "n@example.com",
           "SendStatus": send, "DeliverStatus": deliver, "DeliverMessage": message, "RequestTime": 1609831698,
           "DeliverTime": 1609831699, "UserOpened": False, "UserClicked": False, **flags}
    body = json.dumps({"Response": {"EmailStatusList": [row], "RequestId": "r"}}).encode()
    page = get_module(Provider.TENCENT_SES).parse_poll_response(
        acct(Provider.TENCENT_SES), PollQuery(limit=100), 200, {"content-type": "application/json"}, body, NOW)
    return list(page.observations)


def tc_webhooks(fields: dict) -> list[Observation]:
    record = {"email": "bob@example.com", "bulkId": TC_ID, "timestamp": 1654064683, "username": "1250000000",
              "from": "n@example.com", "fromDomain": "example.com", **fields}
    return webhook(Provider.TENCENT_SES, json.dumps(record).encode(), "application/json")


def tc_webhook(fields: dict) -> Observation:
    return only(tc_webhooks(fields))


TC_POLL = {
    (1004, 0, ""): (SOFT, "server_unreachable", "unknown", True),
    (1006, 0, ""): (SOFT, "deferred", "provider", True),
    (1007, 0, ""): (INV, "suppressed", "provider", True),
    (1008, 0, ""): None,                                        # sender-side, not emitted by default
    (1013, 0, ""): ("unsubscribed", "unsubscribed", "provider", True),
    (3008, 0, ""): (SOFT, "sender_rejected", "sender", True),
    (3020, 0, ""): (INV, "suppressed", "provider", True),
    (3024, 0, ""): (INV, "bad_address", "recipient", True),
    (3030, 0, ""): (SOFT, "suppressed", "provider", True),
    (1001, 0, ""): None,
    (0, 0, ""): None,
    (0, 1, "250 2.0.0 OK"): ("delivered", None, None, True),
    (0, 2, ""): (SOFT, "suppressed", "provider", True),
    (0, 2, "550 5.1.1 recipient is not exist"): (SOFT, "suppressed", "provider", True),   # never invalid
    (0, 3, "550 5.1.1 recipient is not exist"): (INV, "unknown_user", "recipient", True),
    (0, 3, "rejected"): (SOFT, "other", "unknown", True),
    (0, 3, "554 5.7.1 spam"): (SOFT, "policy_rejected", "policy", True),
    (0, 3, "550 5.4.4 unable to route"): (INV, "domain_invalid", "domain", True),
    (0, 8, "451 4.7.1 try again later"): (SOFT, "policy_rejected", "policy", False),
    (0, 8, "452 4.2.2 mailbox full"): (SOFT, "mailbox_full", "recipient", False),
    (0, 8, "try again later"): (SOFT, "deferred", "unknown", False),
}


@pytest.mark.parametrize("row", list(TC_POLL))
def test_tencent_polled_rows(row) -> None:
    assert event(only(tc_poll(*row))) == TC_POLL[row]


@pytest.mark.parametrize("flag", ["UserComplained", "UserComplainted"])
def test_tencent_complaint_under_either_sdk_spelling(flag) -> None:
    observations = tc_poll(0, 1, "250 2.0.0 OK", **{flag: True})
    assert [event(o) for o in observations] == [("delivered", None, None, True),
                                                ("complaint", None, "recipient", True)]
    assert observations[1].provider_status == flag


def test_tencent_unsubscribe_flag_is_the_recipients_act() -> None:
    observations = tc_poll(0, 1, "250 2.0.0 OK", UserUnsubscribed=True)
    assert event(observations[1]) == ("unsubscribed", "unsubscribed", "recipient", True)


TC_EVENTS = {
    ("deferred", "", ""): (SOFT, "deferred", "unknown", False),
    ("deferred", "", "451 4.7.1 try again later"): (SOFT, "policy_rejected", "policy", False),
    ("delivered", "", ""): ("delivered", None, None, True),
    ("dropped", "", ""): (SOFT, "suppressed", "provider", True),
    ("dropped", "", "550 5.1.1 recipient is not exist"): (SOFT, "suppressed", "provider", True),
    ("bounce", "hard_bounce", "551 5.1.1 recipient is not exist"): (INV, "unknown_user", "recipient", True),
    ("bounce", "hard", "550 5.1.2 bad destination system"): (INV, "domain_invalid", "domain", True),
    ("bounce", "hard_bounce", "550 User unknown"): (INV, "unknown_user", "recipient", True),   # the text says it
    ("bounce", "hard_bounce", "550 rejected"): (SOFT, "other", "unknown", True),              # nothing says what
    ("bounce", "hard_bounce", "550 Mailbox unavailable"): (SOFT, "other", "unknown", True),   # RFC 5321's catch-all
    ("bounce", "hard_bounce", "554 5.7.1 message refused"): (SOFT, "policy_rejected", "policy", True),
    ("bounce", "soft_bounce", ""): (SOFT, "other", "unknown", True),
    ("bounce", "soft", "452 4.2.2 mailbox full"): (SOFT, "mailbox_full", "recipient", True),
    ("spamreport", "", ""): ("complaint", None, "recipient", True),
    ("unsubscribe", "", ""): ("unsubscribed", "unsubscribed", "recipient", True),
    ("open", "", ""): None,
    ("processed", "", ""): None,
}


@pytest.mark.parametrize("row", list(TC_EVENTS))
def test_tencent_webhook_rows(row) -> None:
    name, bounce_type, reason = row
    fields = {"event": name, "reason": reason, **({"bounceType": bounce_type} if bounce_type else {})}
    if TC_EVENTS[row] is None:   # no status: nothing observed (the receiver ignores it)
        assert tc_webhooks(fields) == []
    else:
        assert event(tc_webhook(fields)) == TC_EVENTS[row]


# -- the invariant over every row above ---------------------------------------------------------

ALL_ROWS = [*FAMILY_ROWS.values(), *FAMILY_SMTP.values(), *SC_EVENTS.values(), *UNI_ROWS.values(),
            *TC_POLL.values(), *TC_EVENTS.values()]


def test_no_row_makes_an_address_invalid_without_evidence_about_it() -> None:
    """The expectation tables themselves obey the issue's rule, so a row typed wrongly here is
    caught too: invalid only with recipient, domain or provider scope; only soft bounces retry."""
    for row in filter(None, ALL_ROWS):
        type_, _, scope, final = row
        if type_ == INV:
            assert scope in ("recipient", "domain", "provider"), row
        if not final:
            assert type_ == SOFT, row
        assert (scope is None) == (type_ == "delivered"), row
