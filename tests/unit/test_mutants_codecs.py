"""The record codecs (worker.raw, worker.deadletter, worker.state): what mutation testing found
unpinned. Defaults a first-release record may leave out, what each refusal says, keys whose parts
contain the separator, tombstones for what was never stored, 64-bit words. Inputs and expected
values are literals."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from worker import raw
from worker.deadletter import signed_headers
from worker.errors import BadRawRecord, BadSentRecord, UnknownRawVersion
from worker.model import Provider
from worker.poll.scheduler import Cursor
from worker.providers.base import PollQuery
from worker.state import Restored, change_write, dedup_write

AT = datetime(2026, 11, 1, 12, 0, 0, 250000, tzinfo=UTC)   # 1_793_534_400_250 ms


# -- worker.raw -----------------------------------------------------------------------------------


def test_a_poll_page_without_date_or_status_filter_round_trips():
    record = raw.PollPageRecord(Provider.TENCENT_SES, "tx", AT, PollQuery(offset=100, limit=50), 200, {}, b"{}")
    assert raw.encode(record) == (
        b'{"v":1,"kind":"poll_page","provider":"tencent_ses","account":"tx","received_at":1793534400250,'
        b'"query":{"send_date":null,"status":null,"offset":100,"limit":50},"status":200,"headers":{},"body":"{}"}')
    assert raw.decode(raw.encode(record)) == record


def test_a_poll_page_query_without_offset_or_limit_reads_as_the_first_page_of_100():
    value = (b'{"v":1,"kind":"poll_page","provider":"sendcloud","account":"cn","received_at":1793534400250,'
             b'"query":{"send_date":"2026-10-31"},"status":200,"headers":{},"body":""}')
    assert raw.decode(value) == raw.PollPageRecord(Provider.SENDCLOUD, "cn", AT,
                                                   PollQuery(send_date=date(2026, 10, 31), offset=0, limit=100),
                                                   200, {}, b"")


def test_a_record_without_a_version_is_read_as_version_1():
    value = (b'{"kind":"webhook","provider":"sendcloud","account":"cn","received_at":1793534400250,'
             b'"record":{"event":"deliver"}}')
    assert raw.decode(value) == raw.WebhookRecord(Provider.SENDCLOUD, "cn", AT, {"event": "deliver"})


HEAD = b'"v":1,"provider":"sendcloud","account":"cn","received_at":1793534400250'


@pytest.mark.parametrize(("value", "error", "message"), [
    (b"garbage", BadRawRecord, "not JSON"),
    (None, BadRawRecord, "not JSON"),
    (b"[1, 2]", BadRawRecord, "not a JSON object"),
    (b'{"v": 9, "kind": "webhook"}', UnknownRawVersion, "envelope version 9"),
    (b'{"v": 1, "kind": "carrier_pigeon"}', BadRawRecord, "unknown kind"),
    (b'{' + HEAD + b',"kind":"sent","recipient":"r@x","sent_at":"2026-11-01T00:00:00Z"}', BadRawRecord,
     "sent record: missing 'email_id'"),
    (b'{' + HEAD + b',"kind":"webhook","record":[1]}', BadRawRecord, "webhook record: TypeError"),
    (b'{"v":1,"provider":"pigeon","account":"cn","received_at":1,"kind":"webhook","record":{}}', BadRawRecord,
     "webhook record: ValueError"),
    (b'{' + HEAD + b',"kind":"poll_page","query":{},"status":200,"headers":{"x":1},"body":""}', BadRawRecord,
     "poll_page record: TypeError"),
    (b'{' + HEAD + b',"kind":"poll_page","query":{},"status":true,"headers":{},"body":""}', BadRawRecord,
     "poll_page record: TypeError"),
])
def test_each_refusal_says_what_is_wrong(value, error, message):
    with pytest.raises(error) as caught:
        raw.decode(value)
    assert type(caught.value) is error
    assert str(caught.value) == message


def test_a_sent_record_with_a_recipient_that_is_not_text_is_refused():
    value = b'{"provider":"unisender","account":"uni","email_id":"1","recipient":5,"sent_at":"2026-11-01T00:00:00Z"}'
    with pytest.raises(BadSentRecord) as caught:
        raw.SentMessage.from_feed(value, AT)
    assert str(caught.value) == "not a sent-message record (TypeError)"


# -- worker.deadletter ----------------------------------------------------------------------------


def test_signed_headers_keep_undecodable_bytes_as_received():
    # aiohttp hands over header bytes that are not UTF-8 as surrogate escapes; the re-post needs the bytes
    headers = [("x-webhook-signature", "ab\udcff"), ("content-type", "application/json"), ("x-webhook-timestamp", "1")]
    assert signed_headers(headers) == (("x-webhook-signature", b"ab\xff"), ("x-webhook-timestamp", b"1"))


# -- worker.state ---------------------------------------------------------------------------------


def test_a_dedup_write_is_the_key_and_the_8_byte_word_or_a_tombstone():
    assert dedup_write(5, 7) == (b"d\x00\x00\x00\x00\x00\x00\x00\x05", b"\x00\x00\x00\x00\x00\x00\x00\x07")
    assert dedup_write(2**64 - 1, None) == (b"d\xff\xff\xff\xff\xff\xff\xff\xff", None)


def test_change_write_refuses_what_is_not_a_state_change():
    with pytest.raises(TypeError, match=r"^not a state change: str$"):
        change_write("cursor")


def test_an_empty_restore_has_empty_uint64_columns():
    restored = Restored.empty()
    assert (restored.keys.dtype, restored.keys.shape) == (np.dtype(np.uint64), (0,))
    assert (restored.words.dtype, restored.words.shape) == (np.dtype(np.uint64), (0,))


def test_a_dedup_record_with_a_key_of_the_wrong_size_is_skipped_whole():
    restored = Restored.empty()
    restored.add(b"d\x00\x00\x00\x00\x00\x00\x05", b"\x00" * 7 + b"\x01")   # a 7-byte hash
    restored.finish()
    assert (restored.skipped, restored.keys.tolist(), restored.words.tolist()) == (1, [], [])


def test_a_window_id_keeps_its_own_separator():
    restored = Restored.empty()
    restored.add(b"ccn-main|2024-01-02|invalid", b'{"interval":600.0,"offset":100}')
    assert restored.cursors == {"cn-main": {"2024-01-02|invalid": Cursor(interval=600.0, offset=100)}}
    assert restored.skipped == 0


def test_tombstones_for_what_was_never_stored_are_not_errors():
    restored = Restored.empty()
    restored.add(b"ccn-main|2024-01-02|*", None)
    restored.add(b"uuni|77", None)
    assert (restored.cursors, restored.ids, restored.skipped) == ({"cn-main": {}}, {"uni": {}}, 0)
