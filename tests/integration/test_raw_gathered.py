"""The `_raw` writer gathers the records of concurrent writes into aiokafka batches (worker.intake
`Gathered`), at most one batch in flight per partition (issue 16). On a real broker: every record of
every acknowledged write is in `_raw` once, in its account's partition, keyed `provider/account`;
writes of one loop turn share one batch per partition; writes made while a batch is in flight share
the next one; a write whose caller gives up touches no other write; `stop` waits for what was
gathered. The producer is a real AIOKafkaProducer; its `send_batch` is only counted (called through)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.harness import worker_config
from tests.integration.kafka_utils import read_all
from worker.config import parse_config
from worker.emit import ensure_topics, producer_settings
from worker.intake import RawWriter
from worker.model import Provider
from worker.raw import WebhookRecord

pytestmark = pytest.mark.integration

# Four accounts on four shards: Kafka's default partitioner (toPositive(murmur2("sendcloud/<name>"))
# % 4) puts them on partitions 1, 0, 2 and 3. Worked out with a separate transcription of the Java
# client's murmur2, checked against Kafka's own vectors (UtilsTest: "21" -> -973932308, "foobar" ->
# -790332482), not with the worker's code.
ACCOUNTS = ["acct-a", "acct-c", "acct-d", "acct-i"]
PARTITION = {"acct-a": 1, "acct-c": 0, "acct-d": 2, "acct-i": 3}


def record(account: str, n: int) -> WebhookRecord:
    return WebhookRecord(Provider.SENDCLOUD, account, datetime.now(UTC), {"event": "deliver", "emailId": f"{account}-{n}"})


async def writer_for(bootstrap: str, prefix: str) -> tuple[RawWriter, Counter]:
    accounts = [{"name": a, "provider": "sendcloud", "poll": {"enabled": False}, "webhook": {"enabled": False}}
                for a in ACCOUNTS]
    config = parse_config(worker_config(bootstrap, prefix, accounts, shards=4), {})
    await ensure_topics(config.kafka, with_outputs=False)
    producer = AIOKafkaProducer(**producer_settings(config.kafka))
    await producer.start()
    calls: Counter = Counter()
    real = producer.send_batch

    async def counted(batch, topic, *, partition):
        calls[partition] += 1
        return await real(batch, topic, partition=partition)

    producer.send_batch = counted  # type: ignore[method-assign]
    return RawWriter(config.kafka, producer), calls


async def raw_records(bootstrap: str, prefix: str, expect: int) -> list:
    return await read_all(bootstrap, [f"{prefix}._raw"], expect=expect)


def email_ids(records: list) -> Counter:
    return Counter(orjson.loads(r.value)["record"]["emailId"] for r in records)


async def test_the_writes_of_one_turn_share_one_batch_per_partition(kafka_bootstrap, topic_prefix):
    writer, calls = await writer_for(kafka_bootstrap, topic_prefix)
    try:
        await asyncio.wait_for(asyncio.gather(*(writer.write([record(a, n)]) for n in range(50) for a in ACCOUNTS)), 30)
    finally:
        await writer.stop()
    assert calls == Counter({0: 1, 1: 1, 2: 1, 3: 1})      # 200 writes, 4 batches
    got = await raw_records(kafka_bootstrap, topic_prefix, 200)
    assert email_ids(got) == Counter({f"{a}-{n}": 1 for a in ACCOUNTS for n in range(50)})
    for r in got:
        account = orjson.loads(r.value)["account"]
        assert r.partition == PARTITION[account] and r.key == f"sendcloud/{account}".encode()
    for account in ACCOUNTS:   # one account's records in the order its writes were made
        mine = [orjson.loads(r.value)["record"]["emailId"] for r in sorted(got, key=lambda r: r.offset)
                if orjson.loads(r.value)["account"] == account]
        assert mine == [f"{account}-{n}" for n in range(50)]


async def test_writes_made_while_a_batch_is_in_flight_share_the_next(kafka_bootstrap, topic_prefix):
    writer, calls = await writer_for(kafka_bootstrap, topic_prefix)
    try:
        first = [asyncio.ensure_future(writer.write([record("acct-a", n)])) for n in range(30)]
        await asyncio.sleep(0)          # the first batch is on its way, not acknowledged
        await asyncio.sleep(0)
        assert calls == Counter({1: 1}) and not any(f.done() for f in first)
        second = [asyncio.ensure_future(writer.write([record("acct-a", 100 + n)])) for n in range(30)]
        await asyncio.wait_for(asyncio.gather(*first, *second), 30)
    finally:
        await writer.stop()
    assert calls == Counter({1: 2})
    got = await raw_records(kafka_bootstrap, topic_prefix, 60)
    assert email_ids(got) == Counter({f"acct-a-{n}": 1 for n in [*range(30), *range(100, 130)]})


async def test_a_write_given_up_by_its_caller_touches_no_other(kafka_bootstrap, topic_prefix):
    writer, _ = await writer_for(kafka_bootstrap, topic_prefix)
    try:
        writes = [asyncio.ensure_future(writer.write([record("acct-c", n)])) for n in range(20)]
        await asyncio.sleep(0)
        writes[7].cancel()              # as a webhook past http.ack_timeout_secs
        results = await asyncio.wait_for(asyncio.gather(*writes, return_exceptions=True), 30)
    finally:
        await writer.stop()
    assert isinstance(results[7], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 7] == [None] * 19
    # the given-up record was already in the batch: it is written too (the provider's retry is a duplicate)
    got = await raw_records(kafka_bootstrap, topic_prefix, 20)
    assert email_ids(got) == Counter({f"acct-c-{n}": 1 for n in range(20)})


async def test_stop_waits_for_what_was_gathered(kafka_bootstrap, topic_prefix):
    writer, _ = await writer_for(kafka_bootstrap, topic_prefix)
    writes = [asyncio.ensure_future(writer.write([record(a, n)])) for n in range(10) for a in ACCOUNTS]
    await asyncio.sleep(0)
    await writer.stop(10.0)
    assert all(f.done() and f.exception() is None for f in writes)
    got = await raw_records(kafka_bootstrap, topic_prefix, 40)
    assert email_ids(got) == Counter({f"{a}-{n}": 1 for a in ACCOUNTS for n in range(10)})
