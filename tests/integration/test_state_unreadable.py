"""A `_state` record that is JSON but not what its kind holds must not stop a shard (topics.md
rule 2; config/format audit of 2026-12-06, finding 1): a cursor whose value was a JSON list made
`Restored.add` raise AttributeError, and the shard retried its restore every 2 s for ever while
/healthz and /readyz stayed green. The worker here is the real application on a real broker: it
writes its topics, stops, finds hand-made records in `_state` at its next start, restores the
shard all the same and turns a webhook into its event."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.harness import InProcessWorker, wait_ready, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.test_webhooks import ENV, FORM, post, sendcloud_form
from worker.poll.scheduler import Cursor
from worker.state import encode_cursor

pytestmark = pytest.mark.integration

ACCOUNTS = [{"name": "sc", "provider": "sendcloud", "poll": {"enabled": False},
             "credentials": {"api_user": "u", "api_key_env": "SC_API"}, "webhook": {"app_key_env": "SC_APP"}}]

UNREADABLE = [
    (b"csc|2026-12-04|*", b"[1, 2]"),
    (b"csc|2026-12-05|*", b"null"),
    (b"csc|2026-12-06|*", b'{"interval": "15s", "due_at": "soon"}'),
    (b"usc|abc-1", b'{"r": 5, "s": "yesterday"}'),
]


async def test_a_shard_restores_past_cursors_and_ids_of_another_shape(kafka_bootstrap, topic_prefix):
    data = worker_config(kafka_bootstrap, topic_prefix, ACCOUNTS, shards=1)
    async with InProcessWorker(data, ENV) as w:      # creates the topics
        await wait_ready(w.url)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for key, value in UNREADABLE:
            await producer.send_and_wait(f"{topic_prefix}._state", value, key=key, partition=0)
        await producer.send_and_wait(f"{topic_prefix}._state", encode_cursor(Cursor(interval=60.0)),
                                     key=b"csc|2026-12-03|*", partition=0)
    finally:
        await producer.stop()
    async with InProcessWorker(data, ENV) as w:
        await wait_ready(w.url, timeout=30)          # every shard restored
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{w.url}/status") as r:
                status = await r.json()
            body = sendcloud_form("invalid", "m1$someone@example.com", substat="406")
            assert (await post(session, f"{w.url}/webhooks/sendcloud/sc", body, FORM))[0] == 200
        records = await read_all(kafka_bootstrap, [f"{topic_prefix}.invalid"], expect=1, quiet_secs=2)
    assert [orjson.loads(r.value)["email_id"] for r in records] == ["m1$someone@example.com"]
    assert [s["state_skipped"] for s in status["group"]["shards"]] == [len(UNREADABLE)]
