"""A record Kafka refuses inside a shard's transaction is never committed around (issue 12).

aiokafka commits a transaction whatever became of its records: `commit_transaction` waits for each
batch to be done or failed, then sends EndTxn(COMMIT). A record the broker refused (here: an event
larger than its topic's `max.message.bytes`) was missing from a transaction that committed with
its dedup word and `_raw` offset, so it was lost without a trace; the same happened to a batch that
expired while its partition had no leader (the three-broker test's shortfall after a full stop).
Now the shard waits for every record's acknowledgement before it asks for the commit: the
transaction fails, the breaker isolates the record, and it goes to the dead-letter topic, while
the other events of its batch are committed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import urllib.parse

import aiohttp
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import InProcessWorker, wait_ready, worker_config
from tests.integration.kafka_utils import read_all

pytestmark = pytest.mark.integration

KEY = "refused-records-app-key"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def deliver(email_id: str, message: str) -> bytes:
    ts, token = str(int(time.time() * 1000)), secrets.token_hex(25)
    sig = hmac.new(KEY.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return urllib.parse.urlencode({"event": "deliver", "emailId": email_id, "recipient": email_id.partition("$")[2],
                                   "timestamp": ts, "token": token, "signature": sig, "message": message}).encode()


async def test_an_event_the_broker_refuses_is_dead_lettered_not_lost(kafka_bootstrap, topic_prefix):
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:   # the worker finds its output topic already there, with a small record limit
        await admin.create_topics([NewTopic(f"{topic_prefix}.delivered", 1, 1,
                                            topic_configs={"max.message.bytes": "1500"})])
    finally:
        await admin.close()
    account = {"name": "sc", "provider": "sendcloud", "poll": {"enabled": False}, "webhook": {"app_key_env": "K"}}
    data = worker_config(kafka_bootstrap, topic_prefix, [account], shards=1)
    small = [f"m{i}$u{i}@x.test" for i in range(3)]
    big = "big$big@x.test"
    async with InProcessWorker(data, {"K": KEY}) as w, aiohttp.ClientSession() as session:
        await wait_ready(w.url)
        for email_id, message in [(small[0], "250 ok"), (big, "250 " + "x" * 1900), *[(e, "250 ok") for e in small[1:]]]:
            async with session.post(f"{w.url}/webhooks/sendcloud/sc", data=deliver(email_id, message), headers=FORM) as r:
                assert r.status == 200
        letters = await read_all(kafka_bootstrap, [f"{topic_prefix}._dead_letter"], expect=1, timeout=120, quiet_secs=2)
        events = await read_all(kafka_bootstrap, [f"{topic_prefix}.delivered"], expect=3, timeout=30, quiet_secs=2)
    assert sorted(orjson.loads(r.value)["email_id"] for r in events) == sorted(small)
    assert len(letters) == 1, [dict(r.headers) for r in letters]
    headers = {k: v.decode() for k, v in letters[0].headers}
    assert headers["reason"] == "poison_record"
    assert b"big$big@x.test" in letters[0].value
