"""The provider contract: what every module under worker/providers/ offers, and its shared helpers.

Provider modules are pure. They take `now` as an argument and never read the clock, the network
or the environment; the poll runner and the webhook receiver do the I/O around them. Each module
exposes, at module level:

    NAME: Provider
    DEFAULTS: ProviderDefaults
    OPTIONS: dict[str, Option]                  per-account knobs for documented variants
    build_poll_request(acct, query, now) -> HttpRequest
    parse_poll_response(acct, query, status, headers, body, now) -> PollPage   raises PollError
    verify_webhook(acct, req, now, replay_window_secs) -> str                  raises BadSignature
    split_webhook(req) -> list[dict]                                           raises MalformedPayload
    webhook_observations(acct, record) -> list[Observation]                    raises MalformedPayload

`verify_webhook` checks against every key of `acct.webhook_keys` (several during a rotation) and
returns the name of the variant that matched. `split_webhook` turns one verified body into JSON-serialisable raw records (one per status);
those records are what the receiver writes to `_raw`, and `webhook_observations` is later run
on each of them by the shard that owns the account.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any, ClassVar, Literal, Protocol

import attrs

from worker.model import EventType, Observation, Provider, Smtp

CHINA_TZ = timezone(timedelta(hours=8), "UTC+08:00")


# -- account view -------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class AccountContext:
    """What a provider module may know about one configured account (secrets already resolved)."""

    name: str
    provider: Provider
    base_url: str
    api_user: str | None = None
    api_key: str | None = attrs.field(default=None, repr=False)
    secret_id: str | None = None
    secret_key: str | None = attrs.field(default=None, repr=False)
    region: str | None = None
    # How sender-side rejections (our IP/domain or content refused by the receiving server) count:
    # None (the default) maps each as PROVIDERS.md documents it; EventType.INVALID or
    # EventType.SOFT_BOUNCE makes every one of them that type. See SenderSide.
    sender_rejection: EventType | None = None
    # Keys accepted for webhook signatures, newest first (several during a rotation).
    webhook_keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    # Provider-specific documented variants; names and values are declared in each module's OPTIONS.
    options: Mapping[str, str] = attrs.field(factory=dict)

    def option(self, module_options: Mapping[str, Option], name: str) -> str:
        return self.options.get(name, module_options[name].default)


@attrs.frozen(slots=True)
class SenderSide:
    """A mapping-table value for a rejection of the sender (its IP, domain or content), which says
    nothing about the address. `documented` is the type PROVIDERS.md gives it (None: not emitted);
    an account's `sender_rejection` setting replaces it."""

    documented: EventType | None

    def resolve(self, acct: AccountContext) -> EventType | None:
        return acct.sender_rejection or self.documented


@attrs.frozen(slots=True)
class Option:
    """A per-account switch between documented variants of a provider's API."""

    default: str
    choices: tuple[str, ...]
    doc: str


@attrs.frozen(slots=True)
class ProviderDefaults:
    base_url: str
    quota_per_minute: int
    cache_ttl_secs: int                       # the provider's result cache; 0 when none is documented
    tz: tzinfo                                # the zone the provider's dates and naive times are in
    retention_days: int                       # how far back the status API answers
    page_limit: int                           # the largest page the API serves
    polling: Literal["date", "ids"]           # date windows, or batches of known email ids
    status_filters: tuple[EventType, ...]     # server-side status filters, urgent first; () = none
    id_batch: int = 0                         # ids per call for id-based polling
    max_window_days: int = 1                  # longest date span one query may cover


# -- requests and results -----------------------------------------------------------------------


@attrs.frozen(slots=True)
class PollQuery:
    """One page of one question to a status API."""

    send_date: date | None = None
    status: EventType | None = None           # a server-side status filter, or None for all
    offset: int = 0
    limit: int = 100
    email_ids: tuple[str, ...] = ()


@attrs.frozen(slots=True)
class HttpRequest:
    """A request the runner sends as is. Never log params, headers or body: they carry secrets."""

    method: Literal["GET", "POST"]
    url: str
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


@attrs.frozen(slots=True)
class PollPage:
    observations: tuple[Observation, ...]
    rows: int                                 # records in the page, emitted or not
    next_offset: int | None                   # None: this was the last page
    total: int | None = None
    unknown_ids: tuple[str, ...] = ()         # ids the provider says it does not know (UniSender)


@attrs.frozen(slots=True)
class WebhookRequest:
    """A received webhook, before any parsing. Header names are lower-cased."""

    body: bytes
    content_type: str
    headers: Mapping[str, str] = attrs.field(factory=dict)
    query: Mapping[str, str] = attrs.field(factory=dict)


# -- the error taxonomy -------------------------------------------------------------------------


class ProviderError(Exception):
    """Base of every typed failure a provider module raises. `error_type` is a bounded label."""

    error_type: ClassVar[str] = "provider_error"


class PollError(ProviderError):
    error_type = "poll_error"


class Throttled(PollError):
    """The provider's own rate-limit signal. Halve the rate; wait `retry_after` if given."""

    error_type = "throttled"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Retriable(PollError):
    """5xx, provider-internal errors, garbage from a proxy: try again later, cursor unchanged."""

    error_type = "retriable"


class FatalConfig(PollError):
    """Authentication or permission: nothing changes until an operator fixes the account."""

    error_type = "fatal_config"


class BadRequest(PollError):
    """The provider rejected our parameters: a bug in request building."""

    error_type = "bad_request"


class WebhookError(ProviderError):
    error_type = "webhook_error"


class BadSignature(WebhookError):
    """Missing, wrong or expired signature: answer 401."""

    error_type = "bad_signature"


class MalformedPayload(WebhookError):
    """Authentic (or unsigned) but unparseable: dead-letter it and answer 200."""

    error_type = "malformed"


# -- the module protocol ------------------------------------------------------------------------


class ProviderModule(Protocol):
    NAME: Provider
    DEFAULTS: ProviderDefaults
    OPTIONS: dict[str, Option]

    def build_poll_request(self, acct: AccountContext, query: PollQuery, now: datetime) -> HttpRequest: ...

    def parse_poll_response(
        self,
        acct: AccountContext,
        query: PollQuery,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime,
    ) -> PollPage: ...

    def verify_webhook(
        self, acct: AccountContext, req: WebhookRequest, now: datetime, replay_window_secs: float
    ) -> str: ...

    def split_webhook(self, req: WebhookRequest) -> list[dict[str, Any]]: ...

    def webhook_observations(self, acct: AccountContext, record: dict[str, Any]) -> list[Observation]: ...


# -- shared helpers -----------------------------------------------------------------------------

_SMTP_CODE = re.compile(r"(?<!\d)([245]\d\d)(?!\d)")
_ENHANCED = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")


def parse_smtp(text: str | None) -> Smtp | None:
    """Reply code and enhanced code from free text such as '551 5.1.1 recipient is not exist'."""
    if not text:
        return None
    enhanced = _ENHANCED.search(text)
    code = _SMTP_CODE.search(text)
    if enhanced is None and code is None:
        return None
    return Smtp(int(code.group(1)) if code else None, enhanced.group(1) if enhanced else None)


MAX_RETRY_AFTER_SECS = 3600.0


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date, at most an hour
    (a broken or hostile value must not pause an account for ever)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also accepts '²' and '①'
        return min(float(value), MAX_RETRY_AFTER_SECS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_SECS)


def classify_http(status: int, headers: Mapping[str, str], now: datetime) -> None:
    """Raise the typed error for an HTTP status that no provider answers with useful data."""
    if status == 429:
        raise Throttled("HTTP 429", parse_retry_after(headers.get("retry-after"), now))
    if status >= 500:
        raise Retriable(f"HTTP {status}")
    if status in (401, 403):
        raise FatalConfig(f"HTTP {status}")


def epoch_to_utc(value: int | float | str) -> datetime:
    """Unix time in seconds or milliseconds (values above 10**12 are milliseconds) as UTC."""
    number = float(value)
    if number > 1e12:
        return datetime.fromtimestamp(int(number) / 1000, tz=timezone.utc).replace(
            microsecond=(int(number) % 1000) * 1000
        )
    return datetime.fromtimestamp(int(number), tz=timezone.utc)


_NAIVE_TIME = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2}) (\d{1,2}):(\d{1,2}):(\d{1,2})", re.ASCII)


def naive_to_utc(text: str, tz: tzinfo) -> datetime:
    """A provider's zone-less `yyyy-MM-dd HH:mm:ss`, read in the provider's zone, as UTC.

    Parsed by hand: strptime was a sixth of the worker's CPU per polled row (bench/README.md).
    Accepts what strptime("%Y-%m-%d %H:%M:%S") accepts; raises ValueError otherwise."""
    match = _NAIVE_TIME.fullmatch(text)
    if match is None:
        raise ValueError("not a yyyy-MM-dd HH:mm:ss time")
    return datetime(*map(int, match.groups()), tzinfo=tz).astimezone(timezone.utc)
