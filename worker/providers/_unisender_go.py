"""Unisender Go's transactional webhook events, read beside UniSender classic's (PROVIDERS.md 4.6).

Unisender Go (go.unisender.ru) posts the same envelope as UniSender classic, `{"auth",
"events_by_user": [{..., "events": [...]}]}`, signed the same way (`auth`: the MD5 of the body
with the API key in its place), so one account's webhook URL takes both. Its status events are
`{"event_name": "transactional_email_status", "event_data": {"job_id", "metadata", "email",
"status", "event_time", "url", "delivery_info": {"delivery_status", "destination_response",
...}}}` (the example in anymail's `unisender_go.py` and its tests; PROVIDERS.md 4.6). Before
2026-12-06 the worker read only classic's `email_status` events and counted these as ignored:
every Go status was answered 200 and dropped.

- The shape: batched events nest their fields in `event_data`; with Go's "use single event"
  option the body is the event itself, its fields at the top (anymail's tests post most events so).
- The email: a Go event has no per-email id; `job_id` (the send job) and the address name it,
  as `<job_id>:<address, lower-cased>` (Tencent SES's bulk id and address likewise). `job_id` is
  also the event's `message_id`. An event without `job_id` (anymail's test events have none) is
  named by its time and address, `nojob-<event time>:<address>`, with no `message_id`: its status
  still tells the suppression list about the address, and two sends to one address are never one
  email in the dedup table (the address alone would make a later send's delivery a duplicate).
- The time: `event_time`, `YYYY-MM-DD HH:MM:SS` in UTC (anymail reads it so; its test expects
  15:09:42 UTC for "2015-11-30 15:09:42"), inside `event_data` (classic has it beside). ISO 8601
  with an offset (`2015-11-30T18:09:42+03:00`, the form one public .NET client's model declares) is
  read too: the docs cannot tell us it never comes so; a time without either shape is malformed.
- The status: `unisender_tables.GO_STATUSES`; a bounce's cause from its err_* code, then from the
  SMTP reply in `destination_response` under the invariant of worker.providers.classify (a
  `hard_bounced` with no evidence about the address is a final soft bounce, as every provider's
  bounce without evidence). A bounce whose code classic does not emit (the send blocked or lost on
  Unisender's side: err_internal, err_lost, err_not_allowed, err_src_invalid, err_over_quota,
  err_too_large, err_spam_skipped, err_spam_removed) is still a failed send: a soft bounce about
  whom the code names (`BLOCKED`), never `invalid`, so the retry service hears of it and the
  suppression list keeps the address (public-captures audit of 2026-12-06: they were dropped).
  Statuses without a delivery meaning (sent, opened, clicked, subscribed, and any the docs do not
  name) give no observation: counted as ignored, not written.
- Final for the id tracker: always. This worker cannot poll a Go id (classic's `checkEmail` does
  not know them), so no Go id is ever queued for a check.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from worker.errors import MalformedPayload
from worker.model import EventType, Observation, Reason, Scope
from worker.providers.base import AccountContext, as_text, local_time, offset_time, parse_smtp, resolve
from worker.providers.classify import settle
from worker.providers.unisender_tables import GO_STATUSES, STATUSES

EVENT = "transactional_email_status"
_BOUNCES = (EventType.INVALID, EventType.SOFT_BOUNCE)
# A bounce's code that classic's table does not emit: what the blocked send is about (PROVIDERS.md 4.4's
# meanings). Scope provider: Unisender kept or lost it; sender: our address or our account's funds;
# content: the letter or the campaign.
BLOCKED: dict[str, tuple[Reason, Scope]] = {
    "err_internal": (Reason.PROVIDER_ERROR, Scope.PROVIDER),
    "err_lost": (Reason.PROVIDER_ERROR, Scope.PROVIDER),
    "err_not_allowed": (Reason.POLICY_REJECTED, Scope.PROVIDER),
    "err_src_invalid": (Reason.SENDER_REJECTED, Scope.SENDER),
    "err_over_quota": (Reason.OTHER, Scope.SENDER),
    "err_too_large": (Reason.POLICY_REJECTED, Scope.CONTENT),
    "err_spam_skipped": (Reason.SPAM_REJECTED, Scope.CONTENT),
    "err_spam_removed": (Reason.SPAM_REJECTED, Scope.CONTENT),
}


def observations(acct: AccountContext, record: dict[str, Any]) -> list[Observation]:
    """The observation of one `transactional_email_status` event, or none for a status without a
    delivery meaning; MalformedPayload when it cannot be read."""
    data = record.get("event_data", record)   # a single event's fields are the body's
    if not isinstance(data, dict):
        raise MalformedPayload("unisender go event_data is not an object")
    email, status, job_id = data.get("email"), data.get("status"), as_text(data.get("job_id"))
    event_time = data.get("event_time", record.get("event_time"))
    if not isinstance(email, str) or not email or not isinstance(status, str):
        raise MalformedPayload("unisender go event lacks email or status")
    if not isinstance(event_time, str):
        raise MalformedPayload("unisender go event lacks event_time")
    entry = GO_STATUSES.get(status)
    if entry is None or entry[0] is None:
        return []
    info = data.get("delivery_info")
    info = info if isinstance(info, dict) else {}
    code = info.get("delivery_status")
    code = code if isinstance(code, str) and code.startswith("err_") else None
    response = info.get("destination_response")
    response = response if isinstance(response, str) and response else None
    if code in BLOCKED and entry[0] in _BOUNCES:   # a send Unisender did not make, or lost
        entry = (EventType.SOFT_BOUNCE, BLOCKED[code][0], entry[2], BLOCKED[code][1])
    elif code in STATUSES and entry[0] in _BOUNCES:
        entry = STATUSES[code]   # the cause the bounce names, as checkEmail's statuses name it
    smtp = parse_smtp(response)
    type_, reason, scope = settle(resolve(entry[0], acct), entry[1], entry[3] if len(entry) > 3 else None,
                                  smtp, response)
    if type_ is None:   # a sender-side rejection the account's `sender_rejection` does not emit
        return []
    try:
        occurred_at = local_time(event_time, UTC)
    except (TypeError, ValueError, OverflowError):
        try:   # ISO 8601 with an offset, as one public client's model has it; never a guessed zone
            occurred_at = offset_time(event_time)
        except (TypeError, ValueError, OverflowError) as exc:
            raise MalformedPayload("unisender go event_time is neither YYYY-MM-DD HH:MM:SS nor ISO 8601 with an "
                                   "offset") from exc
    return [
        Observation(
            email_id=f"{job_id or occurred_at.strftime('nojob-%Y%m%dT%H%M%SZ')}:{email.lower()}",
            recipient=email,
            type=type_,
            reason=reason,
            occurred_at=occurred_at,
            provider_status=status,
            provider_sub_status=code,
            provider_message=response,
            smtp=smtp,
            message_id=job_id,
            final=True,
            scope=scope,
            retrying=type_ is EventType.SOFT_BOUNCE and not entry[2],
            raw=record,
        )
    ]
