"""The `_raw` producer after a partition lost its only replica for longer than a write waits.

aiokafka's idempotent producer numbers a batch when it takes it for sending and keeps the number
when it gives the batch up (timed out while the partition had no leader). Once the partition is
back, the broker refuses every later batch of that producer as out of order, for ever
(aio-libs/aiokafka#1017). Seen in tests/integration/test_cluster_faults.py: after the whole
cluster restarted, webhooks for one account were answered 503 until the worker was restarted.

Here, deterministically, on a three-broker cluster: `_raw` has one partition with one replica; its
broker is killed, a write waits out its timeout while the others report no leader, the broker comes
back. worker.intake.RawWriter must then replace its producer and write again; before the fix every
write of that partition failed at once with OutOfOrderSequenceNumber.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from tests.integration.harness import worker_config
from tests.integration.kafka_cluster import create_topic, kafka_script
from tests.integration.test_cluster_faults import leader_of
from worker.config import parse_config
from worker.emit import producer_settings
from worker.intake import RawWriter
from worker.model import Provider
from worker.raw import WebhookRecord

pytestmark = pytest.mark.integration


ACCOUNT = {"name": "sc", "provider": "sendcloud", "poll": {"enabled": False}, "webhook": {"enabled": False}}


def record(n: int) -> WebhookRecord:
    return WebhookRecord(Provider.SENDCLOUD, "sc", datetime.now(UTC), {"event": "deliver", "emailId": f"id-{n}"})


async def raw_values(bootstrap: str, topic: str, within: float = 20.0) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        deadline = time.monotonic() + within
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            values += [r.value for r in batch.get(tp, [])]
        return values
    finally:
        await consumer.stop()


@pytest.mark.timeout(240)
async def test_a_sequence_gap_left_by_an_outage_is_healed_by_a_fresh_producer(tmp_path, topic_prefix):
    kafka = kafka_script()
    state = tmp_path / "cluster"
    bootstrap = await asyncio.to_thread(kafka.up, state, brokers=3)
    raw = f"{topic_prefix}._raw"
    try:
        await create_topic(raw, 1, 1, bootstrap_servers=bootstrap)
        data = worker_config(bootstrap, topic_prefix, [ACCOUNT], shards=1, kafka={"produce_timeout_secs": 2.0})
        config = parse_config(data, {})

        def new_producer() -> AIOKafkaProducer:
            return AIOKafkaProducer(**producer_settings(config.kafka))

        first = new_producer()
        await first.start()
        writer = RawWriter(config.kafka, first, renew=new_producer)
        try:
            await writer.write([record(1)])
            leader = await leader_of(bootstrap, raw, 0)
            await asyncio.to_thread(kafka.kill_node, state, leader, signal.SIGKILL)
            tp = TopicPartition(raw, 0)
            deadline = time.monotonic() + 30
            while first.client.cluster.leader_for_partition(tp) not in (None, -1):   # the others say: no leader
                assert time.monotonic() < deadline, "the producer never learned that the partition has no leader"
                await first.client.force_metadata_update()
                await asyncio.sleep(0.2)
            with pytest.raises((KafkaError, TimeoutError)):          # waits out its 2 s, numbered and given up
                await asyncio.wait_for(writer.write([record(2)]), 10)
            await asyncio.to_thread(kafka.start_node, state, leader)

            written, failures = None, []
            deadline = time.monotonic() + 60
            while written is None and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(writer.write([record(3)]), 10)
                    written = time.monotonic()
                except (KafkaError, TimeoutError) as exc:
                    failures.append(type(exc).__name__)
                    await asyncio.sleep(0.5)
            assert written is not None, f"no write landed after the broker came back: {failures[-5:]}"
            assert writer.renewals == 1, (writer.renewals, failures)
            assert "OutOfOrderSequenceNumber" in failures, failures   # the defect happened, and was healed
            assert writer.producer is not first
            await writer.write([record(4)])                        # and the fresh producer keeps writing
        finally:
            await writer.stop()
        values = await raw_values(bootstrap, raw)
        ids = [v.split(b'id-')[1][:1] for v in values if b"id-" in v]
        assert ids[0] == b"1" and ids[-2:] == [b"3", b"4"], ids
    finally:
        await asyncio.to_thread(kafka.down, state)
