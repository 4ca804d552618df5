"""A 401's log line says which check failed (audit of 2026-12-06: a sender whose clock ran minutes
ahead got `bad_signature` alone, which reads as a wrong key). The reason is a fixed text: nothing
received (signature, token, address) appears in it."""

from __future__ import annotations

import hashlib
import hmac
import logging
import urllib.parse

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.unit.test_receiver import CONFIG, ENV, FORM, NOW, FakeWriter
from worker.webhooks import WebhookReceiver

NOW_S = 1793606400            # NOW, 2026-11-02T08:00:00Z, in epoch seconds
TOKEN = "q" * 50


def signed(timestamp_ms: int, key: str = ENV["K"]) -> tuple[bytes, str]:
    sig = hmac.new(key.encode(), (str(timestamp_ms) + TOKEN).encode(), hashlib.sha256).hexdigest()
    body = urllib.parse.urlencode({"event": "deliver", "emailId": "m9$carol@x.test", "recipient": "carol@x.test",
                                   "timestamp": str(timestamp_ms), "token": TOKEN, "signature": sig}).encode()
    return body, sig


@pytest.mark.parametrize(("timestamp_ms", "key", "reason"), [
    ((NOW_S + 3600) * 1000, ENV["K"], "timestamp in the future"),             # the sender's clock an hour ahead
    ((NOW_S - 3 * 86400) * 1000, ENV["K"], "timestamp outside the replay window"),   # 3 days old; window 2 days
    (NOW_S * 1000, "not-the-key", "signature does not match any key"),
])
async def test_a_401_is_logged_with_the_check_that_failed(caplog, timestamp_ms, key, reason):
    assert NOW.timestamp() == NOW_S
    app = web.Application(client_max_size=CONFIG.http.max_body_bytes)
    writer = FakeWriter()
    app.add_routes(WebhookReceiver(CONFIG, writer, clock=lambda: NOW).routes())
    caplog.set_level(logging.INFO, logger="worker.webhooks")
    body, sig = signed(timestamp_ms, key)
    async with TestClient(TestServer(app)) as c:
        assert (await c.post("/webhooks/sendcloud/sc", data=body, headers=FORM)).status == 401
    [line] = [r for r in caplog.records if r.name == "worker.webhooks"]
    assert (line.status, line.error_type, line.reason) == (401, "bad_signature", reason)
    text = repr(vars(line))
    assert sig not in text and TOKEN not in text and "carol" not in text
    assert writer.writes == []


async def test_a_genuine_signature_inside_the_allowed_skew_is_not_refused():
    app = web.Application(client_max_size=CONFIG.http.max_body_bytes)
    writer = FakeWriter()
    app.add_routes(WebhookReceiver(CONFIG, writer, clock=lambda: NOW).routes())
    body, _ = signed((NOW_S + 60) * 1000)                 # a minute ahead: inside the allowed skew
    async with TestClient(TestServer(app)) as c:
        assert (await c.post("/webhooks/sendcloud/sc", data=body, headers=FORM)).status == 200
    assert len(writer.writes) == 1
