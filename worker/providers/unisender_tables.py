"""UniSender's mapping tables (PROVIDERS.md section 4), as data; `unisender` re-exports them."""

from __future__ import annotations

from worker.errors import BadRequest, FatalConfig, PollError, Retriable, Throttled
from worker.model import EventType, Reason, Scope
from worker.providers.base import SenderSide

# -- the status table ---------------------------------------------------------------------------

# A sender-side rejection (content or sending IP refused by the receiving server) says nothing
# about the address: PROVIDERS.md 4.4 files these as soft bounces ("content; do not suppress"),
# and an account's `sender_rejection` may count them otherwise (SenderSide).

# status -> (type, reason, final[, scope]). PROVIDERS.md 4.4: the "Final?" column as given; where it
# says n/a, final is true when the text says the letter goes nowhere further, false when it may
# change. Statuses the service does not emit (pending, provider errors, campaign or account blocks)
# have type None but keep their reason and finality: finality is what stops id polling. A soft
# bounce that is not final is one UniSender is still retrying (the event's `final: false`). The
# scope, where given, is what the status is about; otherwise the reason's (worker.providers.classify).
# `skip_*`, err_skip_letter, err_not_available and err_unsubscribed: UniSender did not send, from
# its own record of the address ("availability can be restored in days or weeks"): scope provider.
Entry = tuple[EventType | SenderSide | None, Reason | None, bool] | tuple[EventType | SenderSide | None, Reason | None, bool, Scope]
STATUSES: dict[str, Entry] = {
    "not_sent": (None, None, False),
    "ok_sent": (None, None, False),
    "delayed": (None, None, False),  # named in the seed's text, never defined
    # ok_delivered/ok_read/ok_link_visited may still become unsubscribed or spam-folder.
    "ok_delivered": (EventType.DELIVERED, None, False),
    "ok_read": (EventType.DELIVERED, None, False),
    "ok_link_visited": (EventType.DELIVERED, None, False),
    "ok_spam_folder": (EventType.DELIVERED, None, True),
    "ok_unsubscribed": (EventType.UNSUBSCRIBED, Reason.UNSUBSCRIBED, True),
    # n/a in the table; a complaint is the last thing a delivered letter can report.
    "ok_fbl": (EventType.COMPLAINT, None, True),
    # UniSender re-sends these itself, so they are soft whatever the account's policy.
    "err_blacklisted": (EventType.SOFT_BOUNCE, Reason.BLOCKLISTED, False),  # a receiving blocklist
    "err_will_retry": (EventType.SOFT_BOUNCE, Reason.DEFERRED, False),
    "err_resend": (EventType.SOFT_BOUNCE, Reason.DEFERRED, False),
    "err_internal": (None, Reason.PROVIDER_ERROR, True),
    "err_user_unknown": (EventType.INVALID, Reason.UNKNOWN_USER, True),
    "err_user_inactive": (EventType.INVALID, Reason.MAILBOX_DISABLED, True),
    "err_mailbox_discarded": (EventType.INVALID, Reason.MAILBOX_DISABLED, True),
    "err_mailbox_full": (EventType.SOFT_BOUNCE, Reason.MAILBOX_FULL, True),
    "err_no_dns": (EventType.INVALID, Reason.DOMAIN_INVALID, True),
    "err_no_smtp": (EventType.INVALID, Reason.DOMAIN_INVALID, True),
    "err_domain_inactive": (EventType.INVALID, Reason.DOMAIN_INVALID, True),
    # "a cause that can be fixed" on the recipient's side: may still change.
    "err_destination_misconfigured": (EventType.SOFT_BOUNCE, Reason.OTHER, False, Scope.DOMAIN),
    # Content refused by the receiving server: the account's sender_rejection policy decides.
    "err_spam_rejected": (SenderSide(EventType.SOFT_BOUNCE), Reason.SPAM_REJECTED, True),
    "err_spam_may_retry": (SenderSide(EventType.SOFT_BOUNCE), Reason.SPAM_REJECTED, True),
    "err_too_large": (None, Reason.POLICY_REJECTED, True),
    "err_giveup": (EventType.SOFT_BOUNCE, Reason.OTHER, True),
    "err_spam_removed": (None, Reason.POLICY_REJECTED, False),
    "err_spam_skipped": (None, Reason.POLICY_REJECTED, False),
    "err_delivery_failed": (EventType.SOFT_BOUNCE, Reason.OTHER, True),
    # UniSender did not send these: its own record says the address is unavailable (suppressed).
    "err_skip_letter": (EventType.INVALID, Reason.SUPPRESSED, True),
    "err_dest_invalid": (EventType.INVALID, Reason.BAD_ADDRESS, True),
    "err_not_available": (EventType.INVALID, Reason.SUPPRESSED, True),
    "err_unreachable": (EventType.INVALID, Reason.BAD_ADDRESS, True),
    "skip_dup_unreachable": (EventType.INVALID, Reason.SUPPRESSED, True),
    "skip_dup_temp_unreachable": (EventType.SOFT_BOUNCE, Reason.SERVER_UNREACHABLE, True, Scope.PROVIDER),
    "skip_dup_mailbox_full": (EventType.SOFT_BOUNCE, Reason.MAILBOX_FULL, True, Scope.PROVIDER),
    "err_unsubscribed": (EventType.UNSUBSCRIBED, Reason.UNSUBSCRIBED, True, Scope.PROVIDER),
    "err_src_invalid": (None, Reason.OTHER, True),
    "err_not_allowed": (None, Reason.POLICY_REJECTED, True),
    "err_over_quota": (None, Reason.OTHER, True),
    "err_lost": (None, Reason.PROVIDER_ERROR, True),
}

# Unisender Go's webhook statuses (PROVIDERS.md 4.6; godocs.unisender.ru/email-statuses, the nine
# values `events.email_status` takes), as (type, reason, final): a bounce's cause, where its
# `delivery_info.delivery_status` names one of the err_* codes above, is read from that code instead
# (the same codes; anymail's `reject_reasons` reads them so too). `final` here is whether the
# provider may still retry (a soft bounce it retries), not whether the id may change: Go ids are
# never polled. sent, opened, clicked and subscribed carry no delivery status.
GO_STATUSES: dict[str, Entry] = {
    "delivered": (EventType.DELIVERED, None, True),
    "soft_bounced": (EventType.SOFT_BOUNCE, Reason.OTHER, False),
    "hard_bounced": (EventType.INVALID, Reason.OTHER, True),
    "spam": (EventType.COMPLAINT, None, True),
    "unsubscribed": (EventType.UNSUBSCRIBED, Reason.UNSUBSCRIBED, True),
    "sent": (None, None, False),
    "opened": (None, None, False),
    "clicked": (None, None, False),
    "subscribed": (None, None, False),
}

# The seed promises the prefix rule for future values: err_* failed, ok_* in progress or done.
# Not final, so an unknown status keeps being polled until it settles into a known one.
UNKNOWN_ERR = (EventType.SOFT_BOUNCE, Reason.OTHER, False)
UNKNOWN_OK: tuple[None, None, bool] = (None, None, False)
UNKNOWN_OTHER: tuple[None, None, bool] = (None, None, False)


# -- API error codes ----------------------------------------------------------------------------

# API error codes (doc: unisender.com/en/help/api; alexeyco api/response.go). not_enough_money is
# fatal: checkEmail cannot succeed until someone tops the balance up, and retrying hides that.
ERRORS: dict[str, type[PollError]] = {
    "api_call_limit_exceeded_for_api_key": Throttled,
    "api_call_limit_exceeded_for_ip": Throttled,
    "invalid_api_key": FatalConfig,
    "access_denied": FatalConfig,
    "not_enough_money": FatalConfig,
    "unknown_method": BadRequest,
    "invalid_arg": BadRequest,
    "retry_later": Retriable,
    "unspecified": Retriable,
}
UNKNOWN_ERROR: type[PollError] = Retriable  # "unspecified"-like: a new code should not stop polling
