"""Reading a transactional partition back at the speed of its record batches.

A restore reads a shard's whole `_state` partition, millions of records, before the shard can
work. aiokafka's consumer builds a `ConsumerRecord` (eleven fields, a Python object each) per record
on the way, and that was most of a restore's time (bench/README.md, restore). `read_batches`
fetches the partition with the consumer's own client instead and walks the record batches itself,
returning what read_committed returns and nothing else (KIP-98):
- it asks for read_committed data, so the broker answers only up to the last stable offset;
- a control batch (a transaction's commit or abort marker) is never a record;
- a transactional batch of a producer with an aborted transaction open at that point is skipped:
  each fetch answer lists the aborted transactions overlapping it as (producer id, first offset),
  a producer counts as aborting from its first offset until its abort marker.

It reads as far as it can and says where it stopped. Anything it does not handle (a fetch error, a
leader moving, an empty or unexpected answer, a corrupt batch) ends it early, and the caller's
consumer reads on from that offset (worker.state.read_partition): this module decides how fast a
partition is read, never what is read.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

log = logging.getLogger(__name__)

READ_COMMITTED = 1
FETCH_BYTES = 16 << 20      # one answer at most: its records are walked while the next is not yet asked for
SLICE = 10_000              # records handled per turn of the event loop (a restore runs beside live shards)
FETCH_WAIT_MS = 500
_CONTROL_KEY = struct.Struct(">hh")     # a control record's key: version, type (0: abort, 1: commit)
_ABORT = 0

# handle(records, start, end) -> the offset to read from next (worker.state.Restored.add_records)
Handle = Callable[[Iterable[Any], int, int], int]


class CommittedRecords:
    """The records of one fetch answer that read_committed returns, in offset order.

    Iterating yields record objects (`offset`, `key`, `value`). `next_offset` is the offset after
    the last batch walked to its end (skipped batches count), `done` says the answer is used up,
    `error` why it stopped early (a batch failing its CRC or its decoding): the records before it
    were yielded, nothing after it."""

    def __init__(self, data: bytes, aborted: Iterable[tuple[int, int]] | None, start: int):
        self._data = data
        self._aborted = sorted(aborted or (), key=lambda a: a[1])   # (producer id, first offset)
        self.next_offset = start
        self.done = False
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[Any]:
        pending, aborting, i = self._aborted, set(), 0
        try:
            records = MemoryRecords(self._data)
            while records.has_next():
                batch = records.next_batch()
                if batch is None:
                    break
                if not batch.validate_crc():
                    raise ValueError(f"a batch at offset {batch.base_offset} fails its CRC")
                last = batch.next_offset - 1
                while i < len(pending) and pending[i][1] <= last:
                    aborting.add(pending[i][0])
                    i += 1
                producer = batch.producer_id
                if batch.is_control_batch:
                    if producer in aborting and _is_abort(batch):
                        aborting.discard(producer)
                elif not (batch.is_transactional and producer in aborting):
                    yield from batch
                self.next_offset = batch.next_offset
        except Exception as exc:  # noqa: BLE001 - whatever a batch raises, the consumer reads it instead
            self.error = exc
        self.done = True


def _is_abort(batch: Any) -> bool:
    for record in batch:
        key = record.key
        return key is not None and len(key) >= 4 and _CONTROL_KEY.unpack_from(key)[1] == _ABORT
    return False


def _answer(response: Any, tp: TopicPartition) -> tuple[int, Any, bytes] | None:
    """(error code, aborted transactions, record bytes) of `tp` in a Fetch answer (v4 and later)."""
    if response.API_VERSION < 4:
        return None
    for topic, partitions in response.topics:
        if topic != tp.topic:
            continue
        for partition, error_code, _highwater, *rest in partitions:
            if partition == tp.partition:
                aborted = rest[2] if response.API_VERSION >= 11 else rest[-2]
                return error_code, aborted, rest[-1]
    return None


async def track_topic(consumer: AIOKafkaConsumer, topic: str) -> None:
    """Have a started consumer's client learn `topic`'s partition leaders now. A consumer assigned
    nothing tracks no topic, so its first offset lookup would find the partition unknown, ask for
    metadata and sleep `retry_backoff_ms` (100 ms) before asking again: half of a restore of
    140,000 records (bench/README.md, restore)."""
    await consumer._client.add_topic(topic)


async def read_batches(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int,
                       handle: Handle) -> int:
    """Hand the committed records of `tp` at offsets [start, end) to `handle`, in order, fetched
    with the started `consumer`'s connections (the consumer itself fetches nothing meanwhile: `tp`
    is not assigned to it). Returns the offset reached: `end`, or where it stopped early.

    One fetch runs ahead: as an answer arrives, the next one is asked for from the offset after its
    last batch, and used only if the walk of this one ends exactly there."""
    position = start
    ahead: asyncio.Task | None = None
    try:
        client = consumer._client      # aiokafka's connections, metadata and API-version choice
        while position < end:
            answer = await (ahead if ahead is not None else _fetch(client, tp, position))
            ahead = None
            if answer is None or answer[0] != 0:
                return _stopped(tp, position, end, "no data" if answer is None else f"error code {answer[0]}")
            records = CommittedRecords(answer[2], answer[1], position)
            following = _following(answer[2])
            if position < following < end:
                ahead = asyncio.ensure_future(_fetch(client, tp, following))
            walk = iter(records)
            reached = position
            while not records.done and reached < end:
                reached = handle(itertools.islice(walk, SLICE), reached, end)
                await asyncio.sleep(0)
            if records.error is not None:
                return _stopped(tp, reached, end, type(records.error).__name__)
            reached = max(reached, records.next_offset) if records.done else reached
            if reached <= position:
                return _stopped(tp, position, end, "no progress")
            position = reached
            if ahead is not None and position != following:
                ahead.cancel()
                ahead = None
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the consumer reads on from `position`
        return _stopped(tp, position, end, type(exc).__name__)
    finally:
        if ahead is not None:
            ahead.cancel()
            if ahead.done() and not ahead.cancelled():
                ahead.exception()          # retrieved: a fetch ahead that failed is not news
    return position


async def _fetch(client: Any, tp: TopicPartition, offset: int) -> tuple[int, Any, bytes] | None:
    leader = client.cluster.leader_for_partition(tp)
    if leader is None or leader < 0:
        return None
    request = FetchRequest(FETCH_WAIT_MS, 1, FETCH_BYTES, READ_COMMITTED,
                           [(tp.topic, [(tp.partition, offset, FETCH_BYTES)])])
    return _answer(await client.send(leader, request), tp)


def _following(data: bytes) -> int:
    """The offset after the last whole batch of an answer (-1: none), from the batch headers alone."""
    following = -1
    try:
        records = MemoryRecords(data)
        while records.has_next():
            batch = records.next_batch()
            if batch is None:
                break
            following = batch.next_offset
    except Exception:  # noqa: BLE001 - no look-ahead; the walk finds what is wrong
        return -1
    return following


def _stopped(tp: TopicPartition, position: int, end: int, why: str) -> int:
    log.warning("batch restore stopped early; the consumer reads the rest",
                extra={"topic": tp.topic, "partition": tp.partition, "offset": position, "end": end, "reason": why})
    return position
