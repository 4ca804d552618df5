"""The shared SMTP evidence table and the scope rule (worker.providers.classify), as literal cases
typed from RFC 3463 / RFC 5321 / RFC 7372 and the issue-13 contract."""

from __future__ import annotations

import pytest

from worker.model import EventType, Reason, Scope, Smtp
from worker.providers.base import parse_smtp
from worker.providers.classify import settle, smtp_evidence

R, S = Reason, Scope
INV, SOFT = EventType.INVALID, EventType.SOFT_BOUNCE

# reply text -> (reason, scope) or None (no definite evidence)
EVIDENCE = {
    "550 5.1.1 user unknown": (R.UNKNOWN_USER, S.RECIPIENT),
    "450 4.1.1 mailbox unavailable": (R.UNKNOWN_USER, S.RECIPIENT),
    "550 5.1.2 bad destination system address": (R.DOMAIN_INVALID, S.DOMAIN),
    "553 5.1.3 bad address syntax": (R.BAD_ADDRESS, S.RECIPIENT),
    "550 5.1.6 mailbox has moved": (R.MAILBOX_DISABLED, S.RECIPIENT),
    "550 5.1.7 bad sender address syntax": (R.SENDER_REJECTED, S.SENDER),
    "550 5.1.8 bad sender system address": (R.SENDER_REJECTED, S.SENDER),
    "556 5.1.10 null MX": (R.DOMAIN_INVALID, S.DOMAIN),
    "550 5.1.0 other address status": (R.BAD_ADDRESS, S.RECIPIENT),
    "550 5.2.1 mailbox disabled": (R.MAILBOX_DISABLED, S.RECIPIENT),
    "552 5.2.2 mailbox full": (R.MAILBOX_FULL, S.RECIPIENT),
    "552 5.2.3 message too long": (R.POLICY_REJECTED, S.CONTENT),
    "550 5.2.0 other mailbox status": (R.OTHER, S.RECIPIENT),
    "552 5.3.4 message too big for system": (R.POLICY_REJECTED, S.CONTENT),
    "451 4.3.0 local problem": None,
    "421 4.4.1 no answer from host": (R.SERVER_UNREACHABLE, S.DOMAIN),
    "421 4.4.2 connection dropped": (R.SERVER_UNREACHABLE, S.DOMAIN),
    "550 5.4.4 unable to route": (R.DOMAIN_INVALID, S.DOMAIN),
    "451 4.4.7 delivery time expired": (R.DEFERRED, S.UNKNOWN),
    "451 4.4.3 directory server failure": None,
    "554 5.5.0 protocol error": None,
    "554 5.6.1 media not supported": (R.POLICY_REJECTED, S.CONTENT),
    "554 5.7.0 other security status": (R.POLICY_REJECTED, S.POLICY),
    "554 5.7.1 message refused": (R.POLICY_REJECTED, S.POLICY),
    "550 5.7.13 user account disabled": (R.MAILBOX_DISABLED, S.RECIPIENT),
    "550 5.7.23 SPF validation failed": (R.SENDER_REJECTED, S.SENDER),
    "550 5.7.26 multiple authentication checks failed": (R.SENDER_REJECTED, S.SENDER),
    "550 5.7.8 authentication credentials invalid": (R.SENDER_REJECTED, S.SENDER),
    "451 4.7.500 server busy": (R.POLICY_REJECTED, S.POLICY),
    "552 requested action aborted: exceeded storage allocation": (R.MAILBOX_FULL, S.RECIPIENT),
    "553 mailbox name not allowed": (R.BAD_ADDRESS, S.RECIPIENT),
    "550 requested action not taken": None,
    "554 transaction failed": None,
    "no reply code at all": None,
}


@pytest.mark.parametrize("text", list(EVIDENCE))
def test_smtp_evidence_table(text) -> None:
    assert smtp_evidence(parse_smtp(text)) == EVIDENCE[text]


def test_no_reply_is_no_evidence() -> None:
    assert smtp_evidence(None) is None
    assert smtp_evidence(Smtp(None, None)) is None


# (type, reason, scope, reply) -> settled (type, reason, scope)
RULE = [
    # the table alone; a reason's own scope when the row gives none
    ((INV, R.UNKNOWN_USER, None, None), (INV, R.UNKNOWN_USER, S.RECIPIENT)),
    ((INV, R.OTHER, None, None), (SOFT, R.OTHER, S.UNKNOWN)),
    ((SOFT, R.SPAM_REJECTED, None, None), (SOFT, R.SPAM_REJECTED, S.CONTENT)),
    ((SOFT, None, None, None), (SOFT, None, S.UNKNOWN)),
    # evidence sets scope and reason, the provider's type is kept...
    ((SOFT, R.OTHER, S.UNKNOWN, "550 5.1.1 x"), (SOFT, R.UNKNOWN_USER, S.RECIPIENT)),
    ((INV, R.OTHER, S.UNKNOWN, "550 5.1.1 x"), (INV, R.UNKNOWN_USER, S.RECIPIENT)),
    # ...unless an invalid's evidence is not about the address: a final soft bounce
    ((INV, R.UNKNOWN_USER, S.RECIPIENT, "554 5.7.1 x"), (SOFT, R.POLICY_REJECTED, S.POLICY)),
    ((INV, R.BAD_ADDRESS, S.RECIPIENT, "550 5.7.26 x"), (SOFT, R.SENDER_REJECTED, S.SENDER)),
    # ...or the failure is temporary (a reply of class 4, or a full mailbox): a final soft bounce
    ((INV, R.OTHER, S.UNKNOWN, "552 5.2.2 mailbox full"), (SOFT, R.MAILBOX_FULL, S.RECIPIENT)),
    ((INV, R.OTHER, S.UNKNOWN, "552 requested action aborted: exceeded storage allocation"),
     (SOFT, R.MAILBOX_FULL, S.RECIPIENT)),
    ((INV, R.MAILBOX_FULL, None, None), (SOFT, R.MAILBOX_FULL, S.RECIPIENT)),
    ((INV, R.UNKNOWN_USER, S.RECIPIENT, "450 4.1.1 x"), (SOFT, R.UNKNOWN_USER, S.RECIPIENT)),
    ((INV, R.OTHER, S.UNKNOWN, "421 4.4.1 no answer from host"), (SOFT, R.SERVER_UNREACHABLE, S.DOMAIN)),
    ((INV, R.BAD_ADDRESS, S.RECIPIENT, "452 too many recipients"), (SOFT, R.BAD_ADDRESS, S.RECIPIENT)),
    ((INV, R.BAD_ADDRESS, S.RECIPIENT, "550 4.1.3 x"), (SOFT, R.BAD_ADDRESS, S.RECIPIENT)),   # enhanced class wins
    ((INV, R.UNKNOWN_USER, S.RECIPIENT, "450 5.1.1 x"), (INV, R.UNKNOWN_USER, S.RECIPIENT)),
    ((INV, R.UNKNOWN_USER, S.RECIPIENT, "250 2.1.5 ok"), (INV, R.BAD_ADDRESS, S.RECIPIENT)),   # subject 1; class 2
    ((SOFT, R.OTHER, S.UNKNOWN, "552 5.2.2 mailbox full"), (SOFT, R.MAILBOX_FULL, S.RECIPIENT)),
    # ...but not the provider's own refusal (rule 1)
    ((INV, R.SUPPRESSED, S.PROVIDER, "452 4.2.2 over quota"), (INV, R.SUPPRESSED, S.PROVIDER)),
    # no evidence in the text: the row stands
    ((INV, R.BAD_ADDRESS, S.RECIPIENT, "550 no"), (INV, R.BAD_ADDRESS, S.RECIPIENT)),
    # the provider's own refusal is kept whatever the text says
    ((INV, R.SUPPRESSED, S.PROVIDER, "550 5.7.1 x"), (INV, R.SUPPRESSED, S.PROVIDER)),
    ((SOFT, R.SUPPRESSED, None, "550 5.1.1 x"), (SOFT, R.SUPPRESSED, S.PROVIDER)),
    # not failures: unchanged
    ((EventType.DELIVERED, None, None, "250 2.0.0 ok"), (EventType.DELIVERED, None, None)),
    ((EventType.COMPLAINT, None, None, "550 5.1.1 x"), (EventType.COMPLAINT, None, None)),
    ((None, R.PROVIDER_ERROR, None, None), (None, R.PROVIDER_ERROR, None)),
]


@pytest.mark.parametrize(("given", "expected"), RULE)
def test_settle(given, expected) -> None:
    type_, reason, scope, reply = given
    assert settle(type_, reason, scope, parse_smtp(reply)) == expected


def test_every_reason_stands_for_a_scope() -> None:
    """A failure row without a scope takes its reason's: the table must cover every reason."""
    from worker.providers.classify import REASON_SCOPE
    assert set(REASON_SCOPE) == set(Reason)
    assert settle(INV, R.UNSUBSCRIBED, None, None) == (INV, R.UNSUBSCRIBED, S.PROVIDER)


# reply -> temporary (RFC 3463: the enhanced code's class; RFC 5321: a 4yz basic code without one)
TEMPORARY = {
    "452 4.2.2 over quota": True,
    "421 try again later": True,
    "4.7.1 greylisted": True,
    "499 odd": True,
    "550 4.1.1 x": True,
    "450 5.1.1 x": False,
    "550 5.1.1 x": False,
    "552 mailbox full": False,
    "500 syntax": False,
    "250 2.0.0 ok": False,
    "no code": False,
}


@pytest.mark.parametrize("reply", list(TEMPORARY))
def test_temporary(reply) -> None:
    from worker.providers.classify import temporary
    assert temporary(parse_smtp(reply)) is TEMPORARY[reply]
    assert temporary(None) is False
