"""What a sent-message record (schemas/sent-message.v1.json) may become: one home for the rules the
sent feed (worker.sentfeed) and the dead-letter replay (worker.letters) both apply.

A record is needed only by an account polled by id (UniSender) or gap-driven (worker.poll.ids).
A readable record for such an account is still unusable (sent-feed audit of 2026-12-06) when:
- its `email_id` or `recipient` is over the event caps (docs/topics.md#limits): `field_too_long`;
- it was sent after now beyond the clock skew: `future_time` (it would never be due, nor expire);
- the provider's status API cannot take its id (a UniSender id that is not a number, a SendCloud
  id with `;`): `bad_sent_record`. One such id in a batch made every id call of the account fail.
"""

from __future__ import annotations

from datetime import datetime

from worker.config import AccountConfig
from worker.errors import BadSentRecord, FieldTooLong, FutureTime
from worker.model import CLOCK_SKEW_SECS, MAX_ID_CHARS, MAX_RECIPIENT_CHARS
from worker.poll.isolate import unsendable
from worker.providers import get_module
from worker.providers.base import PollQuery
from worker.raw import SentMessage


def needed(account: AccountConfig) -> bool:
    """Whether the account's shard learns anything from what was sent."""
    return account.poll.gap_driven or get_module(account.provider).DEFAULTS.polling == "ids"


def problem(account: AccountConfig, sent: SentMessage, now: datetime) -> str | None:
    """The error type of a readable record that cannot be tracked, or None."""
    if len(sent.email_id) > MAX_ID_CHARS or len(sent.recipient) > MAX_RECIPIENT_CHARS:
        return FieldTooLong.error_type
    if (sent.sent_at - now).total_seconds() > CLOCK_SKEW_SECS:
        return FutureTime.error_type
    module = get_module(account.provider)
    query = PollQuery(send_date=sent.sent_at.astimezone(module.DEFAULTS.tz).date(), email_ids=(sent.email_id,),
                      limit=module.DEFAULTS.page_limit)   # the request the id poll would make for this id alone
    return BadSentRecord.error_type if unsendable(account, query, now) else None
