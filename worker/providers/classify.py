"""What a failure is about (`scope`), shared by every provider: the SMTP evidence table and the rule
that combines it with a provider's own class (docs/consumers.md, "scope").

A provider module looks its status up in its own table (type, reason, scope) and hands the result
to `settle` with the SMTP reply it reported. The rule:

1. A row whose scope is `provider` (the provider did not send: its own list, a drop, a skip) is
   kept whatever the SMTP text says: that text is older evidence, not this send's.
2. Otherwise SMTP evidence (RFC 3463 enhanced code: its subject.detail, then its subject; then the
   basic reply code; then, when the codes say nothing, a reply text that names the failure, such
   as "user unknown" or "mailbox full": Chinese mailbox providers often answer with a bare 550)
   sets `scope` and `reason`; the provider's `type` is kept. A policy code (x.7.0, x.7.1: "delivery
   not authorized") is many servers' answer to any refusal, an unknown user's included (Yandex's
   "550 5.7.1 No such user!", "555 5.7.1 User unknown" in anymail's Unisender Go tests): a reply
   text that names the recipient's mailbox outranks it (public-captures audit of 2026-12-06), unless
   the reply is about our side (HELO, sender, client host, relay, SPF/DKIM/DMARC: "550 5.7.1 <helo>:
   Helo command rejected: Host not found" is about the sending server, not the address). Domain
   phrases never outrank a policy code: "Sender domain has no MX record" is ours too.
3. The invariant: `invalid` ("stop mailing this address") only with scope recipient, domain or
   provider. A permanent failure whose evidence points at the sender, the content, the receiving
   side's policy or nothing becomes a soft bounce the provider will not retry (`final: true`).
4. And only for a failure that is not temporary: an `invalid` (not the provider's own refusal)
   whose SMTP reply is of class 4 (RFC 3463's enhanced code, else RFC 5321's basic code: "421 4.4.1
   no answer from host", "452 4.2.2 over quota") or whose reason is `mailbox_full` (RFC 3463 X.2.2
   is a persistent transient condition, whatever its class: the mailbox may empty) is a final soft
   bounce too (docs/consumers.md: `invalid` means gone for good, a full mailbox is temporary).

Pure data and functions; provider modules import it, nothing here imports them.
"""

from __future__ import annotations

import re

from worker.model import EventType, Reason, Scope, Smtp

Evidence = tuple[Reason, Scope]

# RFC 3463 "subject.detail" (the class, 4 or 5, says nothing about what the failure is about).
SMTP_DETAIL: dict[str, Evidence] = {
    "1.1": (Reason.UNKNOWN_USER, Scope.RECIPIENT),         # bad destination mailbox address
    "1.2": (Reason.DOMAIN_INVALID, Scope.DOMAIN),          # bad destination system address
    "1.3": (Reason.BAD_ADDRESS, Scope.RECIPIENT),          # bad destination mailbox address syntax
    "1.6": (Reason.MAILBOX_DISABLED, Scope.RECIPIENT),     # mailbox has moved, no forwarding
    "1.7": (Reason.SENDER_REJECTED, Scope.SENDER),         # bad sender's mailbox address syntax
    "1.8": (Reason.SENDER_REJECTED, Scope.SENDER),         # bad sender's system address
    "1.10": (Reason.DOMAIN_INVALID, Scope.DOMAIN),         # null MX (RFC 7505)
    "2.1": (Reason.MAILBOX_DISABLED, Scope.RECIPIENT),     # mailbox disabled
    "2.2": (Reason.MAILBOX_FULL, Scope.RECIPIENT),         # mailbox full
    "2.3": (Reason.POLICY_REJECTED, Scope.CONTENT),        # message length exceeds the mailbox's limit
    "3.4": (Reason.POLICY_REJECTED, Scope.CONTENT),        # message too big for the system
    "4.1": (Reason.SERVER_UNREACHABLE, Scope.DOMAIN),      # no answer from host
    "4.2": (Reason.SERVER_UNREACHABLE, Scope.DOMAIN),      # bad connection
    "4.4": (Reason.DOMAIN_INVALID, Scope.DOMAIN),          # unable to route
    "4.7": (Reason.DEFERRED, Scope.UNKNOWN),               # delivery time expired
    "7.0": (Reason.POLICY_REJECTED, Scope.POLICY),
    "7.1": (Reason.POLICY_REJECTED, Scope.POLICY),         # delivery not authorized, message refused
    "7.2": (Reason.POLICY_REJECTED, Scope.POLICY),         # mailing list expansion prohibited
    "7.3": (Reason.POLICY_REJECTED, Scope.POLICY),         # security conversion required
    "7.13": (Reason.MAILBOX_DISABLED, Scope.RECIPIENT),    # user account disabled (RFC 3886 registry)
    **{f"7.{d}": (Reason.SENDER_REJECTED, Scope.SENDER)     # security features, authentication,
       for d in (4, 5, 6, 7, 8, 9, 20, 21, 22, 23, 24, 25, 26, 27)},  # DKIM, SPF, DMARC (RFC 7372)
}
# What a subject says when its detail is not in the table (3, 4 and 5 say nothing on their own).
SMTP_SUBJECT: dict[str, Evidence] = {
    "1": (Reason.BAD_ADDRESS, Scope.RECIPIENT),            # addressing
    "2": (Reason.OTHER, Scope.RECIPIENT),                  # mailbox
    "6": (Reason.POLICY_REJECTED, Scope.CONTENT),          # message content or media
    "7": (Reason.POLICY_REJECTED, Scope.POLICY),           # security or policy
}
# A basic reply code alone is evidence only where its meaning is unambiguous (RFC 5321).
SMTP_BASIC: dict[int | None, Evidence] = {
    552: (Reason.MAILBOX_FULL, Scope.RECIPIENT),           # exceeded storage allocation
    553: (Reason.BAD_ADDRESS, Scope.RECIPIENT),            # mailbox name not allowed
}

# Reply texts that name what failed, for replies whose codes say nothing (a bare 550, 5.0.0): QQ's
# "550 Mailbox not found", 163's "550 User not found", Postfix's "User unknown in virtual mailbox
# table". Only phrases with one meaning; "mailbox unavailable" (RFC 5321's text for 550, also sent
# for policy refusals) is not one. Matched case-insensitively, English ones as whole words.
TEXT_EVIDENCE: tuple[tuple[Evidence, tuple[str, ...]], ...] = (
    ((Reason.UNKNOWN_USER, Scope.RECIPIENT), (
        "user unknown", "unknown user", "no such user", "user not found", "user does not exist",
        "recipient unknown", "unknown recipient", "no such recipient", "recipient not found",
        "recipient does not exist", "invalid recipient", "mailbox not found", "no such mailbox",
        "mailbox does not exist", "mailbox unknown", "address does not exist", "account does not exist",
        "recipient is not exist", "user is not exist", "mailbox is not exist", "address is not exist",
        "is not a known user", "this user doesn't have a",
        "用户不存在", "收件人不存在", "邮箱不存在", "账户不存在", "帐户不存在", "地址不存在")),
    ((Reason.MAILBOX_DISABLED, Scope.RECIPIENT), (
        "account disabled", "account is disabled", "account has been disabled", "mailbox disabled",
        "mailbox is disabled", "mailbox has been disabled")),
    ((Reason.MAILBOX_FULL, Scope.RECIPIENT), (
        "mailbox full", "mailbox is full", "over quota", "quota exceeded", "exceeded storage", "邮箱已满",
        "邮箱空间不足")),
    ((Reason.DOMAIN_INVALID, Scope.DOMAIN), (
        "domain not found", "no such domain", "domain does not exist", "host not found", "no mx record",
        "domain name not found", "域名不存在")),
)
# What may outrank a policy code, and the words that say a reply is about our side instead.
MAILBOX_EVIDENCE = frozenset({(Reason.UNKNOWN_USER, Scope.RECIPIENT), (Reason.MAILBOX_DISABLED, Scope.RECIPIENT),
                              (Reason.MAILBOX_FULL, Scope.RECIPIENT)})
_OUR_SIDE = re.compile(r"(?<!\w)(helo|ehlo|sender|client host|relay|mail from|spf|dkim|dmarc|reverse dns|ptr)(?!\w)",
                       re.IGNORECASE)
_TEXT_PATTERNS = tuple(   # whole words in English; Chinese has no word boundaries ("该用户不存在")
    (evidence, re.compile("|".join(rf"(?<!\w){re.escape(p)}(?!\w)" if p.isascii() else re.escape(p) for p in phrases),
                          re.IGNORECASE))
    for evidence, phrases in TEXT_EVIDENCE)

# The scope a reason stands for when a provider's row names none (every Reason has one).
REASON_SCOPE: dict[Reason, Scope] = {
    Reason.UNKNOWN_USER: Scope.RECIPIENT,
    Reason.BAD_ADDRESS: Scope.RECIPIENT,
    Reason.MAILBOX_FULL: Scope.RECIPIENT,
    Reason.MAILBOX_DISABLED: Scope.RECIPIENT,
    Reason.DOMAIN_INVALID: Scope.DOMAIN,
    Reason.SERVER_UNREACHABLE: Scope.DOMAIN,
    Reason.SENDER_REJECTED: Scope.SENDER,
    Reason.SPAM_REJECTED: Scope.CONTENT,
    Reason.POLICY_REJECTED: Scope.POLICY,
    Reason.BLOCKLISTED: Scope.POLICY,
    Reason.SUPPRESSED: Scope.PROVIDER,
    Reason.PROVIDER_ERROR: Scope.PROVIDER,
    Reason.UNSUBSCRIBED: Scope.PROVIDER,     # a send refused because the address is on its unsubscribe list
    Reason.DEFERRED: Scope.UNKNOWN,
    Reason.OTHER: Scope.UNKNOWN,
}

# The scopes an `invalid` may have: evidence about the address, or the provider's own refusal.
INVALID_SCOPES = frozenset({Scope.RECIPIENT, Scope.DOMAIN, Scope.PROVIDER})
# Reasons that name a temporary condition of a lasting address (rule 4).
TEMPORARY_REASONS = frozenset({Reason.MAILBOX_FULL})
FAILURES = frozenset({EventType.INVALID, EventType.SOFT_BOUNCE})


def smtp_evidence(smtp: Smtp | None) -> Evidence | None:
    """What an SMTP reply says the failure is about, or None when it says nothing definite."""
    if smtp is None:
        return None
    if smtp.enhanced is not None:
        _, subject, detail = smtp.enhanced.split(".")     # class.subject.detail (worker.providers.base.parse_smtp)
        found = SMTP_DETAIL.get(f"{subject}.{detail}") or SMTP_SUBJECT.get(subject)
        if found is not None:
            return found
    return SMTP_BASIC.get(smtp.code)


def text_evidence(text: str | None) -> Evidence | None:
    """What a reply text names (TEXT_EVIDENCE), or None; the first kind in the table wins."""
    if not text:
        return None
    for evidence, pattern in _TEXT_PATTERNS:
        if pattern.search(text):
            return evidence
    return None


def temporary(smtp: Smtp | None) -> bool:
    """Whether an SMTP reply says its failure is temporary: class 4 in its enhanced code, or, with
    none, a 4yz basic code."""
    if smtp is None:
        return False
    if smtp.enhanced is not None:
        return smtp.enhanced.startswith("4.")
    return smtp.code is not None and 400 <= smtp.code < 500


def settle(type_: EventType | None, reason: Reason | None, scope: Scope | None,
           smtp: Smtp | None, text: str | None = None) -> tuple[EventType | None, Reason | None, Scope | None]:
    """(type, reason, scope) of a provider's row once the SMTP evidence (its codes, then `text`, the
    reply it came in) and the invariant are applied (the module docstring's rule). Rows that are
    not failures pass through unchanged."""
    if type_ not in FAILURES:
        return type_, reason, scope
    scope = scope or REASON_SCOPE[reason or Reason.OTHER]
    if scope is not Scope.PROVIDER:
        evidence = smtp_evidence(smtp)
        if evidence is None:
            evidence = text_evidence(text)
        elif evidence[1] is Scope.POLICY:   # rule 2: a named mailbox failure outranks a policy code
            named = text_evidence(text)
            if named in MAILBOX_EVIDENCE and text is not None and not _OUR_SIDE.search(text):
                evidence = named
        if evidence is not None:
            reason, scope = evidence
        if type_ is EventType.INVALID and (reason in TEMPORARY_REASONS or temporary(smtp)):
            type_ = EventType.SOFT_BOUNCE
    if type_ is EventType.INVALID and scope not in INVALID_SCOPES:
        type_ = EventType.SOFT_BOUNCE
    return type_, reason, scope
