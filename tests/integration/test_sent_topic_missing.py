"""A sent topic that does not exist yet (audit of 2026-12-06). `inputs.sent_topic` is the sending
service's topic, which may appear after this worker first starts. The worker used to wait ~40 s
for it at start-up with its port closed, then exit 1 ("Kafka unavailable"): every replica crash-
looped and no webhook was taken. Now it serves at once, the feed says in `/status` and in
`esw_errors_total{stage="sent_feed",error_type="sent_topic_missing"}` that it waits, and it reads
the topic, from its beginning, once the topic exists."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from tests.integration.harness import InProcessWorker, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.test_pipeline import create_topic
from tests.integration.test_webhooks import ENV, FORM, accounts, sendcloud_form
from worker import sentfeed

pytestmark = pytest.mark.integration


def errors_counted(text: str) -> float:
    line = 'esw_errors_total{error_type="sent_topic_missing",stage="sent_feed"} '
    return sum(float(row[len(line):]) for row in text.splitlines() if row.startswith(line))


async def status(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(f"{url}/status") as r:
        return await r.json()


async def appear_with(bootstrap: str, topic: str, value: bytes) -> None:
    """The sending service creates its topic and writes a record to it."""
    await create_topic(bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def forwarded(session: aiohttp.ClientSession, url: str, n: int, within: float = 60) -> dict:
    """The feed's /status once it has handled `n` records (or after `within` seconds)."""
    deadline = time.monotonic() + within
    while True:
        feed = (await status(session, url))["sent_feed"]
        if feed["forwarded"] >= n or time.monotonic() > deadline:
            return feed
        await asyncio.sleep(0.3)


async def test_a_missing_sent_topic_neither_stops_the_worker_nor_its_webhooks(kafka_bootstrap, topic_prefix,
                                                                             monkeypatch):
    monkeypatch.setattr(sentfeed, "TOPIC_WAIT_SECS", 0.5)     # the test's patience, not the behaviour
    sent_topic = f"{topic_prefix}.sent"
    data = worker_config(kafka_bootstrap, topic_prefix, accounts(), inputs={"sent_topic": sent_topic})
    started = time.monotonic()
    async with InProcessWorker(data, ENV) as worker, aiohttp.ClientSession() as session:
        assert time.monotonic() - started < 20          # the old start-up waited ~40 s, then failed
        # serving while the topic is missing: health, readiness, a webhook through to its event
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            async with session.get(f"{worker.url}/readyz") as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.2)
        async with session.get(f"{worker.url}/healthz") as r:
            assert r.status == 200
        r = await session.post(f"{worker.url}/webhooks/sendcloud/sc", data=sendcloud_form("deliver", "m1$a@x.test"),
                               headers=FORM)
        assert r.status == 200
        [event] = await read_all(kafka_bootstrap, [f"{topic_prefix}.delivered"], expect=1, timeout=30)
        assert orjson.loads(event.value)["email_id"] == "m1$a@x.test"
        feed = (await status(session, worker.url))["sent_feed"]
        assert (feed["topic"], feed["state"], feed["forwarded"]) == (sent_topic, "waiting_for_topic", 0)
        await asyncio.sleep(1.2)                                           # two more looks at least
        async with session.get(f"{worker.url}/metrics") as r:
            assert errors_counted(await r.text()) >= 2

        # the topic appears with a record in it (unreadable: dead-lettered, which shows it was read)
        await appear_with(kafka_bootstrap, sent_topic, b"not a sent-message record")
        feed = await forwarded(session, worker.url, 1)
        assert (feed["state"], feed["forwarded"]) == ("running", 1)
        [letter] = await read_all(kafka_bootstrap, [f"{topic_prefix}._dead_letter"], expect=1, timeout=30)
        assert letter.value == b"not a sent-message record"
        assert dict(letter.headers)["reason"] == b"bad_sent_record"

        # deleted while read (sent-feed audit of 2026-12-06: `running`, uncounted, and read again only
        # ~5 minutes after it came back): waiting and counted again, then read again from its beginning
        before = errors_counted(await (await session.get(f"{worker.url}/metrics")).text())
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([sent_topic])
        finally:
            await admin.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            feed = (await status(session, worker.url))["sent_feed"]
            if feed["state"] == "waiting_for_topic":
                break
            await asyncio.sleep(0.3)
        assert feed["state"] == "waiting_for_topic"
        assert errors_counted(await (await session.get(f"{worker.url}/metrics")).text()) > before
        await appear_with(kafka_bootstrap, sent_topic, b"another unreadable record")
        feed = await forwarded(session, worker.url, 2)
        assert (feed["state"], feed["forwarded"]) == ("running", 2)
        letters = await read_all(kafka_bootstrap, [f"{topic_prefix}._dead_letter"], expect=2, timeout=30)
        assert sorted(letter.value for letter in letters) == [b"another unreadable record", b"not a sent-message record"]


async def test_partitions_added_to_the_sent_topic_are_read_within_the_feeds_look_interval(
        kafka_bootstrap, topic_prefix, monkeypatch):
    """The sending service adds partitions to its topic (sent-feed audit of 2026-12-06, N7): their
    records were read only after the consumer's metadata refresh, aiokafka's 5 minutes by default.
    The feed refreshes every `TOPIC_WAIT_SECS` (patched to 2 s here), so a record written to a new
    partition is read within a few of those."""
    monkeypatch.setattr(sentfeed, "TOPIC_WAIT_SECS", 2.0)     # the test's patience, not the behaviour
    sent_topic = f"{topic_prefix}.sent"
    await create_topic(kafka_bootstrap, sent_topic, partitions=1)
    data = worker_config(kafka_bootstrap, topic_prefix, accounts(), inputs={"sent_topic": sent_topic})
    async with InProcessWorker(data, ENV) as worker, aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 30
        while (await status(session, worker.url))["sent_feed"]["state"] != "running":
            assert time.monotonic() < deadline, "the feed never subscribed"
            await asyncio.sleep(0.2)
        await asyncio.sleep(3)                                   # the group settled on one partition
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            answer = await admin.create_partitions({sent_topic: NewPartitions(total_count=3)})
        finally:
            await admin.close()
        assert [error for _topic, error, _message in answer.topic_errors] == [0]
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            deadline = time.monotonic() + 30   # the producer's metadata knows the new partitions
            while len(await producer.partitions_for(sent_topic)) < 3:
                assert time.monotonic() < deadline, "the new partitions never showed"
                await producer.client.force_metadata_update()
            # unreadable: dead-lettered, which shows it was read
            await producer.send_and_wait(sent_topic, b"a record in a new partition", key=b"k", partition=2)
        finally:
            await producer.stop()
        feed = await forwarded(session, worker.url, 1, within=30)
        assert (feed["state"], feed["forwarded"]) == ("running", 1)
        [letter] = await read_all(kafka_bootstrap, [f"{topic_prefix}._dead_letter"], expect=1, timeout=30)
        assert letter.value == b"a record in a new partition"
