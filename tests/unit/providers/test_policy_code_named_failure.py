"""A policy code (x.7.0, x.7.1) with a reply that names the failure (public-captures audit of
2026-12-06, finding 2): servers answer an unknown user with "550 5.7.1 No such user!" (Yandex's MTA;
the "user unknown" corpus of rjbs/Mail-DeliveryStatus-BounceParser, `t/various-unknown.t`) and
anymail's Unisender Go test has "555 5.7.1 User unknown". The code said first, so a dead address
became a policy soft bounce that no suppression list acts on. Now a failure that names the
recipient's mailbox outranks a policy code, and only a policy code, unless the reply is about our
side (the review of the same day: "Helo command rejected: Host not found" is about the sending
server; a domain phrase never outranks a policy code) (worker.providers.classify, rule 2).
Expected values by hand."""

from __future__ import annotations

import pytest

from worker.model import EventType, Reason, Scope
from worker.providers.base import parse_smtp
from worker.providers.classify import settle, text_evidence

INVALID, SOFT = EventType.INVALID, EventType.SOFT_BOUNCE


@pytest.mark.parametrize(("row", "reply", "expected"), [
    # a hard-class row without evidence of its own (Tencent's hard_bounce, a Go hard_bounced)
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.7.1 No such user!", (INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.7.0 mailbox does not exist",
     (INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.7.1 Message rejected as spam",   # no failure named
     (SOFT, Reason.POLICY_REJECTED, Scope.POLICY)),
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "554 5.7.1 mailbox full", (SOFT, Reason.MAILBOX_FULL, Scope.RECIPIENT)),
    # domain phrases never outrank a policy code, and a reply about our side keeps it
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.7.1 domain not found", (SOFT, Reason.POLICY_REJECTED, Scope.POLICY)),
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.7.1 <mail.sender.example>: Helo command rejected: Host not found",
     (SOFT, Reason.POLICY_REJECTED, Scope.POLICY)),
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "554 5.7.1 <bounce@sender.example>: Sender address rejected: Domain not "
     "found", (SOFT, Reason.POLICY_REJECTED, Scope.POLICY)),
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.7.1 Sender domain has no MX record",
     (SOFT, Reason.POLICY_REJECTED, Scope.POLICY)),
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.7.1 Message rejected: you are not a known user of this list",
     (SOFT, Reason.POLICY_REJECTED, Scope.POLICY)),
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.7.1 Client host rejected: user unknown",
     (SOFT, Reason.POLICY_REJECTED, Scope.POLICY)),
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.7.1 SPF check failed: no such user",
     (SOFT, Reason.POLICY_REJECTED, Scope.POLICY)),
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.7.1 mailbox disabled", (INVALID, Reason.MAILBOX_DISABLED,
                                                                           Scope.RECIPIENT)),
    # a class-4 policy code: the named failure, but temporary
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "450 4.7.1 user unknown", (SOFT, Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    # the provider's own class of an unknown user (SendCloud 406, Go err_user_unknown) and the same reply
    ((INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT), "555 5.7.1 User unknown 'bounce@example.com'.",
     (INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    # codes that are not policy codes still say first
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.2.2 user unknown", (SOFT, Reason.MAILBOX_FULL, Scope.RECIPIENT)),
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.7.26 user unknown", (SOFT, Reason.SENDER_REJECTED, Scope.SENDER)),
    ((INVALID, Reason.OTHER, Scope.UNKNOWN), "550 5.1.1 mailbox full", (INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    # a soft bounce's policy code without a named failure is unchanged
    ((SOFT, Reason.DEFERRED, Scope.UNKNOWN), "421 4.7.0 Try again later", (SOFT, Reason.POLICY_REJECTED, Scope.POLICY)),
    # the provider's own refusal: no reply changes it
    ((INVALID, Reason.SUPPRESSED, Scope.PROVIDER), "550 5.7.1 No such user!", (INVALID, Reason.SUPPRESSED, Scope.PROVIDER)),
])
def test_a_named_failure_outranks_a_policy_code(row, reply, expected):
    assert settle(*row, parse_smtp(reply), reply) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ('550 "someone" is not a known user', (Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    ("you are not a known user of this list", None),
    ("a user doesn't have a clue", None),
    ("554 delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0] - "
     "mta1001.mail.bf1.yahoo.com", (Reason.UNKNOWN_USER, Scope.RECIPIENT)),
    ("550 not a knownuser", None),
])
def test_more_texts_that_name_an_unknown_user(text, expected):
    assert text_evidence(text) == expected


def test_a_yahoo_unknown_user_on_a_hard_bounce_is_invalid():
    reply = "554 delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0]"
    assert settle(INVALID, Reason.OTHER, Scope.UNKNOWN, parse_smtp(reply), reply) == (
        INVALID, Reason.UNKNOWN_USER, Scope.RECIPIENT)


def test_a_domain_name_not_found_names_the_domain():
    """SendCloud-family 403 with "unrouteable address: host or domain name not found" (consumer audit
    of 2026-12-06) was an `invalid` with reason server_unreachable, which consumers.md retries."""
    reply = "unrouteable address: host or domain name not found"
    assert text_evidence(reply) == (Reason.DOMAIN_INVALID, Scope.DOMAIN)
    assert settle(INVALID, Reason.SERVER_UNREACHABLE, Scope.DOMAIN, parse_smtp(reply), reply) == (
        INVALID, Reason.DOMAIN_INVALID, Scope.DOMAIN)
