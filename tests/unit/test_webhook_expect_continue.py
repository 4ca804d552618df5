"""`Expect: 100-continue` (edge audit of 2026-12-06, B-L2): aiohttp's own expect handler sent
`100 Continue` to every request, so a sender asking before a 3 MB body, or before posting to an
account that does not exist, was told to upload it, and then got 413 or 404. Now a request the
handler refuses without its body gets that answer first, and only one it may take gets 100.

Driven over a real socket (aiohttp's client does not wait for the 100), against the receiver of
test_receiver (max_body_bytes 2048; Tencent's account has a path token)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.unit.test_receiver import CONFIG, ENV, NOW, FakeWriter, sendcloud
from worker.webhooks import WebhookReceiver

FORM = "application/x-www-form-urlencoded"


async def exchange(path: str, length: int, expect: str = "100-continue", body: bytes | None = None,
                   version: str = "1.1") -> tuple[bytes, bytes, FakeWriter]:
    """Send the headers only; the first status line the server sends; then, when it was 100, the
    body and the final status line."""
    app = web.Application(client_max_size=CONFIG.http.max_body_bytes)
    writer = FakeWriter()
    app.add_routes(WebhookReceiver(CONFIG, writer, clock=lambda: NOW).routes())
    async with TestServer(app) as server:
        reader, w = await asyncio.open_connection(server.host, server.port)
        w.write(f"POST {path} HTTP/{version}\r\nHost: x\r\nContent-Type: {FORM}\r\n"
                f"Content-Length: {length}\r\nExpect: {expect}\r\n\r\n".encode())
        await w.drain()
        first = await asyncio.wait_for(reader.readline(), 5)
        final = b""
        if first.startswith(b"HTTP/1.1 100"):
            assert await reader.readline() == b"\r\n"
            w.write(body if body is not None else b"x" * length)
            await w.drain()
            final = await asyncio.wait_for(reader.readline(), 5)
        w.close()
        return first.rstrip(), final.rstrip(), writer


async def test_a_taken_request_gets_100_then_its_answer():
    body = sendcloud("deliver", "m1$a@x.test")
    first, final, writer = await exchange("/webhooks/sendcloud/sc", len(body), body=body)
    assert (first, final) == (b"HTTP/1.1 100 Continue", b"HTTP/1.1 200 OK")
    assert len(writer.writes) == 1


@pytest.mark.parametrize("path, length, status", [
    ("/webhooks/sendcloud/sc", 2049, b"HTTP/1.1 413 Request Entity Too Large"),   # one byte over the cap
    ("/webhooks/sendcloud/nobody", 10, b"HTTP/1.1 404 Not Found"),                # no such account
    ("/webhooks/tencent_ses/tx/wrong-token", 10, b"HTTP/1.1 401 Unauthorized"),   # a bad path token
    ("/webhooks/tencent_ses/tx", 10, b"HTTP/1.1 401 Unauthorized"),               # the token missing
])
async def test_a_refused_request_gets_its_answer_instead_of_100(path, length, status):
    first, final, writer = await exchange(path, length)
    assert (first, final, writer.writes) == (status, b"", [])


async def test_the_cap_itself_is_taken():
    first, _, _ = await exchange(f"/webhooks/tencent_ses/tx/{ENV['T']}", 2048, body=b"{" + b" " * 2047)
    assert first == b"HTTP/1.1 100 Continue"


async def test_another_expectation_is_417():
    first, final, _ = await exchange("/webhooks/sendcloud/sc", 10, expect="something-else")
    assert (first, final) == (b"HTTP/1.1 417 Expectation Failed", b"")


async def test_a_refused_request_closes_its_connection():
    """The client may skip its body after the refusal (RFC 9110); kept alive, the connection would take
    its next request for the body it never sent (review of 2026-12-06). The answer says it closes."""
    app = web.Application(client_max_size=CONFIG.http.max_body_bytes)
    app.add_routes(WebhookReceiver(CONFIG, FakeWriter(), clock=lambda: NOW).routes())
    async with TestServer(app) as server:
        reader, w = await asyncio.open_connection(server.host, server.port)
        w.write(f"POST /webhooks/sendcloud/nobody HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n"
                "Content-Length: 10\r\nExpect: 100-continue\r\n\r\n".encode())
        await w.drain()
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).lower()
        w.close()
    assert head.startswith(b"http/1.1 404") and b"connection: close" in head   # the client must not reuse it
