"""A shard's `_state` changelog: what its records are, and reading one partition back.

`_state` is compacted: the last record per key is the state, a null value deletes it. Keys:

    b"d" + 8-byte email hash          → the 8-byte dedup word (worker.dedup)
    b"c" + "<account>|<window>"       → a poll cursor, JSON (worker.poll.scheduler.Cursor)
    b"u" + "<account>|<email id>"     → a tracked id, JSON (worker.poll.ids.Tracked)

A shard writes these in the same transactions as its events, so reading its partition with
read_committed up to the end offset gives exactly the state its committed events imply.
"""

from __future__ import annotations

import ctypes

import attrs
import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from worker.config import KafkaConfig
from worker.poll.ids import Tracked
from worker.poll.scheduler import Cursor

_TOMBSTONE_WORD = bytes(8)


def cursor_key(account: str, wid: str) -> bytes:
    return b"c" + f"{account}|{wid}".encode()


def id_key(account: str, email_id: str) -> bytes:
    return b"u" + f"{account}|{email_id}".encode()


@attrs.define
class Restored:
    """One partition's state, in changelog order reduced to the last word per key."""

    keys: np.ndarray                                     # uint64 email hashes ...
    words: np.ndarray                                    # ... and their words (0: deleted)
    cursors: dict[str, dict[str, Cursor]] = attrs.field(factory=dict)
    ids: dict[str, dict[str, Tracked | None]] = attrs.field(factory=dict)   # None: deleted

    def add(self, key: bytes | None, value: bytes | None, keys: bytearray, words: bytearray) -> None:
        if not key:
            return
        kind = key[:1]
        if kind == b"d":
            if len(key) != 9 or (value is not None and len(value) != 8):
                return  # not ours: a foreign record must not shift every entry after it
            keys += key[1:]
            words += value if value is not None else _TOMBSTONE_WORD
        elif kind == b"c":
            account, wid = key[1:].decode().split("|", 1)
            windows = self.cursors.setdefault(account, {})
            if value:
                windows[wid] = Cursor.decode(value)
            else:
                windows.pop(wid, None)
        elif kind == b"u":
            account, email_id = key[1:].decode().split("|", 1)
            self.ids.setdefault(account, {})[email_id] = Tracked.decode(value) if value else None


async def read_partition(kafka: KafkaConfig, topic: str, partition: int) -> Restored:
    """Everything committed to one `_state` partition, from its beginning to its current end."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        # An explicit offset: aiokafka's lazy seek_to_beginning() right after assign() can lose
        # to the initial position lookup, and a restore that reads nothing re-emits everything.
        consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
        # Dedup entries are gathered as raw 8-byte strings and decoded by numpy in one step: no
        # Python int per entry (a quarter faster, 40 % less peak memory at 1M entries).
        keys, words = bytearray(), bytearray()
        restored = Restored(np.empty(0, np.uint64), np.empty(0, np.uint64))
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=50_000)
            for record in batch.get(tp, ()):
                if record.offset >= end:
                    break
                restored.add(record.key, record.value, keys, words)
        restored.keys = np.frombuffer(keys, dtype=">u8").astype(np.uint64)
        restored.words = np.frombuffer(words, dtype=">u8").astype(np.uint64)
        return restored
    finally:
        await consumer.stop()


def release_freed_memory() -> None:
    """Give a restore's transient buffers back to the OS. glibc keeps freed heap for reuse, so
    without this a restored 1M-entry shard holds ~88 B of RSS per email instead of ~20."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
