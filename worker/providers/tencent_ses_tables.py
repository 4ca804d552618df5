"""Tencent Cloud SES's mapping tables (PROVIDERS.md section 5), as data, and `refine`, the rule that
sharpens a failure with its SMTP code; `tencent_ses` re-exports them.

Each value is an Entry (type, reason, final): the type None is not emitted, a SenderSide is what the
account's `sender_rejection` says (worker.providers.base.resolve).
"""

from __future__ import annotations

from worker.errors import BadRequest, FatalConfig, PollError, Retriable, Throttled
from worker.model import EventType, Reason, Smtp
from worker.providers.base import SenderSide

# -- statuses and events ------------------------------------------------------------------------

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
    # Dropped "e.g. blocklisted or invalid": invalid when the reason is the address (PROVIDERS.md
    # 5.3), so the SMTP text refines it (`refine` below); without a code it stays invalid.
    2: (EventType.INVALID, Reason.BAD_ADDRESS, True),
    3: (EventType.INVALID, Reason.UNKNOWN_USER, True),  # refused by the ESP, "usually non-existent"
    8: (EventType.SOFT_BOUNCE, Reason.DEFERRED, False),  # the ESP delays; Tencent retries
}
UNKNOWN_DELIVER_STATUS: Entry = (None, None, False)
ADDRESS_FAILURE_DELIVER_STATUSES = frozenset({2, 3})
DROPPED_DELIVER_STATUSES = frozenset({2})

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
DROPPED_EVENTS = frozenset({"dropped"})
# RFC 3463 subjects of an enhanced code that are about the recipient: 1 addressing, 2 mailbox.
# (7, security or policy, is a sender-side rejection; 3-6 are the system, network, protocol or
# content: a message dropped for those says nothing about the address and is not emitted.)
ADDRESS_SUBJECTS = frozenset({"1", "2"})

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


def refine(entry: Entry, smtp: Smtp | None, address_failure: bool, dropped: bool = False) -> Entry:
    """Sharpen a failure's reason from its SMTP enhanced code (RFC 3463). An address failure whose
    code is X.7.x (security or policy: IP, domain or content refused) is a sender-side rejection:
    documented as the failure it arrived as, unless the account's policy says otherwise. On a
    deferral or soft bounce X.7.x is mostly greylisting or rate limiting, so it changes nothing
    there. A dropped message is invalid only when its code is about the address (PROVIDERS.md 5.3:
    "invalid if the reason is address-related, else other(dropped)"): not emitted otherwise."""
    type_, reason, final = entry
    if type_ not in (EventType.INVALID, EventType.SOFT_BOUNCE) or smtp is None or smtp.enhanced is None:
        return entry
    subject_detail = smtp.enhanced.split(".", 1)[1]
    if subject_detail.startswith("7."):
        return (SenderSide(type_), Reason.POLICY_REJECTED, final) if address_failure else entry
    if dropped and subject_detail.split(".", 1)[0] not in ADDRESS_SUBJECTS:
        return None, Reason.OTHER, final
    return type_, SMTP_REASONS.get(subject_detail, reason), final


# -- Response.Error.Code of the status API --------------------------------------------------------

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
