"""Tencent Cloud SES: `GetSendEmailStatus` polling (TC3-signed) and the unsigned event callback.

PROVIDERS.md section 5. One row per message and recipient, so email_id is
"<MessageId>:<recipient lower-cased>" and message_id the MessageId.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from worker.model import EventType, Observation, Provider, Reason, Smtp, utc
from worker.providers import tc3
from worker.providers.base import (
    CHINA_TZ,
    AccountContext,
    BadRequest,
    FatalConfig,
    HttpRequest,
    MalformedPayload,
    Option,
    PollError,
    PollPage,
    PollQuery,
    ProviderDefaults,
    Retriable,
    SenderSide,
    Throttled,
    WebhookRequest,
    classify_http,
    epoch_to_utc,
    parse_retry_after,
    parse_smtp,
)

NAME = Provider.TENCENT_SES

# Hosts: ses.tencentcloudapi.com (China site, nearest region), ses.intl.tencentcloudapi.com
# (international site), ses.<region>.tencentcloudapi.com (pinned). The international docs say
# GetSendEmailStatus serves only ap-singapore; the China site presumably ap-guangzhou/ap-hongkong
# (unconfirmed). Set base_url and region per account accordingly.
DEFAULTS = ProviderDefaults(
    base_url="https://ses.tencentcloudapi.com",
    quota_per_minute=1200,  # "20 requests per second" for this API (seed 004)
    cache_ttl_secs=0,  # none documented
    # RequestDate's day boundary is undocumented; UTC+8 is presumed (also Singapore's offset).
    tz=CHINA_TZ,
    # The doc text says 30 days, FailedOperation.NotSupportDate says 90: plan for the smaller.
    retention_days=30,
    page_limit=100,  # FailedOperation.InvalidLimit above 100
    polling="date",
    status_filters=(),  # the API has no status filter
    max_window_days=1,  # one RequestDate per call
)
DEFAULT_REGION = "ap-singapore"
SERVICE = "ses"
ACTION = "GetSendEmailStatus"
VERSION = "2020-10-02"
CONTENT_TYPE = "application/json; charset=utf-8"

OPTIONS: dict[str, Option] = {}


# -- mapping tables -----------------------------------------------------------------------------

Entry = tuple[EventType | SenderSide | None, Reason | None, bool]

# SendStatus: Tencent's own processing result (SDK models.py). Non-zero means the letter never
# reached the recipient's server, so every known code is final except "no record (yet)".
SEND_STATUSES: dict[int, Entry] = {
    1001: (None, Reason.PROVIDER_ERROR, True),
    1002: (None, Reason.PROVIDER_ERROR, True),
    1003: (None, Reason.PROVIDER_ERROR, True),
    1005: (None, Reason.PROVIDER_ERROR, True),
    1009: (None, Reason.PROVIDER_ERROR, True),
    1004: (EventType.SOFT_BOUNCE, Reason.SERVER_UNREACHABLE, True),  # sending timed out
    1006: (EventType.SOFT_BOUNCE, Reason.DEFERRED, True),  # frequency control for this address
    1007: (EventType.INVALID, Reason.BLOCKLISTED, True),  # the address is on Tencent's blocklist
    # The recipient's server refused our sender domain: a sender-side rejection. PROVIDERS.md
    # files it as other(sender_rejected), not emitted; an account's sender_rejection may emit it.
    1008: (SenderSide(None), Reason.POLICY_REJECTED, True),
    1010: (None, Reason.OTHER, True),  # daily limit
    1011: (None, Reason.OTHER, True),  # custom content not permitted
    1013: (EventType.UNSUBSCRIBED, Reason.UNSUBSCRIBED, True),  # unsubscribed from this sender domain
    2001: (None, None, False),  # no record found: it may still appear
    3007: (None, Reason.OTHER, True),
    3008: (EventType.SOFT_BOUNCE, Reason.POLICY_REJECTED, True),  # sender domain blocked for a while
    3009: (None, Reason.OTHER, True),
    3010: (None, Reason.OTHER, True),
    3014: (None, Reason.OTHER, True),
    3020: (EventType.INVALID, Reason.BLOCKLISTED, True),  # recipient mailbox type blocklisted
    3024: (EventType.INVALID, Reason.BAD_ADDRESS, True),  # address format pre-check failed
    3030: (EventType.SOFT_BOUNCE, Reason.POLICY_REJECTED, True),  # account paused: high bounce rate
    3033: (None, Reason.OTHER, True),  # balance
}
UNKNOWN_SEND_STATUS: Entry = (None, None, False)

# DeliverStatus, read only when SendStatus is 0 (PROVIDERS.md 5.3 decision order).
DELIVER_STATUSES: dict[int, Entry] = {
    0: (None, None, False),  # queued at Tencent
    1: (EventType.DELIVERED, None, True),
    # Dropped "e.g. blocklisted or invalid"; refined by the SMTP text (see _address_failure).
    2: (EventType.INVALID, Reason.BAD_ADDRESS, True),
    3: (EventType.INVALID, Reason.UNKNOWN_USER, True),  # refused by the ESP, "usually non-existent"
    8: (EventType.SOFT_BOUNCE, Reason.DEFERRED, False),  # the ESP delays; Tencent retries
}
UNKNOWN_DELIVER_STATUS: Entry = (None, None, False)
ADDRESS_FAILURE_DELIVER_STATUSES = frozenset({2, 3})

# Webhook events (doc 39492); `processed` is the older doc's name, `delivering` seed 004's.
EVENTS: dict[str, Entry] = {
    "processed": (None, None, False),
    "delivering": (None, None, False),
    "deferred": (EventType.SOFT_BOUNCE, Reason.DEFERRED, False),
    "delivered": (EventType.DELIVERED, None, True),
    "dropped": (EventType.INVALID, Reason.BAD_ADDRESS, True),
    "open": (None, None, False),
    "click": (None, None, False),
    "spamreport": (EventType.COMPLAINT, None, True),
    "unsubscribe": (EventType.UNSUBSCRIBED, Reason.UNSUBSCRIBED, True),
}
UNKNOWN_EVENT: Entry = (None, None, False)
ADDRESS_FAILURE_EVENTS = frozenset({"dropped"})

# `bounce` splits on bounceType: the 2021 doc says soft/hard, later ones soft_bounce/hard_bounce.
BOUNCE_TYPES: dict[str, Entry] = {
    "hard_bounce": (EventType.INVALID, Reason.BAD_ADDRESS, True),
    "hard": (EventType.INVALID, Reason.BAD_ADDRESS, True),
    "soft_bounce": (EventType.SOFT_BOUNCE, Reason.OTHER, False),
    "soft": (EventType.SOFT_BOUNCE, Reason.OTHER, False),
}
# A bounce without a known bounceType goes by its SMTP reply class (5xx permanent); with none,
# soft: an address is not suppressed on a guess.
UNKNOWN_BOUNCE: Entry = (EventType.SOFT_BOUNCE, Reason.OTHER, False)

# 2025 docs: numeric `eventid`, used when `event` is absent.
EVENT_IDS: dict[int, str] = {
    1: "delivered",
    2: "dropped",
    3: "bounce",
    4: "open",
    5: "click",
    6: "spamreport",
    7: "unsubscribe",
    8: "deferred",
}

# RFC 3463 "subject.detail" of an enhanced code, where it names the cause better than Tencent.
SMTP_REASONS: dict[str, Reason] = {
    "1.1": Reason.UNKNOWN_USER,
    "1.2": Reason.DOMAIN_INVALID,
    "1.10": Reason.DOMAIN_INVALID,  # null MX
    "1.3": Reason.BAD_ADDRESS,
    "2.1": Reason.MAILBOX_DISABLED,
    "2.2": Reason.MAILBOX_FULL,
}


def _resolve(entry: Entry, acct: AccountContext) -> tuple[EventType | None, Reason | None, bool]:
    type_, reason, final = entry
    if isinstance(type_, SenderSide):
        type_ = type_.resolve(acct)
    return type_, reason, final  # type: ignore[return-value]


def _refine(entry: Entry, smtp: Smtp | None, address_failure: bool) -> Entry:
    """Sharpen a failure's reason from its SMTP enhanced code (RFC 3463). An address failure whose
    code is X.7.x (security or policy: IP, domain or content refused) is a sender-side rejection:
    documented as the failure it arrived as, unless the account's policy says otherwise. On a deferral or soft bounce X.7.x is mostly greylisting
    or rate limiting, so it changes nothing there."""
    type_, reason, final = entry
    if type_ not in (EventType.INVALID, EventType.SOFT_BOUNCE) or smtp is None or smtp.enhanced is None:
        return entry
    subject_detail = smtp.enhanced.split(".", 1)[1]
    if subject_detail.startswith("7."):
        return (SenderSide(type_), Reason.POLICY_REJECTED, final) if address_failure else entry
    return type_, SMTP_REASONS.get(subject_detail, reason), final


# -- polling ------------------------------------------------------------------------------------

# Response.Error.Code, by exact code or dotted prefix, first match wins (error docs 39419, 51060).
ERRORS: tuple[tuple[str, type[PollError]], ...] = (
    ("RequestLimitExceeded", Throttled),
    # Our clock is more than 5 minutes off. Retriable, not fatal: NTP fixes it without anyone
    # touching the account, and a fatal stop would not restart by itself.
    ("AuthFailure.SignatureExpire", Retriable),
    ("AuthFailure", FatalConfig),
    ("UnauthorizedOperation", FatalConfig),
    ("OperationDenied", FatalConfig),
    ("IpInBlacklist", FatalConfig),
    ("IpNotInWhitelist", FatalConfig),
    ("UnsupportedRegion", FatalConfig),  # the account's region is wrong
    ("InternalError", Retriable),
    ("ServiceUnavailable", Retriable),
    ("ResourceUnavailable", Retriable),
    ("ResourceInsufficient", Retriable),
    ("FailedOperation.InvalidLimit", BadRequest),
    ("FailedOperation.NotSupportDate", BadRequest),  # the date is too old: a scheduler bug
    ("InvalidParameter", BadRequest),
    ("InvalidParameterValue", BadRequest),  # .WrongDate: a date the API does not take
    ("MissingParameter", BadRequest),
    ("UnknownParameter", BadRequest),
    ("InvalidAction", BadRequest),
    ("ActionOffline", BadRequest),
    ("NoSuchVersion", BadRequest),
    ("NoSuchProduct", BadRequest),
    ("UnsupportedOperation", BadRequest),
    ("UnsupportedProtocol", BadRequest),
    ("RequestSizeLimitExceeded", BadRequest),
    ("ResponseSizeLimitExceeded", BadRequest),
    ("DryRunOperation", BadRequest),
)
# Anything else (FailedOperation, LimitExceeded, codes added later) is retried with backoff: a
# new code should not stop polling, and each occurrence is logged with its error_type.
UNKNOWN_ERROR: type[PollError] = Retriable


def error_class(code: str) -> type[PollError]:
    for prefix, error in ERRORS:
        if code == prefix or code.startswith(prefix + "."):
            return error
    return UNKNOWN_ERROR


def build_poll_request(acct: AccountContext, query: PollQuery, now: datetime) -> HttpRequest:
    """A signed POST of {"RequestDate","Offset","Limit"}; the signed bytes are the bytes sent.

    No send date means today in the provider's zone, as for the other date providers. Query
    mistakes (a status filter, a page over 100) are bugs in the caller: ValueError.
    """
    if not acct.secret_id or not acct.secret_key:
        raise FatalConfig("tencent_ses account lacks secret_id or secret_key")
    send_date = query.send_date or utc(now).astimezone(DEFAULTS.tz).date()
    if query.status is not None:
        raise ValueError("GetSendEmailStatus has no status filter")
    if not 1 <= query.limit <= DEFAULTS.page_limit or query.offset < 0:
        raise ValueError(f"limit must be 1..{DEFAULTS.page_limit} and offset >= 0")
    url = urllib.parse.urlsplit(acct.base_url)
    host = url.netloc
    path = url.path or "/"
    body = orjson.dumps(
        {"RequestDate": send_date.isoformat(), "Offset": query.offset, "Limit": query.limit}
    )
    timestamp = int(utc(now).timestamp())
    signature = tc3.sign(
        secret_id=acct.secret_id,
        secret_key=acct.secret_key,
        host=host,
        payload=body,
        timestamp=timestamp,
        content_type=CONTENT_TYPE,
        service=SERVICE,
        canonical_uri=path,
    )
    return HttpRequest(
        method="POST",
        url=f"{url.scheme}://{host}{path}",
        headers=(
            ("Authorization", signature.authorization),
            ("Content-Type", CONTENT_TYPE),
            ("Host", host),
            ("X-TC-Action", ACTION),
            ("X-TC-Version", VERSION),
            ("X-TC-Timestamp", str(timestamp)),
            ("X-TC-Region", acct.region or DEFAULT_REGION),
        ),
        body=body,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _epoch(value: Any) -> datetime | None:
    """A Unix time field; None for 0 or absent (Tencent writes 0 for "not yet"), ValueError if bad."""
    if value is None or value == 0:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 13:
        value = int(value)
    if _int(value) is None or not 0 < value < 10**13:
        raise ValueError("not a Unix time")
    return epoch_to_utc(value)


def _error_code(doc: Any) -> str | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("Response"), dict):
        return None
    error = doc["Response"].get("Error")
    if error is None:
        return None
    code = error.get("Code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and code else "Unknown"


def _row_observations(acct: AccountContext, row: Any, now: datetime) -> list[Observation]:
    if not isinstance(row, dict):
        raise Retriable("tencent_ses EmailStatusList entry is not an object")
    message_id, recipient = row.get("MessageId"), row.get("ToEmailAddress")
    send_status, deliver_status = _int(row.get("SendStatus")), _int(row.get("DeliverStatus"))
    if not isinstance(message_id, str) or not message_id or not isinstance(recipient, str) or not recipient:
        raise Retriable("tencent_ses row lacks MessageId or ToEmailAddress")
    if send_status is None or deliver_status is None:
        raise Retriable("tencent_ses row lacks SendStatus or DeliverStatus")
    try:
        sent_at = _epoch(row.get("RequestTime"))
        delivered_at = _epoch(row.get("DeliverTime"))
    except ValueError as exc:
        raise Retriable("tencent_ses row has a bad RequestTime or DeliverTime") from exc
    # DeliverTime once Tencent has a delivery result, else the request time; a row with neither
    # (never seen) is stamped with the poll time rather than dropped.
    occurred_at = delivered_at or sent_at or now
    message = row.get("DeliverMessage") if isinstance(row.get("DeliverMessage"), str) else None
    smtp = parse_smtp(message)

    if send_status != 0:
        entry = SEND_STATUSES.get(send_status, UNKNOWN_SEND_STATUS)
    else:
        entry = DELIVER_STATUSES.get(deliver_status, UNKNOWN_DELIVER_STATUS)
        entry = _refine(entry, smtp, deliver_status in ADDRESS_FAILURE_DELIVER_STATUSES)
    type_, reason, final = _resolve(entry, acct)

    email_id = f"{message_id}:{recipient.lower()}"
    common = {
        "email_id": email_id,
        "recipient": recipient,
        "message_id": message_id,
        "sent_at": sent_at,
        "raw": row,
    }
    observations = [
        Observation(
            type=type_,
            reason=reason,
            occurred_at=occurred_at,
            provider_status=str(send_status),
            provider_sub_status=str(deliver_status),
            provider_message=message or None,
            smtp=smtp,
            final=final,
            **common,
        )
    ]
    # The engagement flags carry no time of their own: they take the row's time. Dedup emits
    # complaint and unsubscribed once per email, so repeated sweeps do not repeat them.
    if row.get("UserUnsubscribed") is True:
        observations.append(
            Observation(
                type=EventType.UNSUBSCRIBED,
                reason=Reason.UNSUBSCRIBED,
                occurred_at=occurred_at,
                provider_status="UserUnsubscribed",
                final=True,
                **common,
            )
        )
    if row.get("UserComplainted") is True:
        observations.append(
            Observation(
                type=EventType.COMPLAINT,
                reason=None,
                occurred_at=occurred_at,
                provider_status="UserComplainted",
                final=True,
                **common,
            )
        )
    return observations


def parse_poll_response(
    acct: AccountContext,
    query: PollQuery,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> PollPage:
    """One page of GetSendEmailStatus. No total is returned: a full page means ask for the next."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    code = _error_code(doc)
    if code is not None:
        # Tencent reports errors in the body whatever the HTTP status (the SDK does the same).
        error = error_class(code)
        if error is Throttled:
            raise Throttled(f"tencent_ses {code}", parse_retry_after(headers.get("retry-after"), now))
        raise error(f"tencent_ses error {code}")
    classify_http(status, headers, now)
    if status != 200:
        raise (BadRequest if 400 <= status < 500 else Retriable)(f"HTTP {status}")
    if not isinstance(doc, dict) or not isinstance(doc.get("Response"), dict):
        raise Retriable("tencent_ses answer has no Response object")
    response = doc["Response"]
    if "EmailStatusList" not in response:
        raise Retriable("tencent_ses Response lacks EmailStatusList")
    rows = response["EmailStatusList"]
    if rows is None:  # the API family renders empty arrays as null at times
        rows = []
    if not isinstance(rows, list):
        raise Retriable("tencent_ses EmailStatusList is not a list")
    observations = [obs for row in rows for obs in _row_observations(acct, row, now)]
    next_offset = query.offset + len(rows) if len(rows) >= query.limit else None
    return PollPage(tuple(observations), rows=len(rows), next_offset=next_offset)


# -- webhooks -----------------------------------------------------------------------------------

VERIFY_VARIANT = "unsigned"


def verify_webhook(acct: AccountContext, req: WebhookRequest, now: datetime, replay_window_secs: float) -> str:
    """Tencent signs nothing; the receiver's unguessable path token is the only check. Never raises."""
    return VERIFY_VARIANT


def _get_ci(record: Mapping[str, Any], name: str) -> Any:
    """A field whose spelling varies in case (the doc's `bulkid` vs its sample's `bulkId`)."""
    if name in record:
        return record[name]
    lowered = name.lower()
    for key, value in record.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def _fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields an event needs, checked; MalformedPayload when one is missing or mistyped."""
    event = record.get("event")
    if not isinstance(event, str) or not event:
        event_id = record.get("eventid")
        if isinstance(event_id, str) and event_id.isascii() and event_id.isdigit() and len(event_id) < 6:
            event_id = int(event_id)
        if _int(event_id) is None:
            raise MalformedPayload("tencent_ses event lacks event and eventid")
        event = EVENT_IDS.get(event_id, f"eventid:{event_id}")
    email, bulk_id = record.get("email"), _get_ci(record, "bulkId")
    if not isinstance(email, str) or not email or not isinstance(bulk_id, str) or not bulk_id:
        raise MalformedPayload("tencent_ses event lacks email or bulkId")
    try:
        occurred_at = _epoch(record.get("timestamp"))
    except ValueError as exc:
        raise MalformedPayload("tencent_ses event has a bad timestamp") from exc
    if occurred_at is None:
        raise MalformedPayload("tencent_ses event lacks timestamp")
    try:
        sent_at = _epoch(record.get("sentTimestamp"))
    except ValueError:
        sent_at = None  # optional and informational: a bad one is not worth the whole event
    reason, bounce_type = record.get("reason"), record.get("bounceType")
    return {
        "event": event,
        "email": email,
        "bulk_id": bulk_id,
        "occurred_at": occurred_at,
        "sent_at": sent_at,
        "reason": reason if isinstance(reason, str) and reason else None,
        "bounce_type": bounce_type if isinstance(bounce_type, str) and bounce_type else None,
    }


def split_webhook(req: WebhookRequest) -> list[dict[str, Any]]:
    """The docs show one JSON object per request; a JSON array of them is accepted too.

    Only the envelope is checked here; `webhook_observations`, which the receiver runs per
    record, checks each event's fields, so a broken event is dead-lettered alone.
    """
    try:
        doc = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise MalformedPayload("tencent_ses webhook body is not JSON") from exc
    records = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(record, dict) for record in records):
        raise MalformedPayload("tencent_ses webhook event is not a JSON object")
    return records


def webhook_observations(acct: AccountContext, record: dict[str, Any]) -> list[Observation]:
    """One observation per event, non-emitted ones (processed, open, click) included."""
    fields = _fields(record)
    event, smtp = fields["event"], parse_smtp(fields["reason"])
    if event == "bounce":
        entry = BOUNCE_TYPES.get(fields["bounce_type"] or "")
        if entry is None:
            hard = smtp is not None and ((smtp.code or 0) // 100 == 5 or (smtp.enhanced or "").startswith("5."))
            entry = BOUNCE_TYPES["hard_bounce"] if hard else UNKNOWN_BOUNCE
        address_failure = entry[0] == EventType.INVALID
    else:
        entry = EVENTS.get(event, UNKNOWN_EVENT)
        address_failure = event in ADDRESS_FAILURE_EVENTS
    type_, reason, final = _resolve(_refine(entry, smtp, address_failure), acct)
    return [
        Observation(
            email_id=f"{fields['bulk_id']}:{fields['email'].lower()}",
            recipient=fields["email"],
            type=type_,
            reason=reason,
            occurred_at=fields["occurred_at"],
            provider_status=event,
            message_id=fields["bulk_id"],
            sent_at=fields["sent_at"],
            provider_sub_status=fields["bounce_type"] if event == "bounce" else None,
            provider_message=fields["reason"],
            smtp=smtp,
            final=final,
            raw=record,
        )
    ]
