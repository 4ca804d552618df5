"""Every documented status value, mapped: literal expectation tables typed from PROVIDERS.md.

The tables here are written from PROVIDERS.md (section cited at each table), never read from the
worker, and every row is driven through a provider's public parsing functions
(`parse_poll_response`, `split_webhook` + `webhook_observations`) with a minimal hand-written
payload. Each row gives the expected Observation as (type, reason, provider_status,
provider_sub_status, final), or says "not emitted" (type None, or no observation at all). For a
not-emitted row only the type, the provider's values and `final` (which stops id polling) are
asserted: PROVIDERS.md names no reason for those, so their reason column reads None and is unchecked.

How PROVIDERS.md's normalized column reads in this project's model (README "The contract
downstream", DESIGN.md section 3): `delivered` / `invalid` / `soft_bounce` are those types;
`other(complaint)` is `complaint` and `other(unsubscribed)` is `unsubscribed` (both emitted where
reported); every other `other(...)` (pending, opened, clicked, inbound, provider_error, quota,
config, ...) is not emitted (type None). PROVIDERS.md gives the failure *kind* in words (e.g. 406
"address does not exist"); the `reason` column is that wording read onto worker.model.Reason.
`final` follows PROVIDERS.md's "Final?" column where there is one (UniSender 4.4) and section 6
"Terminal-state detection" elsewhere (delivered and invalid are terminal; a soft bounce only when
the provider says it is final). For the SendCloud family a row in the provider's own invalid status
(4, `无效邮件`, `Invalid`, the `invalid`/`invalid_email` webhook) is terminal whatever the scope rule
publishes it as: the provider gave up and will not retry (PROVIDERS.md 1.4 "delivery failed
(permanent)"), so an id tracker has nothing more to ask.

Issue 13 (docs/mapping.md) changed types and reasons: the per-provider tables there give (type,
reason, scope), SMTP evidence in a record's text refines reason and scope (except rows of scope
`provider`), and an `invalid` whose scope is not recipient, domain or provider becomes a soft
bounce. The rows below follow those tables; `final` here is still the tracking column above
(Observation.final), not the event's `final` (scope and the event's `final` are tested elsewhere).
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.model import EventType, Observation, Provider, Reason, Scope
from worker.providers import get_module
from worker.providers.base import AccountContext, PollQuery, WebhookRequest

DELIVERED, INVALID, SOFT = EventType.DELIVERED, EventType.INVALID, EventType.SOFT_BOUNCE
COMPLAINT, UNSUBSCRIBED = EventType.COMPLAINT, EventType.UNSUBSCRIBED
R = Reason

NOW = datetime(2030, 1, 1, tzinfo=UTC)
# `sender_rejection` settings: None is the default `documented` policy. worker.config now turns
# `invalid` into soft_bounce (a sender rejection never makes an address invalid); the account context
# here still asks for INVALID, so the tables also show the scope invariant holding on its own.
POLICIES = {"documented": None, "invalid": INVALID, "soft_bounce": SOFT}


def acct(provider: Provider, policy: EventType | None = None) -> AccountContext:
    return AccountContext(name="acct", provider=provider, base_url="http://x", api_user="u", api_key="k",
                          secret_id="id", secret_key="key", sender_rejection=policy)


def summary(obs: Observation) -> tuple:
    return (obs.type, obs.reason, obs.provider_status, obs.provider_sub_status, obs.final)


def only(observations) -> Observation:
    observations = list(observations)
    assert len(observations) == 1, observations
    return observations[0]


def webhook(provider: Provider, body: bytes, content_type: str, policy: EventType | None = None) -> list[Observation]:
    module = get_module(provider)
    records = module.split_webhook(WebhookRequest(body, content_type))
    return [obs for record in records for obs in module.webhook_observations(acct(provider, policy), record)]


# =================================================================================================
# SendCloud family: SendCloud (CN), Aurora SendCloud, EngageLab
# =================================================================================================

FAMILY = [Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD, Provider.ENGAGELAB]

# The reason of a SendCloud-family failure that no sub-status refines (PROVIDERS.md 2.4: "other"),
# and of an unsubscribe; delivered and complaints carry none.
DEFAULT_REASON = {INVALID: R.OTHER, SOFT: R.OTHER, UNSUBSCRIBED: R.UNSUBSCRIBED}

# docs/mapping.md SendCloud-family table: sub-status -> (type, reason, final), rows without SMTP evidence
# (the payloads below carry no reply code). `final` is the tracking column: delivered and the
# provider's invalid status are terminal (the 4xx rows below all come under it, 405-409 published as
# soft bounces included), a soft bounce status is not (the event's `final` is another matter).
SUB_STATUS = {
    401: (INVALID, R.SUPPRESSED, True),          # on the provider's blacklist, not sent (scope provider)
    402: (INVALID, R.UNSUBSCRIBED, True),        # "invalid (reason unsubscribed)" (scope provider)
    403: (INVALID, R.SERVER_UNREACHABLE, True),  # server error / MX unreachable (domain)
    404: (INVALID, R.BAD_ADDRESS, True),         # address format error (recipient)
    405: (SOFT, R.SENDER_REJECTED, True),        # our IP/domain rejected: sender-side, never invalid
    406: (INVALID, R.UNKNOWN_USER, True),        # address does not exist (recipient)
    407: (SOFT, R.SPAM_REJECTED, True),          # junk/spam: our content, never invalid
    408: (SOFT, R.POLICY_REJECTED, True),        # sender/recipient rejected: scope policy, no evidence
    409: (SOFT, R.OTHER, True),                  # other: scope unknown, no evidence -> soft bounce
    503: (SOFT, R.SERVER_UNREACHABLE, False),    # service unreachable
    505: (SOFT, R.SENDER_REJECTED, False),       # IP/domain rejected (sender)
    506: (SOFT, R.UNKNOWN_USER, False),          # mailbox does not exist
    507: (SOFT, R.SPAM_REJECTED, False),         # anti-spam rejected
    508: (SOFT, R.POLICY_REJECTED, False),       # sender/recipient rejected
    509: (SOFT, R.OTHER, False),                 # other
}
# PROVIDERS.md 1.4: no 501/502/504; docs/mapping.md: "other 4xx like 409, other 5xx like 509" (without SMTP
# evidence a 4xx is about nothing known: a soft bounce, not invalid).
UNKNOWN_SUB_STATUS = {
    410: (SOFT, R.OTHER, True),     # under the invalid status (family_poll): terminal
    499: (SOFT, R.OTHER, True),
    501: (SOFT, R.OTHER, False),
    502: (SOFT, R.OTHER, False),
    504: (SOFT, R.OTHER, False),
    599: (SOFT, R.OTHER, False),
}
# The sender-side rows (PROVIDERS.md 2.4 "configurable (sender-side)") under each policy. A
# rejection of the sender never makes an address invalid (docs/mapping.md): `sender_rejection: invalid`
# now means soft_bounce too (worker.configbuild.SENDER_REJECTION), and even an account context that
# asks for invalid gets a soft bounce (the scope invariant: scope sender/content).
SENDER_SIDE_FAMILY = {
    (405, "documented"): (SOFT, R.SENDER_REJECTED, True),
    (405, "invalid"): (SOFT, R.SENDER_REJECTED, True),
    (405, "soft_bounce"): (SOFT, R.SENDER_REJECTED, True),
    (407, "documented"): (SOFT, R.SPAM_REJECTED, True),
    (407, "invalid"): (SOFT, R.SPAM_REJECTED, True),
    (407, "soft_bounce"): (SOFT, R.SPAM_REJECTED, True),
}

SC_EMAIL_ID = "1652117389552_218362_2287_3497.sc-10_9_13_213-inbound0$bob@example.com"
EL_EMAIL_ID = "1676615711309_104117_18546_8821.sc-10_43_7_16-inbound0$bob@example.com"


# -- the three status APIs ----------------------------------------------------------------------

def sc_poll(provider: Provider, status: str, sub_status: Any, policy: EventType | None = None) -> Observation:
    """One voList row (PROVIDERS.md 2.3 / 3.3)."""
    row = {"emailId": SC_EMAIL_ID, "apiUser": "u", "recipients": "bob@example.com", "status": status,
           "subStatus": sub_status, "subStatusDesc": None, "requestTime": "2022-05-10 01:29:50",
           "modifiedTime": "2022-05-10 01:29:51", "sendLog": "log line"}
    body = json.dumps({"result": True, "statusCode": 200, "message": "ok",
                       "info": {"total": "1", "voListSize": 1, "voList": [row]}}, ensure_ascii=False)
    page = get_module(provider).parse_poll_response(acct(provider, policy), PollQuery(), 200,
                                                    {"content-type": "application/json"}, body.encode(), NOW)
    return only(page.observations)


def el_poll(status: int, sub_status: Any, policy: EventType | None = None) -> Observation:
    """One `result` row (PROVIDERS.md 1.3)."""
    row = {"email_id": EL_EMAIL_ID, "api_user": "u", "email": "bob@example.com",
           "request_time": "2022-11-10T15:39:01+0800", "update_time": "2022-11-10T15:39:05+0800",
           "status": status, "status_desc": "d", "sub_status": sub_status, "sub_status_desc": None,
           "response_message": "log line"}
    body = json.dumps({"result": [row], "total": "1", "count": 1}).encode()
    page = get_module(Provider.ENGAGELAB).parse_poll_response(acct(Provider.ENGAGELAB, policy), PollQuery(), 200,
                                                              {"content-type": "application/json"}, body, NOW)
    return only(page.observations)


def family_poll(provider: Provider, code: int, policy: EventType | None = None) -> Observation:
    """A row carrying sub-status `code` with the status that goes with its hundred."""
    if provider is Provider.ENGAGELAB:
        return el_poll(4 if code < 500 else 5, code, policy)
    # CN sends subStatus as a string ("406", seed 001); Aurora's Data.yaml declares an integer.
    sub = str(code) if provider is Provider.SENDCLOUD else code
    return sc_poll(provider, "无效邮件" if code < 500 else "软退信", sub, policy)


@pytest.mark.parametrize("code", sorted(SUB_STATUS))
@pytest.mark.parametrize("provider", FAMILY)
def test_family_poll_sub_status(provider, code) -> None:
    type_, reason, final = SUB_STATUS[code]
    obs = family_poll(provider, code)
    if provider is Provider.ENGAGELAB:
        provider_status = "4" if code < 500 else "5"
    else:
        provider_status = "无效邮件" if code < 500 else "软退信"
    assert summary(obs) == (type_, reason, provider_status, str(code), final)


@pytest.mark.parametrize("code", sorted(UNKNOWN_SUB_STATUS))
@pytest.mark.parametrize("provider", FAMILY)
def test_family_poll_unknown_sub_status_keeps_its_hundred(provider, code) -> None:
    type_, reason, final = UNKNOWN_SUB_STATUS[code]
    obs = family_poll(provider, code)
    assert (obs.type, obs.reason, obs.provider_sub_status, obs.final) == (type_, reason, str(code), final)


@pytest.mark.parametrize(("code", "policy"), sorted(SENDER_SIDE_FAMILY))
@pytest.mark.parametrize("provider", FAMILY)
def test_family_poll_sender_side_sub_status_under_each_policy(provider, code, policy) -> None:
    type_, reason, final = SENDER_SIDE_FAMILY[(code, policy)]
    obs = family_poll(provider, code, POLICIES[policy])
    assert (obs.type, obs.reason, obs.provider_sub_status, obs.final) == (type_, reason, str(code), final)


@pytest.mark.parametrize("code", sorted(set(SUB_STATUS) - {405, 407}))
@pytest.mark.parametrize("policy", ["invalid", "soft_bounce"])
@pytest.mark.parametrize("provider", FAMILY)
def test_family_poll_address_side_sub_status_ignores_the_policy(provider, policy, code) -> None:
    type_, reason, final = SUB_STATUS[code]
    obs = family_poll(provider, code, POLICIES[policy])
    assert (obs.type, obs.reason, obs.final) == (type_, reason, final)


# PROVIDERS.md 2.4 status strings (prefix match; 软退信 and 请求中 inferred there), no sub-status.
# An invalid status with no sub-status and no SMTP evidence is the invalid class with scope
# unknown (reason other): docs/mapping.md makes it a final soft bounce, like 409.
SENDCLOUD_STATUS_STRINGS = {
    "送达": (DELIVERED, None, True),
    "投递成功": (DELIVERED, None, True),              # the 2017 docs' word
    "无效邮件": (SOFT, R.OTHER, True),                # the provider's invalid status: terminal
    "无效邮件-地址不存在": (SOFT, R.OTHER, True),      # prefix rule (LingByte client)
    "软退信": (SOFT, R.OTHER, False),
    "软退信-其他": (SOFT, R.OTHER, False),
    "请求中": (None, None, False),                    # other(pending): not emitted
}
# PROVIDERS.md 3.3: the Chinese strings plus English words, case-insensitively.
AURORA_STATUS_STRINGS = {
    **SENDCLOUD_STATUS_STRINGS,
    "Delivered": (DELIVERED, None, True),
    "delivered": (DELIVERED, None, True),
    "Invalid": (SOFT, R.OTHER, True),             # invalid class, no evidence: soft bounce (terminal)
    "INVALID": (SOFT, R.OTHER, True),
    "Soft Bounce": (SOFT, R.OTHER, False),
    "soft bounce": (SOFT, R.OTHER, False),
    "Request": (None, None, False),
    "Sending": (None, None, False),
}


@pytest.mark.parametrize(("provider", "status"),
                         [(Provider.SENDCLOUD, s) for s in SENDCLOUD_STATUS_STRINGS]
                         + [(Provider.AURORA_SENDCLOUD, s) for s in AURORA_STATUS_STRINGS])
def test_sendcloud_family_poll_status_string(provider, status) -> None:
    table = SENDCLOUD_STATUS_STRINGS if provider is Provider.SENDCLOUD else AURORA_STATUS_STRINGS
    type_, reason, final = table[status]
    assert summary(sc_poll(provider, status, None)) == (type_, reason, status, None, final)


@pytest.mark.parametrize("provider", [Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD])
def test_sendcloud_family_poll_prefers_the_numeric_sub_status(provider) -> None:
    # PROVIDERS.md 2.4: "Prefer the numeric subStatus when it is present".
    obs = sc_poll(provider, "无效邮件", "506")
    assert (obs.type, obs.reason, obs.provider_sub_status) == (SOFT, R.UNKNOWN_USER, "506")


# PROVIDERS.md 1.4 `status` table (seed 000), no sub-status.
ENGAGELAB_STATUSES = {
    1: (DELIVERED, None, True),
    4: (SOFT, R.OTHER, True),   # invalid class, no sub-status, no SMTP evidence: soft bounce (docs/mapping.md), terminal
    5: (SOFT, R.OTHER, False),
    18: (None, None, False),   # sending: other(pending)
}


@pytest.mark.parametrize("status", sorted(ENGAGELAB_STATUSES))
def test_engagelab_poll_status(status) -> None:
    type_, reason, final = ENGAGELAB_STATUSES[status]
    assert summary(el_poll(status, None)) == (type_, reason, str(status), None, final)


# -- the three webhooks -------------------------------------------------------------------------

def sc_webhook(provider: Provider, event: str, substat: int | None = None, body_kind: str = "form",
               policy: EventType | None = None) -> list[Observation]:
    """One SendCloud-family webhook event (PROVIDERS.md 2.5 fields), form or JSON (3.5)."""
    fields: dict[str, Any] = {"event": event, "emailId": SC_EMAIL_ID, "recipient": "bob@example.com",
                              "apiUser": "u", "category": "u", "labelId": 0, "timestamp": 1652117391000,
                              "token": "t" * 50, "signature": "0" * 64}
    if event == "request":
        fields = {k: v for k, v in fields.items() if k not in ("emailId", "recipient")}
        fields.update(messageId="1652117389552_218362_2287_3497.sc-10_9_13_213-inbound",
                      recipientArray=json.dumps(["bob@example.com"]), emailIds=json.dumps([SC_EMAIL_ID]),
                      recipientSize=1)
    if event == "route":
        fields = {k: v for k, v in fields.items() if k not in ("emailId", "recipient")}
        fields.update({"from": "bob@example.com", "to": "in@example.com", "subject": "s", "text": "t"})
    if event in ("open", "click", "unsubscribe"):
        fields.update(ip="1.2.3.4", explorerName="x", explorerVer="1", oSName="y", oSVer="2")
    if substat is not None:
        fields.update(substat=substat, substatdesc="d")
    if body_kind == "form":
        body, content_type = urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded"
    else:
        if event == "request":
            fields.update(recipientArray=["bob@example.com"], emailIds=[SC_EMAIL_ID])
        body, content_type = json.dumps(fields).encode(), "application/json"
    return webhook(provider, body, content_type, policy)


# PROVIDERS.md 2.5 event table -> (type, reason, final); None: not emitted (no observation).
SENDCLOUD_EVENTS = {
    "request": None,                           # other(pending)
    "deliver": (DELIVERED, None, True),
    "open": None,                              # other(opened)
    "click": None,                             # other(clicked)
    "unsubscribe": (UNSUBSCRIBED, R.UNSUBSCRIBED, False),
    "report_spam": (COMPLAINT, None, False),   # a complaint is not a delivery failure: no reason
    "invalid": (SOFT, R.OTHER, True),          # no substat, no evidence: soft bounce (refined below), terminal
    "soft_bounce": (SOFT, R.OTHER, False),     # refined by substat (below)
    "route": None,                             # other(inbound)
}
# PROVIDERS.md 3.5: the new docs' aliases, accepted beside the old names.
AURORA_EVENTS = {
    **SENDCLOUD_EVENTS,
    "delivered": (DELIVERED, None, True),
    "invalid_email": (SOFT, R.OTHER, True),    # as "invalid"
    "spam-report": (COMPLAINT, None, False),
}


@pytest.mark.parametrize("body_kind", ["form", "json"])
@pytest.mark.parametrize(("provider", "event"),
                         [(Provider.SENDCLOUD, e) for e in SENDCLOUD_EVENTS]
                         + [(Provider.AURORA_SENDCLOUD, e) for e in AURORA_EVENTS])
def test_sendcloud_family_webhook_event(provider, event, body_kind) -> None:
    table = SENDCLOUD_EVENTS if provider is Provider.SENDCLOUD else AURORA_EVENTS
    observations = sc_webhook(provider, event, body_kind=body_kind)
    if table[event] is None:
        assert observations == []
        return
    type_, reason, final = table[event]
    assert summary(only(observations)) == (type_, reason, event, None, final)


@pytest.mark.parametrize("body_kind", ["form", "json"])
@pytest.mark.parametrize("code", sorted(SUB_STATUS))
@pytest.mark.parametrize(("provider", "event4", "event5"), [
    (Provider.SENDCLOUD, "invalid", "soft_bounce"),
    (Provider.AURORA_SENDCLOUD, "invalid", "soft_bounce"),
    (Provider.AURORA_SENDCLOUD, "invalid_email", "soft_bounce"),
])
def test_sendcloud_family_webhook_substat(provider, event4, event5, code, body_kind) -> None:
    # PROVIDERS.md 2.5 fields: `substat` 401-409 on invalid, 503-509 on soft_bounce.
    event = event4 if code < 500 else event5
    type_, reason, final = SUB_STATUS[code]
    assert summary(only(sc_webhook(provider, event, code, body_kind))) == (type_, reason, event, str(code), final)


@pytest.mark.parametrize(("code", "policy"), sorted(SENDER_SIDE_FAMILY))
@pytest.mark.parametrize("provider", [Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD])
def test_sendcloud_family_webhook_sender_side_under_each_policy(provider, code, policy) -> None:
    type_, reason, final = SENDER_SIDE_FAMILY[(code, policy)]
    obs = only(sc_webhook(provider, "invalid", code, policy=POLICIES[policy]))
    assert (obs.type, obs.reason, obs.provider_sub_status, obs.final) == (type_, reason, str(code), final)


def el_status_callback(event: str, sub_stat: int | None = None) -> dict:
    """A status callback (PROVIDERS.md 1.5 envelope; sub_stat field name unverified there)."""
    if event == "target":
        data = {"message": "successfully request", "task_id": "-1", "api_user": "u", "from": "", "subject": "",
                "tos": ["bob@example.com"], "email_ids": [EL_EMAIL_ID], "label_id": 0}
    else:
        data = {"message": "m", "task_id": 1, "api_user": "u", "email_id": EL_EMAIL_ID}
    if sub_stat is not None:
        data.update(sub_stat=sub_stat, sub_stat_desc="d")
    return {"message_id": "1676615711309_104117_18546_8821.sc-10_43_7_16-inbound", "from": "n@example.com",
            "subject": "s", "to": "bob@example.com", "server": "email", "itime": 1676615714000, "custom_args": {},
            "status": {"message_status": event, "status_data": data}}


def el_response_callback(event: str) -> dict:
    """An engagement callback in the second envelope (PROVIDERS.md 1.5, unverified there)."""
    return {"message_id": "1676615711309_104117_18546_8821.sc-10_43_7_16-inbound", "from": "n@example.com",
            "subject": "s", "to": "bob@example.com", "server": "email", "itime": 1676615714000, "custom_args": {},
            "response": {"event": event, "response_data": {"email_id": EL_EMAIL_ID}}}


def el_webhook(callback: dict, policy: EventType | None = None) -> list[Observation]:
    return webhook(Provider.ENGAGELAB, json.dumps(callback).encode(), "application/json; charset=utf-8", policy)


# PROVIDERS.md 1.5 "Normalization of webhook events".
ENGAGELAB_STATUS_EVENTS = {
    "target": None,                          # other(pending)
    "sent": None,                            # other(pending)
    "delivered": (DELIVERED, None, True),
    "invalid_email": (SOFT, R.OTHER, True),   # no sub_stat, no evidence: soft bounce (docs/mapping.md), terminal
    "soft_bounce": (SOFT, R.OTHER, False),
}
ENGAGELAB_RESPONSE_EVENTS = {
    "open": None,                            # other(opened)
    "click": None,                           # other(clicked)
    "unsubscribe": (UNSUBSCRIBED, R.UNSUBSCRIBED, False),
    "report_spam": (COMPLAINT, None, False),
    "route": None,                           # other(inbound)
}


@pytest.mark.parametrize(("envelope", "event"),
                         [("status", e) for e in ENGAGELAB_STATUS_EVENTS]
                         + [("response", e) for e in ENGAGELAB_RESPONSE_EVENTS])
def test_engagelab_webhook_event(envelope, event) -> None:
    if envelope == "status":
        expected, callback = ENGAGELAB_STATUS_EVENTS[event], el_status_callback(event)
    else:
        expected, callback = ENGAGELAB_RESPONSE_EVENTS[event], el_response_callback(event)
    observations = el_webhook(callback)
    if expected is None:
        assert observations == []
        return
    type_, reason, final = expected
    assert summary(only(observations)) == (type_, reason, event, None, final)


@pytest.mark.parametrize("code", sorted(SUB_STATUS))
def test_engagelab_webhook_sub_status(code) -> None:
    event = "invalid_email" if code < 500 else "soft_bounce"
    type_, reason, final = SUB_STATUS[code]
    assert summary(only(el_webhook(el_status_callback(event, code)))) == (type_, reason, event, str(code), final)


@pytest.mark.parametrize(("code", "policy"), sorted(SENDER_SIDE_FAMILY))
def test_engagelab_webhook_sender_side_under_each_policy(code, policy) -> None:
    type_, reason, final = SENDER_SIDE_FAMILY[(code, policy)]
    obs = only(el_webhook(el_status_callback("invalid_email", code), POLICIES[policy]))
    assert (obs.type, obs.reason, obs.provider_sub_status, obs.final) == (type_, reason, str(code), final)


# =================================================================================================
# UniSender: PROVIDERS.md 4.4 (status values) and 4.5 (the webhook carries the same vocabulary)
# =================================================================================================

# status -> (type, reason, final). "Final?" as in 4.4; where it says n/a, final when the letter goes
# nowhere further, not final when the text says it may change (the code comments this rule).
UNISENDER_STATUSES = {
    "not_sent": (None, None, False),                      # other(pending)
    "ok_sent": (None, None, False),                       # other(pending)
    "ok_delivered": (DELIVERED, None, False),
    "ok_read": (DELIVERED, None, False),
    "ok_link_visited": (DELIVERED, None, False),
    "ok_unsubscribed": (UNSUBSCRIBED, R.UNSUBSCRIBED, True),
    # "delivered (reason spam_folder)": the model and schema have no spam_folder reason, and a
    # delivery carries no failure reason.
    "ok_spam_folder": (DELIVERED, None, True),
    "ok_fbl": (COMPLAINT, None, True),                    # n/a; nothing follows a complaint
    "err_blacklisted": (SOFT, R.BLOCKLISTED, False),
    "err_will_retry": (SOFT, R.DEFERRED, False),
    "err_resend": (SOFT, R.DEFERRED, False),
    "err_internal": (None, None, True),                   # other(provider_error)
    "err_user_unknown": (INVALID, R.UNKNOWN_USER, True),
    "err_user_inactive": (INVALID, R.MAILBOX_DISABLED, True),
    "err_mailbox_discarded": (INVALID, R.MAILBOX_DISABLED, True),
    "err_mailbox_full": (SOFT, R.MAILBOX_FULL, True),
    "err_no_dns": (INVALID, R.DOMAIN_INVALID, True),       # n/a
    "err_no_smtp": (INVALID, R.DOMAIN_INVALID, True),      # n/a
    "err_domain_inactive": (INVALID, R.DOMAIN_INVALID, True),
    "err_destination_misconfigured": (SOFT, R.OTHER, False),  # n/a; "fixable": may change
    "err_spam_rejected": (SOFT, R.SPAM_REJECTED, True),    # n/a; sender-side (content)
    "err_too_large": (None, None, True),                   # other(content_rejected)
    "err_giveup": (SOFT, R.OTHER, True),
    "err_spam_removed": (None, None, False),               # other(campaign_blocked)
    "err_spam_may_retry": (SOFT, R.SPAM_REJECTED, True),   # n/a; resent as a *new* letter
    "err_delivery_failed": (SOFT, R.OTHER, True),          # "reason other; policy"
    "err_skip_letter": (INVALID, R.SUPPRESSED, True),      # n/a; cancelled: UniSender did not send
    "err_spam_skipped": (None, None, False),               # other(campaign_blocked)
    "err_unsubscribed": (UNSUBSCRIBED, R.UNSUBSCRIBED, True),
    "err_src_invalid": (None, None, True),                 # other(sender_invalid)
    "err_dest_invalid": (INVALID, R.BAD_ADDRESS, True),
    "err_not_allowed": (None, None, True),                 # other(blocked)
    "err_over_quota": (None, None, True),                  # other(quota); n/a
    "err_not_available": (INVALID, R.SUPPRESSED, True),    # not sent: UniSender's own record
    "err_unreachable": (INVALID, R.BAD_ADDRESS, True),
    "err_lost": (None, None, True),                        # other(provider_error)
    "skip_dup_unreachable": (INVALID, R.SUPPRESSED, True),  # skipped: UniSender's own record
    "skip_dup_temp_unreachable": (SOFT, R.SERVER_UNREACHABLE, True),
    "skip_dup_mailbox_full": (SOFT, R.MAILBOX_FULL, True),
    "delayed": (None, None, False),                        # other(pending); n/a
    # "unknown err_* / ok_*: future values -> soft_bounce / other(pending)"; not final: it may settle.
    "err_added_later": (SOFT, R.OTHER, False),
    "ok_added_later": (None, None, False),
}
# Sender-side (content refused by the receiving server) under each policy. err_spam_removed and
# err_spam_skipped are UniSender's own campaign block, not a receiving server's: never emitted.
# docs/mapping.md: a content rejection (scope content) is never invalid, `sender_rejection: invalid` included.
SENDER_SIDE_UNISENDER = {
    ("err_spam_rejected", "documented"): SOFT,
    ("err_spam_rejected", "invalid"): SOFT,
    ("err_spam_rejected", "soft_bounce"): SOFT,
    ("err_spam_may_retry", "documented"): SOFT,
    ("err_spam_may_retry", "invalid"): SOFT,
    ("err_spam_may_retry", "soft_bounce"): SOFT,
    ("err_spam_removed", "documented"): None,
    ("err_spam_removed", "invalid"): None,
    ("err_spam_removed", "soft_bounce"): None,
    ("err_spam_skipped", "documented"): None,
    ("err_spam_skipped", "invalid"): None,
    ("err_spam_skipped", "soft_bounce"): None,
}

UNI_ID = "8219732882"


def uni_poll(status: str, policy: EventType | None = None) -> Observation:
    """checkEmail for one id (PROVIDERS.md 4.3 shape)."""
    body = json.dumps({"result": {"statuses": [{"id": UNI_ID, "status": status}]}, "failed_email_id": []}).encode()
    page = get_module(Provider.UNISENDER).parse_poll_response(
        acct(Provider.UNISENDER, policy), PollQuery(email_ids=(UNI_ID,)), 200, {"content-type": "application/json"},
        body, NOW, recipients={UNI_ID: "bob@example.com"})
    return only(page.observations)


def uni_webhook(status: str, policy: EventType | None = None) -> Observation:
    """The batched email_status event (PROVIDERS.md 4.5, the 2017 sample's shape)."""
    body = json.dumps({"auth": "0" * 32, "events_by_user": [{"login": "demo", "events": [
        {"event_name": "email_status", "event_time": "2017-06-19 10:38:22",
         "event_data": {"email": "bob@example.com", "status": status, "status_group": "g1",
                        "email_id": 11411542313}}]}]}).encode()
    return only(webhook(Provider.UNISENDER, body, "application/json", policy))


@pytest.mark.parametrize("status", list(UNISENDER_STATUSES))
def test_unisender_poll_status(status) -> None:
    type_, reason, final = UNISENDER_STATUSES[status]
    obs = uni_poll(status)
    if type_ is None:
        assert (obs.type, obs.provider_status, obs.provider_sub_status, obs.final) == (None, status, None, final)
    else:
        assert summary(obs) == (type_, reason, status, None, final)


@pytest.mark.parametrize("status", list(UNISENDER_STATUSES))
def test_unisender_webhook_status(status) -> None:
    type_, reason, final = UNISENDER_STATUSES[status]
    obs = uni_webhook(status)
    if type_ is None:
        assert (obs.type, obs.provider_status, obs.provider_sub_status, obs.final) == (None, status, "g1", final)
    else:
        assert summary(obs) == (type_, reason, status, "g1", final)


@pytest.mark.parametrize(("status", "policy"), sorted(SENDER_SIDE_UNISENDER))
@pytest.mark.parametrize("channel", ["poll", "webhook"])
def test_unisender_sender_side_under_each_policy(channel, status, policy) -> None:
    obs = (uni_poll if channel == "poll" else uni_webhook)(status, POLICIES[policy])
    assert obs.type is SENDER_SIDE_UNISENDER[(status, policy)]
    assert obs.final is UNISENDER_STATUSES[status][2]
    if obs.type is not None:
        assert obs.reason is R.SPAM_REJECTED


@pytest.mark.parametrize("status", sorted(set(UNISENDER_STATUSES) - {"err_spam_rejected", "err_spam_may_retry"}))
@pytest.mark.parametrize("policy", ["invalid", "soft_bounce"])
def test_unisender_other_statuses_ignore_the_policy(policy, status) -> None:
    type_, _, final = UNISENDER_STATUSES[status]
    obs = uni_poll(status, POLICIES[policy])
    assert (obs.type, obs.final) == (type_, final)


# =================================================================================================
# Tencent Cloud SES: PROVIDERS.md 5.3 (SendStatus, DeliverStatus) and 5.6 (webhook events)
# =================================================================================================

TC_MESSAGE_ID = "qcloudses-30-4123414323-date-20210101094334-syNARhMTbKI1"


def tc_poll_all(send_status: int, deliver_status: int = 0, message: str = "", policy: EventType | None = None,
                unsubscribed: bool = False, complained: bool = False) -> list[Observation]:
    row = {"MessageId": TC_MESSAGE_ID, "ToEmailAddress": "bob@example.com", "FromEmailAddress": "n@example.com",
           "SendStatus": send_status, "DeliverStatus": deliver_status, "DeliverMessage": message,
           "RequestTime": 1609831698, "DeliverTime": 1609831699, "UserOpened": True, "UserClicked": True,
           "UserUnsubscribed": unsubscribed, "UserComplainted": complained}
    body = json.dumps({"Response": {"EmailStatusList": [row], "RequestId": "r"}}).encode()
    page = get_module(Provider.TENCENT_SES).parse_poll_response(
        acct(Provider.TENCENT_SES, policy), PollQuery(limit=100), 200, {"content-type": "application/json"}, body, NOW)
    return list(page.observations)


def tc_poll(send_status: int, deliver_status: int = 0, message: str = "", policy: EventType | None = None) -> Observation:
    return only(tc_poll_all(send_status, deliver_status, message, policy))


# PROVIDERS.md 5.3 SendStatus table (DeliverStatus 0). None type: not emitted. Every non-zero code
# is Tencent's own final verdict on the letter except 2001 "no record found" (it may still appear).
TENCENT_SEND_STATUSES = {
    1001: (None, None, True), 1002: (None, None, True), 1003: (None, None, True),   # other(provider_error)
    1005: (None, None, True), 1009: (None, None, True),
    1004: (SOFT, R.SERVER_UNREACHABLE, True),  # sending timed out
    1006: (SOFT, R.DEFERRED, True),            # frequency control for this address
    1007: (INVALID, R.SUPPRESSED, True),       # address on Tencent's blocklist: not sent (scope provider)
    1008: (None, None, True),                  # other(sender_rejected): sender-side, see below
    1010: (None, None, True),                  # other(quota)
    1011: (None, None, True),                  # other(config)
    1013: (UNSUBSCRIBED, R.UNSUBSCRIBED, True),  # other(unsubscribed) for this sender
    2001: (None, None, False),                 # other(unknown): no record found (yet)
    3007: (None, None, True), 3009: (None, None, True), 3010: (None, None, True),  # other(config)
    3014: (None, None, True),
    3008: (SOFT, R.SENDER_REJECTED, True),     # sender domain temporarily blocked (scope sender)
    3020: (INVALID, R.SUPPRESSED, True),       # recipient mailbox type blocklisted by Tencent (provider)
    3024: (INVALID, R.BAD_ADDRESS, True),      # address format pre-check failed
    3030: (SOFT, R.SUPPRESSED, True),          # account paused for its bounce rate: not sent (provider)
    3033: (None, None, True),                  # other(quota)
    4242: (None, None, False),                 # not in the SDK list: not emitted, keep asking
}


@pytest.mark.parametrize("send_status", sorted(TENCENT_SEND_STATUSES))
def test_tencent_poll_send_status(send_status) -> None:
    type_, reason, final = TENCENT_SEND_STATUSES[send_status]
    obs = tc_poll(send_status)
    if type_ is None:
        assert (obs.type, obs.provider_status, obs.provider_sub_status, obs.final) == (None, str(send_status), "0", final)
    else:
        assert summary(obs) == (type_, reason, str(send_status), "0", final)


@pytest.mark.parametrize(("policy", "expected"), [("documented", None), ("invalid", SOFT), ("soft_bounce", SOFT)])
def test_tencent_poll_send_status_1008_under_each_policy(policy, expected) -> None:
    # PROVIDERS.md 5.3: 1008 "sender domain rejected by the recipient" -> other(sender_rejected):
    # not emitted by default; either explicit policy emits it, as a soft bounce (docs/mapping.md: a sender
    # rejection never makes the address invalid, scope sender).
    obs = tc_poll(1008, policy=POLICIES[policy])
    assert (obs.type, obs.provider_status, obs.final) == (expected, "1008", True)
    if expected is not None:
        assert obs.reason is R.SENDER_REJECTED


@pytest.mark.parametrize("send_status", sorted(set(TENCENT_SEND_STATUSES) - {1008}))
@pytest.mark.parametrize("policy", ["invalid", "soft_bounce"])
def test_tencent_poll_other_send_statuses_ignore_the_policy(policy, send_status) -> None:
    type_, _, final = TENCENT_SEND_STATUSES[send_status]
    obs = tc_poll(send_status, policy=POLICIES[policy])
    assert (obs.type, obs.final) == (type_, final)


# PROVIDERS.md 5.3 DeliverStatus table (SendStatus 0), as docs/mapping.md reads it. 2 (dropped): Tencent
# did not send, a final soft bounce of scope provider whatever the text says. 3: the invalid class
# with scope unknown, invalid only when an RFC 3463 code says recipient or domain (X.1.1 bad
# mailbox, X.1.2 bad system, X.2.2 full), else a final soft bounce (reason other). 8: Tencent
# retries; SMTP evidence refines the reason (X.4.2 bad connection: server_unreachable).
TENCENT_DELIVER_STATUSES = [
    (0, "", (None, None, False)),                                           # other(pending)
    (1, "", (DELIVERED, None, True)),
    (2, "", (SOFT, R.SUPPRESSED, True)),                                    # dropped: never invalid
    (2, "550 5.1.1 recipient is not exist", (SOFT, R.SUPPRESSED, True)),     # scope provider: text ignored
    (3, "", (SOFT, R.OTHER, True)),                                         # no evidence: not invalid
    (3, "550 5.1.1 recipient is not exist", (INVALID, R.UNKNOWN_USER, True)),
    (3, "550 5.1.2 domain not found", (INVALID, R.DOMAIN_INVALID, True)),
    (3, "552 5.2.2 mailbox full", (SOFT, R.MAILBOX_FULL, True)),          # full: temporary (rule 4), never invalid
    (8, "", (SOFT, R.DEFERRED, False)),                                     # delayed, Tencent retries
    (8, "421 4.4.2 connection timed out", (SOFT, R.SERVER_UNREACHABLE, False)),
    (5, "", (None, None, False)),                                           # not in the SDK list
]


@pytest.mark.parametrize(("deliver_status", "message", "expected"), TENCENT_DELIVER_STATUSES,
                         ids=[f"{d}-{m[:9] or 'none'}" for d, m, _ in TENCENT_DELIVER_STATUSES])
def test_tencent_poll_deliver_status(deliver_status, message, expected) -> None:
    type_, reason, final = expected
    obs = tc_poll(0, deliver_status, message)
    if type_ is None:
        assert (obs.type, obs.provider_status, obs.provider_sub_status, obs.final) == (None, "0", str(deliver_status), final)
    else:
        assert summary(obs) == (type_, reason, "0", str(deliver_status), final)


def test_tencent_poll_dropped_is_a_final_soft_bounce_whatever_its_text() -> None:
    # docs/mapping.md: DeliverStatus 2 (dropped) is Tencent not sending: soft_bounce, suppressed, scope
    # provider, final; its SMTP text (here 5.3.4, message too big) changes nothing.
    obs = tc_poll(0, 2, "552 5.3.4 message size exceeds fixed maximum message size")
    assert (obs.type, obs.reason, obs.scope, obs.final) == (SOFT, R.SUPPRESSED, Scope.PROVIDER, True)


# X.7.1 (RFC 3463: delivery not authorized) is evidence of the receiving side's policy (docs/mapping.md
# SMTP table: policy_rejected, scope policy), never about the address: no `invalid` from it, and
# the account's `sender_rejection` policy plays no part (it is not a sender-side table row).
# A drop ignores the text (scope provider); a deferral stays a retrying soft bounce.
X7 = "550 5.7.1 message rejected by policy"
X7_SOFT = "451 4.7.1 greylisted, try again later"
TENCENT_POLL_X7 = {
    (2, X7, "documented"): (SOFT, R.SUPPRESSED, True),
    (2, X7, "invalid"): (SOFT, R.SUPPRESSED, True),
    (2, X7, "soft_bounce"): (SOFT, R.SUPPRESSED, True),
    (3, X7, "documented"): (SOFT, R.POLICY_REJECTED, True),
    (3, X7, "invalid"): (SOFT, R.POLICY_REJECTED, True),
    (3, X7, "soft_bounce"): (SOFT, R.POLICY_REJECTED, True),
    (8, X7_SOFT, "documented"): (SOFT, R.POLICY_REJECTED, False),
    (8, X7_SOFT, "invalid"): (SOFT, R.POLICY_REJECTED, False),
    (8, X7_SOFT, "soft_bounce"): (SOFT, R.POLICY_REJECTED, False),
}


@pytest.mark.parametrize(("deliver_status", "message", "policy"), sorted(TENCENT_POLL_X7))
def test_tencent_poll_x7_under_each_policy(deliver_status, message, policy) -> None:
    type_, reason, final = TENCENT_POLL_X7[(deliver_status, message, policy)]
    obs = tc_poll(0, deliver_status, message, POLICIES[policy])
    assert summary(obs) == (type_, reason, "0", str(deliver_status), final)


@pytest.mark.parametrize(("deliver_status", "expected"), [(2, (SOFT, R.SUPPRESSED)), (3, (INVALID, R.UNKNOWN_USER))])
@pytest.mark.parametrize("policy", ["invalid", "soft_bounce"])
def test_tencent_poll_address_reasons_ignore_the_policy(policy, deliver_status, expected) -> None:
    # A drop stays a soft bounce of scope provider (docs/mapping.md); a refusal with X.1.1 is invalid.
    obs = tc_poll(0, deliver_status, "550 5.1.1 recipient is not exist", POLICIES[policy])
    assert (obs.type, obs.reason) == expected


def test_tencent_poll_engagement_flags_add_unsubscribed_and_complaint() -> None:
    # PROVIDERS.md 5.3: UserUnsubscribed / UserComplainted add other(unsubscribed) / other(complaint);
    # UserOpened / UserClicked (both true in the row) add nothing.
    observations = tc_poll_all(0, 1, unsubscribed=True, complained=True)
    assert [(o.type, o.reason, o.final) for o in observations] == [
        (DELIVERED, None, True), (UNSUBSCRIBED, R.UNSUBSCRIBED, True), (COMPLAINT, None, True)]


def tc_webhook(fields: dict, policy: EventType | None = None) -> list[Observation]:
    record = {"email": "bob@example.com", "bulkId": TC_MESSAGE_ID, "timestamp": 1654064683,
              "username": "1250000000", "from": "n@example.com", "fromDomain": "example.com", **fields}
    return webhook(Provider.TENCENT_SES, json.dumps(record).encode(), "application/json", policy)


# PROVIDERS.md 5.6 event table (bounce rows below). None type: not emitted.
TENCENT_EVENTS = {
    "processed": (None, None, False),           # other(pending), older doc
    "delivering": (None, None, False),          # seed 004's name for the same
    "deferred": (SOFT, R.DEFERRED, False),      # "soft_bounce (non-final)"
    "delivered": (DELIVERED, None, True),
    "dropped": (SOFT, R.SUPPRESSED, True),      # Tencent did not send: never invalid (docs/mapping.md)
    "open": (None, None, False),                # other(opened)
    "click": (None, None, False),               # other(clicked)
    "spamreport": (COMPLAINT, None, True),      # other(complaint)
    "unsubscribe": (UNSUBSCRIBED, R.UNSUBSCRIBED, True),  # other(unsubscribed)
    "a_future_event": (None, None, False),      # not documented: not emitted
}


@pytest.mark.parametrize("event", list(TENCENT_EVENTS))
def test_tencent_webhook_event(event) -> None:
    type_, reason, final = TENCENT_EVENTS[event]
    if type_ is None:   # no status: nothing observed, so the receiver ignores it (as an open elsewhere)
        assert tc_webhook({"event": event}) == []
    else:
        assert summary(only(tc_webhook({"event": event}))) == (type_, reason, event, None, final)


# A dropped event follows the same rule as DeliverStatus 2 (docs/mapping.md): Tencent did not send, so
# whatever the reason text says (an address code included: it is older evidence, not this send's),
# a final soft bounce, reason suppressed, scope provider. Never invalid.
TENCENT_DROPPED_REASONS = [
    "550 5.1.1 user unknown",
    "550 5.2.1 mailbox disabled",
    "552 5.3.4 message too big",
    "554 5.4.4 unable to route",
    "554 5.6.0 content rejected",
]


@pytest.mark.parametrize("reason", TENCENT_DROPPED_REASONS)
def test_tencent_dropped_is_a_provider_soft_bounce_whatever_the_reason(reason) -> None:
    expected = (SOFT, R.SUPPRESSED, Scope.PROVIDER, True)
    obs = only(tc_webhook({"event": "dropped", "reason": reason}))
    assert (obs.type, obs.reason, obs.scope, obs.final) == expected
    poll = tc_poll(0, 2, reason)
    assert (poll.type, poll.reason, poll.scope, poll.final) == expected


# PROVIDERS.md 5.6: bounce + bounceType (2021 doc: soft / hard). docs/mapping.md: a hard bounce is the
# invalid class with scope unknown: without SMTP evidence (none here) a final soft bounce, reason
# other. A bounce is the ESP's answer after Tencent's attempts: final, soft ones included.
TENCENT_BOUNCE_TYPES = {
    "hard_bounce": (SOFT, R.OTHER, True),
    "hard": (SOFT, R.OTHER, True),
    "soft_bounce": (SOFT, R.OTHER, True),
    "soft": (SOFT, R.OTHER, True),
}


@pytest.mark.parametrize("bounce_type", list(TENCENT_BOUNCE_TYPES))
def test_tencent_webhook_bounce_type(bounce_type) -> None:
    type_, reason, final = TENCENT_BOUNCE_TYPES[bounce_type]
    assert summary(only(tc_webhook({"event": "bounce", "bounceType": bounce_type}))) == (
        type_, reason, "bounce", bounce_type, final)


# RFC 3463 subject.detail read into the reason of a hard bounce (X.1.10: null MX, RFC 7505).
TENCENT_HARD_BOUNCE_SMTP = {
    "550 5.1.1 recipient is not exist": R.UNKNOWN_USER,
    "550 5.1.2 bad destination system": R.DOMAIN_INVALID,
    "556 5.1.10 recipient domain has a null MX": R.DOMAIN_INVALID,
    "553 5.1.3 bad destination mailbox address syntax": R.BAD_ADDRESS,
    "550 5.2.1 mailbox disabled": R.MAILBOX_DISABLED,
}


@pytest.mark.parametrize("reason_text", list(TENCENT_HARD_BOUNCE_SMTP))
def test_tencent_webhook_hard_bounce_reason_from_enhanced_code(reason_text) -> None:
    obs = only(tc_webhook({"event": "bounce", "bounceType": "hard_bounce", "reason": reason_text}))
    assert (obs.type, obs.reason, obs.final) == (INVALID, TENCENT_HARD_BOUNCE_SMTP[reason_text], True)


@pytest.mark.parametrize("reason_text", ["552 5.2.2 mailbox full", "452 4.2.2 over quota", "550 mailbox is full",
                                         "421 4.4.1 no answer from host"])
def test_tencent_webhook_hard_bounce_that_is_temporary_is_a_final_soft_bounce(reason_text) -> None:
    """A full mailbox (X.2.2, or the words) or a class-4 reply is not an address gone for good
    (docs/consumers.md: `invalid`), whatever bounceType says: a final soft bounce."""
    obs = only(tc_webhook({"event": "bounce", "bounceType": "hard_bounce", "reason": reason_text}))
    expected = R.SERVER_UNREACHABLE if "4.4.1" in reason_text else R.MAILBOX_FULL
    assert (obs.type, obs.reason, obs.final) == (SOFT, expected, True)


TENCENT_WEBHOOK_X7 = {
    # (fields, policy) -> expected (type, reason, final). X.7.1 is policy evidence (docs/mapping.md): it
    # sets the reason of every row but a drop (scope provider), never yields invalid, and the
    # account's policy does not apply. Bounces are final; a deferral is Tencent retrying.
    ("dropped", "", "documented"): (SOFT, R.SUPPRESSED, True),
    ("dropped", "", "invalid"): (SOFT, R.SUPPRESSED, True),
    ("dropped", "", "soft_bounce"): (SOFT, R.SUPPRESSED, True),
    ("bounce", "hard_bounce", "documented"): (SOFT, R.POLICY_REJECTED, True),
    ("bounce", "hard_bounce", "invalid"): (SOFT, R.POLICY_REJECTED, True),
    ("bounce", "hard_bounce", "soft_bounce"): (SOFT, R.POLICY_REJECTED, True),
    ("bounce", "soft_bounce", "documented"): (SOFT, R.POLICY_REJECTED, True),
    ("bounce", "soft_bounce", "invalid"): (SOFT, R.POLICY_REJECTED, True),
    ("bounce", "soft_bounce", "soft_bounce"): (SOFT, R.POLICY_REJECTED, True),
    ("deferred", "", "documented"): (SOFT, R.POLICY_REJECTED, False),
    ("deferred", "", "invalid"): (SOFT, R.POLICY_REJECTED, False),
    ("deferred", "", "soft_bounce"): (SOFT, R.POLICY_REJECTED, False),
}


@pytest.mark.parametrize(("event", "bounce_type", "policy"), sorted(TENCENT_WEBHOOK_X7))
def test_tencent_webhook_x7_under_each_policy(event, bounce_type, policy) -> None:
    type_, reason, final = TENCENT_WEBHOOK_X7[(event, bounce_type, policy)]
    fields = {"event": event, "reason": X7 if event != "deferred" and bounce_type != "soft_bounce" else X7_SOFT}
    if bounce_type:
        fields["bounceType"] = bounce_type
    obs = only(tc_webhook(fields, POLICIES[policy]))
    assert (obs.type, obs.reason, obs.final) == (type_, reason, final)


@pytest.mark.parametrize("event", ["delivered", "spamreport", "unsubscribe", "deferred"])
@pytest.mark.parametrize("policy", ["invalid", "soft_bounce"])
def test_tencent_webhook_non_sender_events_ignore_the_policy(policy, event) -> None:
    type_, reason, final = TENCENT_EVENTS[event]
    obs = only(tc_webhook({"event": event}, POLICIES[policy]))
    assert (obs.type, obs.reason, obs.final) == (type_, reason, final)


# PROVIDERS.md 5.6 `eventid` (2025): 1 delivered, 2 dropped, 3 bounce, 4 open, 5 click,
# 6 spamreport, 7 unsubscribe, 8 deferred; used when `event` is absent.
TENCENT_EVENT_IDS = {
    1: ("delivered", DELIVERED),
    2: ("dropped", SOFT),         # never invalid (docs/mapping.md)
    3: ("bounce", SOFT),          # bounceType hard_bounce (below), no SMTP evidence: soft bounce
    4: ("open", None),
    5: ("click", None),
    6: ("spamreport", COMPLAINT),
    7: ("unsubscribe", UNSUBSCRIBED),
    8: ("deferred", SOFT),
}


@pytest.mark.parametrize("eventid", sorted(TENCENT_EVENT_IDS))
def test_tencent_webhook_eventid_without_event(eventid) -> None:
    name, type_ = TENCENT_EVENT_IDS[eventid]
    fields: dict[str, Any] = {"eventid": eventid}
    if name == "bounce":
        fields["bounceType"] = "hard_bounce"
    if type_ is None:
        assert tc_webhook(fields) == []
        return
    obs = only(tc_webhook(fields))
    assert (obs.type, obs.provider_status) == (type_, name)


def test_tencent_webhook_eventid_as_digits_and_unknown() -> None:
    assert only(tc_webhook({"eventid": "1"})).type is DELIVERED
    assert tc_webhook({"eventid": 99}) == []


def test_tencent_webhook_bounce_without_a_known_type_goes_by_the_reply_class() -> None:
    # Not in PROVIDERS.md; the code comments it: 5xx permanent (the hard class, so SMTP evidence
    # about the recipient makes it invalid), else soft (no suppression on a guess).
    assert only(tc_webhook({"event": "bounce", "reason": "550 5.1.1 user unknown"})).type is INVALID
    assert only(tc_webhook({"event": "bounce", "reason": "451 4.2.0 try later"})).type is SOFT
    assert only(tc_webhook({"event": "bounce"})).type is SOFT
