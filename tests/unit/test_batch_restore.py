"""A restore walks `_state` batch by batch (worker.batchfetch) and hands records to
`Restored.add_records`: what read_committed returns, in order, between a start and an end offset.

The batches are real Kafka v2 record batches, built with aiokafka's batch builder; a control batch
is a built batch with its control bit set and its CRC computed again, as a broker writes them."""

from __future__ import annotations

import struct
from types import SimpleNamespace

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c

from worker.batchfetch import CommittedRecords
from worker.state import Restored

ABORT, COMMIT = 0, 1


def batch(base: int, records: list[tuple[bytes | None, bytes | None]], producer: int = -1,
          transactional: bool = False, control: bool = False) -> bytes:
    """One v2 record batch at offsets base, base + 1, ..."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=int(transactional),
                                        producer_id=producer, producer_epoch=0, base_sequence=0 if producer >= 0 else -1,
                                        batch_size=1 << 20)
    for i, (key, value) in enumerate(records):
        builder.append(i, timestamp=1_700_000_000_000, key=key, value=value, headers=[])
    data = bytearray(builder.build())
    data[0:8] = base.to_bytes(8, "big")               # baseOffset (outside the CRC)
    if control:
        attributes = int.from_bytes(data[21:23], "big") | 0x20
        data[21:23] = attributes.to_bytes(2, "big")
        data[17:21] = calc_crc32c(bytes(data[21:])).to_bytes(4, "big")   # the CRC covers attributes onwards
    return bytes(data)


def marker(base: int, producer: int, kind: int) -> bytes:
    return batch(base, [(struct.pack(">hh", 0, kind), struct.pack(">hi", 0, 0))], producer, True, True)


def walk(data: bytes, aborted=None, start: int = 0) -> tuple[list[tuple[int, bytes | None]], CommittedRecords]:
    records = CommittedRecords(data, aborted, start)
    return [(r.offset, r.key) for r in records], records


def test_committed_records_skip_aborted_transactions_and_markers():
    # producer 7 commits 0-1 (marker at 2); producer 9 writes 3-4 and aborts (marker at 7) while producer 7
    # writes 5-6 and commits (marker at 8); a plain record at 9.
    data = b"".join([
        batch(0, [(b"a0", b"1"), (b"a1", b"1")], 7, True), marker(2, 7, COMMIT),
        batch(3, [(b"x3", b"1"), (b"x4", b"1")], 9, True),
        batch(5, [(b"a5", b"1"), (b"a6", b"1")], 7, True),
        marker(7, 9, ABORT), marker(8, 7, COMMIT),
        batch(9, [(b"p9", b"1")]),
    ])
    got, records = walk(data, aborted=[(9, 3)])
    assert got == [(0, b"a0"), (1, b"a1"), (5, b"a5"), (6, b"a6"), (9, b"p9")]
    assert records.done and records.error is None and records.next_offset == 10


def test_an_aborted_transaction_ends_at_its_marker():
    # producer 9 aborts 0 (marker at 1), then commits 2 (marker at 3): only the second is read
    data = b"".join([batch(0, [(b"x0", b"1")], 9, True), marker(1, 9, ABORT),
                     batch(2, [(b"y2", b"1")], 9, True), marker(3, 9, COMMIT)])
    assert walk(data, aborted=[(9, 0)])[0] == [(2, b"y2")]
    # without the fetch answer's aborted list the same bytes read as committed
    assert walk(data)[0] == [(0, b"x0"), (2, b"y2")]


def test_the_aborted_list_counts_from_its_first_offset_only():
    # producer 9 committed 0, then aborted 2 (its first offset): 0 stays
    data = b"".join([batch(0, [(b"y0", b"1")], 9, True), marker(1, 9, COMMIT),
                     batch(2, [(b"x2", b"1")], 9, True), marker(3, 9, ABORT)])
    assert walk(data, aborted=[(9, 2)])[0] == [(0, b"y0")]


def test_next_offset_passes_trailing_skipped_batches():
    data = b"".join([batch(10, [(b"k", b"1")]), batch(11, [(b"x", b"1")], 9, True), marker(12, 9, ABORT)])
    got, records = walk(data, aborted=[(9, 11)], start=10)
    assert got == [(10, b"k")]
    assert records.next_offset == 13


def test_a_corrupt_batch_stops_the_walk_after_what_came_before():
    good = batch(0, [(b"k0", b"1"), (b"k1", b"1")])
    bad = bytearray(batch(2, [(b"k2", b"1")]))
    bad[-1] ^= 0xFF                                   # a flipped bit in a record: the CRC fails
    got, records = walk(good + bytes(bad) + batch(3, [(b"k3", b"1")]))
    assert got == [(0, b"k0"), (1, b"k1")]
    assert records.done and isinstance(records.error, ValueError) and records.next_offset == 2


def test_nothing_fetched_is_done_at_once():
    got, records = walk(b"", start=5)
    assert got == [] and records.done and records.next_offset == 5


# -- Restored.add_records -------------------------------------------------------------------------


def rec(offset: int, key: bytes | None, value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(offset=offset, key=key, value=value)


def d(n: int) -> bytes:
    return b"d" + n.to_bytes(8, "big")


def w(n: int) -> bytes:
    return n.to_bytes(8, "big")


def test_add_records_keeps_the_offsets_between_start_and_end():
    r = Restored.empty()
    got = r.add_records([rec(3, d(1), w(11)), rec(5, d(2), w(22)), rec(6, d(3), w(33))], 5, 9)
    assert got == 7                                   # past offset 6, the last one
    r.finish()
    assert list(zip(r.keys.tolist(), r.words.tolist(), strict=True)) == [(2, 22), (3, 33)]


def test_add_records_returns_the_end_once_a_record_reaches_it():
    r = Restored.empty()
    assert r.add_records([rec(0, d(1), w(11)), rec(4, d(2), w(22)), rec(5, d(3), w(33))], 0, 4) == 4
    assert r.finish().keys.tolist() == [1]


def test_add_records_of_nothing_stays_at_the_start():
    assert Restored.empty().add_records([], 12, 20) == 12


def test_add_records_reads_every_kind_as_add_does():
    r = Restored.empty()
    records = [
        rec(0, d(1), w(11)),
        rec(1, b"rd" + (5).to_bytes(7, "big"), w(55)),                # a replay word (its hash starts with "d"): not a dedup entry
        rec(2, d(1), None),                                           # a tombstone: word 0
        rec(3, d(2), w(7)[:7]),                                       # a 7-byte word: skipped
        rec(4, b"d" + bytes(9), w(1)),                                # a 10-byte key: skipped
        rec(5, b"c" + b"acct|2026-12-01", b'{"interval": 60.0, "offset": 3, "new": 1}'),  # a cursor (a member it does not know)
        rec(6, None, w(1)),                                           # no key: skipped
    ]
    assert r.add_records(records, 0, 100) == 7
    r.finish()
    assert list(zip(r.keys.tolist(), r.words.tolist(), strict=True)) == [(1, 11), (1, 0)]
    assert list(zip(r.replay_keys.tolist(), r.replay_words.tolist(), strict=True)) == [(0x64 << 56 | 5, 55)]
    assert r.skipped == 3
    assert [(a, k, c.interval, c.offset) for a, ws in r.cursors.items() for k, c in ws.items()] == \
        [("acct", "2026-12-01", 60.0, 3)]


def test_add_records_and_add_restore_the_same_state():
    records = [rec(i, key, value) for i, (key, value) in enumerate([
        (d(9), w(90)), (b"r" + (1).to_bytes(8, "big"), w(10)), (d(8), w(80)), (d(9), None),
        (b"u" + b"acct|42", b'{"r": "a@example.com", "s": 1700000000.0, "st": "sent", "f": false}'),
    ])]
    one, many = Restored.empty(), Restored.empty()
    for r in records:
        one.add(r.key, r.value)
    many.add_records(records, 0, len(records))
    one.finish()
    many.finish()
    assert many.keys.tolist() == one.keys.tolist() == [9, 8, 9]
    assert many.words.tolist() == one.words.tolist() == [90, 80, 0]
    assert many.replay_keys.tolist() == [1] and many.replay_words.tolist() == [10]
    assert {a: sorted(ids) for a, ids in many.ids.items()} == {"acct": ["42"]} == \
        {a: sorted(ids) for a, ids in one.ids.items()}
