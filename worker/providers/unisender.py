"""UniSender classic (and Selzy): id-based `checkEmail` polling and the event-notification webhook.

PROVIDERS.md section 4. The status API answers per email id, without dates and without
addresses, so the id tracker drives polling and supplies recipients (see `parse_poll_response`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

import orjson

from worker.model import EventType, Observation, Provider, Reason
from worker.providers.base import (
    AccountContext,
    BadRequest,
    BadSignature,
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
    parse_retry_after,
)

NAME = Provider.UNISENDER

MOSCOW_TZ = timezone(timedelta(hours=3), "UTC+03:00")
MAX_IDS = 500  # checkEmail's documented maximum per call (seed 003)

DEFAULTS = ProviderDefaults(
    base_url="https://api.unisender.com",  # Selzy accounts: https://api.selzy.com (same API)
    # 1200 calls/min per key and per IP: from the alexeyco/unisender Go client's comment; the
    # official limits page was not read (PROVIDERS.md 4.2, 7.4).
    quota_per_minute=1200,
    cache_ttl_secs=0,  # none documented
    # Only webhook `event_time` is zone-less, and its zone is undocumented; the per-account
    # `webhook_tz` option below decides, and this is its default.
    tz=MOSCOW_TZ,
    retention_days=30,  # "statuses are stored ... only for a month" (seed)
    page_limit=MAX_IDS,
    polling="ids",
    status_filters=(),
    id_batch=MAX_IDS,
)

_WEBHOOK_TZ: dict[str, tzinfo] = {"UTC+3": MOSCOW_TZ, "UTC": timezone.utc}

OPTIONS: dict[str, Option] = {
    "lang": Option(
        default="en",
        choices=("en", "ru", "it", "ua"),
        doc="Language segment of the API URL (error texts only): UniSender takes en/ru/it, Selzy en/ru/ua.",
    ),
    "webhook_tz": Option(
        default="UTC+3",
        choices=tuple(_WEBHOOK_TZ),
        doc="Zone of the webhook's naive event_time. Undocumented; UniSender is Moscow-based, so UTC+3.",
    ),
}


# -- the status table ---------------------------------------------------------------------------

# A sender-side rejection (content or sending IP refused by the receiving server) says nothing
# about the address: PROVIDERS.md 4.4 files these as soft bounces ("content; do not suppress"),
# and an account's `sender_rejection` may count them otherwise (SenderSide).

# status -> (type, reason, final). PROVIDERS.md 4.4: the "Final?" column as given; where it says
# n/a, final is true when the text says the letter goes nowhere further, false when it may change.
# Statuses the service does not emit (pending, provider errors, campaign or account blocks) have
# type None but keep their reason and finality: finality is what stops id polling.
STATUSES: dict[str, tuple[EventType | str | None, Reason | None, bool]] = {
    "not_sent": (None, None, False),
    "ok_sent": (None, None, False),
    "delayed": (None, None, False),  # named in the seed's text, never defined
    # ok_delivered/ok_read/ok_link_visited may still become unsubscribed or spam-folder.
    "ok_delivered": (EventType.DELIVERED, None, False),
    "ok_read": (EventType.DELIVERED, None, False),
    "ok_link_visited": (EventType.DELIVERED, None, False),
    "ok_spam_folder": (EventType.DELIVERED, None, True),
    "ok_unsubscribed": (EventType.UNSUBSCRIBED, Reason.UNSUBSCRIBED, True),
    # n/a in the table; a complaint is the last thing a delivered letter can report.
    "ok_fbl": (EventType.COMPLAINT, None, True),
    # UniSender re-sends these itself, so they are soft whatever the account's policy.
    "err_blacklisted": (EventType.SOFT_BOUNCE, Reason.BLOCKLISTED, False),
    "err_will_retry": (EventType.SOFT_BOUNCE, Reason.DEFERRED, False),
    "err_resend": (EventType.SOFT_BOUNCE, Reason.DEFERRED, False),
    "err_internal": (None, Reason.PROVIDER_ERROR, True),
    "err_user_unknown": (EventType.INVALID, Reason.UNKNOWN_USER, True),
    "err_user_inactive": (EventType.INVALID, Reason.MAILBOX_DISABLED, True),
    "err_mailbox_discarded": (EventType.INVALID, Reason.MAILBOX_DISABLED, True),
    "err_mailbox_full": (EventType.SOFT_BOUNCE, Reason.MAILBOX_FULL, True),
    "err_no_dns": (EventType.INVALID, Reason.DOMAIN_INVALID, True),
    "err_no_smtp": (EventType.INVALID, Reason.DOMAIN_INVALID, True),
    "err_domain_inactive": (EventType.INVALID, Reason.DOMAIN_INVALID, True),
    # "a cause that can be fixed" on the recipient's side: may still change.
    "err_destination_misconfigured": (EventType.SOFT_BOUNCE, Reason.OTHER, False),
    # Content refused by the receiving server: the account's sender_rejection policy decides.
    "err_spam_rejected": (SenderSide(EventType.SOFT_BOUNCE), Reason.SPAM_REJECTED, True),
    "err_spam_may_retry": (SenderSide(EventType.SOFT_BOUNCE), Reason.SPAM_REJECTED, True),
    "err_too_large": (None, Reason.POLICY_REJECTED, True),
    "err_giveup": (EventType.SOFT_BOUNCE, Reason.OTHER, True),
    "err_spam_removed": (None, Reason.POLICY_REJECTED, False),
    "err_spam_skipped": (None, Reason.POLICY_REJECTED, False),
    "err_delivery_failed": (EventType.SOFT_BOUNCE, Reason.OTHER, True),
    # UniSender does not say why these addresses are unavailable (unknown user or spam block), so
    # the generic bad_address; unknown_user is kept for its explicit "does not exist".
    "err_skip_letter": (EventType.INVALID, Reason.BAD_ADDRESS, True),
    "err_dest_invalid": (EventType.INVALID, Reason.BAD_ADDRESS, True),
    "err_not_available": (EventType.INVALID, Reason.BAD_ADDRESS, True),
    "err_unreachable": (EventType.INVALID, Reason.BAD_ADDRESS, True),
    "skip_dup_unreachable": (EventType.INVALID, Reason.BAD_ADDRESS, True),
    "skip_dup_temp_unreachable": (EventType.SOFT_BOUNCE, Reason.SERVER_UNREACHABLE, True),
    "skip_dup_mailbox_full": (EventType.SOFT_BOUNCE, Reason.MAILBOX_FULL, True),
    "err_unsubscribed": (EventType.UNSUBSCRIBED, Reason.UNSUBSCRIBED, True),
    "err_src_invalid": (None, Reason.OTHER, True),
    "err_not_allowed": (None, Reason.POLICY_REJECTED, True),
    "err_over_quota": (None, Reason.OTHER, True),
    "err_lost": (None, Reason.PROVIDER_ERROR, True),
}

# The seed promises the prefix rule for future values: err_* failed, ok_* in progress or done.
# Not final, so an unknown status keeps being polled until it settles into a known one.
UNKNOWN_ERR = (EventType.SOFT_BOUNCE, Reason.OTHER, False)
UNKNOWN_OK: tuple[None, None, bool] = (None, None, False)
UNKNOWN_OTHER: tuple[None, None, bool] = (None, None, False)


def classify(status: str, acct: AccountContext) -> tuple[EventType | None, Reason | None, bool]:
    """Normalized type, reason and finality of one UniSender status value."""
    entry = STATUSES.get(status)
    if entry is None:
        entry = UNKNOWN_ERR if status.startswith("err_") else UNKNOWN_OK if status.startswith("ok_") else UNKNOWN_OTHER
    type_, reason, final = entry
    if isinstance(type_, SenderSide):
        type_ = type_.resolve(acct)
    return type_, reason, final  # type: ignore[return-value]


# -- polling ------------------------------------------------------------------------------------

# API error codes (doc: unisender.com/en/help/api; alexeyco api/response.go). not_enough_money is
# fatal: checkEmail cannot succeed until someone tops the balance up, and retrying hides that.
ERRORS: dict[str, type[PollError]] = {
    "api_call_limit_exceeded_for_api_key": Throttled,
    "api_call_limit_exceeded_for_ip": Throttled,
    "invalid_api_key": FatalConfig,
    "access_denied": FatalConfig,
    "not_enough_money": FatalConfig,
    "unknown_method": BadRequest,
    "invalid_arg": BadRequest,
    "retry_later": Retriable,
    "unspecified": Retriable,
}
UNKNOWN_ERROR: type[PollError] = Retriable  # "unspecified"-like: a new code should not stop polling
THROTTLE_PAUSE_SECS = 60.0  # the limits are per minute


def _choice(acct: AccountContext, name: str) -> str:
    value = acct.option(OPTIONS, name)
    if value not in OPTIONS[name].choices:
        # Config validation checks options against OPTIONS; reaching this is a bug, not data.
        raise ValueError(f"option {name}={value!r} is not one of {OPTIONS[name].choices}")
    return value


def build_poll_request(acct: AccountContext, query: PollQuery, now: datetime) -> HttpRequest:
    """POST form to checkEmail for up to 500 ids (POST keeps api_key out of URLs and proxy logs).

    An empty or oversized id batch is a bug in the caller (DEFAULTS.id_batch says 500), so it
    raises ValueError rather than a provider error; a missing key is the operator's: FatalConfig.
    """
    if not acct.api_key:
        raise FatalConfig("unisender account has no api_key")
    ids = query.email_ids
    if not ids or len(ids) > MAX_IDS:
        raise ValueError(f"checkEmail takes 1..{MAX_IDS} email ids, got {len(ids)}")
    if any(not i or "," in i for i in ids):
        raise ValueError("email ids must be non-empty and free of commas")
    lang = _choice(acct, "lang")
    body = urllib.parse.urlencode(
        (("format", "json"), ("api_key", acct.api_key), ("email_id", ",".join(ids)))
    ).encode("ascii")
    return HttpRequest(
        method="POST",
        url=f"{acct.base_url.rstrip('/')}/{lang}/api/checkEmail",
        headers=(("Content-Type", "application/x-www-form-urlencoded"),),
        body=body,
    )


def _load(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _email_id(value: Any) -> str | None:
    """The id as a string: the seed sends strings, the Go client reads int64; accept both."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def _failed_ids(value: Any) -> list[str]:
    """`failed_email_id`: a list of one-key {id: reason} objects (seed); a plain object is accepted too."""
    if value is None or value == [] or value == {}:  # PHP renders an empty map as []
        return []
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            raise Retriable("unisender failed_email_id has an unexpected shape")
        out.extend(item)
    return out


def parse_poll_response(
    acct: AccountContext,
    query: PollQuery,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    recipients: Mapping[str, str] | None = None,
) -> PollPage:
    """One checkEmail answer as observations, stamped `now` (the API has no timestamps).

    checkEmail returns no addresses. `recipients` (email id -> address), which the id tracker
    knows from the sent-message record or a webhook, fills them in; an id missing from it gets
    recipient "" and the caller must fill it before building an event (the schema requires one).
    occurred_at is the observation time: the id tracker emits only when the status changes, so
    repeated polls of an unchanged status do not become new events.
    """
    if status == 429:  # HTTP's own throttle signal wins over whatever the body says
        classify_http(status, headers, now)
    doc = _load(body)
    if isinstance(doc, dict) and (doc.get("error") or doc.get("code")):
        code = doc.get("code") if isinstance(doc.get("code"), str) else "unspecified"
        error = ERRORS.get(code, UNKNOWN_ERROR)
        if error is Throttled:
            raise Throttled(
                f"unisender {code}", parse_retry_after(headers.get("retry-after"), now) or THROTTLE_PAUSE_SECS
            )
        raise error(f"unisender error {code}")
    classify_http(status, headers, now)
    if status != 200:
        raise (BadRequest if 400 <= status < 500 else Retriable)(f"HTTP {status}")
    if not isinstance(doc, dict):
        raise Retriable("unisender answer is not a JSON object")

    result = doc.get("result")
    if result is None or result == []:
        result = {}
    if not isinstance(result, dict):
        raise Retriable("unisender result is not an object")
    statuses = result.get("statuses")
    if statuses is None and "status" in result:
        # The single-id backward-compatible form: `status` beside (or instead of) `statuses`.
        if len(query.email_ids) != 1:
            raise Retriable("unisender answered a single status to a multi-id query")
        statuses = [{"id": query.email_ids[0], "status": result["status"]}]
    if statuses is None:
        statuses = []
    if not isinstance(statuses, list):
        raise Retriable("unisender result.statuses is not a list")
    unknown_ids = tuple(_failed_ids(doc.get("failed_email_id")))

    recipients = recipients or {}
    observations = []
    for entry in statuses:
        if not isinstance(entry, dict):
            raise Retriable("unisender status entry is not an object")
        email_id = _email_id(entry.get("id"))
        value = entry.get("status")
        if email_id is None or not isinstance(value, str):
            raise Retriable("unisender status entry lacks id or status")
        type_, reason, final = classify(value, acct)
        observations.append(
            Observation(
                email_id=email_id,
                recipient=recipients.get(email_id, ""),
                type=type_,
                reason=reason,
                occurred_at=now,  # checkEmail reports no time: when we saw it, an upper bound
                exact_time=False,
                provider_status=value,
                final=final,
                raw=entry,
            )
        )
    return PollPage(tuple(observations), rows=len(observations), next_offset=None, unknown_ids=unknown_ids)


# -- webhooks -----------------------------------------------------------------------------------

VERIFY_VARIANT = "md5-auth"
EVENT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # naive; the zone is the account's webhook_tz option

_AUTH = re.compile(rb'"auth"\s*:\s*"([0-9A-Fa-f]{32})"')
# Resends carry `retry_count`; whether it is inside the signed body is undocumented (PROVIDERS.md
# 7.4), so a body that fails as received is also tried without that member.
_RETRY_COUNT = (
    re.compile(rb',\s*"retry_count"\s*:\s*"?\d+"?'),
    re.compile(rb'"retry_count"\s*:\s*"?\d+"?\s*,'),
)
_MAX_AUTH_CANDIDATES = 4


def _signed_variants(body: bytes) -> list[bytes]:
    variants = [body]
    for pattern in _RETRY_COUNT:
        stripped = pattern.sub(b"", body, count=1)
        if stripped != body:
            variants.append(stripped)
            break
    return variants


def verify_webhook(acct: AccountContext, req: WebhookRequest, now: datetime, replay_window_secs: float) -> str:
    """`auth` is the MD5 of the raw body with its own value replaced, textually, by the API key.

    The substitution works on the received bytes, so it holds whatever the sender's whitespace and
    key order. The body carries no signed timestamp, so there is no replay window to check;
    replays are duplicates, which dedup drops. Assumed to match Unisender Go (unverified for classic).
    """
    keys = [k for k in acct.webhook_keys if k]
    if not keys:
        raise BadSignature("no unisender api key configured for webhooks")
    for variant in _signed_variants(req.body):
        for match in list(_AUTH.finditer(variant))[:_MAX_AUTH_CANDIDATES]:
            received = match.group(1).lower()
            start, end = match.span(1)
            for key in keys:
                signed = variant[:start] + key.encode("utf-8") + variant[end:]
                if hmac.compare_digest(hashlib.md5(signed).hexdigest(), received.decode("ascii")):
                    return VERIFY_VARIANT
    raise BadSignature("unisender auth missing or wrong")


def _fields(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The email_status fields of a record, or None for other events; MalformedPayload if broken."""
    event_name = record.get("event_name")
    if not isinstance(event_name, str) or not event_name:
        raise MalformedPayload("unisender event lacks event_name")
    if event_name != "email_status":
        return None
    # Batched events nest the fields in event_data; single-event bodies have them at the top.
    data = record.get("event_data", record)
    if not isinstance(data, dict):
        raise MalformedPayload("unisender event_data is not an object")
    email, status, event_time = data.get("email"), data.get("status"), record.get("event_time")
    email_id = _email_id(data.get("email_id"))
    group = data.get("status_group")
    if not isinstance(email, str) or not email or not isinstance(status, str) or email_id is None:
        raise MalformedPayload("unisender email_status event lacks email, status or email_id")
    if not isinstance(event_time, str):
        raise MalformedPayload("unisender event lacks event_time")
    try:
        naive_time = datetime.strptime(event_time, EVENT_TIME_FORMAT)
    except ValueError as exc:
        raise MalformedPayload("unisender event_time is not YYYY-MM-DD HH:MM:SS") from exc
    return {
        "email": email,
        "status": status,
        "email_id": email_id,
        "event_time": naive_time,
        "status_group": group if isinstance(group, str) else None,
    }


def split_webhook(req: WebhookRequest) -> list[dict[str, Any]]:
    """One record per event, `login` copied in. Events other than email_status (subscribe,
    campaign_status, ...) are kept as records for the audit trail; they yield no observations.

    Only the envelope is checked here. An event's own fields are checked by
    `webhook_observations`, which the receiver runs per record, so one broken event in a batch
    is dead-lettered alone instead of taking its neighbours with it.
    """
    doc = _load(req.body)
    if not isinstance(doc, dict):
        raise MalformedPayload("unisender webhook body is not a JSON object")
    records: list[dict[str, Any]] = []
    if "events_by_user" in doc:
        users = doc["events_by_user"]
        if not isinstance(users, list):
            raise MalformedPayload("unisender events_by_user is not a list")
        for user in users:
            if not isinstance(user, dict) or not isinstance(user.get("events"), list):
                raise MalformedPayload("unisender events_by_user entry lacks an events list")
            for event in user["events"]:
                if not isinstance(event, dict):
                    raise MalformedPayload("unisender event is not an object")
                records.append({"login": user.get("login"), **event})
    elif "event_name" in doc:
        # single_event=1: the event's fields are the body; `auth` is the signature, not data.
        records.append({k: v for k, v in doc.items() if k != "auth"})
    else:
        raise MalformedPayload("unisender webhook has neither events_by_user nor event_name")
    return records


def webhook_observations(acct: AccountContext, record: dict[str, Any]) -> list[Observation]:
    """The observation of an email_status record (also of non-emitted statuses: they tell the id
    tracker about ids to poll); other events give none."""
    fields = _fields(record)
    if fields is None:
        return []
    tz = _WEBHOOK_TZ[_choice(acct, "webhook_tz")]
    try:
        occurred_at = fields["event_time"].replace(tzinfo=tz).astimezone(timezone.utc)
    except OverflowError as exc:  # year 1 read in UTC+3 has no UTC equivalent
        raise MalformedPayload("unisender event_time out of range") from exc
    type_, reason, final = classify(fields["status"], acct)
    return [
        Observation(
            email_id=fields["email_id"],
            recipient=fields["email"],
            type=type_,
            reason=reason,
            occurred_at=occurred_at,
            provider_status=fields["status"],
            provider_sub_status=fields["status_group"],
            final=final,
            raw=record,
        )
    ]
