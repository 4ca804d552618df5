"""A `_state` record whose value is JSON but not what its kind holds is skipped at restore, as one
that is not JSON at all (topics.md rule 2: never stopping a restore). Before 2026-12-06 a cursor
whose value was a list, a number, a string, `true` or `null` raised AttributeError out of
`Restored.add` and the shard could not open (config/format audit finding 1); a cursor whose members
were of other types was restored and then stopped the account's polling at its first look
(finding 7); a tracked id with a text recipient replaced by a number, likewise."""

from __future__ import annotations

import attrs
import pytest

from worker.poll.ids import Tracked
from worker.poll.scheduler import Cursor
from worker.state import Restored, decode_cursor, decode_tracked, dedup_key, dedup_value, encode_cursor

GOOD = Cursor(interval=60.0, offset=100)

NOT_A_CURSOR = [
    b"[1, 2]",
    b"null",
    b"1",
    b'"s"',
    b"true",
    b'{"interval": "15s", "due_at": "soon"}',
    b'{"interval": 60.0, "offset": "100"}',
    b'{"interval": 60.0, "offset": -1}',
    b'{"interval": 60.0, "offset": 1.5}',
    b'{"interval": 60.0, "in_sweep": 1}',
    b'{"interval": true}',
    b'{"interval": null}',
    b'{"interval": 60.0, "total": "12"}',
    b'{"interval": 60.0, "seen": true}',
    b'{"interval": 60.0, "due_at": [1]}',
    b'{"interval": 60.0, "started_at": {}}',
    b'{"offset": 0}',                     # no interval
]


@pytest.mark.parametrize("value", NOT_A_CURSOR)
def test_a_cursor_value_of_another_shape_is_skipped_and_the_restore_goes_on(value):
    restored = Restored.empty()
    for key, v in [(b"cacct|w1", encode_cursor(GOOD)), (b"cacct|w2", value), (b"cacct|w3", encode_cursor(GOOD)),
                   (dedup_key(7), dedup_value(70))]:
        restored.add(key, v)
    restored = restored.finish()
    assert restored.skipped == 1
    assert restored.cursors == {"acct": {"w1": GOOD, "w3": GOOD}}
    assert restored.keys.tolist() == [7] and restored.words.tolist() == [70]


@pytest.mark.parametrize("value", NOT_A_CURSOR)
def test_decode_cursor_refuses_it(value):
    with pytest.raises((ValueError, TypeError)):    # TypeError: no interval (Cursor's own check)
        decode_cursor(value)


@pytest.mark.parametrize(("value", "cursor"), [
    (b'{"interval": 900, "offset": 0, "in_sweep": false, "started_at": 0, "completed_at": 1764979200,'
     b' "due_at": 1764980100.5, "total": null, "seen": 0, "changes": 0, "sweeps": 3}',
     Cursor(interval=900, completed_at=1764979200, due_at=1764980100.5, sweeps=3)),
    (b'{"interval": 60.0, "offset": 200, "in_sweep": true, "total": 5000, "seen": 200, "changes": 7}',
     Cursor(interval=60.0, offset=200, in_sweep=True, total=5000, seen=200, changes=7)),
    (b'{"interval": 60.0, "total": -1}', Cursor(interval=60.0, total=-1)),   # what a provider said, kept
    (b'{"interval": 60.0, "later": [1, 2]}', Cursor(interval=60.0)),           # a later release's member
])
def test_cursors_of_every_member_type_still_read(value, cursor):
    assert decode_cursor(value) == cursor


@pytest.mark.parametrize("value", [
    b'{"r": 5, "s": 1.0}',
    b'{"r": "a@x", "s": "1764979200"}',
    b'{"r": "a@x", "s": true}',
    b'{"r": "a@x", "s": 1.0, "st": 4}',
    b'{"r": ["a@x"], "s": 1.0}',
])
def test_a_tracked_id_with_a_member_of_another_type_is_skipped(value):
    restored = Restored.empty()
    restored.add(b"uacct|1", b'{"r": "a@x", "s": 1.0}')
    restored.add(b"uacct|2", value)
    restored = restored.finish()
    assert restored.skipped == 1
    assert restored.ids == {"acct": {"1": Tracked("a@x", 1.0)}}
    with pytest.raises(ValueError):
        decode_tracked(value)


def test_a_final_id_whose_send_time_is_not_a_number_is_skipped():
    restored = Restored.empty()
    restored.add(b"uacct|abc", b'{"r": "", "s": "soon", "f": true}')
    restored.add(b"uacct|def", b'{"r": "", "s": 1764979200.0, "f": true}')
    assert restored.skipped == 1
    settled = restored.finish().settled["acct"]
    assert "def" in settled and "abc" not in settled and len(settled) == 1


def test_every_member_of_a_cursor_is_checked_and_reads_back():
    """decode_cursor checks each member by name: a member added to Cursor must be given its check
    there (else every cursor with it would be skipped at restore, and every window swept again)."""
    assert {f.name for f in attrs.fields(Cursor)} == {
        "interval", "offset", "in_sweep", "started_at", "completed_at", "due_at", "total", "seen", "changes", "sweeps"}
    full = Cursor(interval=61.5, offset=300, in_sweep=True, started_at=1764979200.5, completed_at=1764979100.25,
                  due_at=1764980000.75, total=900, seen=250, changes=3, sweeps=9)
    assert decode_cursor(encode_cursor(full)) == full
