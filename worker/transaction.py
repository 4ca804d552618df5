"""One shard batch as one Kafka transaction, and what can be known of one whose commit failed.

`send_and_commit` writes a batch (worker.batch.Batch: events, `_state` records, dead letters,
forwarded `_raw` records, the `_raw` offset) in one transaction. aiokafka commits whatever became of the records: before EndTxn
it waits for every batch to be done *or failed* (MessageAccumulator.flush_for_commit), so a record
the broker refused, or a batch that expired while its partition had no leader, would be missing
from a transaction that commits with its `_state` writes and `_raw` offset, lost for good. So
every record must be acknowledged before the commit is asked for (`Unacknowledged` otherwise: the
caller aborts). A commit request that fails or times out may still have gone through
(`CommitOutcomeUnknown`); `offset_covers` asks the group's committed `_raw` offset afterwards.

The records are written as aiokafka batches (`Batches`: one builder per partition, each sent closed,
so it goes without lingering), not one `producer.send` each: a third of the CPU per record (bench
`quota`, the first sweep). Keyed records go to the partition Kafka's default partitioner gives them
(worker.emit `partition_of`), as `send` would have put them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, ProducerFenced

from worker.batch import Batch
from worker.config import KafkaConfig
from worker.emit import Topics, batch_with, kafka_error_type, outcome_not_news, partition_of
from worker.errors import CommitOutcomeUnknown
from worker.kafka_tls import client_kwargs

if TYPE_CHECKING:
    from aiokafka.producer.message_accumulator import BatchBuilder  # what producer.create_batch() gives


class Unacknowledged(Exception):
    """A record of a transaction was refused or expired before the commit was asked for (the
    transaction is then aborted, never committed without it). `cause` is Kafka's error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


async def send_and_commit(producer: AIOKafkaProducer, batch: Batch, topics: Topics, raw_tp: TopicPartition,
                          kafka: KafkaConfig) -> None:
    """The batch in one transaction of `producer` (its `_state` records to the shard's partition,
    `raw_tp.partition`). Raises Unacknowledged, ProducerFenced, CommitOutcomeUnknown, or what
    aiokafka raised before the commit was asked for."""
    records = Batches(producer)
    try:
        await producer.begin_transaction()
        for topic, key, value, headers in batch.events:
            await records.add(topic, key, value, headers)
        for state_key, state_value in batch.state:
            await records.add(topics.state, state_key, state_value, partition=raw_tp.partition)
        for letter in batch.dead:
            await records.add(topics.dead_letter, letter.key, letter.body, letter.headers)
        for shard, key, value in batch.forwarded:
            await records.add(topics.raw, key, value, partition=shard)
        await records.send()
        if batch.raw_offset is not None:
            await producer.send_offsets_to_transaction({raw_tp: batch.raw_offset}, kafka.group_id)
        await acknowledged(records.sent, kafka.produce_timeout_secs * 2)   # last: nothing stands between it and the commit
        try:
            await asyncio.wait_for(producer.commit_transaction(), kafka.produce_timeout_secs * 3)
        except ProducerFenced:
            raise
        except (TimeoutError, KafkaError, OSError) as exc:
            raise CommitOutcomeUnknown(kafka_error_type(exc)) from exc
    except BaseException:
        for fut in records.sent:  # the records share the transaction's fate; their errors are not news
            fut.add_done_callback(outcome_not_news)
        raise


class Batches:
    """Records gathered into aiokafka batches, one open builder per partition; a full builder (the
    producer's `max_batch_size`) is sent and a new one opened. `sent` holds one future per batch."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.sent: list[asyncio.Future] = []
        self._open: dict[tuple[str, int], BatchBuilder] = {}
        self._partitions: dict[str, int] = {}

    async def add(self, topic: str, key: bytes, value: bytes | None, headers: Sequence[tuple[str, bytes]] = (),
                  partition: int | None = None) -> None:
        if partition is None:
            count = self._partitions.get(topic)
            if count is None:
                count = self._partitions[topic] = len(await self.producer.partitions_for(topic))
            partition = partition_of(key, count)
        header_list = list(headers)
        builder = self._open.get((topic, partition))
        if builder is None:
            self._open[topic, partition] = batch_with(self.producer, key, value, header_list)
        elif builder.append(timestamp=None, key=key, value=value, headers=header_list) is None:
            await self._send(topic, partition, builder)
            self._open[topic, partition] = batch_with(self.producer, key, value, header_list)

    async def send(self) -> None:
        """Every open batch, sent."""
        for (topic, partition), builder in list(self._open.items()):
            await self._send(topic, partition, builder)
        self._open.clear()

    async def _send(self, topic: str, partition: int, builder: BatchBuilder) -> None:
        builder.close()   # complete: the producer sends it without waiting for more (linger)
        self.sent.append(await self.producer.send_batch(builder, topic, partition=partition))


async def acknowledged(sent: Sequence[asyncio.Future], bound_secs: float) -> None:
    """Until every record is acknowledged; Unacknowledged (the first failure as its cause) when
    one was refused or expired, or not all came within `bound_secs`. A fenced producer is raised
    as such: a newer owner holds the shard, and a fresh producer here would fence it."""
    if not sent:
        return
    try:
        results = await asyncio.wait_for(asyncio.gather(*sent, return_exceptions=True), bound_secs)
    except TimeoutError as exc:
        raise Unacknowledged(exc) from exc
    failed = next((r for r in results if isinstance(r, BaseException)), None)
    if isinstance(failed, ProducerFenced):
        raise failed
    if failed is not None:
        raise Unacknowledged(failed) from failed


async def offset_covers(kafka: KafkaConfig, raw_tp: TopicPartition, offset: int) -> bool | None:
    """Whether the group's committed offset of `raw_tp` is at `offset` or beyond; None when no
    answer came within the produce timeout."""
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    try:
        await admin.start()
        offsets = await asyncio.wait_for(admin.list_consumer_group_offsets(kafka.group_id, partitions=[raw_tp]),
                                         kafka.produce_timeout_secs)
    except (TimeoutError, KafkaError, OSError):
        return None
    finally:
        await admin.close()
    found = offsets.get(raw_tp)
    return found is not None and found.offset >= offset
