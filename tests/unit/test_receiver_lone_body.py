"""A body alone in flight is taken up to `http.max_body_bytes` even past a smaller byte budget
(config audit of 2026-12-06): with `max_inflight_body_bytes` 1 MiB and `max_body_bytes` 2 MB, a
1.5 MB webhook was answered 503 on an idle worker, every time it came, so it was never taken and
never dead-lettered. The budget still sheds it while another body is held."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.unit.test_receiver import JSON, NOW, TIGHT, TX_URL, FakeWriter, tencent
from tests.unit.test_receiver_budget import chunked
from worker.webhooks import WebhookReceiver

BIG = b" " * 1_500_000 + orjson.dumps(tencent())   # 1.5 MB, one record; budget 1 MiB, cap 2 MB (TIGHT)


@pytest.fixture
async def edge():
    writer = FakeWriter(delay=1.0)
    receiver = WebhookReceiver(TIGHT, writer, clock=lambda: NOW)
    app = web.Application(client_max_size=TIGHT.http.max_body_bytes)
    app.add_routes(receiver.routes())
    async with TestClient(TestServer(app)) as c:
        yield c, receiver, writer


@pytest.mark.parametrize("declared", [True, False])
async def test_a_lone_body_over_the_budget_is_taken(edge, declared):
    c, receiver, writer = edge
    r = await c.post(TX_URL, data=BIG if declared else chunked(BIG), headers=JSON)
    assert r.status == 200 and len(writer.writes) == 1
    assert receiver.inflight_bytes == 0


@pytest.mark.parametrize("declared", [True, False])
async def test_not_while_another_body_is_held(edge, declared):
    c, receiver, _ = edge
    small = orjson.dumps(tencent(email="b@x.test"))
    first = asyncio.create_task(c.post(TX_URL, data=b" " * 100_000 + small, headers=JSON))   # waits 1 s on Kafka
    for _ in range(100):
        await asyncio.sleep(0.02)
        if receiver.inflight_bytes:
            break
    r = await c.post(TX_URL, data=BIG if declared else chunked(BIG), headers=JSON)
    assert r.status == 503
    assert (await first).status == 200
