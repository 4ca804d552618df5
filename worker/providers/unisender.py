"""UniSender classic (and Selzy): id-based `checkEmail` polling and the event-notification webhook;
Unisender Go's status events on the same webhook URL (`_unisender_go`).

PROVIDERS.md section 4. The status API answers per email id, without dates and without
addresses, so the id tracker drives polling and supplies recipients (see `parse_poll_response`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from worker.errors import BadRequest, BadSignature, FatalConfig, MalformedPayload, PollError, Retriable, Throttled
from worker.model import EventType, Observation, Provider, Reason, Scope
from worker.providers import _unisender_go
from worker.providers._answers import read_answer, read_rows
from worker.providers.base import (
    AccountContext,
    Credentials,
    HttpRequest,
    Need,
    Option,
    PollPage,
    PollQuery,
    ProviderDefaults,
    WebhookRequest,
    as_text,
    load_json,
    local_time,
    resolve,
)
from worker.providers.classify import settle
from worker.providers.unisender_tables import (
    ERRORS,
    STATUSES,
    UNKNOWN_ERR,
    UNKNOWN_ERROR,
    UNKNOWN_OK,
    UNKNOWN_OTHER,
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

_WEBHOOK_TZ: dict[str, tzinfo] = {"UTC+3": MOSCOW_TZ, "UTC": UTC}

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

# The API key polls, and signs webhooks when no webhook.app_key is given (worker.configbuild asks
# for one of the two when webhooks are on).
CREDENTIALS = Credentials(
    poll=(Need("credentials", "api_key", "for polling"),),
    webhook_key_fallback="api_key",
)


# -- the status table (in unisender_tables) -----------------------------------------------------


def classify(status: str, acct: AccountContext) -> tuple[EventType | None, Reason | None, bool, Scope | None]:
    """Normalized type, reason, finality and scope of one UniSender status value (no SMTP text:
    the table's scope, under the invariant of worker.providers.classify)."""
    entry = STATUSES.get(status)
    if entry is None:
        entry = UNKNOWN_ERR if status.startswith("err_") else UNKNOWN_OK if status.startswith("ok_") else UNKNOWN_OTHER
    type_, reason, final = entry[:3]
    settled, reason, scope = settle(resolve(type_, acct), reason, entry[3] if len(entry) > 3 else None, None)
    return settled, reason, final, scope


# -- polling ------------------------------------------------------------------------------------

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
    if not all(i.isascii() and i.isdigit() for i in ids):
        # UniSender's ids are numbers (sendEmail's email_id; its Go client reads int64): checkEmail
        # answers invalid_arg for the whole call when one is not, so it is never sent
        raise BadRequest("unisender email ids are numbers")
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


def _error_of(doc: Any) -> PollError | None:
    """The error envelope `{"error": text, "code": code}`; it wins over any `result` beside it."""
    if not (isinstance(doc, dict) and (doc.get("error") or doc.get("code"))):
        return None
    code = doc.get("code")
    if not isinstance(code, str):
        code = "unspecified"
    error = ERRORS.get(code, UNKNOWN_ERROR)
    if error is Throttled:
        return Throttled(f"unisender {code}", THROTTLE_PAUSE_SECS)
    return error(f"unisender error {code}")


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
    doc = read_answer(status, headers, body, now, _error_of)
    if not isinstance(doc, dict):
        raise Retriable("unisender answer is not a JSON object")

    result = doc.get("result")
    # Empty is `result.statuses` (PROVIDERS.md 4.3) without entries; `result` may also be `[]` (PHP
    # renders an empty map as a list, as when every id is in failed_email_id) or absent.
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

    asked, known = frozenset(query.email_ids), recipients or {}
    observations, rejected = read_rows(statuses, lambda entry: [_status_observation(acct, entry, asked, known, now)])
    return PollPage(observations, rows=len(statuses), next_offset=None, unknown_ids=unknown_ids, rejected=rejected)


def _status_observation(
    acct: AccountContext, entry: Any, asked: frozenset[str], recipients: Mapping[str, str], now: datetime
) -> Observation:
    """One `result.statuses` entry; TypeError or ValueError when it cannot be read (a rejected row,
    worker.providers._rows): not an object, no id, a status that is not a string, or an id that
    was not asked for (an answer to another question: the id tracker must not record it)."""
    if not isinstance(entry, dict):
        raise TypeError("unisender status entry is not an object")
    email_id = as_text(entry.get("id"))  # the seed sends strings, the Go client reads int64
    value = entry.get("status")
    if email_id is None or not isinstance(value, str):
        raise ValueError("unisender status entry lacks id or status")
    if email_id not in asked:
        raise ValueError("unisender status for an id that was not asked for")
    type_, reason, final, scope = classify(value, acct)
    return Observation(
        email_id=email_id,
        recipient=recipients.get(email_id, ""),
        type=type_,
        reason=reason,
        occurred_at=now,  # checkEmail reports no time: when we saw it, an upper bound
        exact_time=False,
        provider_status=value,
        final=final,
        scope=scope,
        retrying=type_ is EventType.SOFT_BOUNCE and not final,
        raw=entry,
    )


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
    email_id = as_text(data.get("email_id"))
    group = data.get("status_group")
    if not isinstance(email, str) or not email or not isinstance(status, str) or email_id is None:
        raise MalformedPayload("unisender email_status event lacks email, status or email_id")
    if not isinstance(event_time, str):
        raise MalformedPayload("unisender event lacks event_time")
    return {
        "email": email,
        "status": status,
        "email_id": email_id,
        "event_time": event_time,
        "status_group": group if isinstance(group, str) else None,
    }


def split_webhook(req: WebhookRequest) -> list[dict[str, Any]]:
    """One record per event, `login` copied in. Events other than email_status (subscribe,
    campaign_status, ...) are kept as records for the audit trail; they yield no observations.

    Only the envelope is checked here. An event's own fields are checked by
    `webhook_observations`, which the receiver runs per record, so one broken event in a batch
    is dead-lettered alone instead of taking its neighbours with it.
    """
    doc = load_json(req.body)
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
    tracker about ids to poll), or of a Unisender Go status event (`_unisender_go`); other events
    give none."""
    if record.get("event_name") == _unisender_go.EVENT:
        return _unisender_go.observations(acct, record)
    fields = _fields(record)
    if fields is None:
        return []
    tz = _WEBHOOK_TZ[_choice(acct, "webhook_tz")]
    try:
        occurred_at = local_time(fields["event_time"], tz, layout=EVENT_TIME_FORMAT)
    except ValueError as exc:
        raise MalformedPayload("unisender event_time is not YYYY-MM-DD HH:MM:SS") from exc
    except OverflowError as exc:  # year 1 read in UTC+3 has no UTC equivalent
        raise MalformedPayload("unisender event_time out of range") from exc
    type_, reason, final, scope = classify(fields["status"], acct)
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
            scope=scope,
            retrying=type_ is EventType.SOFT_BOUNCE and not final,
            raw=record,
        )
    ]


def replay_key(req: WebhookRequest, record: dict[str, Any]) -> str | None:
    """None: `auth` is a hash of the whole body, so a captured one cannot carry another body."""
    return None
