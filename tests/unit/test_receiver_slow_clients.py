"""Slow clients against the webhook edge (edge audit of 2026-12-06): 70 connections declaring
1 MiB and sending a byte a second, or 300 declaring a few bytes, shed 91-94 % of genuine webhooks
for as long as they went on, with no signature needed (it is in the body). Bytes now count as they
arrive, never as declared, and requests still receiving their body have their own cap, so a webhook
sent whole, as providers send them, never waits behind them. The caps still hold: whole requests
past the cap of requests being written, bodies past the byte budget and slow bodies past their own
cap are shed with 503 and Retry-After. The receiver of test_receiver's `TIGHT` config: 2 requests,
1 MiB of bodies. Requests go over raw sockets, headers and body in one write, as a provider's do."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.unit.test_receiver import NOW, TIGHT, TX_URL, FakeWriter, tencent
from worker import metrics
from worker.webhooks import WebhookReceiver


@pytest.fixture
async def server(request):
    writer = FakeWriter(delay=getattr(request, "param", 0.0))
    receiver = WebhookReceiver(TIGHT, writer, clock=lambda: NOW)
    app = web.Application(client_max_size=TIGHT.http.max_body_bytes)
    app.add_routes(receiver.routes())
    async with TestServer(app) as srv:
        yield srv, receiver, writer


def head(length: int) -> bytes:
    return (f"POST {TX_URL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


async def post(srv, body: bytes) -> tuple[int, str | None]:
    """A whole request in one write; its status and Retry-After."""
    reader, w = await asyncio.open_connection(srv.host, srv.port)
    try:
        w.write(head(len(body)) + body)
        await w.drain()
        status = int((await asyncio.wait_for(reader.readline(), 10)).split()[1])
        retry = None
        while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
            if line.lower().startswith(b"retry-after:"):
                retry = line.split(b":", 1)[1].strip().decode()
        return status, retry
    finally:
        w.close()


async def trickle(srv, declared: int, sent: bytes) -> asyncio.StreamWriter:
    """A client that declares `declared` bytes, sends `sent` and stalls (the connection stays open)."""
    _, w = await asyncio.open_connection(srv.host, srv.port)
    w.write(head(declared) + sent)
    await w.drain()
    return w


def shed() -> float:
    return metrics.WEBHOOK_SHED.labels("requests")._value.get()


async def test_a_whole_webhook_is_not_behind_bodies_still_arriving(server):
    srv, receiver, writer = server
    slow = [await trickle(srv, 1000, b"{") for _ in range(2)]
    for _ in range(100):
        await asyncio.sleep(0.02)
        if receiver.receiving == 2:
            break
    assert receiver.receiving == 2                                   # the cap of bodies still arriving
    assert await post(srv, orjson.dumps(tencent())) == (200, None)  # the old receiver: 503
    before = shed()
    third = await trickle(srv, 1000, b"{")                           # a third slow body is shed at once
    for _ in range(100):
        await asyncio.sleep(0.02)
        if shed() == before + 1:
            break
    assert shed() == before + 1 and receiver.receiving == 2
    for w in (*slow, third):
        w.close()
    assert len(writer.writes) == 1


async def test_a_declared_length_holds_no_budget_until_its_bytes_arrive(server):
    srv, receiver, _ = server
    slow = await trickle(srv, 900_002, b"{")                         # declares 900 KB, sends 1 byte
    for _ in range(100):
        await asyncio.sleep(0.02)
        if receiver.receiving == 1:
            break
    assert receiver.inflight_bytes == 1
    body = b"{" + b" " * 200_000 + orjson.dumps(tencent())[1:]      # 200 KB: 900 KB + 200 KB > 1 MiB
    assert await post(srv, body) == (200, None)                      # the old receiver: 503
    slow.close()


async def test_bytes_that_did_arrive_still_count_against_the_budget(server):
    srv, receiver, _ = server
    slow = await trickle(srv, 900_002, b"{" + b" " * 899_000)        # 899 KB sent, the rest stalls
    for _ in range(200):
        await asyncio.sleep(0.02)
        if receiver.inflight_bytes >= 899_001:
            break
    assert receiver.inflight_bytes == 899_001
    body = b"{" + b" " * 200_000 + orjson.dumps(tencent())[1:]
    assert await post(srv, body) == (503, "5")
    slow.close()


@pytest.mark.parametrize("server", [1.5], indirect=True)              # Kafka acknowledges after 1.5 s
async def test_whole_requests_past_the_cap_of_requests_being_written_are_shed(server):
    srv, receiver, writer = server
    first = [asyncio.create_task(post(srv, orjson.dumps(tencent(email=f"{i}@x.test")))) for i in range(2)]
    for _ in range(100):
        await asyncio.sleep(0.02)
        if receiver.active == 2:
            break
    before = shed()
    assert await post(srv, orjson.dumps(tencent(email="late@x.test"))) == (503, "5")
    assert shed() == before + 1
    assert [await t for t in first] == [(200, None), (200, None)]
    assert receiver.active == receiver.receiving == 0 and receiver.idle.is_set()
