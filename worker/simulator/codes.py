"""The providers' status vocabularies as the simulator writes them (PROVIDERS.md), as data.

Each outcome table lists (weight, code, ground-truth type, text). The ground-truth type is chosen
here by construction from PROVIDERS.md; it is never derived from worker/providers.
"""

from __future__ import annotations

from datetime import timedelta, timezone

from worker.model import EventType, Provider

INV, SOFT, DLV = EventType.INVALID, EventType.SOFT_BOUNCE, EventType.DELIVERED
COMPLAINT, UNSUB = EventType.COMPLAINT, EventType.UNSUBSCRIBED

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

SC_INVALID = (  # weight, sub-status, type, log text
    (8, "401", INV, "recipient in blacklist, not sent"),
    (4, "402", INV, "recipient unsubscribed, not sent"),
    (8, "403", INV, "unrouteable address: host or domain name not found"),
    (9, "404", INV, "invalid address format"),
    (7, "405", INV, "554 5.7.1 Service unavailable; client host blocked"),
    (40, "406", INV, "550 5.1.1 unrouteable address: user unknown"),
    (6, "407", INV, "554 5.7.1 message rejected as spam"),
    (10, "408", INV, "553 5.7.1 sender address rejected"),
    (8, "409", INV, "Other(scheduler: deleted)"),
)
SC_SOFT = (
    (25, "503", SOFT, "421 4.4.2 connection timed out"),
    (15, "505", SOFT, "421 4.7.0 IP temporarily blocked"),
    (10, "506", SOFT, "450 4.1.1 mailbox unavailable"),
    (15, "507", SOFT, "451 4.7.1 temporarily rejected as spam"),
    (10, "508", SOFT, "450 4.7.1 sender temporarily rejected"),
    (25, "509", SOFT, "451 4.3.0 temporary local problem"),
)
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

UNI_INVALID = (
    (40, "err_user_unknown", INV, ""),
    (8, "err_user_inactive", INV, ""),
    (6, "err_mailbox_discarded", INV, ""),
    (8, "err_domain_inactive", INV, ""),
    (4, "err_no_dns", INV, ""),
    (4, "err_no_smtp", INV, ""),
    (8, "err_dest_invalid", INV, ""),
    (6, "err_not_available", INV, ""),
    (4, "err_unreachable", INV, ""),
    (2, "skip_dup_unreachable", INV, ""),
    (4, "err_unsubscribed", UNSUB, ""),
)
UNI_SOFT_RETRYING = (  # not final: a later attempt follows
    (60, "err_will_retry", SOFT, ""),
    (25, "err_resend", SOFT, ""),
    (15, "err_blacklisted", SOFT, ""),
)
UNI_SOFT_FINAL = (
    (35, "err_mailbox_full", SOFT, ""),
    (25, "err_spam_rejected", SOFT, ""),
    (15, "err_giveup", SOFT, ""),
    (10, "skip_dup_mailbox_full", SOFT, ""),
    (15, "skip_dup_temp_unreachable", SOFT, ""),
)
UNI_ERROR = ((70, "err_internal", None, ""), (30, "err_lost", None, ""))
UNI_DELIVERED = ((94, "ok_delivered", DLV, ""), (6, "ok_spam_folder", DLV, ""))


def uni_status_group(status: str) -> str:
    # Only success_pending_group is documented (a 2017 production log); error_group is ours.
    return "success_pending_group" if status.startswith("ok_") or status == "not_sent" else "error_group"


# -- Tencent Cloud SES: (SendStatus, DeliverStatus) --------------------------------------------

TC_INVALID = (
    (75, (0, 3), INV, "550 5.1.1 recipient is not exist"),
    (10, (1007, 0), INV, "recipient address is on the blocklist"),
    (8, (3024, 0), INV, "recipient address failed the format pre-check"),
    (7, (3020, 0), INV, "recipient mailbox type is blocklisted"),
)
TC_SOFT_RETRYING = (
    (50, (0, 8), SOFT, "451 4.7.1 try again later"),
    (30, (0, 8), SOFT, "421 4.4.2 connection timed out"),
    (20, (0, 8), SOFT, "452 4.2.2 mailbox full, try again later"),
)
TC_SOFT_FINAL = (
    (40, (1004, 0), SOFT, "sending timed out"),
    (30, (1006, 0), SOFT, "too many emails to this address in a short time"),
    (30, (3008, 0), SOFT, "sender domain temporarily blocked by the recipient domain"),
)
TC_ERROR = ((60, (1001, 0), None, "internal system error"), (40, (1005, 0), None, "internal system error"))
TC_DELIVERED_TEXT = "250 2.0.0 OK"

# Tencent webhook events: (event, eventid, bounceType) by what the entry is.
TC_EVENT_DELIVERED = ("delivered", 1, "")
TC_EVENT_DROPPED = ("dropped", 2, "")
TC_EVENT_HARD = ("bounce", 3, "hard_bounce")
TC_EVENT_DEFERRED = ("deferred", 8, "")
TC_EVENT_SOFT = ("bounce", 3, "soft_bounce")
TC_EVENT_COMPLAINT = ("spamreport", 6, "")
TC_EVENT_UNSUB = ("unsubscribe", 7, "")
