"""The in-flight byte budget (`http.max_inflight_body_bytes`) counts a body until its request is
answered, whether its length was declared or not. A body sent without Content-Length (chunked) used
to be counted only while it was read and released before it waited for Kafka's acknowledgement,
so bodies waiting on a slow broker were bounded only by max_concurrent_requests x max_body_bytes
(found while documenting every memory bound, issue 15)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.unit.test_receiver import JSON, NOW, TIGHT, TX_URL, FakeWriter, tencent
from worker.webhooks import WebhookReceiver

BODY = b" " * 600_000 + orjson.dumps(tencent())     # 600 KB, one record: leading blanks are valid JSON


async def chunked(body: bytes, size: int = 64 * 1024):
    for i in range(0, len(body), size):
        yield body[i:i + size]


@pytest.fixture
async def slow_kafka():
    writer = FakeWriter(delay=1.5)                    # every write waits 1.5 s for its acknowledgement
    receiver = WebhookReceiver(TIGHT, writer, clock=lambda: NOW)
    app = web.Application(client_max_size=TIGHT.http.max_body_bytes)
    app.add_routes(receiver.routes())
    async with TestClient(TestServer(app)) as c:
        yield c, receiver


async def test_an_undeclared_body_stays_counted_while_it_waits_for_kafka(slow_kafka):
    c, receiver = slow_kafka
    first = asyncio.create_task(c.post(TX_URL, data=chunked(BODY), headers=JSON))   # no Content-Length
    for _ in range(100):                                   # until its body is read and it waits on the write
        await asyncio.sleep(0.02)
        if receiver.inflight_bytes >= len(BODY):
            break
    await asyncio.sleep(0.2)
    assert receiver.inflight_bytes == len(BODY)
    r = await c.post(TX_URL, data=BODY, headers=JSON)     # declared 600 KB: 1.2 MB > the 1 MiB budget
    assert r.status == 503 and r.headers["Retry-After"] == "5"
    assert (await first).status == 200
    assert receiver.inflight_bytes == 0 and receiver.active == 0
    r = await c.post(TX_URL, data=BODY, headers=JSON)     # the budget is back
    assert r.status == 200


async def test_a_declared_body_is_released_once_answered(slow_kafka):
    c, receiver = slow_kafka
    r = await c.post(TX_URL, data=BODY, headers=JSON)
    assert r.status == 200 and receiver.inflight_bytes == 0
