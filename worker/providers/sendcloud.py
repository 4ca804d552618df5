"""SendCloud (China, sendcloud.net) apiv2: the emailStatus API and form-posted, HMAC-signed webhooks.

Facts and sources: PROVIDERS.md section 2, seed 001. Aurora SendCloud is the international edition
of the same engine. An `Edition` holds everything edition-specific as data; the engine is plain functions
that take the edition first (polling below, webhooks in worker.providers._sendcloud_webhooks), and
each of the two modules' five functions calls them with its own EDITION.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import attrs

from worker.errors import (
    BadRequest,
    FatalConfig,
    PollError,
    Retriable,
    Throttled,
)
from worker.model import EventType, Observation, Provider, plainly_within_caps
from worker.providers import _sendcloud_family as family
from worker.providers import _sendcloud_webhooks as webhooks
from worker.providers._answers import BAD_INPUT, read_answer, read_rows
from worker.providers.base import (
    CHINA_TZ,
    AccountContext,
    HttpRequest,
    Option,
    PollPage,
    PollQuery,
    ProviderDefaults,
    RejectedRow,
    WebhookRequest,
    as_int,
    load_json,
    local_epoch,
)
from worker.rows import Rows

NAME = Provider.SENDCLOUD

DEFAULTS = ProviderDefaults(
    base_url="https://api.sendcloud.net",
    quota_per_minute=3000,
    cache_ttl_secs=600,               # identical queries are answered from a 10-minute cache
    tz=CHINA_TZ,                      # "The time zone is UTC + 08:00" (doc: email_v2)
    retention_days=30,                # `days` ≤ 30; the tips' "3 months" is not relied on
    page_limit=100,
    polling="date",
    status_filters=(EventType.INVALID, EventType.SOFT_BOUNCE, EventType.DELIVERED),
    max_window_days=30,
    id_batch=family.ID_BATCH,         # `emailIds` per call: no documented maximum
)

# Credential parameter names; Aurora's docs also show the snake_case pair.
AUTH_PARAMS: dict[str, tuple[str, str]] = {
    "apiUser": ("apiUser", "apiKey"),
    "api_user": ("api_user", "api_key"),
}

OPTIONS: dict[str, Option] = {
    # Both methods are documented; POST keeps apiKey out of URLs, and so out of proxy and access logs.
    "method": Option(
        default="POST",
        choices=("POST", "GET"),
        doc="HTTP method of the status API; POST sends apiKey in a form body instead of the URL",
    ),
}

CREDENTIALS = family.CREDENTIALS

# Status strings by prefix (PROVIDERS.md 2.4): the answers are Chinese, values may carry a
# suffix (`无效邮件-地址不存在`). `软退信` and `请求中` are inferred, not seen in an example.
STATUSES: dict[str, EventType | None] = {
    "送达": EventType.DELIVERED,
    "投递成功": EventType.DELIVERED,     # the 2017 docs' word for delivered
    "无效邮件": EventType.INVALID,
    "软退信": EventType.SOFT_BOUNCE,
    "请求中": None,                      # still being requested: not a status change yet
}

# Webhook `event` values (doc: sendcloud2013 guide/advance.md). An unknown event is dead-lettered.
EVENTS: dict[str, EventType | None] = {
    "deliver": EventType.DELIVERED,
    "invalid": EventType.INVALID,
    "soft_bounce": EventType.SOFT_BOUNCE,
    # `bounce`: documented until 2017 (sendcloud2013/sendcloud_docs sources/guide/advance.md: "退信
    # (bounce)" beside soft_bounce, a permanent refusal; in the 2015 text "软退信 (bounce)" with its
    # text in `reason`). The invalid class: its text decides (a 5.1.1 is invalid; no evidence, a
    # final soft bounce: worker.providers.classify).
    "bounce": EventType.INVALID,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "report_spam": EventType.COMPLAINT,
    "request": None,
    "open": None,
    "click": None,
    "route": None,                        # inbound mail, not the status of a sent one
}

# statusCode → error (PROVIDERS.md 2.2). Other 4xxxx codes mean our parameters were wrong.
ERROR_CODES: dict[int, type[PollError]] = {
    50000: Throttled,      # interface frequency limited
    501: Retriable,        # server exception
    40005: FatalConfig,    # authentication failed (on Aurora also: the wrong region)
    40301: FatalConfig,    # 用户不存在: the user does not exist (sendcloud2013/sendcloud_docs email_v2)
    6001: FatalConfig,     # no permission
    40000: Retriable,      # duplicate request (sendcloud.net/doc/en/email_v2): asked again later, not parked
}

@attrs.frozen
class Edition:
    """One edition of the SendCloud API, as data; the engine functions below take it first."""

    provider: Provider
    defaults: ProviderDefaults
    options: Mapping[str, Option]
    path: str                                    # the status API under base_url
    statuses: Mapping[str, EventType | None]     # status text prefix → type; None: not emitted
    events: Mapping[str, EventType | None]       # webhook `event` → type; None: not emitted


# -- the engine: polling ------------------------------------------------------------------------


def poll_request(edition: Edition, acct: AccountContext, query: PollQuery, now: datetime) -> HttpRequest:
    api_user, api_key = family.require_credentials(acct)
    style = acct.option(edition.options, "auth_params") if "auth_params" in edition.options else "apiUser"
    user_param, key_param = AUTH_PARAMS[style]
    day = family.send_day(query, now, edition.defaults.tz).isoformat()
    start, limit = family.paging(query, edition.defaults)
    params = [
        (user_param, api_user),
        (key_param, api_key),
        ("startDate", day),
        ("endDate", day),
        ("start", start),
        ("limit", limit),
        *family.status_filter(query.status),
        *family.id_filter("emailIds", query, edition.defaults),
    ]
    url = f"{(acct.base_url or edition.defaults.base_url).rstrip('/')}{edition.path}"
    if acct.option(edition.options, "method") == "GET":
        return HttpRequest("GET", url, params=tuple(params))
    body = urllib.parse.urlencode(params).encode("ascii")
    return HttpRequest("POST", url, headers=(("Content-Type", webhooks.FORM),), body=body)


def poll_page(
    edition: Edition,
    acct: AccountContext,
    query: PollQuery,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> PollPage:
    """One page of emailStatus; a row that cannot be read is rejected alone (worker.providers._rows)."""
    envelope = read_answer(status, headers, body, now, _error_of)
    what = f"{edition.provider.value}: emailStatus response"
    if not (isinstance(envelope, dict) and _status_code(envelope) == 200 and envelope.get("result") is True):
        raise Retriable(f"{what}: not the documented JSON")
    info = envelope.get("info")
    if isinstance(info, str):
        # A public Aurora script reads `info` as a JSON string holding `list` (issue 13): accepted
        # beside the documented object holding `voList`.
        info = load_json(info)
    if not isinstance(info, dict):
        raise Retriable(f"{what}: no info object")
    total = family.optional_total(info, what)  # a string (PROVIDERS.md 2.3)
    records = info.get("voList", info.get("list"))
    if records is None and not total:
        # An empty answer: `"info": {}` like the envelope of PROVIDERS.md 2.2, or voList left out
        # beside `"total": "0"` (inferred). Left out beside a positive total, the list is missing.
        records = []
    if not isinstance(records, list):
        raise Retriable(f"{what}: voList missing or not a list")
    observations, rejected = _poll_rows(edition, acct, records)
    rows = len(records)
    next_offset = family.next_offset(query.offset, rows, total, family.page_size(query, edition.defaults))
    return PollPage(observations, rows, next_offset, total, rejected=rejected)


def _status_code(envelope: dict[str, Any]) -> int | None:
    return as_int(envelope.get("statusCode", envelope.get("statuscode")))


def _error_of(envelope: Any) -> PollError | None:
    """The error a `statusCode` other than 200 with `result: true` names; None without a code."""
    code = _status_code(envelope) if isinstance(envelope, dict) else None
    if code is None or (code == 200 and envelope.get("result") is True):
        return None
    error = ERROR_CODES.get(code)
    if error is not None:
        return error(f"statusCode {code}")
    if 40000 <= code < 50000:
        return BadRequest(f"statusCode {code}")
    return Retriable(f"statusCode {code}")


def _status_type(edition: Edition, text: str) -> tuple[EventType | None, bool]:
    """The type a status string names, by prefix (`无效邮件-地址不存在`, `Soft Bounce`), and whether
    the edition knows it (None and False for a word it does not: its sub-status decides)."""
    key = text.strip().casefold().replace("_", " ").replace("-", " ")
    for prefix, type_ in edition.statuses.items():
        if key.startswith(prefix):
            return type_, True
    return None, False


class _Row(NamedTuple):
    """A status row read and checked alone, not yet an observation (times in Unix seconds)."""

    record: dict[str, Any]
    email_id: str
    recipient: str
    status: str
    sub_status: Any
    occurred: int
    request_time: Any
    message: str | None
    classified: family.Classified
    base: EventType | None


@attrs.frozen
class _Columns:
    """A page's readable rows, column by column, as `_poll_rows` turns them into `Rows`. `epochs`
    reads every time text of the rows (Unix seconds); a falsy `requests` entry has no send time.
    `bases`: the type each row's status word names (`_status_type`), which says whether it is final."""

    records: list[dict[str, Any]]
    email_ids: list[str]
    recipients: list[str]
    statuses: list[str]
    sub_statuses: list[Any]
    messages: list[str | None]
    classified: list[family.Classified]
    occurred: list[int]
    requests: list[Any]
    epochs: dict[Any, int]
    bases: list[EventType | None]


_NONE = type(None)
_DICTS = {dict}
_TEXTS = {str}
_SUB_STATUS_TYPES = {str, int, _NONE}
_MESSAGE_TYPES = {str, _NONE}


def _poll_rows(edition: Edition, acct: AccountContext, records: list[Any]) -> tuple[Rows, tuple[RejectedRow, ...]]:
    """The page's readable rows, each built into its observation only when asked for (a re-sweep's
    duplicates never are: worker.rows `Rows`), and the unreadable ones.

    A page whose rows all hold plain values of the documented types is read column by column, each
    distinct time text and each distinct (status, sub-status, message) read once (issue 14: a
    duplicate row's CPU); any other page row by row, so a row that cannot be read is rejected alone.
    Both read the same fields with the same rules (tests/unit/providers/test_sendcloud_rows.py)."""
    columns = _columns(edition, acct, records)
    rejected: tuple[RejectedRow, ...] = ()
    if columns is None:
        columns, rejected = _columns_row_by_row(edition, acct, records)
    return _rows(acct, columns), rejected


def _columns(edition: Edition, acct: AccountContext, records: list[Any]) -> _Columns | None:
    """Every row read at once; None when some row needs reading alone (not an object, a field empty
    or of another type than text, a time that does not read)."""
    if set(map(type, records)) != _DICTS:
        return None
    email_ids = [r.get("emailId") for r in records]
    recipients = [r.get("recipients") for r in records]
    statuses = [r.get("status") for r in records]
    for texts in (email_ids, recipients, statuses):
        if set(map(type, texts)) != _TEXTS or "" in texts:
            return None
    requests = [r.get("requestTime") for r in records]
    # A request still in progress may not have a modification time yet.
    occurs = [r.get("modifiedTime") or q for r, q in zip(records, requests, strict=True)]
    # The seed example spells the description both ways, one per row.
    messages = [r.get("sendLog") or r.get("subStatDesc") or r.get("subStatusDesc") or None for r in records]
    sub_statuses = [r.get("subStatus") for r in records]
    if not set(map(type, messages)) <= _MESSAGE_TYPES or not set(map(type, sub_statuses)) <= _SUB_STATUS_TYPES:
        return None
    tz = edition.defaults.tz
    try:
        sent_texts = set(requests) - {None, ""}
        epochs = {text: local_epoch(text, tz) for text in sent_texts.union(occurs)}
    except BAD_INPUT:
        return None
    keys = list(zip(statuses, sub_statuses, messages, strict=True))
    typed = {status: _status_type(edition, status) for status in set(statuses)}   # each status word read once
    memo = {(status, sub, message): family.classify(acct, typed[status][0], sub, message, typed[status][1])
            for status, sub, message in set(keys)}
    return _Columns(records, email_ids, recipients, statuses, sub_statuses, messages, list(map(memo.__getitem__, keys)),
                    list(map(epochs.__getitem__, occurs)), requests, epochs, [typed[s][0] for s in statuses])


def _columns_row_by_row(edition: Edition, acct: AccountContext,
                        records: list[Any]) -> tuple[_Columns, tuple[RejectedRow, ...]]:
    """The readable rows and the rejected ones, each row read alone. Rows sharing a status,
    sub-status and message share their classification, and rows sharing a time text its reading."""
    tz = edition.defaults.tz
    memo: dict[tuple[str, int | None, str | None], family.Classified] = {}
    typed: dict[str, tuple[EventType | None, bool]] = {}    # each status word read once
    times: dict[Any, int] = {}

    def at(text: Any) -> int:
        found = times.get(text)
        if found is None:
            found = times[text] = local_epoch(text, tz)
        return found

    def read(record: Any) -> tuple[_Row]:
        status = family.required_text(record, "status")
        email_id = family.required_text(record, "emailId")
        recipient = family.required_text(record, "recipients")
        request_time = record.get("requestTime")
        # A request still in progress may not have a modification time yet.
        occurred = at(record.get("modifiedTime") or request_time)
        if request_time:
            at(request_time)
        # The seed example spells the description both ways, one per row.
        message = family.first_text(record, ("sendLog", "subStatDesc", "subStatusDesc"))
        sub_status = record.get("subStatus")
        base = typed.get(status)
        if base is None:
            base = typed[status] = _status_type(edition, status)
        key = (status, as_int(sub_status), message)
        classified = memo.get(key)
        if classified is None:
            classified = memo[key] = family.classify(acct, base[0], sub_status, message, base[1])
        return (_Row(record, email_id, recipient, status, sub_status, occurred, request_time, message, classified,
                     base[0]),)

    read_ok, rejected = read_rows(records, read)
    columns = _Columns([r.record for r in read_ok], [r.email_id for r in read_ok], [r.recipient for r in read_ok],
                       [r.status for r in read_ok], [r.sub_status for r in read_ok], [r.message for r in read_ok],
                       [r.classified for r in read_ok], [r.occurred for r in read_ok],
                       [r.request_time for r in read_ok], times, [r.base for r in read_ok])
    return columns, rejected


def _sub_text(sub_status: Any) -> str:
    return "" if sub_status in (None, "") else str(sub_status)


def _rows(acct: AccountContext, c: _Columns) -> Rows:
    def build(index: int) -> Observation:
        sent = c.requests[index]
        return family.observation(
            acct, email_id=c.email_ids[index], recipient=c.recipients[index], base=c.bases[index],
            sub_status=c.sub_statuses[index], occurred_at=datetime.fromtimestamp(c.occurred[index], UTC),
            provider_status=c.statuses[index], message=c.messages[index], record=c.records[index],
            sent_at=datetime.fromtimestamp(c.epochs[sent], UTC) if sent else None, classified=c.classified[index])

    count = len(c.email_ids)
    types = [classified[0] for classified in c.classified]
    if not count or plainly_within_caps(max(c.email_ids, key=len), max(c.recipients, key=len),
                                        max(c.statuses, key=len), max(map(_sub_text, c.sub_statuses), key=len)):
        plain = [True] * count   # the longest of each column is within the caps: every row is
    else:
        plain = [plainly_within_caps(*texts) for texts in zip(
            c.email_ids, c.recipients, c.statuses, map(_sub_text, c.sub_statuses), strict=True)]
    return Rows(c.email_ids, types, c.occurred, [True] * count, list(map(family.final, types, c.bases)), plain, build)


# -- this edition -------------------------------------------------------------------------------

EDITION = Edition(
    provider=NAME,
    defaults=DEFAULTS,
    options=OPTIONS,
    path="/apiv2/data/emailStatus",
    statuses=STATUSES,
    events=EVENTS,
)


def build_poll_request(acct: AccountContext, query: PollQuery, now: datetime) -> HttpRequest:
    return poll_request(EDITION, acct, query, now)


def parse_poll_response(
    acct: AccountContext,
    query: PollQuery,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> PollPage:
    return poll_page(EDITION, acct, query, status, headers, body, now)


def verify_webhook(acct: AccountContext, req: WebhookRequest, now: datetime, replay_window_secs: float) -> str:
    return webhooks.check_signature(EDITION, acct, req, now, replay_window_secs)


def split_webhook(req: WebhookRequest) -> list[dict[str, Any]]:
    return webhooks.webhook_records(EDITION, req)


def webhook_observations(acct: AccountContext, record: dict[str, Any]) -> list[Observation]:
    return webhooks.event_observations(EDITION, acct, record)


def replay_key(req: WebhookRequest, record: dict[str, Any]) -> str | None:
    return webhooks.signature_reuse_key(record)
