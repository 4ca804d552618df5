"""Tencent Cloud SES's mapping tables (PROVIDERS.md section 5), as data; `tencent_ses` re-exports them.

Each value is an Entry (type, reason, final[, scope]): the type None is not emitted, a SenderSide is
what the account's `sender_rejection` says (worker.providers.base.resolve). `final` is whether the
status can still change; a soft bounce that is not final is one Tencent is still retrying. The
scope, where given, is what the status is about; otherwise its reason's. SMTP evidence in the
message then refines scope and reason (worker.providers.classify), except for rows of scope
provider: Tencent's own refusals (its blocklist, frequency control, drops).
"""

from __future__ import annotations

from worker.errors import BadRequest, FatalConfig, PollError, Retriable, Throttled
from worker.model import EventType, Reason, Scope
from worker.providers.base import SenderSide

# -- statuses and events ------------------------------------------------------------------------

Entry = (tuple[EventType | SenderSide | None, Reason | None, bool]
         | tuple[EventType | SenderSide | None, Reason | None, bool, Scope])

# SendStatus: Tencent's own processing result (SDK models.py). Non-zero means the letter never
# reached the recipient's server, so every known code is final except "no record (yet)".
SEND_STATUSES: dict[int, Entry] = {
    1001: (None, Reason.PROVIDER_ERROR, True),
    1002: (None, Reason.PROVIDER_ERROR, True),
    1003: (None, Reason.PROVIDER_ERROR, True),
    1005: (None, Reason.PROVIDER_ERROR, True),
    1009: (None, Reason.PROVIDER_ERROR, True),
    1004: (EventType.SOFT_BOUNCE, Reason.SERVER_UNREACHABLE, True, Scope.UNKNOWN),  # sending timed out
    1006: (EventType.SOFT_BOUNCE, Reason.DEFERRED, True, Scope.PROVIDER),  # frequency control for this address
    1007: (EventType.INVALID, Reason.SUPPRESSED, True),  # the address is on Tencent's blocklist
    # The recipient's server refused our sender domain: a sender-side rejection. PROVIDERS.md
    # files it as other(sender_rejected), not emitted; an account's sender_rejection may emit it.
    1008: (SenderSide(None), Reason.SENDER_REJECTED, True),
    1010: (None, Reason.OTHER, True),  # daily limit
    1011: (None, Reason.OTHER, True),  # custom content not permitted
    1013: (EventType.UNSUBSCRIBED, Reason.UNSUBSCRIBED, True, Scope.PROVIDER),  # unsubscribed from this sender domain
    2001: (None, None, False),  # no record found: it may still appear
    3007: (None, Reason.OTHER, True),
    3008: (EventType.SOFT_BOUNCE, Reason.SENDER_REJECTED, True),  # sender domain blocked for a while
    3009: (None, Reason.OTHER, True),
    3010: (None, Reason.OTHER, True),
    3014: (None, Reason.OTHER, True),
    3020: (EventType.INVALID, Reason.SUPPRESSED, True),  # recipient mailbox type blocklisted by Tencent
    3024: (EventType.INVALID, Reason.BAD_ADDRESS, True),  # address format pre-check failed
    3030: (EventType.SOFT_BOUNCE, Reason.SUPPRESSED, True),  # account paused: high bounce rate
    3033: (None, Reason.OTHER, True),  # balance
}
UNKNOWN_SEND_STATUS: Entry = (None, None, False)

# DeliverStatus, read only when SendStatus is 0 (PROVIDERS.md 5.3 decision order).
DELIVER_STATUSES: dict[int, Entry] = {
    0: (None, None, False),  # queued at Tencent
    1: (EventType.DELIVERED, None, True),
    # Dropped ("discarded for some reason"): Tencent did not send it, which says nothing new about
    # the address (issue 13): never invalid, whatever its text says.
    2: (EventType.SOFT_BOUNCE, Reason.SUPPRESSED, True),
    # Refused by the ESP, "usually a non-existent address, or other reasons": invalid only when the
    # SMTP reply says it is about the address or its domain; otherwise a final soft bounce.
    3: (EventType.INVALID, Reason.OTHER, True, Scope.UNKNOWN),
    8: (EventType.SOFT_BOUNCE, Reason.DEFERRED, False),  # the ESP delays; Tencent retries
}
UNKNOWN_DELIVER_STATUS: Entry = (None, None, False)

# Webhook events (doc 39492); `processed` is the older doc's name, `delivering` seed 004's. An event
# not in this table observes nothing once its fields read (worker.providers.tencent_ses).
EVENTS: dict[str, Entry] = {
    "processed": (None, None, False),
    "delivering": (None, None, False),
    "deferred": (EventType.SOFT_BOUNCE, Reason.DEFERRED, False),
    "delivered": (EventType.DELIVERED, None, True),
    "dropped": (EventType.SOFT_BOUNCE, Reason.SUPPRESSED, True),
    "open": (None, None, False),
    "click": (None, None, False),
    "spamreport": (EventType.COMPLAINT, None, True),
    "unsubscribe": (EventType.UNSUBSCRIBED, Reason.UNSUBSCRIBED, True),
}

# `bounce` splits on bounceType: the 2021 doc says soft/hard, later ones soft_bounce/hard_bounce. A
# bounce is the ESP's answer after Tencent's attempts (a deferral is the retrying state): final.
# A hard bounce is the provider's class, not evidence of what it is about: as DeliverStatus 3.
BOUNCE_TYPES: dict[str, Entry] = {
    "hard_bounce": (EventType.INVALID, Reason.OTHER, True, Scope.UNKNOWN),
    "hard": (EventType.INVALID, Reason.OTHER, True, Scope.UNKNOWN),
    "soft_bounce": (EventType.SOFT_BOUNCE, Reason.OTHER, True),
    "soft": (EventType.SOFT_BOUNCE, Reason.OTHER, True),
}
# A bounce without a known bounceType goes by its SMTP reply class (5xx permanent); with none,
# soft: an address is not suppressed on a guess.
UNKNOWN_BOUNCE: Entry = (EventType.SOFT_BOUNCE, Reason.OTHER, True)

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

# The SDK's SendEmailStatus: `UserComplainted` (deprecated spelling) and `UserComplained`.
COMPLAINT_FLAGS = ("UserComplained", "UserComplainted")


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
