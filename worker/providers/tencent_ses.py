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

from worker.errors import FatalConfig, MalformedPayload, PollError, Retriable, Throttled
from worker.model import EventType, Observation, Provider, Reason, Scope, Smtp, utc
from worker.providers import tc3
from worker.providers._answers import full_page_next, read_answer, read_rows
from worker.providers.base import (
    CHINA_TZ,
    AccountContext,
    Credentials,
    HttpRequest,
    Need,
    Option,
    PollPage,
    PollQuery,
    ProviderDefaults,
    WebhookRequest,
    as_int,
    epoch_time,
    load_json,
    parse_smtp,
    resolve,
)
from worker.providers.classify import settle
from worker.providers.tencent_ses_tables import (
    BOUNCE_TYPES,
    COMPLAINT_FLAGS,
    DELIVER_STATUSES,
    ERRORS,
    EVENT_IDS,
    EVENTS,
    SEND_STATUSES,
    UNKNOWN_BOUNCE,
    UNKNOWN_DELIVER_STATUS,
    UNKNOWN_ERROR,
    UNKNOWN_SEND_STATUS,
    Entry,
)

NAME = Provider.TENCENT_SES


def sent_email_id(email_id: str, recipient: str) -> str:
    """A sent-message record's id as this module's rows and webhooks spell it: SendEmail returns
    one MessageId per request, so a bare MessageId gets its recipient, lower-cased; an id that
    has one already stays as it is."""
    return email_id if ":" in email_id else f"{email_id}:{recipient.lower()}"


# Hosts: ses.tencentcloudapi.com (China site, nearest region), ses.intl.tencentcloudapi.com
# (international site), ses.<region>.tencentcloudapi.com (pinned). The international page of
# GetSendEmailStatus (seed 004) names ses.intl.tencentcloudapi.com and only ap-singapore (the
# default region, DEFAULT_REGION), and the international SDK defaults to that root domain since
# 2025. The default host stays the China site's nearest-region one, which the international SDK
# used until then: a China-site account configured with only its region (as the docs said) keeps
# its host; an international account may set base_url https://ses.intl.tencentcloudapi.com.
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
    # By id: one `MessageId` (a string, not a list: the SDK's GetSendEmailStatusRequest) per call,
    # answered with a row per recipient of that message.
    id_batch=1,
    sent_email_id=sent_email_id,
)
DEFAULT_REGION = "ap-singapore"
SERVICE = "ses"
ACTION = "GetSendEmailStatus"
VERSION = "2020-10-02"
CONTENT_TYPE = "application/json; charset=utf-8"

OPTIONS: dict[str, Option] = {}

CREDENTIALS = Credentials(
    poll=(
        Need("credentials", "secret_id", "for polling", plain=True),
        Need("credentials", "secret_key", "for polling"),
    ),
    webhook=(
        Need("webhook", "path_token", "Tencent does not sign webhooks; an unguessable path protects them",
             min_length=16),
    ),
)


# -- mapping (the tables are in tencent_ses_tables) ----------------------------------------------


def _resolve(entry: Entry, smtp: Smtp | None, acct: AccountContext,
             text: str | None) -> tuple[EventType | None, Reason | None, bool, Scope | None]:
    """Type, reason, finality and scope of a table entry with the SMTP evidence (`smtp`, read from
    the reply `text`) applied (worker.providers.classify)."""
    type_, reason, final = entry[:3]
    settled, reason, scope = settle(resolve(type_, acct), reason, entry[3] if len(entry) > 3 else None, smtp, text)
    return settled, reason, final, scope


# -- polling ------------------------------------------------------------------------------------


def error_class(code: str) -> type[PollError]:
    for prefix, error in ERRORS:
        if code == prefix or code.startswith(prefix + "."):
            return error
    return UNKNOWN_ERROR


def message_id_of(email_id: str) -> str:
    """The MessageId an email id `<MessageId>:<recipient>` names: the text before the first ':'
    (a MessageId has none, a quoted local part of the address may); a bare MessageId as is."""
    return email_id.partition(":")[0]


def build_poll_request(acct: AccountContext, query: PollQuery, now: datetime) -> HttpRequest:
    """A signed POST of {"RequestDate","Offset","Limit"}, plus "MessageId" for a query by id; the
    signed bytes are the bytes sent.

    No send date means today in the provider's zone, as for the other date providers. Query
    mistakes (a status filter, a page over 100, more than one email id) are bugs in the caller:
    ValueError.
    """
    if not acct.secret_id or not acct.secret_key:
        raise FatalConfig("tencent_ses account lacks secret_id or secret_key")
    send_date = query.send_date or utc(now).astimezone(DEFAULTS.tz).date()
    if query.status is not None:
        raise ValueError("GetSendEmailStatus has no status filter")
    if not 1 <= query.limit <= DEFAULTS.page_limit or query.offset < 0:
        raise ValueError(f"limit must be 1..{DEFAULTS.page_limit} and offset >= 0")
    fields: dict[str, Any] = {"RequestDate": send_date.isoformat(), "Offset": query.offset, "Limit": query.limit}
    if query.email_ids:
        if len(query.email_ids) > DEFAULTS.id_batch:
            raise ValueError(f"GetSendEmailStatus takes one MessageId, got {len(query.email_ids)} email ids")
        message_id = message_id_of(query.email_ids[0])
        if not message_id:
            raise ValueError("the email id names no MessageId")
        fields["MessageId"] = message_id  # last: the key order, and so the signed bytes, are fixed
    url = urllib.parse.urlsplit(acct.base_url)
    host = url.netloc
    path = url.path or "/"
    body = orjson.dumps(fields)
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


def _epoch(value: Any) -> datetime | None:
    """A Unix time field; None for 0 or absent (Tencent writes 0 for "not yet"), ValueError if bad."""
    if value is None or value == 0:
        return None
    return epoch_time(value, max_digits=13)


def _error_of(doc: Any) -> PollError | None:
    """Response.Error, whatever the HTTP status (the SDK reads it the same way)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("Response"), dict):
        return None
    error = doc["Response"].get("Error")
    if error is None:
        return None
    code = error.get("Code") if isinstance(error, dict) else None
    code = code if isinstance(code, str) and code else "Unknown"
    kind = error_class(code)
    return Throttled(f"tencent_ses {code}") if kind is Throttled else kind(f"tencent_ses error {code}")


def _row_observations(acct: AccountContext, row: Any, now: datetime) -> list[Observation]:
    """One row's observations; TypeError or ValueError when it cannot be read (a rejected row)."""
    if not isinstance(row, dict):
        raise TypeError("tencent_ses EmailStatusList entry is not an object")
    message_id, recipient = row.get("MessageId"), row.get("ToEmailAddress")
    # Numbers only: a status sent as a string is not the documented answer.
    send_status = as_int(row.get("SendStatus"), max_digits=0)
    deliver_status = as_int(row.get("DeliverStatus"), max_digits=0)
    if not isinstance(message_id, str) or not message_id or not isinstance(recipient, str) or not recipient:
        raise ValueError("tencent_ses row lacks MessageId or ToEmailAddress")
    if send_status is None or deliver_status is None:
        raise ValueError("tencent_ses row lacks SendStatus or DeliverStatus")
    sent_at = _epoch(row.get("RequestTime"))  # ValueError when bad
    delivered_at = _epoch(row.get("DeliverTime"))
    # DeliverTime once Tencent has a delivery result, else the request time; a row with neither
    # (never seen) is stamped with the poll time rather than dropped.
    occurred_at = delivered_at or sent_at or now
    message = row.get("DeliverMessage") if isinstance(row.get("DeliverMessage"), str) else None
    smtp = parse_smtp(message)

    if send_status != 0:
        entry = SEND_STATUSES.get(send_status, UNKNOWN_SEND_STATUS)
    else:
        entry = DELIVER_STATUSES.get(deliver_status, UNKNOWN_DELIVER_STATUS)
    type_, reason, final, scope = _resolve(entry, smtp, acct, message)

    email_id = f"{message_id}:{recipient.lower()}"
    common: dict[str, Any] = {
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
            scope=scope,
            retrying=type_ is EventType.SOFT_BOUNCE and not final,
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
    complained = next((flag for flag in COMPLAINT_FLAGS if row.get(flag) is True), None)
    if complained is not None:
        observations.append(
            Observation(
                type=EventType.COMPLAINT,
                reason=None,
                occurred_at=occurred_at,
                provider_status=complained,
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
    """One page of GetSendEmailStatus. No total is returned: a full page means ask for the next.
    A row that cannot be read is rejected alone (worker.providers._rows)."""
    doc = read_answer(status, headers, body, now, _error_of)
    if not isinstance(doc, dict) or not isinstance(doc.get("Response"), dict):
        raise Retriable("tencent_ses answer has no Response object")
    response = doc["Response"]
    if "EmailStatusList" not in response:
        raise Retriable("tencent_ses Response lacks EmailStatusList")
    rows = response["EmailStatusList"]
    # Empty is a list shorter than Limit, here with no items (PROVIDERS.md 5.3: "until a page comes
    # back with fewer than Limit items"); the API family renders empty arrays as null at times.
    if rows is None:
        rows = []
    if not isinstance(rows, list):
        raise Retriable("tencent_ses EmailStatusList is not a list")
    observations, rejected = read_rows(rows, lambda row: _row_observations(acct, row, now))
    next_offset = full_page_next(query.offset, len(rows), query.limit)
    return PollPage(observations, rows=len(rows), next_offset=next_offset, rejected=rejected)


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


def _event_name(record: Mapping[str, Any]) -> str:
    """`event`, else the name of the 2025 docs' numeric `eventid`; MalformedPayload with neither."""
    event = record.get("event")
    if not isinstance(event, str) or not event:
        event_id = as_int(record.get("eventid"), max_digits=5)
        if event_id is None:
            raise MalformedPayload("tencent_ses event lacks event and eventid")
        event = EVENT_IDS.get(event_id, f"eventid:{event_id}")
    return event


def _fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields an event needs, checked; MalformedPayload when one is missing or mistyped."""
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
    doc = load_json(req.body)
    if doc is None:
        raise MalformedPayload("tencent_ses webhook body is not JSON")
    records = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(record, dict) for record in records):
        raise MalformedPayload("tencent_ses webhook event is not a JSON object")
    return records


def webhook_observations(acct: AccountContext, record: dict[str, Any]) -> list[Observation]:
    """One observation per status event; none for an event that carries no status, as every
    provider module answers for its opens and clicks: the receiver counts it
    (esw_ignored_statuses_total) and writes nothing to `_raw`. A documented one (processed,
    delivering, open, click) whatever its other fields hold; one these tables do not know once its
    fields read (else it is malformed, as any broken event)."""
    event = _event_name(record)
    if event in EVENTS and EVENTS[event][0] is None:
        return []
    fields = _fields(record)
    if event != "bounce" and event not in EVENTS:
        return []
    smtp = parse_smtp(fields["reason"])
    if event == "bounce":
        entry = BOUNCE_TYPES.get(fields["bounce_type"] or "")
        if entry is None:
            hard = smtp is not None and ((smtp.code or 0) // 100 == 5 or (smtp.enhanced or "").startswith("5."))
            entry = BOUNCE_TYPES["hard_bounce"] if hard else UNKNOWN_BOUNCE
    else:
        entry = EVENTS[event]
    type_, reason, final, scope = _resolve(entry, smtp, acct, fields["reason"])
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
            scope=scope,
            retrying=type_ is EventType.SOFT_BOUNCE and not final,
            raw=record,
        )
    ]


def replay_key(req: WebhookRequest, record: dict[str, Any]) -> str | None:
    """None: Tencent signs nothing; the URL's path token is the only check (worker.webhooks)."""
    return None
