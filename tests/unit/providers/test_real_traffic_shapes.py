"""Shapes of real provider traffic that an audit against public evidence (2026-12-06) found the
adapters refusing or misreading; each expectation is written from the source named beside it
(tests/fixtures/PUBLIC_SOURCES.md has the citations)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tests.support import hook_acct
from worker.deadletter import signed_headers
from worker.errors import BadSignature, MalformedPayload
from worker.model import EventType, Provider, Reason, Scope, Smtp
from worker.providers import aurora_sendcloud, engagelab, sendcloud, tencent_ses
from worker.providers.base import URL_CHECK, AccountContext, PollQuery, WebhookRequest, parse_smtp
from worker.providers.classify import settle, text_evidence

SECRET = "my_app_secret"
NOW = datetime(2023, 2, 17, 6, 40, tzinfo=UTC)
ITIME = 1676615713250                                 # 2023-02-17T06:35:13.250Z
MESSAGE_ID = "1676615711309_104117_18546_8821.sc-10_43_7_16-inbound"


def account() -> AccountContext:
    return AccountContext(name="acct", provider=Provider.ENGAGELAB, base_url="http://x", api_user="u", api_key="k")


def hmac_hex(message: str, key: str = SECRET) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


# -- EngageLab -------------------------------------------------------------------------------------


def top_level_unsubscribe(index: int, recipient: str) -> dict[str, Any]:
    """The top-level-event shape of a public receiver's test callbacks (issue 13's fixture
    webhook_public_top_level_event_unsubscribe): the id only as `response_data.message_id`, no itime."""
    return {"event": "unsubscribe", "response_data": {"server": "email", "message_id": f"{MESSAGE_ID}{index}${recipient}",
                                                      "to": recipient, "time": ITIME + index}}


def test_callbacks_of_one_instant_for_two_emails_have_different_replay_keys() -> None:
    """The signature covers only the timestamp, so the key must name the callback. For this shape
    it named neither the id nor the time (`sig|None|unsubscribe|None`): the second genuine
    unsubscribe of the batch was dead-lettered as a replay."""
    req = WebhookRequest(b"[]", "application/json", {"x-webhook-signature": "ab" * 16, "x-webhook-timestamp": "1"})
    a = engagelab.replay_key(req, top_level_unsubscribe(0, "a@x.test"))
    b = engagelab.replay_key(req, top_level_unsubscribe(1, "b@x.test"))
    assert a == f"{'ab' * 16}|{MESSAGE_ID}0$a@x.test|unsubscribe|{ITIME}"
    assert b == f"{'ab' * 16}|{MESSAGE_ID}1$b@x.test|unsubscribe|{ITIME + 1}"


def test_a_status_callback_without_its_status_object_is_read() -> None:
    """tony-amt/EDM's controller reads `webhookData.message_status` as its "old format"; its test
    callbacks put the ids beside `status_data`, not in it."""
    inside = {"message_status": "delivered", "status_data": {"email_id": f"{MESSAGE_ID}0$a@x.test"}, "itime": ITIME}
    beside = {"message_status": "soft_bounce", "status_data": {"message": "soft bounce"}, "to": "b@x.test",
              "email_id": f"{MESSAGE_ID}1$b@x.test", "itime": ITIME}
    (d,) = engagelab.webhook_observations(account(), inside)
    (s,) = engagelab.webhook_observations(account(), beside)
    assert (d.type, d.email_id, d.recipient, d.occurred_at) == (
        EventType.DELIVERED, f"{MESSAGE_ID}0$a@x.test", "a@x.test", datetime(2023, 2, 17, 6, 35, 13, 250000, tzinfo=UTC))
    assert (s.type, s.email_id, s.recipient, s.provider_message) == (
        EventType.SOFT_BOUNCE, f"{MESSAGE_ID}1$b@x.test", "b@x.test", "soft bounce")


def test_in_an_array_a_callback_of_an_unknown_shape_is_left_to_be_dead_lettered_alone() -> None:
    good = {"itime": ITIME, "status": {"message_status": "delivered", "status_data": {"email_id": f"{MESSAGE_ID}0$a@x.test"}}}
    odd = {"itime": ITIME, "nothing": "here"}
    assert engagelab.split_webhook(WebhookRequest(orjson.dumps([good, odd]), "application/json")) == [good, odd]
    with pytest.raises(MalformedPayload):
        engagelab.webhook_observations(account(), odd)


@pytest.mark.parametrize("field", ["subStat", "subStatus"])
def test_a_camel_case_sub_status_is_read(field: str) -> None:
    record = {"itime": ITIME, "to": "a@x.test",
              "status": {"message_status": "invalid_email",
                         "status_data": {"email_id": f"{MESSAGE_ID}0$a@x.test", field: 406}}}
    (obs,) = engagelab.webhook_observations(account(), record)
    assert (obs.type, obs.reason, obs.scope, obs.provider_sub_status) == (
        EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT, "406")


def legacy(signature: str, itime: int = ITIME) -> WebhookRequest:
    body = orjson.dumps({"itime": itime, "status": {"message_status": "sent", "status_data": {}}})
    return WebhookRequest(body, "application/json; charset=utf-8", {"authorization": signature})


def test_the_older_pages_authorization_header_is_verified() -> None:
    """The older zh_CN webhook page: one `Authorization` header, the hex HMAC-SHA256 of `itime`
    keyed with the app key. By hand: HMAC-SHA256("my_app_secret", "1676615713250")."""
    expected = hmac_hex(str(ITIME))
    assert engagelab.verify_webhook(hook_acct(Provider.ENGAGELAB, (SECRET,)), legacy(expected), NOW, 259200) \
        == "hmac-sha256-authorization"
    assert engagelab.verify_webhook(hook_acct(Provider.ENGAGELAB, ("old", SECRET)), legacy(expected.upper()), NOW,
                                    259200) == "hmac-sha256-authorization"


@pytest.mark.parametrize(("req", "options"), [
    (legacy(hmac_hex(str(ITIME), "wrong")), {}),
    (legacy(hmac_hex(str(ITIME))), {"signature": "md5"}),            # the account narrowed it to md5
    (legacy(hmac_hex(str(ITIME - 3 * 86400 * 1000 - 60_000)), ITIME - 3 * 86400 * 1000 - 60_000), {}),   # too old
    (WebhookRequest(b"{}", "application/json", {"authorization": hmac_hex(str(ITIME))}), {}),   # no itime
    (WebhookRequest(legacy("x").body, "application/json",
                    {"authorization": hmac_hex(str(ITIME)), "x-webhook-timestamp": str(ITIME)}), {}),
])
def test_an_authorization_header_that_does_not_verify_is_refused(req: WebhookRequest, options: dict) -> None:
    with pytest.raises(BadSignature):
        engagelab.verify_webhook(hook_acct(Provider.ENGAGELAB, (SECRET,), **options), req, NOW, 259200)


def test_a_dead_letter_keeps_a_bare_hmac_authorization_but_never_a_credential() -> None:
    mac = "0f" * 32
    assert signed_headers([("authorization", mac), ("x-webhook-timestamp", "1"), ("content-type", "a/b")]) == (
        ("authorization", mac.encode()), ("x-webhook-timestamp", b"1"))
    assert signed_headers([("authorization", "Basic dXNlcjpwYXNz")]) == ()
    assert signed_headers([("authorization", "Bearer " + mac)]) == ()


# -- Tencent Cloud SES -------------------------------------------------------------------------------


@pytest.mark.parametrize("record", [
    {"event": "open", "email": "a@x.test", "bulkId": "b1", "timestamp": 1654064683},
    {"event": "click", "email": "a@x.test", "bulkId": "b1", "timestamp": 1654064683, "link": "https://x.test"},
    {"event": "processed", "email": "a@x.test", "timestamp": 1654064683},       # no bulkId: nothing to keep anyway
    {"eventid": 4, "email": "a@x.test"},                                         # open, by its 2025 id
])
def test_tencent_events_without_a_status_observe_nothing(record: dict[str, Any]) -> None:
    assert tencent_ses.webhook_observations(hook_acct(Provider.TENCENT_SES), record) == []


def test_a_tencent_event_it_does_not_know_is_ignored_once_its_fields_read() -> None:
    acct = hook_acct(Provider.TENCENT_SES)
    assert tencent_ses.webhook_observations(acct, {"event": "teleport", "email": "a@x.test", "bulkId": "b1",
                                                   "timestamp": 1654064683}) == []
    with pytest.raises(MalformedPayload):   # a record of another provider, say: not Tencent's at all
        tencent_ses.webhook_observations(acct, {"event": "deliver", "emailId": "e1$a@x.test"})


# -- SMTP replies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    # Postfix's form, with the receiving host's address (QQ's MX in the SendCloud docs' example)
    ("host mx3.qq.com[183.3.225.42] said: 550 Mailbox not found", Smtp(550, None)),
    ("220.181.12.11 said: 451 4.7.1 greylisted, try later", Smtp(451, "4.7.1")),
    ("connect to 10.250.1.2:25: timed out", None),
    ("550.", Smtp(550, None)),
    ("smtp;550 5.1.1 <a@x.test>: Recipient address rejected", Smtp(550, "5.1.1")),
])
def test_a_reply_code_is_not_read_out_of_an_ip_address(text: str, expected: Smtp | None) -> None:
    assert parse_smtp(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    # Arabic-Indic (U+0661) and fullwidth (U+FF11) digits are digits to `\d`, not to the event
    # schema's `smtp.enhanced` pattern ([0-9]) or to a reply code
    ("450 4.\u0661.\u0661 mailbox unavailable", Smtp(450, None)),
    ("5\u0665\u0660 5.1.1 user unknown", Smtp(None, "5.1.1")),
    ("\uff15\uff15\uff10 \uff15.\uff11.\uff11 no such user", None),
    ("4.7.\u0661\u0661 451 greylisted", Smtp(451, None)),
])
def test_only_ascii_digits_make_a_reply_code(text: str, expected: Smtp | None) -> None:
    assert parse_smtp(text) == expected


def test_a_soft_bounce_with_other_digits_in_its_reply_becomes_a_schema_valid_event() -> None:
    import jsonschema

    from worker.model import Source, StatusEvent
    from worker.schema import load_schema
    row = {"emailId": f"{MESSAGE_ID}0$a@x.test", "apiUser": "u", "recipients": "a@x.test", "status": "软退信",
           "modifiedTime": "2022-11-10 15:39:01", "requestTime": "2022-11-10 15:39:00",
           "sendLog": "450 4.\u0661.\u0661 mailbox unavailable", "subStat": "", "subStatDesc": ""}
    body = orjson.dumps({"result": True, "statusCode": 200, "message": "ok",
                         "info": {"total": "1", "voListSize": 1, "voList": [row]}})
    acct = AccountContext(name="acct", provider=Provider.SENDCLOUD, base_url="http://x", api_user="u", api_key="k")
    [obs] = sendcloud.parse_poll_response(acct, PollQuery(), 200, {}, body, NOW).observations
    event = StatusEvent.from_observation(obs, provider=Provider.SENDCLOUD, account="acct", source=Source.POLL,
                                         observed_at=NOW)
    jsonschema.validate(orjson.loads(event.encode()), load_schema("status-event.v1.json"))
    assert obs.smtp == Smtp(450, None)


# -- SendCloud and Aurora: the URL test -----------------------------------------------------------------


@pytest.mark.parametrize("module", [sendcloud, aurora_sendcloud])
@pytest.mark.parametrize(("body", "content_type"), [
    (b"", ""), (b"  ", "application/json"), (b"{}", "application/json"), (b'{"test": "url"}', "application/json"),
    (b"foo=bar", "application/x-www-form-urlencoded"), (b'{"event": "ping"}', "application/json"),
])
def test_an_unsigned_post_naming_no_known_event_is_the_url_test(module, body: bytes, content_type: str) -> None:
    acct = hook_acct(module.NAME, ("key",))
    assert module.verify_webhook(acct, WebhookRequest(body, content_type), NOW, 259200) == URL_CHECK


@pytest.mark.parametrize(("module", "body"), [
    (sendcloud, b"event=deliver&emailId=m%24a%40x.test"),
    (aurora_sendcloud, b"event=delivered&emailId=m%24a%40x.test"),
    (sendcloud, b"event=deliver&timestamp=1&emailId=m"),                  # one signature field: a broken signature
    (sendcloud, b"token=t&emailId=m"),
])
def test_an_unsigned_post_naming_an_event_or_half_signed_is_refused(module, body: bytes) -> None:
    with pytest.raises(BadSignature):
        module.verify_webhook(hook_acct(module.NAME, ("key",)), WebhookRequest(body, "application/x-www-form-urlencoded"),
                              NOW, 259200)


def gbk_form(key: str = "key") -> bytes:
    """A signed SendCloud form whose subject is GBK, not UTF-8 (the signed fields are ASCII)."""
    timestamp, token = "1676615713", "t" * 50
    signature = hmac_hex(timestamp + token, key)
    return (b"event=deliver&emailId=m%24a%40x.test&recipient=a%40x.test&subject=" + "退信".encode("gbk")
            + f"&timestamp={timestamp}&token={token}&signature={signature}".encode())


def test_a_signed_form_with_a_field_that_is_not_utf8_verifies_and_is_unusable() -> None:
    """Signed but unreadable: an authentic body, so a dead letter with 200 (DESIGN 6), not a 401
    that SendCloud would retry and then give up on."""
    req = WebhookRequest(gbk_form(), "application/x-www-form-urlencoded")
    assert sendcloud.verify_webhook(hook_acct(Provider.SENDCLOUD, ("key",)), req, NOW, 259200) == "hmac-sha256"
    with pytest.raises(MalformedPayload):
        sendcloud.split_webhook(req)
    with pytest.raises(BadSignature):
        sendcloud.verify_webhook(hook_acct(Provider.SENDCLOUD, ("other",)), req, NOW, 259200)


@pytest.mark.parametrize(("text", "expected"), [
    ("2022-11-10T15:39:01+0800", datetime(2022, 11, 10, 7, 39, 1, tzinfo=UTC)),             # the seed's form
    ("2022-11-10T15:39:01.250+08:00", datetime(2022, 11, 10, 7, 39, 1, 250000, tzinfo=UTC)),
    ("2022-11-10T07:39:01Z", datetime(2022, 11, 10, 7, 39, 1, tzinfo=UTC)),
])
def test_an_engagelab_row_time_with_a_fraction_or_z_is_read(text: str, expected: datetime) -> None:
    row = {"email_id": f"{MESSAGE_ID}0$a@x.test", "email": "a@x.test", "status": 1, "sub_status": None,
           "request_time": "2022-11-10T15:39:00+0800", "update_time": text}
    page = engagelab.parse_poll_response(account(), PollQuery(), 200, {},
                                         orjson.dumps({"result": [row], "total": "1", "count": 1}), NOW)
    assert [o.occurred_at for o in page.observations] == [expected] and page.rejected == ()


def test_an_engagelab_row_time_without_an_offset_is_read_in_utc_plus_8() -> None:
    """EngageLab's general-rules page shows a list answer's times without an offset
    (`"create_time": "2022-11-14 14:27:48"`), its email_status page with one: both are read, the
    first in the API's zone (UTC+8), not refused."""
    row = {"email_id": f"{MESSAGE_ID}0$a@x.test", "email": "a@x.test", "status": 1, "sub_status": None,
           "request_time": "2022-11-10T15:39:00+0800", "update_time": "2022-11-14 14:27:48"}
    page = engagelab.parse_poll_response(account(), PollQuery(), 200, {},
                                         orjson.dumps({"result": [row], "total": "1", "count": 1}), NOW)
    assert [o.occurred_at for o in page.observations] == [datetime(2022, 11, 14, 6, 27, 48, tzinfo=UTC)]
    assert page.rejected == ()


# -- reply texts that name the failure (a bare 550 from QQ, 163, ...) --------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("550 Mailbox not found. http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000728",
     (Reason.UNKNOWN_USER, Scope.RECIPIENT)),                                      # QQ, as SendCloud's docs quote it
    ("550 User not found: old@163.com", (Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    ("550 5.1.1 <a@x.test>: Recipient address rejected: User unknown in virtual mailbox table",
     (Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    ("550 收件人不存在", (Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    ("550 该用户不存在", (Reason.UNKNOWN_USER, Scope.RECIPIENT)),                    # no spaces in Chinese
    ("550 5.1.1 recipient is not exist", (Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    ("452 Mailbox is FULL", (Reason.MAILBOX_FULL, Scope.RECIPIENT)),
    ("550 The account has been disabled", (Reason.MAILBOX_DISABLED, Scope.RECIPIENT)),
    ("5.0.0 Host not found", (Reason.DOMAIN_INVALID, Scope.DOMAIN)),
    ("550 Mailbox unavailable", None),                        # RFC 5321's catch-all text
    ("550 rejected", None),
    ("550 superuser unknownness", None),                      # not whole words
    ("", None),
])
def test_reply_texts_that_name_the_failure(text: str, expected) -> None:
    assert text_evidence(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("550 Mailbox not found", (EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    # a policy code with a reply that names the failure: the name outranks it (since 2026-12-06, public
    # captures: Yandex's "550 5.7.1 No such user!"; before, the code said first: a policy soft bounce)
    ("554 5.7.1 user unknown", (EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    ("550 rejected", (EventType.SOFT_BOUNCE, Reason.OTHER, Scope.UNKNOWN)),
])
def test_a_hard_class_failure_is_invalid_only_when_its_reply_is_about_the_address(text: str, expected) -> None:
    assert settle(EventType.INVALID, Reason.OTHER, Scope.UNKNOWN, parse_smtp(text), text) == expected


def test_a_provider_refusal_is_kept_whatever_the_text() -> None:
    assert settle(EventType.SOFT_BOUNCE, Reason.SUPPRESSED, Scope.PROVIDER, parse_smtp("550 user unknown"),
                  "550 user unknown") == (EventType.SOFT_BOUNCE, Reason.SUPPRESSED, Scope.PROVIDER)


def test_a_tencent_hard_bounce_from_qq_suppresses_the_address() -> None:
    record = {"event": "bounce", "bounceType": "hard_bounce", "email": "a@qq.com", "bulkId": "b1",
              "timestamp": 1654064683, "reason": "550 Mailbox not found. http://service.mail.qq.com/cgi-bin/help"}
    (obs,) = tencent_ses.webhook_observations(hook_acct(Provider.TENCENT_SES), record)
    assert (obs.type, obs.reason, obs.scope, obs.final) == (EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT, True)


def test_a_polled_tencent_refusal_whose_reply_text_names_the_mailbox_is_invalid() -> None:
    """DeliverStatus 3 ("refused by the ESP, usually a non-existent address") with QQ's bare reply."""
    row = {"MessageId": "m-1", "ToEmailAddress": "a@qq.com", "SendStatus": 0, "DeliverStatus": 3,
           "DeliverMessage": "550 Mailbox not found.", "RequestTime": 1700000000, "DeliverTime": 1700000005}
    body = orjson.dumps({"Response": {"EmailStatusList": [row], "RequestId": "r"}})
    page = tencent_ses.parse_poll_response(hook_acct(Provider.TENCENT_SES), PollQuery(), 200, {}, body, NOW)
    [obs] = page.observations
    assert (obs.type, obs.reason, obs.scope, obs.final) == (EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT, True)


def test_a_status_callback_without_status_data_is_read_from_the_record_itself() -> None:
    record = {"message_status": "delivered", "email_id": f"{MESSAGE_ID}2$c@x.test", "itime": ITIME}
    (obs,) = engagelab.webhook_observations(account(), record)
    assert (obs.type, obs.email_id, obs.recipient) == (EventType.DELIVERED, f"{MESSAGE_ID}2$c@x.test", "c@x.test")


def test_the_older_scheme_is_taken_only_without_any_x_webhook_header() -> None:
    """X-WebHook-Signature without its timestamp is the current scheme, broken: not the older one,
    even when it holds the HMAC of the body's itime."""
    req = WebhookRequest(legacy("x").body, "application/json", {"x-webhook-signature": hmac_hex(str(ITIME))})
    with pytest.raises(BadSignature):
        engagelab.verify_webhook(hook_acct(Provider.ENGAGELAB, (SECRET,)), req, NOW, 259200)


def test_a_replay_key_of_a_callback_whose_data_is_not_an_object_names_no_email() -> None:
    req = WebhookRequest(b"{}", "application/json", {"x-webhook-signature": "ab" * 16, "x-webhook-timestamp": "1"})
    record = {"itime": ITIME, "status": {"message_status": "delivered", "status_data": "x"}}
    assert engagelab.replay_key(req, record) == f"{'ab' * 16}|None|delivered|{ITIME}"


def test_a_tencent_bounce_without_a_type_and_a_500_that_names_the_mailbox_is_invalid() -> None:
    """No bounceType: a 5xx reply is the hard class, and its text says what failed."""
    record = {"event": "bounce", "email": "a@x.test", "bulkId": "b1", "timestamp": 1654064683,
              "reason": "500 user unknown"}
    (obs,) = tencent_ses.webhook_observations(hook_acct(Provider.TENCENT_SES), record)
    assert (obs.type, obs.reason, obs.scope) == (EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT)


def test_a_sendcloud_family_row_of_the_invalid_class_whose_text_names_the_mailbox_is_invalid() -> None:
    """Sub-status 409 ("other": scope unknown) with QQ's bare reply: the text is the evidence."""
    from worker.providers import _sendcloud_family as family
    acct = AccountContext(name="acct", provider=Provider.SENDCLOUD, base_url="http://x", api_user="u", api_key="k")
    type_, reason, scope, smtp = family.classify(acct, EventType.INVALID, 409, "550 Mailbox not found")
    assert (type_, reason, scope, smtp) == (EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT, Smtp(550, None))
