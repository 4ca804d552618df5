"""A shard's `_state` read back batch by batch (worker.batchfetch) against a real broker: exactly
what read_committed reads, whether the batches, the consumer or both in turn read it."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.integration.harness import worker_config
from tests.integration.kafka_cluster import client_options
from tests.integration.kafka_cluster import create_topic as create_secured_topic
from tests.integration.test_kafka_secured import broker, security  # noqa: F401  (broker: its secured-broker fixture)
from tests.integration.test_pipeline import create_topic
from tests.integration.world import ENV
from worker import batchfetch
from worker.config import parse_config
from worker.kafka_tls import client_kwargs
from worker.state import Restored, consume_rest, read_partition

pytestmark = pytest.mark.integration


def d(n: int) -> bytes:
    return b"d" + n.to_bytes(8, "big")


def w(n: int) -> bytes:
    return n.to_bytes(8, "big")


CURSOR_KEY = b"c" + b"acct|2026-12-01|*"
CURSOR = b'{"interval": 60.0, "offset": 2, "in_sweep": true}'
TRACKED_KEY = b"u" + b"acct|abc-1"
TRACKED = b'{"r": "a@example.com", "s": 1764547200.0, "st": "sent", "f": false}'


async def write_interleaved(bootstrap: str, topic: str, **options) -> int:
    """Two transactional writers, one committing around the other's aborted transaction; returns
    the offset of the committing writer's second transaction."""
    a = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-a", **options)
    b = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-b", **options)
    await a.start()
    await b.start()
    try:
        await a.begin_transaction()
        await a.send_and_wait(topic, w(11), key=d(1), partition=0)
        await b.begin_transaction()
        await b.send_and_wait(topic, w(99), key=d(2), partition=0)          # aborted below
        await a.send_and_wait(topic, w(55), key=b"r" + (5).to_bytes(8, "big"), partition=0)
        await b.send_and_wait(topic, None, key=d(1), partition=0)           # aborted below
        await a.send_and_wait(topic, CURSOR, key=CURSOR_KEY, partition=0)
        await a.commit_transaction()
        await b.abort_transaction()
        await a.begin_transaction()
        second = (await a.send_and_wait(topic, w(33), key=d(3), partition=0)).offset
        await a.send_and_wait(topic, TRACKED, key=TRACKED_KEY, partition=0)
        await a.send_and_wait(topic, None, key=d(1), partition=0)           # a tombstone of entry 1
        await a.commit_transaction()
        await b.begin_transaction()
        await b.send_and_wait(topic, w(77), key=d(7), partition=0)          # aborted: the partition ends with it
        await b.abort_transaction()
    finally:
        await a.stop()
        await b.stop()
    return second


def state_of(r: Restored) -> dict:
    r.finish()
    return {"dedup": list(zip(r.keys.tolist(), r.words.tolist(), strict=True)),
            "replay": list(zip(r.replay_keys.tolist(), r.replay_words.tolist(), strict=True)),
            "cursors": {a: {k: (c.interval, c.offset, c.in_sweep) for k, c in ws.items()} for a, ws in r.cursors.items()},
            "ids": {a: {k: (t.recipient, t.status, t.final) for k, t in ids.items()} for a, ids in r.ids.items()},
            "skipped": r.skipped}


EXPECTED = {
    "dedup": [(1, 11), (3, 33), (1, 0)],             # in changelog order; the table keeps the last
    "replay": [(5, 55)],
    "cursors": {"acct": {"2026-12-01|*": (60.0, 2, True)}},
    "ids": {"acct": {"abc-1": ("a@example.com", "sent", False)}},
    "skipped": 0,
}


async def _consumer(**options) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(**options, isolation_level="read_committed", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    return consumer


async def batches_alone(tp: TopicPartition, **options) -> tuple[Restored, int, int]:
    """`tp` read from offset 0 by the batches alone: (what they restored, the offset they reached,
    the partition's end)."""
    consumer = await _consumer(**options)
    try:
        end = (await consumer.end_offsets([tp]))[tp]
        restored = Restored.empty()
        return restored, await batchfetch.read_batches(consumer, tp, 0, end, restored.add_records), end
    finally:
        await consumer.stop()


async def test_batches_consumer_and_both_in_turn_read_the_committed_state(kafka_bootstrap, topic_prefix):
    topic = f"{topic_prefix}._state"
    await create_topic(kafka_bootstrap, topic, partitions=1)
    second = await write_interleaved(kafka_bootstrap, topic)
    tp = TopicPartition(topic, 0)
    kafka = parse_config(worker_config(kafka_bootstrap, topic_prefix, []), ENV).kafka

    assert state_of(await read_partition(kafka, topic, 0)) == EXPECTED

    consumer = await _consumer(bootstrap_servers=kafka_bootstrap)
    try:
        end = (await consumer.end_offsets([tp]))[tp]
        # the batches alone reach the end (past the trailing aborted transaction and its marker)
        alone = Restored.empty()
        assert await batchfetch.read_batches(consumer, tp, 0, end, alone.add_records) == end
        assert state_of(alone) == EXPECTED
        # the batches up to the second transaction, the consumer from there
        both = Restored.empty()
        reached = await batchfetch.read_batches(consumer, tp, 0, second, both.add_records)
        assert reached == second
        await consume_rest(consumer, tp, reached, end, both)
        assert state_of(both) == EXPECTED
    finally:
        await consumer.stop()
    consumer = await _consumer(bootstrap_servers=kafka_bootstrap)
    try:
        only = Restored.empty()                       # the consumer alone, as before batch restores
        await consume_rest(consumer, tp, 0, end, only)
        assert state_of(only) == EXPECTED
    finally:
        await consumer.stop()


async def test_a_large_partition_over_many_fetches_and_slices(kafka_bootstrap, topic_prefix, monkeypatch):
    """30,000 entries in three transactions with an aborted one between them, read in fetches of
    64 KiB (a few thousand records each) and slices of 1,000 records."""
    monkeypatch.setattr(batchfetch, "FETCH_BYTES", 64 << 10)
    monkeypatch.setattr(batchfetch, "SLICE", 1_000)
    topic = f"{topic_prefix}._state"
    await create_topic(kafka_bootstrap, topic, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-big", linger_ms=20)
    await producer.start()
    try:
        for part in range(3):
            async with producer.transaction():
                for n in range(part * 10_000, (part + 1) * 10_000):
                    await producer.send(topic, w(2 * n + 1), key=d(n), partition=0)
            if part < 2:
                await producer.begin_transaction()
                for n in range(500):
                    await producer.send(topic, w(0), key=d(n), partition=0)
                await producer.abort_transaction()
    finally:
        await producer.stop()
    restored, reached, end = await batches_alone(TopicPartition(topic, 0), bootstrap_servers=kafka_bootstrap)
    assert reached == end
    restored.finish()
    assert restored.keys.tolist() == list(range(30_000))
    assert restored.words.tolist() == [2 * n + 1 for n in range(30_000)]
    assert restored.skipped == 0


async def test_the_batches_reach_the_end_through_tls_and_sasl(broker):  # noqa: F811  (the fixture imported above)
    """The batch read goes through the consumer's own client, so a secured cluster (TLS, SCRAM) is
    read the same way, to the end, not handed to the consumer."""
    listener, mechanism = "sasl_ssl", "SCRAM-SHA-512"
    settings, secrets_env = security(broker, listener, mechanism)
    options = client_options(broker, listener, mechanism)
    bootstrap = options.pop("bootstrap_servers")
    prefix = f"tlsb{uuid.uuid4().hex[:10]}"
    topic = f"{prefix}._state"
    await create_secured_topic(topic, bootstrap_servers=bootstrap, **options)
    await write_interleaved(bootstrap, topic, **options)
    kafka = parse_config(worker_config(bootstrap, prefix, [], kafka={"security": settings}), {**ENV, **secrets_env}).kafka
    restored, reached, end = await batches_alone(TopicPartition(topic, 0), **client_kwargs(kafka))
    assert reached == end
    assert state_of(restored) == EXPECTED
    assert state_of(await read_partition(kafka, topic, 0)) == EXPECTED


async def test_track_topic_gives_the_restore_consumer_its_partitions_before_the_first_lookup(kafka_bootstrap,
                                                                                            topic_prefix):
    """A consumer assigned nothing knows no topic's leaders, so its first offset lookup would fail
    and sleep; `track_topic` has it learn them first."""
    topic = f"{topic_prefix}._state"
    await create_topic(kafka_bootstrap, topic, partitions=3)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        assert consumer.partitions_for_topic(topic) is None
        await batchfetch.track_topic(consumer, topic)
        assert consumer.partitions_for_topic(topic) == {0, 1, 2}
    finally:
        await consumer.stop()
