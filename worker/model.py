"""The normalized status event (schemas/status-event.v1.json) and what providers hand to the pipeline.

`Observation` is what a provider module makes of one record: normalized type, reason and times,
but not yet attributed to an account or a channel. `StatusEvent` is what goes to Kafka. The enums
here and the schema's enums are kept identical by tests/unit/test_model.py.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import orjson

SCHEMA_VERSION = 1
SCHEMA_HEADER = b"status-event/v1"


class EventType(str, enum.Enum):
    DELIVERED = "delivered"
    INVALID = "invalid"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBED = "unsubscribed"

    @property
    def permanent(self) -> bool:
        return self in _PERMANENT


_PERMANENT = frozenset({EventType.INVALID, EventType.COMPLAINT, EventType.UNSUBSCRIBED})


class Provider(str, enum.Enum):
    ENGAGELAB = "engagelab"
    SENDCLOUD = "sendcloud"
    AURORA_SENDCLOUD = "aurora_sendcloud"
    UNISENDER = "unisender"
    TENCENT_SES = "tencent_ses"


class Reason(str, enum.Enum):
    BAD_ADDRESS = "bad_address"
    UNKNOWN_USER = "unknown_user"
    MAILBOX_FULL = "mailbox_full"
    MAILBOX_DISABLED = "mailbox_disabled"
    DOMAIN_INVALID = "domain_invalid"
    BLOCKLISTED = "blocklisted"
    UNSUBSCRIBED = "unsubscribed"
    SPAM_REJECTED = "spam_rejected"
    POLICY_REJECTED = "policy_rejected"
    SERVER_UNREACHABLE = "server_unreachable"
    DEFERRED = "deferred"
    PROVIDER_ERROR = "provider_error"
    SUPPRESSED = "suppressed"              # the provider did not send: its own list, a drop or a skip
    SENDER_REJECTED = "sender_rejected"    # the receiving server refused our IP, domain or authentication
    OTHER = "other"


class Scope(str, enum.Enum):
    """What a failure is about (worker.providers.classify): whether it is evidence about the
    address (recipient, domain), about us (sender, content), the receiving side's policy, or the
    provider's own refusal."""

    RECIPIENT = "recipient"
    DOMAIN = "domain"
    SENDER = "sender"
    CONTENT = "content"
    POLICY = "policy"
    PROVIDER = "provider"
    UNKNOWN = "unknown"


class Source(str, enum.Enum):
    WEBHOOK = "webhook"
    POLL = "poll"


# An event's Kafka headers (docs/topics.md) that depend only on its type or provider, made once.
_TYPE_HEADERS = {t: ("event_type", t.value.encode()) for t in EventType}
_PROVIDER_HEADERS = {p: ("provider", p.value.encode()) for p in Provider}
_SCHEMA_HEADER = ("schema", SCHEMA_HEADER)
_CONTENT_TYPE_HEADER = ("content-type", b"application/json")


@attrs.frozen(slots=True)
class Smtp:
    """Reply code and enhanced status code parsed from a provider's SMTP text (550, 5.1.1)."""

    code: int | None
    enhanced: str | None


@attrs.frozen(slots=True)
class Observation:
    """One status a provider reported for one recipient of one message.

    `type` is None for statuses the service does not emit (pending, opened, clicked); they still
    matter to id-based polling, which stops asking once `final` is true (the status can no longer
    change). `retrying` is something else: a soft bounce the provider says it will try again (the
    event's `final` is its negation). `scope` is what a failure is about (worker.providers.classify
    sets it for every failure). `exact_time` is False when the provider reported no time and
    `occurred_at` is only when we saw the status (UniSender's checkEmail): dedup then never judges
    other reports stale against it.
    """

    email_id: str
    recipient: str
    type: EventType | None
    reason: Reason | None
    occurred_at: datetime
    provider_status: str
    message_id: str | None = None
    sent_at: datetime | None = None
    provider_sub_status: str | None = None
    provider_message: str | None = None
    smtp: Smtp | None = None
    final: bool = False
    exact_time: bool = True
    scope: Scope | None = None
    retrying: bool = False
    attempt: int | None = None
    raw: dict[str, Any] | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def oversized(self) -> bool:
        """Ids, address or status over the documented caps (docs/topics.md#limits)."""
        return (len(self.email_id) > MAX_ID_CHARS or len(self.message_id or "") > MAX_ID_CHARS
                or len(self.recipient) > MAX_RECIPIENT_CHARS or len(self.provider_status) > MAX_STATUS_CHARS
                or len(self.provider_sub_status or "") > MAX_STATUS_CHARS)


# Caps on what an event carries (docs/topics.md#limits): an observation over them is dead-lettered
# (`field_too_long`), a message text over its cap is cut (`provider_message` is for people to read).
MAX_ID_CHARS = 512            # email_id, message_id
MAX_RECIPIENT_CHARS = 320     # an address is at most 254 (RFC 5321); some slack for what providers send
MAX_STATUS_CHARS = 128        # provider_status, provider_sub_status
MAX_MESSAGE_CHARS = 2_000     # provider_message
MAX_EVENT_BYTES = 524_288     # an encoded event (with `raw` when emit_raw is on); Kafka's default limit is 1 MiB

# How far a provider's time may run ahead of our clock (clocks drift, not by more). One value for
# a signed webhook timestamp (worker.providers._sendcloud_family `check_fresh`) and a status's
# occurred_at against its receipt (worker.staging: later is `future_time`), so that a webhook the
# signature check lets in is never dead-lettered for the same skew.
CLOCK_SKEW_SECS = 300.0


def plainly_within_caps(*texts: str) -> bool:
    """True promises that an observation whose capped texts (ids, address, statuses) are these is not
    `oversized`: each is within the smallest cap. False promises nothing (`oversized` decides)."""
    return max(map(len, texts), default=0) <= MAX_STATUS_CHARS


def event_scope(type_: EventType | None, scope: Scope | None) -> Scope | None:
    """An event's scope: none for a delivery; a complaint or unsubscribe is the recipient's own act
    unless the provider said otherwise (an address already on its list); a failure nobody
    classified is `unknown`, never left out."""
    if type_ is EventType.DELIVERED or type_ is None:
        return None
    if scope is not None:
        return scope
    return Scope.RECIPIENT if type_ in (EventType.COMPLAINT, EventType.UNSUBSCRIBED) else Scope.UNKNOWN


def utc(dt: datetime) -> datetime:
    """Return `dt` as an aware UTC datetime; naive values are refused, never guessed."""
    if dt.tzinfo is UTC:
        return dt
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    return dt.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(dt: datetime) -> int:
    """Whole milliseconds since the epoch, computed exactly (no float rounding)."""
    since = utc(dt) - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1000 + since.microseconds // 1000


def make_event_id(provider: str, account: str, email_id: str, type_: str, occurred_at: datetime) -> str:
    """Deterministic id: the same status change reported twice gets the same id."""
    material = "\x1f".join((provider, account, email_id, type_, str(epoch_ms(occurred_at))))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


def rfc3339(dt: datetime) -> str:
    """UTC with a Z suffix; milliseconds only when the source had them."""
    dt = utc(dt)
    # formatted by hand: strftime's %Y does not zero-pad years below 1000 on every platform
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    return f"{text}.{dt.microsecond // 1000:03d}Z" if dt.microsecond else f"{text}Z"


def _json_time(dt: datetime) -> datetime | str:
    """A time for orjson with OPT_UTC_Z: itself when orjson writes it as `rfc3339` would (UTC, whole
    seconds: `2026-11-02T08:00:00Z`), else rfc3339's text (remembered: a page's or a batch's events
    share their `observed_at`, which has milliseconds)."""
    return dt if dt.tzinfo is UTC and not dt.microsecond else _rfc3339_recent(dt)


_rfc3339_recent = functools.lru_cache(maxsize=64)(rfc3339)


def parse_rfc3339(text: str) -> datetime:
    return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


@attrs.frozen(slots=True)
class StatusEvent:
    event_id: str
    type: EventType
    provider: Provider
    account: str
    email_id: str
    message_id: str | None
    recipient: str
    occurred_at: datetime
    sent_at: datetime | None
    observed_at: datetime
    source: Source
    reason: Reason | None
    provider_status: str
    provider_sub_status: str | None
    provider_message: str | None
    smtp: Smtp | None
    raw: dict[str, Any] | None = None
    final: bool = True
    scope: Scope | None = None
    attempt: int | None = None

    @property
    def permanent(self) -> bool:
        return self.type.permanent

    @classmethod
    def from_observation(
        cls,
        obs: Observation,
        *,
        provider: Provider,
        account: str,
        source: Source,
        observed_at: datetime,
        emit_raw: bool = False,
    ) -> StatusEvent:
        if obs.type is None:
            raise ValueError("observation has no emittable type")
        return cls(
            event_id=make_event_id(provider, account, obs.email_id, obs.type, obs.occurred_at),
            type=obs.type,
            provider=provider,
            account=account,
            email_id=obs.email_id,
            message_id=obs.message_id,
            recipient=obs.recipient.lower(),
            occurred_at=utc(obs.occurred_at),
            sent_at=utc(obs.sent_at) if obs.sent_at is not None else None,
            observed_at=utc(observed_at),
            source=source,
            reason=obs.reason,
            provider_status=obs.provider_status,
            provider_sub_status=obs.provider_sub_status,
            provider_message=obs.provider_message[:MAX_MESSAGE_CHARS] if obs.provider_message else obs.provider_message,
            smtp=obs.smtp,
            raw=obs.raw if emit_raw else None,
            final=not (obs.type is EventType.SOFT_BOUNCE and obs.retrying),
            scope=event_scope(obs.type, obs.scope),
            attempt=obs.attempt,
        )

    def to_dict(self) -> dict[str, Any]:
        """The event as its JSON reads (plain types), each time rendered by `rfc3339`."""
        return orjson.loads(orjson.dumps(self._fields(rfc3339)))

    def _fields(self, time: Callable[[datetime], Any]) -> dict[str, Any]:
        """The event's JSON fields, each time as `time` renders it. The enum fields are their members:
        str subclasses, which orjson writes as their value (without asking each for `.value`)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "event_id": self.event_id,
            "type": self.type,
            "provider": self.provider,
            "account": self.account,
            "email_id": self.email_id,
            "message_id": self.message_id,
            "recipient": self.recipient,
            "occurred_at": time(self.occurred_at),
            "sent_at": time(self.sent_at) if self.sent_at is not None else None,
            "observed_at": time(self.observed_at),
            "source": self.source,
            "permanent": self.type in _PERMANENT,
            "reason": self.reason,
            "provider_status": self.provider_status,
            "provider_sub_status": self.provider_sub_status,
            "provider_message": self.provider_message,
            "smtp": {"code": self.smtp.code, "enhanced": self.smtp.enhanced} if self.smtp else None,
            "final": self.final,
            "scope": self.scope,
            "attempt": self.attempt,
            "raw": self.raw,
        }

    def encode(self) -> bytes:
        """`to_dict` as JSON bytes; whole-second UTC times are rendered by orjson (in C, the same text)."""
        return orjson.dumps(self._fields(_json_time), option=orjson.OPT_UTC_Z)

    @property
    def key(self) -> bytes:
        """Kafka key: one address, one partition, so the suppression list sees per-address order."""
        return self.recipient.encode("utf-8")

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [_TYPE_HEADERS[self.type], _PROVIDER_HEADERS[self.provider], ("event_id", self.event_id.encode()),
                _SCHEMA_HEADER, _CONTENT_TYPE_HEADER]

    @classmethod
    def decode(cls, data: bytes) -> StatusEvent:
        d = orjson.loads(data)
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {d.get('schema_version')!r}")
        smtp = d.get("smtp")
        return cls(
            event_id=d["event_id"],
            type=EventType(d["type"]),
            provider=Provider(d["provider"]),
            account=d["account"],
            email_id=d["email_id"],
            message_id=d.get("message_id"),
            recipient=d["recipient"],
            occurred_at=parse_rfc3339(d["occurred_at"]),
            sent_at=parse_rfc3339(d["sent_at"]) if d.get("sent_at") else None,
            observed_at=parse_rfc3339(d["observed_at"]),
            source=Source(d["source"]),
            reason=Reason(d["reason"]) if d.get("reason") else None,
            provider_status=d["provider_status"],
            provider_sub_status=d.get("provider_sub_status"),
            provider_message=d.get("provider_message"),
            smtp=Smtp(smtp.get("code"), smtp.get("enhanced")) if smtp else None,
            raw=d.get("raw"),
            # Events written before these fields existed (docs/consumers.md, schema evolution):
            # a soft bounce was not known to be final, everything else was; no scope, no attempt.
            final=d["final"] if "final" in d else d["type"] != EventType.SOFT_BOUNCE.value,
            scope=Scope(d["scope"]) if d.get("scope") else None,
            attempt=d.get("attempt"),
        )
