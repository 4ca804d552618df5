"""A shard's transaction writes its records as aiokafka batches (worker.transaction `Batches`), not
one `producer.send` each. On a real broker: every record of a committed transaction is there once,
in order, with its headers; a key lands in the partition `producer.send` (aiokafka's partitioner)
and Kafka's Java client give it; records past a batch's size go in further batches of the same
transaction; an aborted transaction leaves nothing a read_committed consumer sees."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.kafka_utils import read_all
from tests.integration.test_pipeline import create_topic
from worker.transaction import Batches

pytestmark = pytest.mark.integration

HEADERS = [("event_type", b"delivered"), ("schema", b"1")]


async def topic_with(bootstrap: str, partitions: int) -> str:
    name = f"batched-{uuid.uuid4().hex[:10]}"
    await create_topic(bootstrap, name, partitions)
    return name


async def transactional(bootstrap: str, name: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{name}-tx", acks="all",
                                enable_idempotence=True, max_batch_size=4096)   # small: several batches
    await producer.start()
    return producer


async def test_a_committed_transaction_holds_every_record_once_where_send_would_put_it(kafka_bootstrap):
    events, state = await topic_with(kafka_bootstrap, 6), await topic_with(kafka_bootstrap, 3)
    producer = await transactional(kafka_bootstrap, events)
    keys = [b"foobar", b"abc"] + [f"user{i}@example.com".encode() for i in range(60)]
    try:
        await producer.begin_transaction()
        records = Batches(producer)
        for i, key in enumerate(keys):
            await records.add(events, key, b"e%03d" % i + b"." * 500, HEADERS)     # ~9 records a 4 KiB batch
            await records.add(state, b"d" + key, b"s%03d" % i, partition=2)
        await records.add(state, b"gone", None, partition=2)                        # a tombstone
        await records.send()
        for fut in records.sent:
            await fut
        await producer.commit_transaction()
        # the same keys through producer.send, in a second transaction: aiokafka's own partitioner
        await producer.begin_transaction()
        sent = [await producer.send(events, b"x", key=key) for key in keys]
        placed = {key: (await fut).partition for key, fut in zip(keys, sent, strict=True)}
        await producer.commit_transaction()
    finally:
        await producer.stop()
    assert len(records.sent) > 6          # more batches than partitions: some were full

    got = await read_all(kafka_bootstrap, [events, state], expect=3 * len(keys) + 1)
    batched = [r for r in got if r.topic == events and r.value != b"x"]
    assert sorted(r.value[:4] for r in batched) == [b"e%03d" % i for i in range(len(keys))]
    where = {r.key: r.partition for r in batched}
    assert where[b"foobar"] == 0 and where[b"abc"] == 3        # the Java client's (tests/unit/test_murmur2.py)
    assert where == placed
    assert all(list(r.headers) == HEADERS for r in batched)
    on_state = [r for r in got if r.topic == state]
    assert {r.partition for r in on_state} == {2}
    # one partition: the order they were added in
    assert [r.value for r in on_state] == [b"s%03d" % i for i in range(len(keys))] + [None]


async def test_an_aborted_transaction_leaves_nothing(kafka_bootstrap):
    events = await topic_with(kafka_bootstrap, 3)
    producer = await transactional(kafka_bootstrap, events)
    try:
        await producer.begin_transaction()
        records = Batches(producer)
        for i in range(40):
            await records.add(events, b"k%d" % i, b"v" * 300)
        await records.send()
        for fut in records.sent:
            await fut
        await producer.abort_transaction()
        await producer.begin_transaction()
        fresh = Batches(producer)
        await fresh.add(events, b"after", b"kept")
        await fresh.send()
        await producer.commit_transaction()
    finally:
        await producer.stop()
    got = await read_all(kafka_bootstrap, [events], expect=1)
    assert [(r.key, r.value) for r in got] == [(b"after", b"kept")]
