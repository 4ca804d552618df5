"""One shard batch as one Kafka transaction, and what can be known of one whose commit failed.

`send_and_commit` writes a batch (worker.staging.Batch: events, `_state` records, dead letters, the
`_raw` offset) in one transaction. aiokafka commits whatever became of the records: before EndTxn
it waits for every batch to be done *or failed* (MessageAccumulator.flush_for_commit), so a record
the broker refused, or a batch that expired while its partition had no leader, would be missing
from a transaction that commits with its `_state` writes and `_raw` offset, lost for good. So
every record must be acknowledged before the commit is asked for (`Unacknowledged` otherwise: the
caller aborts). A commit request that fails or times out may still have gone through
(`CommitOutcomeUnknown`); `offset_covers` asks the group's committed `_raw` offset afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, ProducerFenced

from worker.config import KafkaConfig
from worker.emit import Topics, kafka_error_type, outcome_not_news
from worker.errors import CommitOutcomeUnknown
from worker.kafka_tls import client_kwargs
from worker.staging import Batch


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
    sent: list[asyncio.Future] = []
    try:
        await producer.begin_transaction()
        for topic, key, value, headers in batch.events:
            sent.append(await producer.send(topic, value, key=key, headers=headers))
        for state_key, state_value in batch.state:
            sent.append(await producer.send(topics.state, state_value, key=state_key, partition=raw_tp.partition))
        for letter in batch.dead:
            sent.append(await producer.send(topics.dead_letter, letter.body, key=letter.key, headers=letter.headers))
        if batch.raw_offset is not None:
            await producer.send_offsets_to_transaction({raw_tp: batch.raw_offset}, kafka.group_id)
        await acknowledged(sent, kafka.produce_timeout_secs * 2)   # last: nothing stands between it and the commit
        try:
            await asyncio.wait_for(producer.commit_transaction(), kafka.produce_timeout_secs * 3)
        except ProducerFenced:
            raise
        except (TimeoutError, KafkaError, OSError) as exc:
            raise CommitOutcomeUnknown(kafka_error_type(exc)) from exc
    except BaseException:
        for fut in sent:  # the records share the transaction's fate; their errors are not news
            fut.add_done_callback(outcome_not_news)
        raise


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
