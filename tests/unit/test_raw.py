"""The `_raw` envelope (worker.raw): one class per record kind, the version check, and reading
what the first release wrote. Expected encodings are written out by hand."""

from __future__ import annotations

from datetime import date, datetime, timezone

import orjson
import pytest

from worker import raw
from worker.errors import BadRawRecord, BadSentRecord, UnknownRawVersion
from worker.model import EventType, Provider
from worker.providers.base import PollQuery

AT = datetime(2026, 11, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)   # 1_793_534_400_250 ms
AT_MS = 1_793_534_400_250


def test_webhook_record_encoding_is_the_v1_envelope():
    record = raw.WebhookRecord(Provider.SENDCLOUD, "cn-main", AT, {"event": "deliver", "emailId": "x"})
    assert orjson.loads(raw.encode(record)) == {
        "v": 1, "kind": "webhook", "provider": "sendcloud", "account": "cn-main", "received_at": AT_MS,
        "record": {"event": "deliver", "emailId": "x"}}
    assert raw.decode(raw.encode(record)) == record


def test_sent_message_encoding():
    sent = raw.SentMessage(Provider.UNISENDER, "uni", AT, "123", "a@x.test", datetime(2026, 11, 1, tzinfo=timezone.utc))
    assert orjson.loads(raw.encode(sent)) == {
        "v": 1, "kind": "sent", "provider": "unisender", "account": "uni", "received_at": AT_MS,
        "email_id": "123", "recipient": "a@x.test", "sent_at": "2026-11-01T00:00:00Z"}
    assert raw.decode(raw.encode(sent)) == sent


def test_poll_page_keeps_utf8_as_text_and_other_bytes_exactly():
    query = PollQuery(send_date=date(2026, 11, 1), status=EventType.INVALID, offset=200, limit=100)
    text = raw.PollPageRecord(Provider.AURORA_SENDCLOUD, "intl", AT, query, 200, {"content-type": "json"},
                              '{"info": "送达"}'.encode())
    d = orjson.loads(raw.encode(text))
    assert d["body"] == '{"info": "送达"}' and "body_b64" not in d
    assert d["query"] == {"send_date": "2026-11-01", "status": "invalid", "offset": 200, "limit": 100}
    assert raw.decode(raw.encode(text)) == text
    binary = raw.PollPageRecord(Provider.SENDCLOUD, "cn", AT, query, 502, {}, b"\xff\xfe<html>\x00")
    d = orjson.loads(raw.encode(binary))
    assert d["body_b64"] == "//48aHRtbD4A" and "body" not in d
    assert raw.decode(raw.encode(binary)).body == b"\xff\xfe<html>\x00"


# Records exactly as the first release (commit 13d3307, emit.raw_record) wrote them.
FIRST_RELEASE = {
    "webhook": b'{"v":1,"kind":"webhook","provider":"tencent_ses","account":"tx","received_at":1793534400250,'
               b'"record":{"event":"delivered","email":"a@x.test","bulkId":"b1","timestamp":1762000000}}',
    "sent": b'{"v":1,"kind":"sent","provider":"unisender","account":"uni","received_at":1793534400250,'
            b'"email_id":"77","recipient":"r@x.test","sent_at":"2026-11-01T10:00:00+00:00"}',
    "poll_page": b'{"v":1,"kind":"poll_page","provider":"sendcloud","account":"cn","received_at":1793534400250,'
                 b'"query":{"send_date":"2026-10-31","status":null,"offset":0,"limit":100},"status":200,'
                 b'"headers":{"content-type":"application/json"},"body":"{\\"result\\":true}"}',
}


def test_what_the_first_release_wrote_is_read():
    hook = raw.decode(FIRST_RELEASE["webhook"])
    assert isinstance(hook, raw.WebhookRecord) and hook.provider is Provider.TENCENT_SES and hook.account == "tx"
    assert hook.received_at == AT and hook.record["bulkId"] == "b1"
    sent = raw.decode(FIRST_RELEASE["sent"])
    assert isinstance(sent, raw.SentMessage)
    assert sent.sent_at == datetime(2026, 11, 1, 10, tzinfo=timezone.utc) and sent.email_id == "77"
    page = raw.decode(FIRST_RELEASE["poll_page"])
    assert isinstance(page, raw.PollPageRecord)
    assert page.query == PollQuery(send_date=date(2026, 10, 31), status=None, offset=0, limit=100)
    assert page.body == b'{"result":true}' and page.status == 200


@pytest.mark.parametrize(("value", "error"), [
    (b"", BadRawRecord),
    (b"not json", BadRawRecord),
    (b"[1, 2]", BadRawRecord),
    (b'{"v": 2, "kind": "webhook"}', UnknownRawVersion),
    (b'{"v": "1", "kind": "webhook"}', UnknownRawVersion),
    (b'{"v": 1, "kind": "telegram", "provider": "sendcloud", "account": "a", "received_at": 1}', BadRawRecord),
    (b'{"v": 1, "kind": "webhook", "provider": "mailgun", "account": "a", "received_at": 1, "record": {}}', BadRawRecord),
    (b'{"v": 1, "kind": "webhook", "provider": "sendcloud", "account": "a", "received_at": 1}', BadRawRecord),
    (b'{"v": 1, "kind": "webhook", "provider": "sendcloud", "account": "a", "received_at": 1, "record": [1]}', BadRawRecord),
    (b'{"v": 1, "kind": "webhook", "provider": "sendcloud", "account": 5, "received_at": 1, "record": {}}', BadRawRecord),
    (b'{"v": 1, "kind": "sent", "provider": "unisender", "account": "a", "received_at": 1, "email_id": "1",'
     b' "recipient": "r", "sent_at": "yesterday"}', BadRawRecord),
    (b'{"v": 1, "kind": "poll_page", "provider": "sendcloud", "account": "a", "received_at": 1, "query": {},'
     b' "status": "200", "headers": {}, "body": ""}', BadRawRecord),
    (b'{"v": 1, "kind": "poll_page", "provider": "sendcloud", "account": "a", "received_at": 1, "query": {},'
     b' "status": 200, "headers": {}, "body_b64": "***"}', BadRawRecord),
])
def test_what_is_not_a_record_is_a_typed_error(value, error):
    with pytest.raises(error) as info:
        raw.decode(value)
    assert type(info.value) is error   # UnknownRawVersion only for a version this release lacks


def test_sent_topic_records_follow_the_sent_message_schema_leniently():
    got = raw.SentMessage.from_feed(b'{"provider": "unisender", "account": "uni", "email_id": 5, "recipient": "r@x",'
                                    b' "sent_at": "2026-11-01T10:00:00", "extra": true}', AT)
    assert got == raw.SentMessage(Provider.UNISENDER, "uni", AT, "5", "r@x", datetime(2026, 11, 1, 10, tzinfo=timezone.utc))
    for bad in (b"{}", b"nope", b'{"provider": "unisender", "account": "uni", "email_id": true, "recipient": "r",'
                b' "sent_at": "2026-11-01T10:00:00Z"}', b'{"provider": "unisender", "account": "uni", "email_id": "",'
                b' "recipient": "r", "sent_at": "2026-11-01T10:00:00Z"}'):
        with pytest.raises(BadSentRecord):
            raw.SentMessage.from_feed(bad, AT)
