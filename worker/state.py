"""A shard's `_state` changelog: every key kind and its codec, and reading a partition back.

`_state` is compacted: the last record per key is the state, a null value deletes it. Keys:

    b"d" + 8-byte email hash       → the 8-byte dedup word (worker.dedup)
    b"c" + "<account>|<window>"    → a poll cursor, JSON (worker.poll.scheduler.Cursor)
    b"u" + "<account>|<email id>"  → a tracked id, JSON {"r": recipient, "s": sent_at, "st": last
                                     status, "f": final} (worker.poll.ids.Tracked); a final id is
                                     read back as its send time only (worker.poll.settled), and one
                                     sent in 2001-2286 is written {"r":"","s":1794034011.491,
                                     "st":null,"f":true} (`FINAL_SIZE` bytes, which numpy decodes a
                                     slice at a time; members every release reads, v0.2.0 included)
    b"r" + 8-byte hash of account and a webhook's replay key → an 8-byte replay word: the record's
                                     digest and when to forget it (worker.replays)

A shard writes these in the same transactions as its events, so reading its partition with
read_committed up to the end offset gives exactly the state its committed events imply.
Compatibility: decoders ignore JSON members they do not know (a later release may add some); a
record this release cannot read, or whose JSON is of another shape, is skipped and counted
(`Restored.skipped`), never allowed to stop a restore.
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from worker.batchfetch import read_batches, track_topic
from worker.config import KafkaConfig
from worker.kafka_tls import client_kwargs
from worker.poll.ids import Tracked
from worker.poll.scheduler import Cursor
from worker.poll.settled import NUMERIC_DIGITS, SettledIds, numeric_id, sent_word, sent_words
from worker.poll.sink import CursorChange, IdChange, StateChange

StateWrite = tuple[bytes, bytes | None]

DEDUP, CURSOR, TRACKED, REPLAY = b"d", b"c", b"u", b"r"
_TOMBSTONE_WORD = bytes(8)
_CURSOR_FIELDS = frozenset(f.name for f in attrs.fields(Cursor))
# A final id's fixed record: head, send time as 10 digits "." 3 digits, tail (`encode_tracked`)
_FINAL_HEAD, _FINAL_TAIL = b'{"r":"","s":', b',"st":null,"f":true}'
FINAL_SIZE = len(_FINAL_HEAD) + 14 + len(_FINAL_TAIL)
_POINT = len(_FINAL_HEAD) + 10
_TIME_DIGITS = np.r_[len(_FINAL_HEAD):_POINT, _POINT + 1:_POINT + 4]      # where its digits are, ...
_TIME_FRAME = np.r_[0:len(_FINAL_HEAD), _POINT, _POINT + 4:FINAL_SIZE]   # ... and the bytes around them
_MILLI_POWERS = 10.0 ** np.arange(12, -1, -1)


# -- keys and values ------------------------------------------------------------------------------


def dedup_key(key: int, kind: bytes = DEDUP) -> bytes:
    return kind + key.to_bytes(8, "big")


def dedup_value(word: int) -> bytes:
    return word.to_bytes(8, "big")


def dedup_write(key: int, word: int | None, kind: bytes = DEDUP) -> StateWrite:
    """A word of the dedup table (kind `d`) or of the replay table (kind `r`); None: a tombstone."""
    return dedup_key(key, kind), None if word is None else dedup_value(word)


def cursor_key(account: str, window: str) -> bytes:
    return CURSOR + f"{account}|{window}".encode()


def id_key(account: str, email_id: str) -> bytes:
    return TRACKED + f"{account}|{email_id}".encode()


def encode_cursor(cursor: Cursor) -> bytes:
    return orjson.dumps(attrs.asdict(cursor))


def decode_cursor(data: bytes) -> Cursor:
    """A cursor as `encode_cursor` wrote it; members of a later release are left out. ValueError
    when it is not an object or a member is of another type than its own (a count, a time or a
    duration in seconds, a flag): the restore skips it, as a cursor that does not read must stop
    neither the shard nor, later, the account's polling."""
    d = orjson.loads(data)    # (orjson reads no NaN or infinity)
    if not isinstance(d, dict):
        raise ValueError   # caught by the restore, counted as skipped
    fields = {k: v for k, v in d.items() if k in _CURSOR_FIELDS}
    for name, value in fields.items():
        if name == "in_sweep":
            reads = type(value) is bool
        elif name in ("interval", "started_at", "completed_at", "due_at"):
            reads = type(value) in (int, float)
        elif name == "total":   # what the provider said (None where it gives none)
            reads = value is None or type(value) is int
        else:   # offset, seen, changes, sweeps
            reads = type(value) is int and value >= 0
        if not reads:
            raise ValueError
    return Cursor(**fields)


def encode_tracked(tracked: Tracked) -> bytes:
    """An id that can still change in full; a final one as its send time only, in the fixed form
    when the time has 10 digits before the point (otherwise in full: any release reads both)."""
    if tracked.final and tracked.sent_at >= 1e9:
        fixed = b'%s%.3f%s' % (_FINAL_HEAD, tracked.sent_at, _FINAL_TAIL)
        if len(fixed) == FINAL_SIZE:  # 10 digits before the point (not 11 or more, nor "inf")
            return fixed
    return orjson.dumps({"r": tracked.recipient, "s": tracked.sent_at, "st": tracked.status, "f": tracked.final})


def decode_tracked(data: bytes) -> Tracked:
    return _tracked(orjson.loads(data))


def _tracked(d: dict) -> Tracked:
    """ValueError when a member is of another type (a send time that is not a number, a recipient
    or status that is not text): the restore skips the record."""
    recipient, sent_at, status = d["r"], d["s"], d.get("st")
    if not (isinstance(recipient, str) and (status is None or isinstance(status, str))
            and type(sent_at) in (int, float)):
        raise ValueError
    return Tracked(recipient=recipient, sent_at=float(sent_at), status=status, final=bool(d.get("f")))


def change_write(change: StateChange) -> StateWrite:
    """The `_state` record of a poll state change."""
    if isinstance(change, CursorChange):
        return (cursor_key(change.account, change.window),
                None if change.cursor is None else encode_cursor(change.cursor))
    if isinstance(change, IdChange):
        return (id_key(change.account, change.email_id),
                None if change.tracked is None else encode_tracked(change.tracked))
    raise TypeError(f"not a state change: {type(change).__name__}")


# -- reading a partition back ---------------------------------------------------------------------


@attrs.define
class Restored:
    """One partition's state, in changelog order reduced to the last value per key."""

    keys: np.ndarray                                     # uint64 email hashes ...
    words: np.ndarray                                    # ... and their words (0: deleted)
    replay_keys: np.ndarray = attrs.field(factory=lambda: np.empty(0, np.uint64))
    replay_words: np.ndarray = attrs.field(factory=lambda: np.empty(0, np.uint64))
    cursors: dict[str, dict[str, Cursor]] = attrs.field(factory=dict)
    ids: dict[str, dict[str, Tracked]] = attrs.field(factory=dict)    # ... that can still change
    settled: dict[str, SettledIds] = attrs.field(factory=dict)         # final ids (`finish`)
    skipped: int = 0                                     # records this release cannot read
    # 8-byte keys and words gathered as bytes and decoded by numpy once (`finish`), per table
    _columns: dict[bytes, tuple[bytearray, bytearray]] = attrs.field(
        factory=lambda: {DEDUP: (bytearray(), bytearray()), REPLAY: (bytearray(), bytearray())})
    # final numeric ids per account, gathered the same way: 8-byte id, 8-byte word (0: not final)
    _finals: dict[str, tuple[bytearray, bytearray]] = attrs.field(factory=dict)
    _final_strings: dict[str, dict[str, float]] = attrs.field(factory=dict)     # other final ids

    @classmethod
    def empty(cls) -> Restored:
        return cls(np.empty(0, np.uint64), np.empty(0, np.uint64))

    def add(self, key: bytes | None, value: bytes | None) -> None:
        kind = key[:1] if key else b""
        try:
            if kind in self._columns:
                if len(key) != 9 or (value is not None and len(value) != 8):  # type: ignore[arg-type]
                    raise ValueError("table record of the wrong size")
                keys, words = self._columns[kind]
                keys += key[1:]  # type: ignore[index]
                words += value if value is not None else _TOMBSTONE_WORD
            elif kind == CURSOR:
                account, window = _split(key)
                windows = self.cursors.setdefault(account, {})
                if value:
                    windows[window] = decode_cursor(value)
                else:
                    windows.pop(window, None)
            elif kind == TRACKED:
                account, email_id = _split(key)
                self._add_tracked(account, email_id, orjson.loads(value) if value else None)
            else:
                raise ValueError("unknown key kind")
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            # Not ours, or not readable by this release: it must neither stop the restore nor
            # shift the entries after it.
            self.skipped += 1

    def add_records(self, records: Iterable[Any], start: int, end: int) -> int:
        """Add, in order, the records at offsets in [start, end): fetched records or aiokafka's
        `ConsumerRecord`s, anything with `offset`, `key` and `value`. Returns the offset to read from
        next: past the last record added, or `end` once a record at or past it shows. A dedup entry
        (nearly every record of a big shard) is gathered here without a call to `add`; tracked ids'
        records (most of a UniSender shard's) are decoded together at the end of the call, in their
        order (`_add_tracked_records`: no other kind touches them, so nothing else must wait)."""
        keys, words = self._columns[DEDUP]
        tracked_keys: list[bytes] = []
        tracked_values: list[bytes] = []
        dedup_kind, tracked_kind = DEDUP[0], TRACKED[0]
        add_key, add_value = tracked_keys.append, tracked_values.append
        position = start
        for record in records:
            offset = record.offset
            if offset < start:
                continue
            if offset >= end:
                position = end
                break
            key, value = record.key, record.value
            if key is not None and value is not None and len(key) == 9 and len(value) == 8 and key[0] == dedup_kind:
                keys += key[1:]
                words += value
            elif key and key[0] == tracked_kind:
                add_key(key)
                add_value(value or b"")
            else:
                self.add(key, value)
            position = offset + 1
        self._add_tracked_records(tracked_keys, tracked_values)
        return position

    def _add_tracked_records(self, keys: list[bytes], values: list[bytes]) -> None:
        """Tracked ids' records in changelog order, as `add` would take them one by one. The final
        numeric ids of one account in the fixed form (`encode_tracked`) are decoded by numpy and
        gathered a run at a time; every other record goes through `add` at its place between them.
        A final record gathered this way does not look for an open record of its id: `finish` drops
        an open id whose last record is final."""
        if not keys:
            return
        fixed = _fixed_finals(keys, values)
        if fixed is None:
            for key, value in zip(keys, values, strict=True):
                self.add(key, value)
            return
        account, ok, numbers, words = fixed
        ids, column = self._finals.setdefault(account, (bytearray(), bytearray()))
        numbers, words = numbers.astype(">u8"), words.astype(">u8")
        start = 0
        for other in [*np.flatnonzero(~ok).tolist(), len(keys)]:
            if other > start:
                ids += numbers[start:other].tobytes()
                column += words[start:other].tobytes()
            if other < len(keys):
                self.add(keys[other], values[other])
            start = other + 1

    def _add_tracked(self, account: str, email_id: str, d: dict | None) -> None:
        """A tracked id's record. A final id is only its send time, never a `Tracked` (a month of
        UniSender ids is tens of millions): a numeric one goes to the account's gathered columns,
        where any other record of it writes 0, so the last record of an id wins whichever form
        it took; another one to a dict of final string ids."""
        if d is not None and not isinstance(d, dict):
            raise ValueError("a tracked id is a JSON object")
        final = d is not None and bool(d.get("f"))
        record = _tracked(d) if d is not None and not final else None
        sent = d["s"] if d is not None and final else 0.0
        if type(sent) not in (int, float):   # a final id's send time: a number, or the record is skipped
            raise ValueError
        tracked = self.ids.setdefault(account, {})
        if record is None:
            tracked.pop(email_id, None)
        else:
            tracked[email_id] = record
        number = numeric_id(email_id)
        if number is None:
            strings = self._final_strings.setdefault(account, {})
            if final:
                strings[email_id] = sent
            else:
                strings.pop(email_id, None)
        else:
            ids, words = self._finals.setdefault(account, (bytearray(), bytearray()))
            ids += number.to_bytes(8, "big")
            words += (sent_word(sent) if final else 0).to_bytes(8, "big")

    def finish(self) -> Restored:
        """Decode the gathered table entries (a second call decodes nothing new)."""
        for account in self._finals.keys() | self._final_strings.keys():
            ids, words = self._finals.get(account, (b"", b""))
            settled = self.settled.setdefault(account, SettledIds())
            settled.load(
                np.frombuffer(ids, dtype=">u8").astype(np.uint64), np.frombuffer(words, dtype=">u8").astype(np.uint64),
                self._final_strings.get(account, {}).items())
            # an open numeric id whose last record was a fixed final one (gathered without a look-up)
            tracked = self.ids.get(account, {})
            numbers = {e: n for e in tracked if (n := numeric_id(e)) is not None}
            if numbers:
                final = settled.tables[0].get_many(np.fromiter(numbers.values(), np.uint64, len(numbers)))
                for email_id in itertools.compress(numbers, final.tolist()):
                    del tracked[email_id]
        self._finals, self._final_strings = {}, {}
        for kind, (keys, words) in self._columns.items():
            k = np.frombuffer(keys, dtype=">u8").astype(np.uint64)
            w = np.frombuffer(words, dtype=">u8").astype(np.uint64)
            if kind == DEDUP:
                self.keys, self.words = k, w
            else:
                self.replay_keys, self.replay_words = k, w
        self._columns = {}
        return self


def _fixed_finals(keys: list[bytes], values: list[bytes]) -> tuple[str, np.ndarray, np.ndarray, np.ndarray] | None:
    """Which of these tracked-id records are final numeric ids in the fixed form of one account
    (that of the first fixed-size value, with its key's length), and their ids and table words,
    decoded by numpy: (account, which, ids, words; the last two are garbage where `which` is
    False). None when no record can be. Exactly the records `add` would read the same way: digits
    only, no leading zero, at most `NUMERIC_DIGITS` of them; a time JSON reads (no leading zero)."""
    first = next((i for i, v in enumerate(values) if len(v) == FINAL_SIZE), None)
    if first is None:
        return None
    head = keys[first][:keys[first].find(b"|") + 1]
    width, digits = len(keys[first]), len(keys[first]) - len(head)
    if len(head) < 2 or not 1 < digits <= NUMERIC_DIGITS:   # a one-digit id may be "0": `add` decides
        return None
    try:
        account = head[1:-1].decode()
    except UnicodeDecodeError:
        return None
    which = ((np.fromiter(map(len, keys), np.int64, len(keys)) == width)
             & (np.fromiter(map(len, values), np.int64, len(values)) == FINAL_SIZE))
    picked = which.tolist()
    k = np.frombuffer(b"".join(itertools.compress(keys, picked)), np.uint8).reshape(-1, width)
    v = np.frombuffer(b"".join(itertools.compress(values, picked)), np.uint8).reshape(-1, FINAL_SIZE)
    id_digits = k[:, len(head):] - np.uint8(48)              # a non-digit wraps above 9
    time_digits = v[:, _TIME_DIGITS] - np.uint8(48)
    good = (_equal_rows(k[:, :len(head)], head) & (id_digits.max(axis=1) <= 9) & (id_digits[:, 0] != 0)
            & _equal_rows(v[:, _TIME_FRAME], _FINAL_HEAD + b"." + _FINAL_TAIL)
            & (time_digits.max(axis=1) <= 9) & (time_digits[:, 0] != 0))
    numbers = np.zeros(len(k), np.uint64)
    for column in np.ascontiguousarray(id_digits.T):
        numbers *= np.uint64(10)
        numbers += column
    millis = time_digits.astype(np.float64) @ _MILLI_POWERS  # 13 digits: exact in a float64
    which[which] = good
    out_numbers, out_words = np.zeros(len(keys), np.uint64), np.zeros(len(keys), np.uint64)
    rows = np.flatnonzero(picked)
    out_numbers[rows], out_words[rows] = numbers, sent_words(millis / 1000.0)
    return account, which, out_numbers, out_words


def _equal_rows(rows: np.ndarray, expected: bytes) -> np.ndarray:
    """Which rows of a uint8 matrix are the bytes `expected` (compared 8 bytes at a time)."""
    width = -(-len(expected) // 8) * 8
    padded = np.zeros((len(rows), width), np.uint8)
    padded[:, :len(expected)] = rows
    wanted = np.zeros(width, np.uint8)
    wanted[:len(expected)] = np.frombuffer(expected, np.uint8)
    return (padded.view(np.uint64) == wanted.view(np.uint64)).all(axis=1)


def _split(key: Any) -> tuple[str, str]:
    account, sep, rest = key[1:].decode().partition("|")
    if not sep:
        raise ValueError("no account separator")
    return account, rest


async def read_partition(kafka: KafkaConfig, topic: str, partition: int) -> Restored:
    """Everything committed to one `_state` partition, from its beginning to its current end: read
    batch by batch (worker.batchfetch), and by the consumer from wherever that stopped."""
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        await track_topic(consumer, topic)
        end = (await consumer.end_offsets([tp]))[tp]
        begin = (await consumer.beginning_offsets([tp]))[tp]
        # Table entries are gathered as raw 8-byte strings and decoded by numpy in one step: no
        # Python int per entry (a quarter faster, 40 % less peak memory at 1M entries).
        restored = Restored.empty()
        position = await read_batches(consumer, tp, begin, end, restored.add_records)
        await consume_rest(consumer, tp, position, end, restored)
        return restored.finish()
    finally:
        await consumer.stop()


async def consume_rest(consumer: AIOKafkaConsumer, tp: TopicPartition, position: int, end: int,
                       restored: Restored) -> None:
    """Read [position, end) of `tp` with the consumer itself: what `read_batches` left, if anything."""
    if position >= end:
        return
    consumer.assign([tp])
    # An explicit offset: aiokafka's lazy seek_to_beginning() right after assign() can lose to the
    # initial position lookup, and a restore that reads nothing re-emits everything.
    consumer.seek(tp, position)
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=500, max_records=50_000)
        restored.add_records(batch.get(tp, ()), position, end)


def release_freed_memory() -> None:
    """Give a restore's transient buffers back to the OS. glibc keeps freed heap for reuse, so
    without this a restored 1M-entry shard holds ~88 B of RSS per email instead of ~20."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
