"""Pins left open by mutation testing of worker.raw and worker.state: how a sent-message time
with a zone other than UTC (or none, on a host that is not on UTC) is read, and what `Restored`
hands back (uint64 columns, a second `finish` that decodes nothing new)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from worker.raw import SentMessage, decode
from worker.state import Restored

AT = datetime(2026, 11, 2, tzinfo=UTC)


def _feed(sent_at: str) -> bytes:
    return (b'{"provider": "unisender", "account": "uni", "email_id": "9", "recipient": "r@x.test",'
            b' "sent_at": "' + sent_at.encode() + b'"}')


@pytest.fixture
def shanghai_local_time(monkeypatch):
    """The process's local zone set to UTC+8 (no DST), restored afterwards."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_sent_at_with_an_offset_is_the_same_instant_in_utc():
    sent = SentMessage.from_feed(_feed("2026-11-01T18:30:00+08:00"), AT)
    assert sent.sent_at == datetime(2026, 11, 1, 10, 30, tzinfo=UTC)
    assert (sent.sent_at.hour, sent.sent_at.minute) == (10, 30)       # converted, not relabelled
    assert sent.sent_at.utcoffset() == timedelta(0)


def test_sent_at_with_a_negative_offset_in_a_raw_record():
    value = (b'{"v":1,"kind":"sent","provider":"unisender","account":"uni","received_at":1793577600000,'
             b'"email_id":"9","recipient":"r@x.test","sent_at":"2026-10-31T20:00:00-05:00"}')
    rec = decode(value)
    assert rec.sent_at.utcoffset() == timedelta(0)
    assert (rec.sent_at.day, rec.sent_at.hour) == (1, 1)


def test_sent_at_without_a_zone_is_utc_even_when_the_host_is_not(shanghai_local_time):
    sent = SentMessage.from_feed(_feed("2026-11-01T10:00:00"), AT)
    assert sent.sent_at == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert sent.sent_at.utcoffset() == timedelta(0)


def test_sent_at_in_utc_stays_utc_when_the_host_is_not(shanghai_local_time):
    sent = SentMessage.from_feed(_feed("2026-11-01T10:00:00Z"), AT)
    assert sent.sent_at.utcoffset() == timedelta(0)                     # not the host's +08:00
    assert (sent.sent_at.day, sent.sent_at.hour) == (1, 10)
    offset = SentMessage.from_feed(_feed("2026-11-01T12:00:00+02:00"), AT)
    assert offset.sent_at.utcoffset() == timedelta(0)
    assert offset.sent_at.hour == 10


def test_finish_gives_uint64_columns_with_exact_64_bit_words():
    restored = Restored.empty()
    restored.add(b"d" + bytes.fromhex("0102030405060708"), bytes.fromhex("0123456789abcdef"))
    restored.add(b"r" + bytes.fromhex("ffffffffffffffff"), bytes.fromhex("fedcba9876543211"))
    restored.finish()
    for column in (restored.keys, restored.words, restored.replay_keys, restored.replay_words):
        assert column.dtype == np.uint64
    assert restored.keys.tolist() == [0x0102030405060708]
    assert restored.words.tolist() == [0x0123456789ABCDEF]              # above 2**53: no float
    assert restored.replay_keys.tolist() == [0xFFFFFFFFFFFFFFFF]
    assert restored.replay_words.tolist() == [0xFEDCBA9876543211]


def test_a_second_finish_decodes_nothing_new_and_keeps_the_columns():
    restored = Restored.empty()
    restored.add(b"d" + bytes(7) + b"\x05", bytes(7) + b"\x09")
    assert restored.finish() is restored
    assert restored.finish() is restored                                 # no error the second time
    assert restored.keys.tolist() == [5] and restored.words.tolist() == [9]
    assert restored.skipped == 0
