"""The providers' status vocabularies as the simulator writes them (PROVIDERS.md), as data.

Each outcome table lists (weight, code, truth, text) rows, Tencent rows (weight, code, poll truth,
text, webhook truth). The truth is what the worker must emit for that row: a `Truth` (type, reason,
scope, final), written here by hand from the issue-13 contract (the provider tables, the shared
SMTP table applied to the row's text, and the invariant); it is never derived from
worker/providers. Reasons and scopes are plain strings so the truth does not depend on the
worker's enums either. The comment on a row says which SMTP evidence, if any, moved it.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import NamedTuple

from worker.model import EventType, Provider

INV, SOFT, DLV = EventType.INVALID, EventType.SOFT_BOUNCE, EventType.DELIVERED
COMPLAINT, UNSUB = EventType.COMPLAINT, EventType.UNSUBSCRIBED


class Truth(NamedTuple):
    """What the worker must emit for one reported status (the issue-13 event fields)."""

    type: EventType
    reason: str | None
    scope: str | None  # recipient | domain | sender | content | policy | provider | unknown; None: delivered
    final: bool
    attempt: int | None = None  # no supported provider reports one


def T(type_: EventType, reason: str | None, scope: str | None, final: bool) -> Truth:
    return Truth(type_, reason, scope, final)


# Outcomes that are the same for every provider and channel.
T_DELIVERED = T(DLV, None, None, True)
T_COMPLAINT = T(COMPLAINT, None, "recipient", True)  # the recipient acted
T_UNSUBSCRIBED = T(UNSUB, "unsubscribed", "recipient", True)  # the recipient acted

CHINA_TZ = timezone(timedelta(hours=8), "UTC+08:00")
MOSCOW_TZ = timezone(timedelta(hours=3), "UTC+03:00")

# The zone each provider's dates (send_date, startDate, RequestDate) and naive times are in.
# UniSender has no date query; its webhook event_time is read as Moscow time (our assumption).
PROVIDER_TZ = {
    Provider.ENGAGELAB: CHINA_TZ,
    Provider.SENDCLOUD: CHINA_TZ,
    Provider.AURORA_SENDCLOUD: CHINA_TZ,
    Provider.UNISENDER: MOSCOW_TZ,
    Provider.TENCENT_SES: CHINA_TZ,
}

# -- SendCloud family (SendCloud, Aurora) and EngageLab: one sub-status table ------------------

SC_INVALID = (  # weight, sub-status, truth, log text (status 4: the provider's permanent class)
    (8, "401", T(INV, "suppressed", "provider", True), "recipient in blacklist, not sent"),
    (4, "402", T(INV, "unsubscribed", "provider", True), "recipient unsubscribed, not sent"),
    # a reply naming no phrase of worker.providers.classify (its "host or domain name not found", the
    # row's text before 2026-12-06, is domain_invalid since then; the previous release, which the
    # upgrade test runs on the same simulator, reads it as server_unreachable)
    (8, "403", T(INV, "server_unreachable", "domain", True), "unrouteable address: the receiving server cannot be reached"),
    (9, "404", T(INV, "bad_address", "recipient", True), "invalid address format"),
    # 405 row: soft_bounce sender_rejected sender; 5.7.1 says policy (worked example 3)
    (7, "405", T(SOFT, "policy_rejected", "policy", True), "554 5.7.1 Service unavailable; client host blocked"),
    (40, "406", T(INV, "unknown_user", "recipient", True), "550 5.1.1 unrouteable address: user unknown"),
    # 407 row: soft_bounce spam_rejected content; 5.7.1 says policy
    (6, "407", T(SOFT, "policy_rejected", "policy", True), "554 5.7.1 message rejected as spam"),
    (10, "408", T(SOFT, "policy_rejected", "policy", True), "553 5.7.1 sender address rejected"),
    # 409: invalid class, scope unknown; no SMTP evidence -> final soft bounce (worked example 4)
    (8, "409", T(SOFT, "other", "unknown", True), "Other(scheduler: deleted)"),
    # -- issue 13 cases, small weights --
    # 409 with recipient evidence stays invalid (worked example 5)
    (3, "409", T(INV, "unknown_user", "recipient", True), "550 5.1.1 no such user"),
    # 405 with sender evidence (x.7.26, DMARC) and without any: sender_rejected, sender
    (2, "405", T(SOFT, "sender_rejected", "sender", True),
     "550 5.7.26 unauthenticated email is not accepted due to the sender domain's DMARC policy"),
    (2, "405", T(SOFT, "sender_rejected", "sender", True), "IP or domain rejected by the receiving server"),
)
# Status 5: every SendCloud-family soft bounce is final (the provider retries while it shows 18).
SC_SOFT = (
    (25, "503", T(SOFT, "server_unreachable", "domain", True), "421 4.4.2 connection timed out"),  # x.4.2
    (15, "505", T(SOFT, "policy_rejected", "policy", True), "421 4.7.0 IP temporarily blocked"),  # x.7.0
    (10, "506", T(SOFT, "unknown_user", "recipient", True), "450 4.1.1 mailbox unavailable"),  # example 6
    (15, "507", T(SOFT, "policy_rejected", "policy", True), "451 4.7.1 temporarily rejected as spam"),  # x.7.1
    (10, "508", T(SOFT, "policy_rejected", "policy", True), "450 4.7.1 sender temporarily rejected"),  # x.7.1
    (25, "509", T(SOFT, "other", "unknown", True), "451 4.3.0 temporary local problem"),  # x.3.0: no evidence
)
# What may end a message after a soft bounce: recipient/domain rows only (a later provider
# suppression, or a second soft bounce, would not be a retry's outcome).
SC_INVALID_AFTER_SOFT = tuple(row for row in SC_INVALID if row[1] not in ("401", "402") and row[2].type is INV)
SC_DELIVERED_TEXT = "250 2.0.0 OK: successfully delivered"

SC_STATUS_ZH = {"pending": "请求中", "delivered": "送达", "invalid": "无效邮件", "soft_bounce": "软退信"}
SC_STATUS_EN = {"pending": "Sending", "delivered": "Delivered", "invalid": "Invalid Mail", "soft_bounce": "Soft Bounce"}
SC_FILTER = {"1": "delivered", "4": "invalid", "5": "soft_bounce", "18": "pending"}

SC_SUB_DESC_ZH = {
    "401": "SendCloud黑名单中", "402": "取消订阅", "403": "服务器不可达", "404": "地址格式错误",
    "405": "IP、域名被拒", "406": "地址不存在", "407": "垃圾邮件", "408": "发件人/收件人被拒", "409": "其他",
    "503": "服务不可达", "505": "IP、域名被拒", "506": "邮箱地址不存在", "507": "反垃圾邮件被拒",
    "508": "发件人/收件人被拒", "509": "其他",
}
SC_SUB_DESC_EN = {
    "401": "Blacklist", "402": "Unsubscribe", "403": "Server error", "404": "Format error",
    "405": "IP rejection", "406": "Not Exist", "407": "Junk mail", "408": "Rejection", "409": "Others",
    "503": "Server error", "505": "IP rejection", "506": "Not Exist", "507": "Spam rejection",
    "508": "Rejection", "509": "Others",
}

EL_STATUS = {"pending": 18, "delivered": 1, "invalid": 4, "soft_bounce": 5}
EL_STATUS_DESC = {18: "Sending", 1: "Delivered", 4: "Invalid Email", 5: "Soft Bounce"}
EL_SUB_DESC = {
    "401": "Blacklist", "402": "Unsubscribe", "403": "Server Error", "404": "Format Error",
    "405": "IP Rejection", "406": "Not Exist", "407": "Junk Mail", "408": "Rejected", "409": "Other",
    "503": "Server Error", "505": "IP Rejection", "506": "Not Exist", "507": "Spam Rejected",
    "508": "Rejected", "509": "Other",
}

# -- UniSender ---------------------------------------------------------------------------------

UNI_INVALID = (  # weight, status, truth, text
    (40, "err_user_unknown", T(INV, "unknown_user", "recipient", True), ""),
    (8, "err_user_inactive", T(INV, "mailbox_disabled", "recipient", True), ""),
    (6, "err_mailbox_discarded", T(INV, "mailbox_disabled", "recipient", True), ""),
    (8, "err_domain_inactive", T(INV, "domain_invalid", "domain", True), ""),
    (4, "err_no_dns", T(INV, "domain_invalid", "domain", True), ""),
    (4, "err_no_smtp", T(INV, "domain_invalid", "domain", True), ""),
    (8, "err_dest_invalid", T(INV, "bad_address", "recipient", True), ""),
    (6, "err_not_available", T(INV, "suppressed", "provider", True), ""),  # worked example 8
    (4, "err_unreachable", T(INV, "bad_address", "recipient", True), ""),
    (2, "skip_dup_unreachable", T(INV, "suppressed", "provider", True), ""),
    (4, "err_unsubscribed", T(UNSUB, "unsubscribed", "provider", True), ""),  # already on UniSender's list
    (2, "err_skip_letter", T(INV, "suppressed", "provider", True), ""),
)
UNI_SOFT_RETRYING = (  # not final: a later attempt follows
    (60, "err_will_retry", T(SOFT, "deferred", "unknown", False), ""),  # worked example 7
    (25, "err_resend", T(SOFT, "deferred", "unknown", False), ""),
    (15, "err_blacklisted", T(SOFT, "blocklisted", "policy", False), ""),
    (5, "err_destination_misconfigured", T(SOFT, "other", "domain", False), ""),
)
UNI_SOFT_FINAL = (
    (35, "err_mailbox_full", T(SOFT, "mailbox_full", "recipient", True), ""),
    (25, "err_spam_rejected", T(SOFT, "spam_rejected", "content", True), ""),
    (15, "err_giveup", T(SOFT, "other", "unknown", True), ""),
    (10, "skip_dup_mailbox_full", T(SOFT, "mailbox_full", "provider", True), ""),
    (15, "skip_dup_temp_unreachable", T(SOFT, "server_unreachable", "provider", True), ""),
    (4, "err_spam_may_retry", T(SOFT, "spam_rejected", "content", True), ""),
    (4, "err_delivery_failed", T(SOFT, "other", "unknown", True), ""),
)
UNI_INVALID_AFTER_SOFT = tuple(row for row in UNI_INVALID if row[2].type is INV)
UNI_ERROR = ((70, "err_internal", None, ""), (30, "err_lost", None, ""))
UNI_DELIVERED = ((94, "ok_delivered", T_DELIVERED, ""), (6, "ok_spam_folder", T_DELIVERED, ""))


def uni_status_group(status: str) -> str:
    # Only success_pending_group is documented (a 2017 production log); error_group is ours.
    return "success_pending_group" if status.startswith("ok_") or status == "not_sent" else "error_group"


# -- Tencent Cloud SES: (SendStatus, DeliverStatus) --------------------------------------------

# Tencent rows carry two truths: what the status row says (SendStatus / DeliverStatus /
# DeliverMessage) and what its webhook says. Delivery-stage rows send `bounce`/`deferred`/`dropped`
# with the same text, so both agree. A SendStatus (send-stage) failure is Tencent's own rejection:
# the simulator posts `dropped` for the invalid ones and a soft `bounce` for the soft ones (both
# without an SMTP code), which the contract maps differently from the status row.
_TC_DROPPED = T(SOFT, "suppressed", "provider", True)  # `dropped` (2): never invalid
_TC_SOFT_BOUNCE = T(SOFT, "other", "unknown", True)  # `bounce` soft_bounce, no SMTP evidence

TC_INVALID = (  # weight, (SendStatus, DeliverStatus), poll truth, text, webhook truth
    # Deliver 3 / `bounce` hard: invalid only on recipient/domain evidence (worked example 9)
    (75, (0, 3), T(INV, "unknown_user", "recipient", True), "550 5.1.1 recipient is not exist",
     T(INV, "unknown_user", "recipient", True)),
    (10, (1007, 0), T(INV, "suppressed", "provider", True), "recipient address is on the blocklist", _TC_DROPPED),
    (8, (3024, 0), T(INV, "bad_address", "recipient", True), "recipient address failed the format pre-check",
     _TC_DROPPED),
    (7, (3020, 0), T(INV, "suppressed", "provider", True), "recipient mailbox type is blocklisted", _TC_DROPPED),
    # -- issue 13 cases, small weights --
    # Deliver 3 without an SMTP code: final soft bounce, other (worked example 10)
    (6, (0, 3), T(SOFT, "other", "unknown", True), "rejected", T(SOFT, "other", "unknown", True)),
    # Deliver 2 / `dropped`: provider scope, so SMTP text changes nothing (worked example 11)
    (3, (0, 2), _TC_DROPPED, "550 5.1.1 recipient is not exist", _TC_DROPPED),
    (3, (0, 2), _TC_DROPPED, "email dropped: the recipient is on the suppression list", _TC_DROPPED),
)
TC_SOFT_RETRYING = (  # Deliver 8 / `deferred`: not final; the SMTP text refines scope and reason
    (50, (0, 8), T(SOFT, "policy_rejected", "policy", False), "451 4.7.1 try again later",  # example 12
     T(SOFT, "policy_rejected", "policy", False)),
    (30, (0, 8), T(SOFT, "server_unreachable", "domain", False), "421 4.4.2 connection timed out",
     T(SOFT, "server_unreachable", "domain", False)),
    (20, (0, 8), T(SOFT, "mailbox_full", "recipient", False), "452 4.2.2 mailbox full, try again later",
     T(SOFT, "mailbox_full", "recipient", False)),
)
TC_SOFT_FINAL = (
    (40, (1004, 0), T(SOFT, "server_unreachable", "unknown", True), "sending timed out", _TC_SOFT_BOUNCE),
    (30, (1006, 0), T(SOFT, "deferred", "provider", True), "too many emails to this address in a short time",
     _TC_SOFT_BOUNCE),
    (30, (3008, 0), T(SOFT, "sender_rejected", "sender", True),
     "sender domain temporarily blocked by the recipient domain", _TC_SOFT_BOUNCE),
    (5, (3030, 0), T(SOFT, "suppressed", "provider", True), "sending paused: the account's bounce rate is too high",
     _TC_SOFT_BOUNCE),
)
TC_INVALID_AFTER_SOFT = TC_INVALID[:1]  # a retried delivery that ends in an unknown user
TC_ERROR = ((60, (1001, 0), None, "internal system error"), (40, (1005, 0), None, "internal system error"))
TC_DELIVERED_TEXT = "250 2.0.0 OK"
# Polled complaints: the older `UserComplainted` and the newer SDK's `UserComplained`.
TC_COMPLAINT_FIELDS = ("UserComplainted", "UserComplained")

# Tencent webhook events: (event, eventid, bounceType) by what the entry is.
TC_EVENT_DELIVERED = ("delivered", 1, "")
TC_EVENT_DROPPED = ("dropped", 2, "")
TC_EVENT_HARD = ("bounce", 3, "hard_bounce")
TC_EVENT_DEFERRED = ("deferred", 8, "")
TC_EVENT_SOFT = ("bounce", 3, "soft_bounce")
TC_EVENT_COMPLAINT = ("spamreport", 6, "")
TC_EVENT_UNSUB = ("unsubscribe", 7, "")


def truth_for(entry: object, source: str) -> Truth | None:
    """The truth of a timeline entry as reported by `source` (webhook | poll); None: not emitted."""
    hook = getattr(entry, "hook", None)
    if source == "webhook" and hook is not None:
        return hook
    return getattr(entry, "truth", None)
