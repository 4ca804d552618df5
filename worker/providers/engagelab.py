"""EngageLab Email: GET /v1/email_status and JSON webhooks signed in X-WebHook-* headers.

Facts and sources: PROVIDERS.md section 1, seed 000. EngageLab descends from SendCloud: the
sub-status table, the status filter codes and the id shape come from _sendcloud_family.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from worker.errors import BadSignature, FatalConfig, MalformedPayload, PollError, Retriable
from worker.model import EventType, Observation, Provider
from worker.providers import _sendcloud_family as family
from worker.providers._answers import read_answer, read_rows
from worker.providers.base import (
    CHINA_TZ,
    URL_CHECK,
    AccountContext,
    HttpRequest,
    Option,
    PollPage,
    PollQuery,
    ProviderDefaults,
    WebhookRequest,
    as_int,
    as_text,
    epoch_time,
    load_json,
    offset_time,
)

NAME = Provider.ENGAGELAB

DEFAULTS = ProviderDefaults(
    base_url="https://email.api.engagelab.cc",   # Singapore; Turkey: https://emailapi-tr.engagelab.com
    quota_per_minute=60,
    cache_ttl_secs=600,
    # The day `send_date` means is undocumented; record times carry +0800, so China time is
    # assumed (PROVIDERS.md 1.3). The scheduler's sweep of yesterday covers a wrong guess.
    tz=CHINA_TZ,
    retention_days=30,                           # undocumented; the SendCloud lineage's 30 days
    page_limit=100,
    polling="date",
    status_filters=(EventType.INVALID, EventType.SOFT_BOUNCE, EventType.DELIVERED),
    max_window_days=1,                           # one send_date per query
    id_batch=family.ID_BATCH,                    # `email_ids` per call: no documented maximum
)

OPTIONS: dict[str, Option] = {
    "signature": Option(
        default="any",
        choices=("any", "md5", "hmac"),
        doc="webhook signature scheme: md5(timestamp+appkey+secret) as seen in production, "
        "HMAC-SHA256(secret, timestamp) as the payload page says, or either",
    ),
}

CREDENTIALS = family.CREDENTIALS

# `status` of the status API (seed 000). 18 is still sending.
STATUSES: dict[int, EventType | None] = {
    1: EventType.DELIVERED,
    4: EventType.INVALID,
    5: EventType.SOFT_BOUNCE,
    18: None,
}

# Webhook events: `status.message_status` of status callbacks and `response.event` of engagement
# callbacks (the second envelope is unverified, PROVIDERS.md 1.5). Unknown ones are dead-lettered.
EVENTS: dict[str, EventType | None] = {
    "target": None,                  # request accepted
    "sent": None,                    # left EngageLab, not yet accepted by the mailbox
    "delivered": EventType.DELIVERED,
    "invalid_email": EventType.INVALID,
    "soft_bounce": EventType.SOFT_BOUNCE,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "report_spam": EventType.COMPLAINT,
    "open": None,
    "click": None,
    "route": None,                   # inbound mail
}

# The sub-status field of invalid/soft-bounce callbacks is unverified: the SendCloud lineage
# suggests `sub_stat`, the status API says `sub_status`, SendCloud webhooks say `substat` (and a
# production SendCloud receiver binds `subStat`, issue 13): every spelling is read.
SUB_STATUS_FIELDS = ("sub_stat", "sub_status", "substat", "subStat", "subStatus")
SUB_STATUS_DESC_FIELDS = ("sub_stat_desc", "sub_status_desc", "substatdesc", "subStatDesc", "subStatusDesc")


def build_poll_request(acct: AccountContext, query: PollQuery, now: datetime) -> HttpRequest:
    api_user, api_key = family.require_credentials(acct)
    offset, limit = family.paging(query, DEFAULTS)
    params = [
        ("send_date", family.send_day(query, now, DEFAULTS.tz).isoformat()),
        ("offset", offset),
        ("limit", limit),
        *family.status_filter(query.status),
        *family.id_filter("email_ids", query, DEFAULTS),
    ]
    token = base64.b64encode(f"{api_user}:{api_key}".encode()).decode("ascii")
    return HttpRequest(
        "GET",
        f"{(acct.base_url or DEFAULTS.base_url).rstrip('/')}/v1/email_status",
        params=tuple(params),
        headers=(("Authorization", f"Basic {token}"),),
    )


# Error codes of EngageLab's envelope `{"code": ..., "message": ...}` (doc: address-list).
AUTH_FAILED = 30000


def parse_poll_response(
    acct: AccountContext,
    query: PollQuery,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> PollPage:
    """One page of email_status; a row that cannot be read is rejected alone (worker.providers._rows)."""
    envelope = read_answer(status, headers, body, now, _error_of)
    what = "engagelab: email_status response"
    if not (isinstance(envelope, dict) and "result" in envelope):
        raise Retriable(f"{what} is not the documented JSON")
    records = envelope["result"]
    if not isinstance(records, list):
        raise Retriable(f"{what}: result is not a list")
    # `{"result": [...], "total": "48675", "count": 1}` (PROVIDERS.md 1.3): an empty day is
    # `"result": []`, with or without a total; without one, a full page means ask for the next.
    total = family.optional_total(envelope, what)
    observations, rejected = read_rows(records, lambda record: [_poll_observation(acct, record)])
    rows = len(records)
    next_offset = family.next_offset(query.offset, rows, total, family.page_size(query, DEFAULTS))
    return PollPage(observations, rows, next_offset, total, rejected=rejected)


def _error_of(envelope: Any) -> PollError | None:
    """Only the authentication failure is documented; other codes go by the HTTP status."""
    if isinstance(envelope, dict) and as_int(envelope.get("code")) == AUTH_FAILED:
        return FatalConfig(f"code {AUTH_FAILED}: authentication failed")
    return None


def _poll_observation(acct: AccountContext, record: Any) -> Observation:
    request_time = record.get("request_time")
    code = as_int(record.get("status"))
    email_id = family.required_text(record, "email_id")
    # The seed's own row has `"email": ""`; the id ends in `$<recipient>` (PROVIDERS.md 1.1), as
    # the webhook reads it too. A row with neither cannot say whom it is about.
    recipient = family.first_text(record, ("email",)) or email_id.partition("$")[2]
    if not recipient:
        raise KeyError("email")
    return family.observation(
        acct,
        email_id=email_id,
        recipient=recipient,
        base=STATUSES.get(code) if code is not None else None,
        sub_status=record.get("sub_status"),
        known=code in STATUSES,
        occurred_at=_row_time(record.get("update_time") or request_time),
        provider_status=family.required_text(record, "status"),
        message=family.first_text(record, ("response_message", "sub_status_desc")),
        record=record,
        sent_at=_row_time(request_time) if request_time else None,
    )


def _row_time(value: Any) -> datetime:
    """A row's time: ISO 8601 with an offset, as the email_status page shows (`2022-11-10T15:39:01+0800`),
    or without one in the API's zone, UTC+8, as its general-rules page shows a list answer's times
    (`"create_time": "2022-11-14 14:27:48"`). TypeError or ValueError when it is neither."""
    try:
        return offset_time(value)
    except ValueError:
        naive = datetime.fromisoformat(value)   # not ISO 8601 at all: its own ValueError
        if naive.tzinfo is not None:            # an offset, but an implausible time
            raise
        return offset_time(naive.replace(tzinfo=DEFAULTS.tz).isoformat())


# -- webhooks -----------------------------------------------------------------------------------


def _itime(body: bytes) -> Any:
    data = load_json(body)
    return data.get("itime") if isinstance(data, dict) else None


def _candidates(
    req: WebhookRequest, keys: Sequence[str], scheme: str, timestamp: str
) -> Iterator[tuple[str, str, Any]]:
    """(variant, expected signature, the time it signs) for every documented scheme and key."""
    appkey = req.headers.get("x-webhook-appkey")
    if scheme in ("any", "md5") and appkey is not None:
        for key in keys:
            yield "md5", hashlib.md5(family.as_received(timestamp + appkey + key)).hexdigest(), timestamp
    if scheme in ("any", "hmac"):
        for key in keys:
            yield "hmac-sha256", family.hmac_sha256(key, timestamp), timestamp
        # The zh payload page calls the signed timestamp `itime`: the body's copy of it.
        itime = as_text(_itime(req.body))
        if itime is not None and itime != timestamp:
            for key in keys:
                yield "hmac-sha256", family.hmac_sha256(key, itime), itime


def _legacy_candidates(req: WebhookRequest, keys: Sequence[str]) -> Iterator[tuple[str, str, Any]]:
    """The older zh_CN payload page's scheme: one `Authorization` header holding the hex
    HMAC-SHA256 of the body's `itime`, keyed with the app key (tests/fixtures/PUBLIC_SOURCES.md)."""
    itime = as_text(_itime(req.body))
    if itime is not None:
        for key in keys:
            yield "hmac-sha256-authorization", family.hmac_sha256(key, itime), itime


def _signature(req: WebhookRequest) -> str | None:
    """The signature a callback carries: X-WebHook-Signature, or the older page's `Authorization`
    header when no X-WebHook-* header came."""
    if "x-webhook-signature" in req.headers or "x-webhook-timestamp" in req.headers:
        return req.headers.get("x-webhook-signature")
    return req.headers.get("authorization")


def verify_webhook(acct: AccountContext, req: WebhookRequest, now: datetime, replay_window_secs: float) -> str:
    """Check X-WebHook-Signature; the docs disagree on the scheme, so by default accept both
    (the account's `signature` option narrows it). A callback without X-WebHook-* headers may be
    signed the older page's way, in `Authorization` (an HMAC scheme)."""
    keys = acct.webhook_keys
    signature_scheme = acct.option(OPTIONS, "signature")
    timestamp = req.headers.get("x-webhook-timestamp")
    signature = _signature(req)
    legacy = timestamp is None and "x-webhook-signature" not in req.headers
    if not signature and not timestamp and req.body.strip() in (b"", b"{}"):
        # an unsigned empty POST: the console's test of a new URL, as EngageLab's SMS callbacks are
        # tested (a `{}` that must get 200); nothing in it to write
        return URL_CHECK
    if not signature or not (timestamp or legacy):
        raise BadSignature("X-WebHook-Timestamp or X-WebHook-Signature missing")
    if not keys:
        raise BadSignature("no webhook key configured")
    if legacy:
        if signature_scheme == "md5":
            raise BadSignature("an Authorization-header signature is HMAC; the account accepts md5 only")
        candidates = _legacy_candidates(req, keys)
    else:
        assert timestamp is not None
        candidates = _candidates(req, keys, signature_scheme, timestamp)
    match = family.first_match(candidates, signature)
    if match is None:
        raise BadSignature("signature does not match any key or scheme")
    variant, signed_at = match
    family.check_fresh(signed_at, now, replay_window_secs)
    return variant


def split_webhook(req: WebhookRequest) -> list[dict[str, Any]]:
    """One callback per body; a JSON array of callbacks is accepted too. In an array, only that each
    is an object is checked here: each callback is read by `webhook_observations`, which the
    receiver runs per record, so one of an unknown shape is dead-lettered alone, not with its
    neighbours. A lone callback of an unknown shape is the whole body's dead letter (its bytes and
    signed headers kept for a replay)."""
    data = load_json(req.body)
    if isinstance(data, dict):
        if _envelope(data) is None:
            raise MalformedPayload("engagelab: webhook body is neither a status nor a response callback")
        return [data]
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise MalformedPayload("engagelab: webhook body is not a JSON object or an array of them")
    return data


def _envelope(record: dict[str, Any]) -> tuple[Any, Any] | None:
    """(event, data) of a callback: `status.message_status` + `status_data` (status callbacks),
    `response.event` + `response_data` (engagement), or, as some public receivers read them, the
    same without the wrapping object: a top-level `message_status` with `status_data` beside it, a
    top-level `event` with `response_data` beside it or the ids on the record itself (issue 13:
    every shape accepted; tests/fixtures/PUBLIC_SOURCES.md). None when it is none of these."""
    status, response = record.get("status"), record.get("response")
    if isinstance(status, dict):
        return status.get("message_status"), status.get("status_data")
    if isinstance(record.get("message_status"), str):
        # A status callback without its `status` object; a public receiver's test callbacks of this
        # shape carry the ids beside `status_data`, not in it: both are read.
        data = record.get("status_data")
        return record["message_status"], {**record, **data} if isinstance(data, dict) else record
    if isinstance(response, dict):
        return response.get("event"), response.get("response_data")
    if isinstance(record.get("event"), str):
        data = record.get("response_data")
        return record["event"], data if isinstance(data, dict) else record
    return None


def webhook_observations(acct: AccountContext, record: dict[str, Any]) -> list[Observation]:
    with family.bad_input_as(MalformedPayload, "engagelab: webhook callback"):
        event, data = _envelope(record) or (None, None)
        if not isinstance(event, str) or event not in EVENTS:
            raise MalformedPayload("engagelab: unknown callback event")
        base = EVENTS[event]
        if base is None:
            return []
        if not isinstance(data, dict):
            raise MalformedPayload("engagelab: callback without status_data/response_data")
        email_id, itime = _identity(record, data)
        if email_id is None:
            raise KeyError("email_id")
        # `to` is documented on the envelope; the id itself ends in `$<recipient>` when it is absent.
        recipient = family.first_text(record, ("to",)) or family.first_text(data, ("to",)) or email_id.partition("$")[2]
        if not recipient:
            raise KeyError("to")
        # A public receiver reads the failure's sub-status and SMTP text from `status.error_detail`,
        # beside `status_data` (issue 13); read there first, then in the data.
        detail = record["status"].get("error_detail") if isinstance(record.get("status"), dict) else None
        detail = detail if isinstance(detail, dict) else {}
        sub_status = None
        if base in family.FAILURES:
            sub_status = family.first_present(detail, SUB_STATUS_FIELDS)
            if sub_status is None:
                sub_status = family.first_present(data, SUB_STATUS_FIELDS)
        message = family.first_text(detail, ("message",)) or family.first_text(data, ("message", *SUB_STATUS_DESC_FIELDS))
        if itime is None:
            raise KeyError("itime")
        return [
            family.observation(
                acct,
                email_id=email_id,
                recipient=recipient,
                base=base,
                sub_status=sub_status,
                occurred_at=epoch_time(itime),
                provider_status=event,
                message=message,
                record=record,
                message_id=family.first_text(record, ("message_id",)),
            )
        ]


def _identity(record: dict[str, Any], data: Any) -> tuple[str | None, Any]:
    """(email id, event time) of a callback: the per-recipient id is `email_id`, which the
    top-level-event shape carries as `message_id`, and a callback may list as `email_ids` (the
    documented shape of `target`; a public receiver reads `email_ids[0]` for any event): one id
    listed alone is that email's; the time is the envelope's `itime`, else the data's `time`."""
    data = data if isinstance(data, dict) else {}
    listed = data.get("email_ids")
    only = listed[0] if isinstance(listed, list) and len(listed) == 1 else None
    email_id = (family.first_text(data, ("email_id",)) or _per_recipient(data.get("message_id"))
                or _per_recipient(only))
    return email_id, record["itime"] if "itime" in record else data.get("time")


def _per_recipient(value: Any) -> str | None:
    """A `message_id` in the per-recipient form `<message id><index>$<recipient>`, else None."""
    return value if isinstance(value, str) and "$" in value else None


def replay_key(req: WebhookRequest, record: dict[str, Any]) -> str | None:
    """EngageLab signs only a timestamp, so one signature covers every callback sent in that
    instant, genuine ones included: the key adds what names one callback (the email, the event and
    its `itime`). A captured request replayed with altered content for that callback (another
    sub-status, another address) is then a replay; a forged callback for another email, event or
    time cannot be told from a genuine one (docs/runbook.md#webhook-security). Callbacks that are
    never emitted (requests, opens, clicks) are not keyed: forging one changes nothing."""
    signature = _signature(req)
    event, data = _envelope(record) or (None, None)
    if not signature or not isinstance(event, str) or EVENTS.get(event) is None:
        return None
    email_id, itime = _identity(record, data)   # what the observation is made of
    return f"{signature.lower()}|{email_id}|{event}|{itime}"
