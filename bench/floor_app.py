"""The floor under issue 16's targets: the least an exactly-once webhook pipeline does in this stack.

`python -m bench.floor_app PORT BOOTSTRAP PREFIX APP_KEY` serves, in one process on asyncio's loop
as the worker does, the two halves of the worker's webhook path with nothing else in them:

- the edge: an aiohttp handler that reads the body, reads the form (`urllib.parse.parse_qsl`),
  checks SendCloud's HMAC-SHA256 over timestamp + token, writes the body to `<PREFIX>.in` with an
  idempotent acks=all producer (the worker's own batching, `worker.intake.Gathered`, one partition),
  and answers 200 once the broker acknowledged it;
- the shard: a read_committed consumer of `<PREFIX>.in` and a transactional producer; per batch of
  records (up to 1,000, gathered for 75 ms after the first, the worker's `kafka.batch_max_records`
  and `batch_linger_ms`), one transaction that writes one small JSON event per record to
  `<PREFIX>.out` (the form read again, as the shard reads a `_raw` record; the worker's batching of a
  transaction's records, `worker.transaction.Batches`) and the consumer's offset.

No dedup, no replay check, no caps, no metrics, no dead letters, no provider classification: what
is left is aiohttp, the HMAC, the form, and aiokafka's produce, consume and transaction. Its CPU per
webhook is a lower bound on the worker's in the same run (bench/wrk.py `floor`). GET /done answers
how many records the shard half has committed, and in how many transactions. With FLOOR_UVLOOP set it runs on uvloop (not a
dependency of the project: install it beside, e.g. `pip install --target DIR uvloop` and
PYTHONPATH=DIR), to see what another event loop would change of the floor.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import sys
import time
import urllib.parse

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from worker.intake import Gathered
from worker.transaction import Batches

# A shard transaction as the worker's (its defaults, schemas/config.v1.json): up to BATCH_RECORDS
# records, gathered for LINGER_SECS after the first one.
BATCH_RECORDS = 1000
LINGER_SECS = 0.075


async def serve(port: int, bootstrap: str, prefix: str, app_key: str) -> None:
    topic_in, topic_out, group = f"{prefix}.in", f"{prefix}.out", f"{prefix}-group"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic_in, 1, 1), NewTopic(topic_out, 1, 1)])
    finally:
        await admin.close()
    edge = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    shard = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             transactional_id=f"{prefix}-tx")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await edge.start()
    await shard.start()
    await consumer.start()
    tp = TopicPartition(topic_in, 0)
    consumer.assign([tp])
    gathered = Gathered(edge, topic_in)
    key = app_key.encode()
    done = transactions = 0

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        fields = dict(urllib.parse.parse_qsl(body.decode()))
        signed = (fields.get("timestamp", "") + fields.get("token", "")).encode()
        if not hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).hexdigest(), fields.get("signature", "")):
            return web.Response(status=401)
        await gathered.add(0, b"floor", body)
        return web.Response(text="ok")

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"done": done, "transactions": transactions})

    async def batch() -> list:
        """Records for one transaction: the first that come, then more for LINGER_SECS."""
        records: list = []
        while not records:
            records = (await consumer.getmany(tp, timeout_ms=100, max_records=BATCH_RECORDS)).get(tp, [])
        until = time.monotonic() + LINGER_SECS
        while len(records) < BATCH_RECORDS and (left := until - time.monotonic()) > 0:
            more = await consumer.getmany(tp, timeout_ms=int(left * 1000) + 1, max_records=BATCH_RECORDS - len(records))
            records += more.get(tp, [])
        return records

    async def decide() -> None:
        nonlocal done, transactions
        while True:
            records = await batch()
            async with shard.transaction():
                events = Batches(shard)   # the worker's own batching of a transaction's records
                for record in records:
                    fields = dict(urllib.parse.parse_qsl(record.value.decode()))
                    event = orjson.dumps({"email_id": fields["emailId"], "recipient": fields["recipient"],
                                          "type": "delivered", "at": fields["timestamp"]})
                    await events.add(topic_out, fields["recipient"].encode(), event, partition=0)
                await events.send()
                await asyncio.gather(*events.sent)
                await shard.send_offsets_to_transaction({tp: records[-1].offset + 1}, group)
            done += len(records)
            transactions += 1

    task = asyncio.create_task(decide())
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    app.router.add_get("/done", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await task
    finally:
        await runner.cleanup()
        await consumer.stop()
        await shard.stop()
        await edge.stop()


if __name__ == "__main__":
    if os.environ.get("FLOOR_UVLOOP"):
        import uvloop
        uvloop.run(serve(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        asyncio.run(serve(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
