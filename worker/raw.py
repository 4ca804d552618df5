"""The `_raw` envelope: one typed class per record kind, one codec, one version check.

Every record a shard processes arrives through `<prefix>._raw`, keyed `provider/account`, on the
partition of the shard that owns the account (for an account spread over several shards, the one
that owns the record's email: worker.emit `shard_of_email`):

    WebhookRecord   one status record split from a verified webhook body (kind "webhook"); with
                    `shard` set, a spread account's record forwarded to its email's shard by the
                    shard that checked its replay key
    SentMessage     a message the sending service reported as sent (kind "sent")
    PollPageRecord  a status-API answer fetched by the backfill (kind "poll_page"), or a copy of a
                    spread account's polled page for another of its shards (`shard` set)

Value: JSON `{"v": 1, "kind", "provider", "account", "received_at": epoch ms, ...fields}`. A
webhook record may carry `replay` (added after the first release, which ignores it); a webhook
record or a poll page `shard` (written only for an account with `spread` > 1, a config key older
releases refuse).
`decode` refuses what it cannot read with a typed error (`BadRawRecord`, `UnknownRawVersion`),
never a crash: the shard dead-letters it and goes on. Only worker.intake writes `_raw`.

Compatibility. Version 1 is what the first release wrote, and this one reads it unchanged. A poll
page's body is kept byte for byte: as `body` (text) when it is UTF-8, which is what the first
release wrote and reads, else as `body_b64`; a first-release pod would dead-letter only that
second form (it used to replace such bytes, so nothing readable is lost). A future version must be
read by the release before it, or written only after a configuration switch (docs/topics.md).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import attrs
import orjson

from worker.errors import BadRawRecord, BadSentRecord, UnknownRawVersion
from worker.model import EventType, Provider, rfc3339
from worker.providers.base import PollQuery

VERSION = 1
KNOWN_VERSIONS = frozenset({1})


@attrs.frozen
class WebhookRecord:
    KIND: ClassVar[str] = "webhook"
    provider: Provider
    account: str
    received_at: datetime
    record: Mapping[str, Any]            # what the provider module's split_webhook returned
    replay: str | None = None            # the provider module's replay_key: a reused signature's name
    shard: int | None = None             # forwarded to its email's shard, its replay key checked already

    def _fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"record": self.record}
        if self.replay is not None:
            out["replay"] = self.replay
        if self.shard is not None:
            out["shard"] = self.shard
        return out

    @classmethod
    def _from(cls, head: dict[str, Any], d: dict[str, Any]) -> WebhookRecord:
        record, replay = d["record"], d.get("replay")
        if not isinstance(record, dict) or not (replay is None or isinstance(replay, str)):
            raise TypeError("record")
        return cls(**head, record=record, replay=replay, shard=_shard(d))


@attrs.frozen
class SentMessage:
    KIND: ClassVar[str] = "sent"
    provider: Provider
    account: str
    received_at: datetime
    email_id: str
    recipient: str
    sent_at: datetime

    def _fields(self) -> dict[str, Any]:
        return {"email_id": self.email_id, "recipient": self.recipient, "sent_at": rfc3339(self.sent_at)}

    @classmethod
    def from_feed(cls, value: bytes | None, received_at: datetime) -> SentMessage:
        """A record of the sent-message topic (schemas/sent-message.v1.json; extra fields ignored,
        a numeric email_id accepted); BadSentRecord when it is not one."""
        try:
            d = orjson.loads(value or b"")
            email_id, recipient = d["email_id"], d["recipient"]
            if isinstance(email_id, bool) or not isinstance(email_id, (str, int)) or not isinstance(recipient, str):
                raise TypeError("email_id or recipient")
            if not str(email_id) or not recipient:
                raise ValueError("empty email_id or recipient")
            return cls(provider=Provider(d["provider"]), account=_text(d["account"]), received_at=received_at,
                       email_id=str(email_id), recipient=recipient, sent_at=_sent_at(d["sent_at"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError) as exc:
            raise BadSentRecord(f"not a sent-message record ({type(exc).__name__})") from None

    @classmethod
    def _from(cls, head: dict[str, Any], d: dict[str, Any]) -> SentMessage:
        return cls(**head, email_id=_text(d["email_id"]), recipient=_text(d["recipient"]),
                   sent_at=_sent_at(d["sent_at"]))


@attrs.frozen
class PollPageRecord:
    KIND: ClassVar[str] = "poll_page"
    provider: Provider
    account: str
    received_at: datetime
    query: PollQuery
    status: int
    headers: Mapping[str, str]
    body: bytes
    shard: int | None = None      # a spread account's copy for this shard: only its rows are decided there

    def _fields(self) -> dict[str, Any]:
        q = self.query
        out: dict[str, Any] = {
            "query": {"send_date": q.send_date.isoformat() if q.send_date else None,
                      "status": q.status.value if q.status else None, "offset": q.offset, "limit": q.limit},
            "status": self.status, "headers": dict(self.headers)}
        if self.shard is not None:
            out["shard"] = self.shard
        try:
            out["body"] = self.body.decode("utf-8")
        except UnicodeDecodeError:
            out["body_b64"] = base64.b64encode(self.body).decode("ascii")
        return out

    @classmethod
    def _from(cls, head: dict[str, Any], d: dict[str, Any]) -> PollPageRecord:
        q = d["query"]
        query = PollQuery(send_date=date.fromisoformat(q["send_date"]) if q.get("send_date") else None,
                          status=EventType(q["status"]) if q.get("status") else None,
                          offset=int(q.get("offset", 0)), limit=int(q.get("limit", 100)))
        body = base64.b64decode(d["body_b64"], validate=True) if "body_b64" in d else _text(d["body"]).encode()
        headers = d.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise TypeError("headers")
        status = d["status"]
        if not isinstance(status, int) or isinstance(status, bool):
            raise TypeError("status")
        return cls(**head, query=query, status=status, headers=headers, body=body, shard=_shard(d))


def _shard(d: dict[str, Any]) -> int | None:
    """A forwarded record's shard (a spread account's: worker.intake `routed`, `page_copies`)."""
    shard = d.get("shard")
    if shard is not None and (not isinstance(shard, int) or isinstance(shard, bool) or shard < 0):
        raise TypeError("shard")
    return shard


RawRecord = WebhookRecord | SentMessage | PollPageRecord
KINDS: dict[str, type[WebhookRecord] | type[SentMessage] | type[PollPageRecord]] = {
    k.KIND: k for k in (WebhookRecord, SentMessage, PollPageRecord)}


def encode(record: RawRecord) -> bytes:
    return orjson.dumps({"v": VERSION, "kind": record.KIND, "provider": record.provider.value,
                         "account": record.account, "received_at": _epoch_ms(record.received_at),
                         **record._fields()})


def decode(value: bytes | None) -> RawRecord:
    """A `_raw` record; BadRawRecord (or UnknownRawVersion) when it is not one this release reads."""
    try:
        d = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        raise BadRawRecord("not JSON") from None
    if not isinstance(d, dict):
        raise BadRawRecord("not a JSON object")
    version = d.get("v", 1)   # (the first writers always wrote it; a missing one is read as 1)
    if version not in KNOWN_VERSIONS:
        raise UnknownRawVersion(f"envelope version {version!r}")
    kind = KINDS.get(d.get("kind"))  # type: ignore[arg-type]
    if kind is None:
        raise BadRawRecord("unknown kind")
    try:
        head = {"provider": Provider(d["provider"]), "account": _text(d["account"]),
                "received_at": datetime.fromtimestamp(int(d["received_at"]) / 1000, tz=UTC)}
        return kind._from(head, d)
    except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
        detail = f"missing {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else type(exc).__name__
        raise BadRawRecord(f"{kind.KIND} record: {detail}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("text")
    return value


def _sent_at(value: Any) -> datetime:
    """An RFC 3339 time (`Z`, `z` or an offset); one without a zone is read as UTC, a date alone as
    its midnight UTC (the schema asks for a zone; be lenient). A date with a zone but no time is
    refused: Python 3.11 would read `2026-11-01+08:00` as 08:00 of that day."""
    text = _text(value)
    if text[10:11] in ("+", "-"):   # `yyyy-mm-dd` then an offset: no time (`yyyy-mm-ddZ` fromisoformat refuses)
        raise ValueError("a date with a zone but no time")
    if text.endswith("z"):                      # fromisoformat reads `Z`, not `z`
        text = text[:-1] + "Z"
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _epoch_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)
