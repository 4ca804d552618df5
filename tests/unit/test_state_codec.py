"""The `_state` codec (worker.state): every key kind, its value, and reading a changelog back.

Expected bytes are written out by hand from the format in worker/state.py's docstring, so a
change of the wire format fails here before it reaches a running cluster."""

from __future__ import annotations

import orjson

from worker.poll.ids import Tracked
from worker.poll.scheduler import Cursor
from worker.poll.sink import CursorChange, IdChange
from worker.state import (
    Restored,
    change_write,
    cursor_key,
    decode_cursor,
    decode_tracked,
    dedup_key,
    dedup_value,
    dedup_write,
    encode_cursor,
    encode_tracked,
    id_key,
)


def test_keys_are_a_kind_byte_then_the_identity():
    assert dedup_key(0x0102030405060708) == b"d\x01\x02\x03\x04\x05\x06\x07\x08"
    assert dedup_value(0xA0B0C0D0E0F00001) == b"\xa0\xb0\xc0\xd0\xe0\xf0\x00\x01"
    assert cursor_key("cn-main", "2026-11-01|invalid") == b"ccn-main|2026-11-01|invalid"
    assert id_key("uni", "12345") == b"uuni|12345"
    assert dedup_write(1, None) == (b"d\x00\x00\x00\x00\x00\x00\x00\x01", None)


def test_tracked_encoding_round_trips():
    tr = Tracked(recipient="a@b.c", sent_at=12.5, status="ok_sent", final=True)
    assert decode_tracked(encode_tracked(tr)) == tr
    assert orjson.loads(encode_tracked(tr)) == {"r": "a@b.c", "s": 12.5, "st": "ok_sent", "f": True}


def test_cursor_encoding_round_trips():
    c = Cursor(interval=900, offset=200, in_sweep=True, started_at=1.5, due_at=9.0, total=None, seen=3)
    assert decode_cursor(encode_cursor(c)) == c


def test_decoders_ignore_members_a_later_release_adds():
    # release N+1 may add fields; release N must still restore (docs/topics.md, compatibility)
    assert decode_cursor(b'{"interval": 60.0, "offset": 7, "v": 2, "new_field": [1]}') == Cursor(interval=60.0, offset=7)
    assert decode_tracked(b'{"r": "x@y", "s": 5, "st": null, "f": false, "extra": 1}') == Tracked("x@y", 5.0)


def test_state_changes_become_their_records():
    cursor = Cursor(interval=600.0)
    assert change_write(CursorChange("a", "w", cursor)) == (b"ca|w", encode_cursor(cursor))
    assert change_write(CursorChange("a", "w", None)) == (b"ca|w", None)
    tracked = Tracked("r@x", 1.0, "ok_sent")
    assert change_write(IdChange("u", "9", tracked)) == (b"uu|9", encode_tracked(tracked))
    assert change_write(IdChange("u", "9", None)) == (b"uu|9", None)


def replay(records: list[tuple[bytes | None, bytes | None]]) -> Restored:
    restored = Restored.empty()
    for key, value in records:
        restored.add(key, value)
    return restored.finish()


def test_a_changelog_reduces_to_the_last_value_per_key_and_skips_what_it_cannot_read():
    c1, c2 = Cursor(interval=60.0, offset=100), Cursor(interval=60.0, offset=200)
    restored = replay([
        (dedup_key(5), dedup_value(50)),
        (b"cacct|w1", encode_cursor(c1)),
        (b"cacct|w1", encode_cursor(c2)),          # later wins
        (b"cacct|w2", encode_cursor(c1)),
        (b"cacct|w2", None),                       # tombstone
        (b"uacct|1", encode_tracked(Tracked("a@x", 1.0))),
        (b"uacct|2", encode_tracked(Tracked("b@x", 2.0))),
        (b"uacct|2", None),
        (dedup_key(5), None),                      # a dedup tombstone is a zero word
        (b"d\x01\x02", b"short"),                  # foreign: wrong sizes
        (b"cno-separator", b"{}"),                 # unreadable key
        (b"cacct|w3", b"not json"),                # unreadable value
        (b"x", b"?"),                              # unknown kind
        (None, b"?"),                              # no key
        (dedup_key(6), dedup_value(60)),           # still read after all of that
        (b"r" + (9).to_bytes(8, "big"), dedup_value(90)),
        (b"r" + (9).to_bytes(8, "big"), None),
        (b"r" + (8).to_bytes(8, "big"), dedup_value(80)),
    ])
    assert restored.cursors == {"acct": {"w1": c2}}
    assert restored.ids == {"acct": {"1": Tracked("a@x", 1.0)}}
    assert restored.keys.tolist() == [5, 5, 6] and restored.words.tolist() == [50, 0, 60]
    assert restored.replay_keys.tolist() == [9, 9, 8] and restored.replay_words.tolist() == [90, 0, 80]
    assert restored.skipped == 5
