"""What SendCloud (China), Aurora SendCloud (international) and EngageLab share.

The three run on one code base (PROVIDERS.md 1.1, 3.1): the sub-status table, the status filter
codes, the per-recipient id shape, the credentials, and the helpers for records, errors and
signatures. SendCloud's API engine itself is in `sendcloud` (functions over an `Edition`), which
Aurora runs with its own edition.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, tzinfo
from typing import Any

from worker.errors import BadRequest, BadSignature, FatalConfig, ProviderError, Retriable
from worker.model import CLOCK_SKEW_SECS, EventType, Observation, Reason, Scope, Smtp, utc
from worker.providers._answers import BAD_INPUT, full_page_next
from worker.providers.base import (
    AccountContext,
    Credentials,
    Need,
    PollQuery,
    ProviderDefaults,
    SenderSide,
    as_int,
    as_text,
    epoch_time,
    parse_smtp,
    resolve,
)
from worker.providers.classify import settle

# What an account of any of the three must configure (worker.config checks it).
CREDENTIALS = Credentials(
    poll=(
        Need("credentials", "api_user", "for polling", plain=True),
        Need("credentials", "api_key", "for polling"),
    ),
    webhook=(Need("webhook", "app_key", "to verify webhooks"),),
)

# -- tables shared by all three -----------------------------------------------------------------

# Sub-status → (type, reason, scope), PROVIDERS.md 1.4 / 2.4 / 3.4: 4xx permanent, 5xx temporary.
# The scope says what the provider's code is about (worker.providers.classify): SMTP evidence in
# the record refines it, and an `invalid` that is not about the address (sender, content, policy,
# unknown) is a final soft bounce. Soft bounces here are final: the provider reports status 18
# (sending) while it retries, and 5 once it has given up.
Row = tuple[EventType, Reason, Scope | None]
SUB_STATUS: dict[int, Row] = {
    401: (EventType.INVALID, Reason.SUPPRESSED, Scope.PROVIDER),      # on the provider's blacklist, not sent
    402: (EventType.INVALID, Reason.UNSUBSCRIBED, Scope.PROVIDER),    # unsubscribed earlier, not sent
    403: (EventType.INVALID, Reason.SERVER_UNREACHABLE, Scope.DOMAIN),
    404: (EventType.INVALID, Reason.BAD_ADDRESS, Scope.RECIPIENT),
    405: (EventType.SOFT_BOUNCE, Reason.SENDER_REJECTED, Scope.SENDER),  # our IP or domain refused
    406: (EventType.INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT),
    407: (EventType.SOFT_BOUNCE, Reason.SPAM_REJECTED, Scope.CONTENT),  # our content judged spam
    408: (EventType.INVALID, Reason.POLICY_REJECTED, Scope.POLICY),   # "sender/recipient rejected"
    409: (EventType.INVALID, Reason.OTHER, Scope.UNKNOWN),            # "other": SMTP evidence decides
    503: (EventType.SOFT_BOUNCE, Reason.SERVER_UNREACHABLE, Scope.DOMAIN),
    505: (EventType.SOFT_BOUNCE, Reason.SENDER_REJECTED, Scope.SENDER),
    506: (EventType.SOFT_BOUNCE, Reason.UNKNOWN_USER, Scope.RECIPIENT),
    507: (EventType.SOFT_BOUNCE, Reason.SPAM_REJECTED, Scope.CONTENT),
    508: (EventType.SOFT_BOUNCE, Reason.POLICY_REJECTED, Scope.POLICY),
    509: (EventType.SOFT_BOUNCE, Reason.OTHER, Scope.UNKNOWN),
}
# Codes added later keep the documented meaning of their hundred (the seeds: 4xx never retry).
SUB_STATUS_FALLBACK: dict[int, Row] = {
    4: (EventType.INVALID, Reason.OTHER, Scope.UNKNOWN),
    5: (EventType.SOFT_BOUNCE, Reason.OTHER, Scope.UNKNOWN),
}
# These reject *our* IP/domain or content and say nothing about the address: soft bounces (the
# providers file them under invalid; an `invalid` about the sender breaks the scope invariant),
# or whatever an account's `sender_rejection` says.
SENDER_SIDE = frozenset({405, 407})

# The reason a type has when no sub-status refines it. A complaint is absent on purpose: the
# recipient acted on a delivered mail, so no delivery-failure reason applies (OTHER would claim
# an unclassified failure, SPAM_REJECTED a receiving server's refusal).
DEFAULT_REASON: dict[EventType, Reason] = {
    EventType.INVALID: Reason.OTHER,
    EventType.SOFT_BOUNCE: Reason.OTHER,
    EventType.UNSUBSCRIBED: Reason.UNSUBSCRIBED,
}
FAILURES = frozenset({EventType.INVALID, EventType.SOFT_BOUNCE})
FINAL = frozenset({EventType.DELIVERED, EventType.INVALID})


def final(type_: EventType | None, base: EventType | None) -> bool:
    """Whether a row's status can no longer change (what an id tracker stops asking about,
    `Observation.final`): a delivery or an address gone, or a row in the provider's own `invalid`
    status whatever the scope rule published it as (a refusal of our sender or content, a
    temporary reply: worker.providers.classify), since the provider does not retry those. A soft
    bounce in its own status is not: a retry may follow it."""
    return type_ in FINAL or base is EventType.INVALID

# The `status` filter of all three status APIs (seeds 000-002); 18 (sending) is never asked for.
STATUS_FILTER: dict[EventType, str] = {
    EventType.DELIVERED: "1",
    EventType.INVALID: "4",
    EventType.SOFT_BOUNCE: "5",
}

# Email ids one status call carries when it asks by id (`emailIds` / `email_ids`, `;`-joined; the
# poll runner's gap-driven polling). No doc of the three gives a maximum (PROVIDERS.md 1.2, 2.2,
# 3.2; sendcloud2013/sendcloud_docs sources/email_v2/deliver_response.md; crazzfeng/sendcloud-docs
# reference/Data.yaml). A public EngageLab client sends 20 a call, noting the API takes at most 20,
# and the SendCloud code base EngageLab descends from may well share that cap; a cap exceeded may
# drop ids silently, so 20 for all three. An id is one recipient and one row, so a batch fits one
# page (100 rows), and 20 URL-encoded ids (~80 characters each) keep a GET URL near 2 KB.
ID_BATCH = 20


@contextmanager
def bad_input_as(error: type[ProviderError], what: str) -> Iterator[None]:
    """Re-raise malformed-input exceptions as `error`; the message names no data, only the field."""
    try:
        yield
    except BAD_INPUT as exc:
        detail = f"missing {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else type(exc).__name__
        raise error(f"{what}: {detail}") from exc


# -- values -------------------------------------------------------------------------------------


def required_text(record: Mapping[str, Any], key: str) -> str:
    """A non-empty string field (numbers are rendered as sent); KeyError when absent or empty."""
    value = as_text(record.get(key))
    if value is None:
        raise KeyError(key)
    return value


def first_text(record: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    """The first non-empty string among `keys`."""
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def first_present(record: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if record.get(key) not in (None, ""):
            return record[key]
    return None


def message_id_of(email_id: str) -> str | None:
    """The message id in a per-recipient id `<message_id><index>$<recipient>`; None for other shapes.

    SendCloud-family ids end the message part with `-inbound` (PROVIDERS.md 1.1, 2.3), so the
    digits right before `$` are the recipient's index and everything before them is the message.
    """
    head, dollar, _ = email_id.partition("$")
    message = head.rstrip("0123456789")
    if not dollar or not message or message == head:
        return None
    return message


# -- times --------------------------------------------------------------------------------------


def send_day(query: PollQuery, now: datetime, tz: tzinfo) -> date:
    """The queried send date, or today in the provider's zone (a China date is not a UTC date)."""
    return query.send_date or utc(now).astimezone(tz).date()


# -- classification -----------------------------------------------------------------------------


def sub_status_outcome(code: int | None, acct: AccountContext) -> tuple[EventType | None, Reason, Scope | None] | None:
    if code is None:
        return None
    outcome = SUB_STATUS.get(code) or SUB_STATUS_FALLBACK.get(code // 100 if 400 <= code < 600 else 0)
    if outcome is None:
        return None
    if code in SENDER_SIDE:
        return resolve(SenderSide(outcome[0]), acct), outcome[1], outcome[2]
    return outcome


def outcome(base: EventType | None, sub_status: Any,
            acct: AccountContext) -> tuple[EventType | None, Reason | None, Scope | None]:
    """Type, reason and scope: the numeric sub-status when it has one, else the status's own meaning.

    The number is preferred because it is the same in every language and edition, while the
    status words are Chinese, English or unknown (PROVIDERS.md 3.3).
    """
    by_sub = sub_status_outcome(as_int(sub_status), acct)
    if by_sub is not None:
        return by_sub
    return base, DEFAULT_REASON.get(base) if base is not None else None, None


Classified = tuple[EventType | None, Reason | None, Scope | None, Smtp | None]


def classify(acct: AccountContext, base: EventType | None, sub_status: Any, message: str | None,
             known: bool = True) -> Classified:
    """Type, reason, scope and SMTP evidence of a row: a function of the account, the status's own
    type, the sub-status (as `as_int` reads it) and the message text, so a page may reuse it for rows
    that share the three. `known`: whether the row's status is one the provider module knows. The
    sub-status refines a failure, or a status not known; a known status that is not a failure (a
    delivered row, or a pending one: the provider still retrying, its last attempt's code beside it)
    is what it says, whatever sub-status comes with it (docs/mapping.md)."""
    smtp = parse_smtp(message)
    if known and base not in FAILURES:
        sub_status = None
    return (*settle(*outcome(base, sub_status, acct), smtp, message), smtp)


def observation(
    acct: AccountContext,
    *,
    email_id: str,
    recipient: str,
    base: EventType | None,
    sub_status: Any,
    occurred_at: datetime,
    provider_status: str,
    message: str | None,
    record: dict[str, Any],
    message_id: str | None = None,
    sent_at: datetime | None = None,
    classified: Classified | None = None,
    known: bool = True,
) -> Observation:
    """A row's observation; `classified`: what `classify` gave for its base, sub-status and message
    (and `known`, whether its status is one the module knows). `base` also says whether the row is
    final (`final`)."""
    type_, reason, scope, smtp = classified or classify(acct, base, sub_status, message, known)
    return Observation(
        email_id=email_id,
        recipient=recipient,
        type=type_,
        reason=reason,
        occurred_at=occurred_at,
        provider_status=provider_status,
        message_id=message_id or message_id_of(email_id),
        sent_at=sent_at,
        provider_sub_status=None if sub_status in (None, "") else str(sub_status),
        provider_message=message,
        smtp=smtp,
        final=final(type_, base),
        scope=scope,
        raw=record,
    )


# -- polling helpers ----------------------------------------------------------------------------


def page_size(query: PollQuery, defaults: ProviderDefaults) -> int:
    """The page size sent: sizes above the provider's maximum are an error there, so clamp."""
    return max(1, min(query.limit, defaults.page_limit))


def paging(query: PollQuery, defaults: ProviderDefaults) -> tuple[str, str]:
    """Offset and page size as sent."""
    if query.offset < 0:
        raise BadRequest("negative offset")
    return str(query.offset), str(page_size(query, defaults))


def status_filter(status: EventType | None) -> list[tuple[str, str]]:
    if status is None:
        return []
    if status not in STATUS_FILTER:
        raise BadRequest(f"no server-side filter for {status.value}")
    return [("status", STATUS_FILTER[status])]


def id_filter(name: str, query: PollQuery, defaults: ProviderDefaults) -> list[tuple[str, str]]:
    """The query's email ids as the parameter `name`, `;`-joined; none without ids. A batch the
    provider cannot take (over `defaults.id_batch`, an empty id, an id holding the `;` that
    separates them) is a bug in the caller: BadRequest."""
    ids = query.email_ids
    if not ids:
        return []
    if len(ids) > defaults.id_batch:
        raise BadRequest(f"{len(ids)} email ids in one query; the most is {defaults.id_batch}")
    if not all(ids) or any(";" in i for i in ids):
        raise BadRequest("email ids must be non-empty and free of ';'")
    return [(name, ";".join(ids))]


def require_credentials(acct: AccountContext) -> tuple[str, str]:
    if not acct.api_user or not acct.api_key:
        raise FatalConfig(f"{acct.provider.value}: api_user and api_key are required")
    return acct.api_user, acct.api_key


def optional_total(container: Mapping[str, Any], what: str) -> int | None:
    """The answer's `total` (a string in the seeds): None when absent or null; present but not a
    count, it makes the page unusable (its paging cannot be trusted): Retriable."""
    value = container.get("total")
    if value is None:
        return None
    total = as_int(value)
    if total is None:
        raise Retriable(f"{what}: unreadable total")
    return total


def next_offset(offset: int, rows: int, total: int | None, limit: int) -> int | None:
    """After `rows` rows from `offset`: on while the total says more; without a total, on after a
    full page of `limit` rows only."""
    if total is None:
        return full_page_next(offset, rows, limit)
    return offset + rows if rows and offset + rows < total else None


# -- signatures ---------------------------------------------------------------------------------


def signature_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.lower().encode("utf-8", "replace"))


def as_received(text: str) -> bytes:
    """The bytes a header or field arrived as: aiohttp decodes them with surrogateescape, so bytes
    that are not UTF-8 come back exactly instead of raising (a signature is over what was sent)."""
    return text.encode("utf-8", "surrogateescape")


def hmac_sha256(key: str, message: str) -> str:
    return hmac.new(key.encode("utf-8"), as_received(message), hashlib.sha256).hexdigest()


def check_fresh(timestamp: Any, now: datetime, replay_window_secs: float,
                future_skew_secs: float = CLOCK_SKEW_SECS) -> None:
    """Refuse signed times (ms or s) older than the replay window or more than `future_skew_secs`
    ahead of our clock. The second is the replay defence's, not a judgement of the sender: the shard
    remembers a signature for the replay window from when it was received, and this check lets it
    pass until the window has passed from when it was signed, so a signature dated D ahead could
    carry a forged body for D once forgotten (the signature covers the timestamp and token, not the
    body). A sender whose clock runs fast gets 401s whose logged reason says so (runbook)."""
    with bad_input_as(BadSignature, "unreadable timestamp"):
        signed_at = epoch_time(timestamp)
    age = (utc(now) - signed_at).total_seconds()
    if age > replay_window_secs:
        raise BadSignature("timestamp outside the replay window")
    if age < -future_skew_secs:
        raise BadSignature("timestamp in the future")


def first_match(candidates: Iterator[tuple[str, str, Any]], signature: str) -> tuple[str, Any] | None:
    """The (variant, signed time) of the first candidate (variant, expected, signed time) that matches."""
    for variant, expected, signed_at in candidates:
        if signature_matches(expected, signature):
            return variant, signed_at
    return None
