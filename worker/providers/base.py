"""The provider contract: what every module under worker/providers/ offers, and its shared helpers.

Provider modules are pure. They take `now` as an argument and never read the clock, the network
or the environment; the poll runner and the webhook receiver do the I/O around them. Each module
exposes, at module level:

    NAME: Provider
    DEFAULTS: ProviderDefaults
    OPTIONS: dict[str, Option]                  per-account knobs for documented variants
    CREDENTIALS: Credentials                    what an account must configure, as data
    build_poll_request(acct, query, now) -> HttpRequest
    parse_poll_response(acct, query, status, headers, body, now) -> PollPage   raises PollError
    verify_webhook(acct, req, now, replay_window_secs) -> str                  raises BadSignature
    split_webhook(req) -> list[dict]                                           raises MalformedPayload
    webhook_observations(acct, record) -> list[Observation]                    raises MalformedPayload
    replay_key(req, record) -> str | None      what a captured signature would be reused as

`verify_webhook` checks against every key of `acct.webhook_keys` (several during a rotation) and
returns the name of the variant that matched, or `URL_CHECK` for a provider's test of the URL
(answered 200, nothing written). `split_webhook` turns one verified body into JSON-serialisable raw records (one per status);
those records are what the receiver writes to `_raw`, and `webhook_observations` is later run
on each of them by the shard that owns the account.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any, Literal, Protocol

import attrs
import orjson

from worker.model import EventType, Observation, Provider, Smtp, utc

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
    an account's `sender_rejection` setting replaces it (see `resolve`)."""

    documented: EventType | None


def resolve(value: EventType | SenderSide | None, acct: AccountContext) -> EventType | None:
    """The type a mapping table's value stands for on this account: a SenderSide as the account's
    `sender_rejection` says (its documented type by default), anything else as it is."""
    if isinstance(value, SenderSide):
        return acct.sender_rejection or value.documented
    return value


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
    # The email id webhooks and status rows give a recipient of a message the sent-message feed
    # names by `(email_id, recipient)`: the feed's id itself, unless the provider's send API
    # returns one id per message (Tencent).
    sent_email_id: Callable[[str, str], str] = attrs.field(default=lambda email_id, _recipient: email_id,
                                                           eq=False, repr=False)


@attrs.frozen(slots=True)
class Need:
    """One credential an account must configure. worker.config resolves every credential the
    schema knows (secrets from `<name>_env` or `<name>_file`); a provider only says which it needs."""

    section: Literal["credentials", "webhook"]
    name: str                                 # api_user, api_key, secret_id, secret_key, app_key, path_token
    why: str                                  # shown when it is missing: "for polling", ...
    plain: bool = False                       # may be given inline (not a secret: api_user, secret_id)
    min_length: int = 0                       # also applies to its `previous_<name>` during a rotation


@attrs.frozen(slots=True)
class Credentials:
    """What a provider needs from an account's configuration, by what the account has enabled."""

    always: tuple[Need, ...] = ()
    poll: tuple[Need, ...] = ()               # only when polling is enabled
    webhook: tuple[Need, ...] = ()            # only when webhooks are enabled
    # The credential that signs webhooks when no webhook.app_key is given (UniSender: the API key).
    webhook_key_fallback: str | None = None


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
    observations: Sequence[Observation]       # a tuple, or `Rows` (built when asked for: worker.rows)
    rows: int                                 # records in the page, emitted or not
    next_offset: int | None                   # None: this was the last page
    total: int | None = None
    unknown_ids: tuple[str, ...] = ()         # ids the provider says it does not know (UniSender)
    rejected: tuple[RejectedRow, ...] = ()    # rows that could not be read; the others still count


@attrs.frozen(slots=True)
class RejectedRow:
    """One row of a status-API page that could not be read: the rest of the page is used, the page
    goes to the dead-letter topic with this reason, and the window's cursor moves on."""

    index: int                                # its position in the page
    reason: str                               # a bounded error_type (worker.errors), e.g. malformed


@attrs.frozen(slots=True)
class WebhookRequest:
    """A received webhook, before any parsing. Header names are lower-cased. `parsed` is the provider
    module's own memo of what it read from the body, so verification and splitting parse it once."""

    body: bytes
    content_type: str
    headers: Mapping[str, str] = attrs.field(factory=dict)
    query: Mapping[str, str] = attrs.field(factory=dict)
    parsed: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


# -- the module protocol ------------------------------------------------------------------------


# What `verify_webhook` returns for an unsigned POST that only tests the URL (SendCloud's: "the URL
# must answer GET and POST with 200", PROVIDERS.md 2.5): the receiver answers 200 and writes nothing.
URL_CHECK = "url-check"


class ProviderModule(Protocol):
    NAME: Provider
    DEFAULTS: ProviderDefaults
    OPTIONS: dict[str, Option]
    CREDENTIALS: Credentials

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

    def replay_key(self, req: WebhookRequest, record: dict[str, Any]) -> str | None: ...


# -- shared helpers -----------------------------------------------------------------------------

# A reply code stands alone: not within a longer number, nor a part of a dotted number such as an
# IP address in the text (`mx3.qq.com[183.3.225.42] said: 550 ...`: 550, not 225). ASCII digits
# only: `\d` would take `4.١.١` (Arabic-Indic digits), which the event schema's pattern refuses.
_SMTP_CODE = re.compile(r"(?<![\d.])([245]\d\d)(?!\d|\.\d)", re.ASCII)
_ENHANCED = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])", re.ASCII)


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
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_SECS)


def load_json(body: bytes | str) -> Any:
    """The decoded JSON, or None when it is not JSON (a JSON null is None too: no caller takes one)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


# -- values -------------------------------------------------------------------------------------


def as_int(value: Any, *, max_digits: int | None = None) -> int | None:
    """An integer sent as a JSON number or as a string of ASCII digits (`406`, `"406"`); None
    otherwise. `max_digits` bounds the string form (0: numbers only)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if (isinstance(value, str) and value.isascii() and value.isdigit()
            and (max_digits is None or len(value) <= max_digits)):
        return int(value)
    return None


def as_text(value: Any) -> str | None:
    """A non-empty string as sent, or an integer rendered as its digits (ids and signed fields
    come both ways); None otherwise."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


# -- times --------------------------------------------------------------------------------------


def epoch_to_utc(value: int | float | str) -> datetime:
    """Unix time in seconds or milliseconds (values above 10**12 are milliseconds) as UTC."""
    number = float(value)
    if number > 1e12:
        return datetime.fromtimestamp(int(number) / 1000, tz=UTC).replace(
            microsecond=(int(number) % 1000) * 1000
        )
    return datetime.fromtimestamp(int(number), tz=UTC)


_EPOCH_TEXT = re.compile(r"\d{1,17}(?:\.\d{1,6})?", re.ASCII)


def _plausible(dt: datetime) -> datetime:
    # Earlier years are garbage in a status record, and RFC 3339 rendering needs four-digit years.
    if dt.year < 1970:
        raise ValueError("time before 1970")
    return dt


def epoch_time(value: Any, *, max_digits: int | None = None) -> datetime:
    """Unix seconds or milliseconds, sent as a JSON number or a string of ASCII digits, as UTC;
    TypeError or ValueError for anything else.

    By default a fraction is accepted and any time from 1970 on. With `max_digits` only whole,
    positive numbers below 10**max_digits are (Tencent's fields: 13 digits of milliseconds)."""
    if max_digits is not None:
        number = as_int(value, max_digits=max_digits)
        if number is None or not 0 < number < 10**max_digits:
            raise ValueError("not a whole Unix time")
        return epoch_to_utc(number)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError("epoch time")
    if isinstance(value, str) and not _EPOCH_TEXT.fullmatch(value):
        raise ValueError("epoch time")
    return _plausible(epoch_to_utc(value))


_NAIVE_TIME = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2}) (\d{1,2}):(\d{1,2}):(\d{1,2})", re.ASCII)


_HOUR_STARTS: dict[tuple[tzinfo, str], int] = {}   # (zone, "yyyy-MM-dd HH") -> the hour's start, Unix seconds
_HOUR_STARTS_MAX = 20_000
_MINUTE_SECONDS = {f":{m:02d}:{s:02d}": m * 60 + s for m in range(60) for s in range(60)}   # ":mm:ss" -> seconds


def naive_epoch(text: str, tz: tzinfo) -> int:
    """A provider's zone-less `yyyy-MM-dd HH:mm:ss`, read in the provider's zone, as Unix seconds.

    Parsed by hand: strptime was a sixth of the worker's CPU per polled row (bench/README.md).
    Accepts zero-padded or unpadded fields separated by one space, as the providers send them
    (strptime would also take space-padded ones); raises ValueError otherwise. The zone look-up was
    most of a polled row's time parsing (bench quota, py-spy), so the start of a zero-padded time's
    hour is remembered when the zone's offset is the same at both ends of the hour (a zone change
    inside it is worked out each time), and a time in a remembered hour is its start plus minutes
    and seconds: no datetime is made (a re-sweep's duplicate rows need only the number). The
    remembered hours came from whole, zero-padded times, so a text of 19 characters that starts with
    one and ends in `:mm:ss` (`_MINUTE_SECONDS`, 00-59 each) is read without the pattern."""
    if len(text) == 19 and (start := _HOUR_STARTS.get((tz, text[:13]))) is not None:
        within = _MINUTE_SECONDS.get(text[13:])
        if within is not None:
            return start + within
    match = _NAIVE_TIME.fullmatch(text)
    if match is None:
        raise ValueError("not a yyyy-MM-dd HH:mm:ss time")
    key = (tz, text[:13])
    year, month, day, hour, minute, second = map(int, match.groups())
    local = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    if len(text) == 19:
        top = local.replace(minute=0, second=0)
        offset = top.utcoffset()
        if offset is not None and offset == top.replace(minute=59, second=59).utcoffset():
            if len(_HOUR_STARTS) >= _HOUR_STARTS_MAX:
                _HOUR_STARTS.clear()
            _HOUR_STARTS[key] = int(top.timestamp())
    return int(local.timestamp())


def naive_to_utc(text: str, tz: tzinfo) -> datetime:
    """`naive_epoch` as an aware UTC datetime."""
    return datetime.fromtimestamp(naive_epoch(text, tz), UTC)


def local_epoch(value: Any, tz: tzinfo) -> int:
    """A zone-less `yyyy-MM-dd HH:mm:ss` in the provider's zone (`naive_epoch`), from 1970 on, as
    Unix seconds; TypeError, ValueError or OverflowError when it is not one."""
    if not isinstance(value, str):
        raise TypeError("local time")
    epoch = naive_epoch(value, tz)
    if epoch < 0:
        raise ValueError("time before 1970")
    return epoch


def local_time(value: Any, tz: tzinfo, *, layout: str | None = None) -> datetime:
    """A zone-less time in the provider's zone, as UTC; TypeError, ValueError or OverflowError
    when it is not one.

    By default `yyyy-MM-dd HH:mm:ss` as `local_epoch` reads it, from 1970 on. With `layout`,
    whatever datetime.strptime accepts for it, any year (UniSender's webhook `event_time`)."""
    if layout is None:
        return datetime.fromtimestamp(local_epoch(value, tz), UTC)
    if not isinstance(value, str):
        raise TypeError("local time")
    return datetime.strptime(value, layout).replace(tzinfo=tz).astimezone(UTC)


def offset_time(value: Any) -> datetime:
    """ISO 8601 with an offset, colon or not (`2022-11-10T15:39:01+0800`), fractions of a second
    and `Z` included, as UTC. Without an offset it is refused (ValueError): never guessed."""
    if not isinstance(value, str):
        raise TypeError("offset time")
    return _plausible(utc(datetime.fromisoformat(value)))
